//! `chorus merge`: combines the run directories of the shards of one
//! distributed run into one, exactly: interval histograms added losslessly
//! second by second, counters summed, and the delivery ledger settled across
//! shards as a single process would have (a client of shard 1 owed what a
//! client of shard 2 sent; a presence snapshot of shard 1 checked against
//! the users of shard 2).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::error::FileError;
use crate::metrics::{
    new_histogram, CounterTotal, Cumulative, GaugeReading, IntervalCounter, IntervalLog,
    IntervalLogs, IntervalSnapshot, NamedHistogram, RunInfo, Summary, TimeSeries,
};
use crate::rules::ProtocolModel;
use crate::scenario::Scenario;

use super::clock::WallTime;
use super::error::RunError;
use super::ledger::{LedgerFile, Window};
use super::settlement::settle_ledgers;
use super::snapshots;
use super::verdict::evaluate;
use super::violations::{read_evidence, write_evidence, Evidence, EVIDENCE_FILE};

/// One shard's run directory, read.
struct ShardDir {
    dir: PathBuf,
    summary: Summary,
    logs: Vec<IntervalLog>,
    series: Option<TimeSeries>,
    ledger: Option<LedgerFile>,
    evidence: Vec<Evidence>,
    scenario: String,
}

fn invalid(dir: &Path, what: impl std::fmt::Display) -> RunError {
    FileError::new(
        dir,
        std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    )
    .into()
}

impl ShardDir {
    fn read(dir: &Path) -> Result<Self, RunError> {
        let io = |path: PathBuf| move |source| RunError::from(FileError::new(path, source));
        let summary = Summary::read(&dir.join("summary.json"))?;
        let mut logs = Vec::new();
        let hdr = dir.join("hdr");
        for entry in std::fs::read_dir(&hdr).map_err(io(hdr.clone()))? {
            let path = entry.map_err(io(hdr.clone()))?.path();
            if path.extension().is_some_and(|e| e == "hlog") {
                logs.push(IntervalLog::read(&path)?);
            }
        }
        let series_path = dir.join("timeseries.json");
        let series = series_path
            .exists()
            .then(|| TimeSeries::read(&series_path))
            .transpose()?;
        let ledger = dir
            .join(LedgerFile::FILE)
            .exists()
            .then(|| LedgerFile::read(dir))
            .transpose()?;
        let scenario_path = dir.join("scenario.yml");
        Ok(Self {
            summary,
            logs,
            series,
            ledger,
            evidence: read_evidence(dir).map_err(io(dir.join(EVIDENCE_FILE)))?,
            scenario: std::fs::read_to_string(&scenario_path).map_err(io(scenario_path))?,
            dir: dir.to_owned(),
        })
    }

    /// When the shard's clock started (the interval logs' base time).
    fn started_at(&self) -> Option<SystemTime> {
        self.logs.first().map(|l| l.base_time)
    }
}

/// Per-second totals of all shards.
#[derive(Default)]
struct Second {
    latencies: BTreeMap<String, Histogram<u64>>,
    deltas: BTreeMap<String, f64>,
    gauges: BTreeMap<String, f64>,
}

/// Merges the shard run directories `dirs` into `out` and returns the merged summary.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Summary, RunError> {
    let shards = dirs
        .iter()
        .map(|d| ShardDir::read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let first = shards
        .first()
        .ok_or_else(|| invalid(out, "no run directories to merge"))?;
    let with_ledger = shards.iter().filter(|s| s.ledger.is_some()).count();
    if with_ledger != 0 && with_ledger != shards.len() {
        return Err(invalid(
            out,
            "some directories are shards (have ledger.json) and some are not",
        ));
    }
    let base = shards
        .iter()
        .filter_map(ShardDir::started_at)
        .min()
        .ok_or_else(|| invalid(&first.dir, "no interval logs"))?;
    std::fs::create_dir_all(out).map_err(|source| FileError::new(out, source))?;

    // Second by second: interval histograms added, counter increases and gauges summed.
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    let second_of = |start: SystemTime| start.duration_since(base).unwrap_or_default().as_secs();
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for shard in &shards {
        for log in &shard.logs {
            let total = totals.entry(log.name.clone()).or_insert_with(new_histogram);
            for interval in &log.intervals {
                let second = seconds
                    .entry(second_of(log.base_time + interval.start))
                    .or_default();
                let h = second
                    .latencies
                    .entry(log.name.clone())
                    .or_insert_with(new_histogram);
                h.add(&interval.histogram)
                    .map_err(|e| invalid(&shard.dir, format!("{e:?}")))?;
                total
                    .add(&interval.histogram)
                    .map_err(|e| invalid(&shard.dir, format!("{e:?}")))?;
            }
        }
        let (Some(series), Some(started)) = (&shard.series, shard.started_at()) else {
            continue;
        };
        for point in &series.points {
            let start = started + Duration::from_secs_f64((point.t_s - point.duration_s).max(0.0));
            let second = seconds.entry(second_of(start)).or_default();
            for (name, rate) in &point.rates {
                *second.deltas.entry(name.clone()).or_default() += rate * point.duration_s;
            }
            for (name, value) in &point.gauges {
                *second.gauges.entry(name.clone()).or_default() += value;
            }
        }
    }
    let latency_names: BTreeSet<&String> = totals.keys().collect();
    let counter_names: BTreeSet<String> = seconds
        .values()
        .flat_map(|s| s.deltas.keys().cloned())
        .collect();
    let mut logs = IntervalLogs::create(out, base)?;
    let mut series = TimeSeries::new(base);
    let mut running: BTreeMap<&str, u64> = BTreeMap::new();
    let mut gauge_max: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (&second, data) in &seconds {
        let snapshot = IntervalSnapshot {
            start: Duration::from_secs(second),
            duration: Duration::from_secs(1),
            // Every metric in every interval, in one order: the logs expect it.
            latencies: latency_names
                .iter()
                .map(|name| NamedHistogram {
                    name: Arc::from(name.as_str()),
                    histogram: data
                        .latencies
                        .get(*name)
                        .cloned()
                        .unwrap_or_else(new_histogram),
                })
                .collect(),
            counters: counter_names
                .iter()
                .map(|name| {
                    let delta = data.deltas.get(name).copied().unwrap_or(0.0).round() as u64;
                    let total = running.entry(name).or_default();
                    *total += delta;
                    IntervalCounter {
                        name: Arc::from(name.as_str()),
                        delta,
                        total: *total,
                    }
                })
                .collect(),
            gauges: data
                .gauges
                .iter()
                .map(|(name, &value)| {
                    let entry = gauge_max.entry(name.clone()).or_insert((value, value));
                    *entry = (value, entry.1.max(value));
                    GaugeReading {
                        name: Arc::from(name.as_str()),
                        last: value,
                        max: entry.1,
                    }
                })
                .collect(),
        };
        logs.write(&snapshot)?;
        series.push(&snapshot);
    }
    series.write(out)?;

    // Totals: counters are exact in each shard's summary; the ledger is settled across shards.
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    for shard in &shards {
        for (name, n) in &shard.summary.counters {
            *counters.entry(name.clone()).or_default() += n;
        }
        for (kind, n) in &shard.summary.violations {
            *counters.entry(format!("violations.{kind}")).or_default() += n;
        }
        for node in &shard.summary.nodes {
            for (name, n) in &node.counters {
                *counters
                    .entry(format!("node.{}.{name}", node.node))
                    .or_default() += n;
            }
        }
    }
    let mut evidence: Vec<Evidence> = shards
        .iter()
        .flat_map(|s| s.evidence.iter().cloned())
        .collect();
    let duration_s = shards
        .iter()
        .map(|s| s.summary.duration_s)
        .fold(0.0, f64::max);
    if with_ledger > 0 {
        let ledgers: Vec<&LedgerFile> = shards.iter().filter_map(|s| s.ledger.as_ref()).collect();
        let model = ProtocolModel::resolve(&ledgers[0].protocol, &first.dir)?;
        let settled = settle_ledgers(&ledgers, &model, duration_s);
        for (name, n) in settled.counters {
            *counters.entry(name).or_default() += n;
        }
        let base_us = base
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let snapshot_event = model.snapshot.as_ref().map_or("", |s| s.event.as_str());
        let findings = snapshots::check_across_shards(&ledgers, Window::RUN);
        let t_s = |at: WallTime| at.as_micros().saturating_sub(base_us) as f64 / 1e6;
        let across = snapshots::evidence(&findings, snapshot_event, t_s);
        let room_snapshot_event = model
            .rooms
            .as_ref()
            .map_or("", |r| r.snapshot.event.as_str());
        let rooms_across = super::rooms::room_snapshots_across_shards(&ledgers, Window::RUN)
            .into_iter()
            .map(|(vu, at, expected, got)| {
                let e = Evidence {
                    t_s: t_s(at),
                    kind: super::violations::Kind::Presence,
                    client: format!("vu {vu}"),
                    event: room_snapshot_event.to_owned(),
                    expected,
                    got,
                };
                (1, e)
            });
        for (n, e) in settled
            .violations
            .into_iter()
            .chain(across)
            .chain(rooms_across)
        {
            *counters
                .entry(format!("violations.{}", e.kind.as_str()))
                .or_default() += n;
            evidence.push(e);
        }
    }
    let cumulative = Cumulative {
        elapsed: Duration::from_secs_f64(duration_s),
        latencies: totals
            .into_iter()
            .map(|(name, histogram)| NamedHistogram {
                name: Arc::from(name),
                histogram,
            })
            .collect(),
        counters: counters
            .into_iter()
            .map(|(name, total)| CounterTotal {
                name: Arc::from(name),
                total,
            })
            .collect(),
        gauges: gauge_max
            .into_iter()
            .map(|(name, (last, max))| GaugeReading {
                name: Arc::from(name),
                last,
                max,
            })
            .collect(),
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let info = RunInfo {
        scenario: first.summary.scenario.clone(),
        // Shards may each play against other nodes: name them all, once each.
        target: {
            let mut targets: Vec<&str> = Vec::new();
            for shard in &shards {
                if !targets.contains(&shard.summary.target.as_str()) {
                    targets.push(&shard.summary.target);
                }
            }
            targets.join(", ")
        },
        started_at: base,
        duration: Duration::from_secs_f64(duration_s),
    };
    let mut summary = Summary::from_cumulative(&cumulative, info, cores);
    if let Some(named) = shards
        .iter()
        .map(|s| &s.summary.nodes)
        .max_by_key(|n| n.len())
    {
        let mut urls = vec![String::new(); named.len()];
        for node in named {
            if let Some(url) = urls.get_mut(usize::from(node.node)) {
                url.clone_from(&node.url);
            }
        }
        summary.name_nodes(&urls);
    }
    let scenario_path = first.dir.join("scenario.yml");
    let scenario = Scenario::from_str(&first.scenario, &scenario_path.display().to_string())?;
    evaluate(&mut summary, &scenario);
    // A shard that was stopped (or could not connect at all) stops the whole run.
    let stopped: Vec<String> = shards
        .iter()
        .filter_map(|s| {
            let why = s.summary.aborted.as_deref()?;
            Some(format!("{}: {why}", s.dir.display()))
        })
        .collect();
    if !stopped.is_empty() {
        summary.verdict = crate::metrics::Verdict::Fail;
        summary.aborted = Some(format!("shard {}", stopped.join("; shard ")));
    }
    summary.write(&out.join("summary.json"))?;
    write_evidence(out, evidence)
        .map_err(|source| FileError::new(out.join("violations.json"), source))?;
    std::fs::write(out.join("scenario.yml"), &first.scenario)
        .map_err(|source| FileError::new(out.join("scenario.yml"), source))?;
    Ok(summary)
}
