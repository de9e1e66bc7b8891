//! The scenario error type and source locations.

use std::fmt;
use std::path::PathBuf;

use super::tree::Pos;
use crate::error::FileError;

/// A place in a scenario source: the file (or the `--set` override) and a
/// 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as given, or `--set <key>` for an override's value.
    pub origin: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Location {
    /// `pos` in `origin`.
    pub(crate) fn new(origin: impl Into<String>, pos: Pos) -> Self {
        Location {
            origin: origin.into(),
            line: pos.line,
            column: pos.column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// Everything that can go wrong loading a scenario or minting its tokens.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario (or a file it names) could not be read.
    #[error(transparent)]
    Io(#[from] FileError),
    /// The text is not valid YAML, does not fit the model, or fails validation.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// A `--set key=value` that cannot be applied.
    #[error("--set {spec}: {reason}")]
    Override {
        /// The override as given.
        spec: String,
        /// Why it cannot be applied.
        reason: String,
    },
    /// A bad row in a CSV token file.
    #[error("{}:{line}: {message}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A protocol model that parses but cannot be used, or a scenario that
    /// its model cannot run (room steps against a model without rooms).
    #[error("{origin}: {message}")]
    Model {
        /// The model or scenario file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The JWT secret's environment variable is not set.
    #[error("environment variable {0} (the JWT secret) is not set")]
    MissingSecret(String),
    /// Signing a JWT failed.
    #[error("cannot mint JWT: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}
