//! Error pieces shared by the domains' error enums.

use std::path::PathBuf;

/// A file or directory that could not be created, read or written: the one
/// shape of every domain's `Io` variant, shown as `<path>: <cause>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file or directory involved.
    pub path: PathBuf,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// Pairs an I/O error with the path it concerns.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FileError {
            path: path.into(),
            source,
        }
    }
}

/// A JSON file that could not be encoded or decoded: the one shape of every
/// domain's `Json` variant, shown as `<path>: <cause>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct JsonFileError {
    /// The JSON file involved.
    pub path: PathBuf,
    /// What serde_json said.
    #[source]
    pub source: serde_json::Error,
}

impl JsonFileError {
    /// Pairs a serde_json error with the file it concerns.
    pub fn new(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        JsonFileError {
            path: path.into(),
            source,
        }
    }
}
