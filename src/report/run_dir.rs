//! Loading everything a report is built from out of a run directory:
//! `summary.json` (required), `timeseries.json`, `hdr/*.hlog`,
//! `violations.json`, `scenario.yml` and `conformance.json` (all optional).

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ReportError;
use super::junit::Conformance;
use crate::error::{FileError, JsonFileError};
use crate::metrics::{IntervalLog, Summary, TimeSeries};

/// One protocol violation with its evidence, as listed in `violations.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationRecord {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Violation kind, the `<kind>` of the `violations.<kind>` counter.
    pub kind: String,
    /// The client that saw it (an id or a name).
    #[serde(default)]
    pub client: serde_json::Value,
    /// The event involved, if any.
    #[serde(default)]
    pub event: Option<String>,
    /// What the protocol or scenario required.
    #[serde(default)]
    pub expected: serde_json::Value,
    /// What actually arrived.
    #[serde(default)]
    pub got: serde_json::Value,
}

/// Everything read from one run directory.
#[derive(Debug)]
pub struct RunData {
    /// `summary.json`.
    pub summary: Summary,
    /// `timeseries.json`, if present.
    pub timeseries: Option<TimeSeries>,
    /// Cumulative histogram per latency metric, rebuilt from `hdr/*.hlog`.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// `violations.json`, empty when absent.
    pub violations: Vec<ViolationRecord>,
    /// `scenario.yml` as run, if present.
    pub scenario: Option<String>,
    /// `conformance.json`, if present.
    pub conformance: Option<Conformance>,
}

impl RunData {
    /// Reads a run directory.
    pub fn load(dir: &Path) -> Result<Self, ReportError> {
        let summary = Summary::read(&dir.join("summary.json"))?;
        let timeseries_path = dir.join("timeseries.json");
        let timeseries = if timeseries_path.exists() {
            Some(TimeSeries::read(&timeseries_path)?)
        } else {
            None
        };
        let scenario_path = dir.join("scenario.yml");
        let scenario = if scenario_path.exists() {
            Some(
                std::fs::read_to_string(&scenario_path)
                    .map_err(|e| FileError::new(&scenario_path, e))?,
            )
        } else {
            None
        };
        Ok(Self {
            summary,
            timeseries,
            histograms: read_hlog_dir(&dir.join("hdr"))?,
            violations: read_optional_json(&dir.join("violations.json"))?.unwrap_or_default(),
            scenario,
            conformance: read_optional_json(&dir.join("conformance.json"))?,
        })
    }
}

/// Reads a JSON file that may be absent.
fn read_optional_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::new(path, e).into()),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| JsonFileError::new(path, e).into())
}

/// Every `*.hlog` of `dir` summed into one histogram per metric (an absent
/// directory yields none).
fn read_hlog_dir(dir: &Path) -> Result<BTreeMap<String, Histogram<u64>>, ReportError> {
    let mut histograms = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(histograms),
        Err(e) => return Err(FileError::new(dir, e).into()),
    };
    for entry in entries {
        let path = entry.map_err(|e| FileError::new(dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "hlog") {
            let (name, histogram) = read_hlog(&path)?;
            histograms.insert(name, histogram);
        }
    }
    Ok(histograms)
}

/// Reads one interval log: the metric name and the sum of its intervals.
pub(crate) fn read_hlog(path: &Path) -> Result<(String, Histogram<u64>), ReportError> {
    let log = IntervalLog::read(path)?;
    Ok((log.name.clone(), log.total()))
}
