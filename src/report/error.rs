//! The one error type of the report domain.

use crate::error::{FileError, JsonFileError};
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
    #[error(transparent)]
    Json(#[from] JsonFileError),
    /// A tolerance rule such as `delivery.*.p99=10%:1ms` could not be parsed.
    #[error("invalid tolerance `{rule}`: {reason}")]
    Tolerance {
        /// The rule as written.
        rule: String,
        /// What was wrong with it.
        reason: String,
    },
}
