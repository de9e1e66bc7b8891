//! The one error type of the metrics domain.

use std::path::PathBuf;

use hdrhistogram::serialization::interval_log::IntervalLogWriterError;
use hdrhistogram::serialization::V2DeflateSerializeError;

use crate::error::{FileError, JsonFileError};

/// Everything that can go wrong while writing or reading metrics output.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A file or directory could not be created, written or read.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A JSON document could not be encoded or decoded.
    #[error(transparent)]
    Json(#[from] JsonFileError),
    /// A histogram could not be appended to an HdrHistogram interval log.
    #[error("{path}: cannot write interval histogram: {source}")]
    IntervalLog {
        /// The `.hlog` file involved.
        path: PathBuf,
        /// The underlying serialization error.
        #[source]
        source: IntervalLogWriterError<V2DeflateSerializeError>,
    },
    /// An interval log could not be read.
    #[error("{path}: invalid interval log: {reason}")]
    InvalidLog {
        /// The `.hlog` file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `summary.json` declared a schema version this build does not understand.
    #[error("{path}: unsupported summary schema {found} (this chorus reads schema {expected})")]
    UnsupportedSchema {
        /// The summary file involved.
        path: PathBuf,
        /// The schema number found in the file.
        found: u32,
        /// The schema number this build writes and reads.
        expected: u32,
    },
}
