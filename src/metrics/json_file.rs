//! Reading and writing the JSON files of a run directory.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::MetricsError;
use crate::error::{FileError, JsonFileError};

/// Writes `value` as pretty-printed JSON to `path` (via a temporary file and
/// a rename, so readers never see a half-written document).
pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), MetricsError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| JsonFileError::new(path, e))?;
    text.push(b'\n');
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).map_err(|e| FileError::new(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| FileError::new(path, e).into())
}

/// Reads a JSON document from `path`.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, MetricsError> {
    let text = std::fs::read(path).map_err(|e| FileError::new(path, e))?;
    serde_json::from_slice(&text).map_err(|e| JsonFileError::new(path, e).into())
}
