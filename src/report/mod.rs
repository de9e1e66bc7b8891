//! Reports of a finished run and baseline comparison.
//!
//! [`render_run_dir`] reads a run directory (`summary.json`,
//! `timeseries.json`, `hdr/*.hlog`, and the optional `violations.json`,
//! `scenario.yml`, `conformance.json`) and writes next to them:
//!
//! - `report.html`: one self-contained page with inline SVG charts;
//! - `summary.md`: Markdown for a PR comment or `$GITHUB_STEP_SUMMARY`;
//! - `junit.xml`: only when `conformance.json` is present.
//!
//! [`render_table`] is the terminal summary `chorus run` and `chorus merge`
//! print. [`compare`] sets a run's [`Summary`](crate::metrics::Summary) against a
//! baseline's under [`Tolerances`]. The formats are described in
//! `reports/README.md`.

mod compare;
mod error;
mod html;
mod junit;
mod markdown;
mod markup;
mod run_dir;
mod svg;
mod terminal;
mod tolerance;

use std::path::{Path, PathBuf};

use crate::error::FileError;

pub use compare::{compare, Comparison, ComparisonRow};
pub use error::ReportError;
pub use html::SECTION_TITLES;
pub use junit::{render_junit, CaseStatus, Conformance, ConformanceCase};
pub use run_dir::{RunData, ViolationRecord};
pub use svg::rate_latency_svg;
pub use terminal::render_table;
pub use tolerance::{
    Gate, MetricKind, ToleranceRule, Tolerances, DEFAULT_GATED_COUNTERS,
    DEFAULT_LATENCY_ABSOLUTE_US, DEFAULT_LATENCY_RELATIVE,
};

/// The files [`render_run_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `<run_dir>/report.html`.
    pub html: PathBuf,
    /// `<run_dir>/summary.md`.
    pub markdown: PathBuf,
    /// `<run_dir>/junit.xml`, when the run has a `conformance.json`.
    pub junit: Option<PathBuf>,
}

impl ReportFiles {
    /// Every file written, in a stable order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.html), Some(&self.markdown), self.junit.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// Reads the run directory `dir` and writes its reports into it.
pub fn render_run_dir(dir: &Path) -> Result<ReportFiles, ReportError> {
    let run = RunData::load(dir)?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map(|()| path.clone())
            .map_err(|e| ReportError::from(FileError::new(&path, e)))
    };
    let html = write("report.html", html::render_html(&run))?;
    let markdown = write("summary.md", markdown::render_markdown(&run))?;
    let junit = match &run.conformance {
        Some(conformance) => Some(write(
            "junit.xml",
            render_junit(conformance, &format!("chorus {}", run.summary.scenario)),
        )?),
        None => None,
    };
    Ok(ReportFiles {
        html,
        markdown,
        junit,
    })
}
