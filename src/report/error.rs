//! The one error type of the report domain.

use std::path::PathBuf;

use crate::error::FileError;
use crate::metrics::MetricsError;

/// Everything that can go wrong while reading a run directory, rendering
/// its reports or comparing two summaries.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `summary.json` or `timeseries.json` could not be read.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// An optional JSON input (`violations.json`, `conformance.json`) is malformed.
    #[error("{path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying serde_json error.
        #[source]
        source: serde_json::Error,
    },
    /// An HdrHistogram interval log could not be decoded.
    #[error("{path}: invalid interval log: {reason}")]
    IntervalLog {
        /// The `.hlog` file involved.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A tolerance rule such as `delivery.*.p99=10%:1ms` could not be parsed.
    #[error("invalid tolerance `{rule}`: {reason}")]
    Tolerance {
        /// The rule as written.
        rule: String,
        /// What was wrong with it.
        reason: String,
    },
}
