//! Why a conformance run could not produce a verdict.

use crate::error::FileError;
use crate::scenario::Location;

/// Everything that stops `chorus conform` before or outside the cases themselves.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    /// A case file could not be read, or an output file written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A case file is not valid YAML, does not fit the case format, or fails validation.
    #[error("{at}: {message}")]
    InvalidCase {
        /// Where: the file, line and column.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// The environment variable holding the JWT secret is not set.
    #[error("environment variable {0} (the JWT secret) is not set")]
    MissingSecret(String),
    /// Signing a JWT failed.
    #[error("cannot mint JWT: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// The embedded gateway did not start.
    #[error("cannot start the embedded gateway: {0}")]
    Gateway(#[from] chorus_gateway::GatewayError),
    /// The target speaks the other socket.io version than `--socketio-version`.
    #[error("target {url}: {}, i.e. `--socketio-version {}`", .server.mismatch_line(), .server.major())]
    Version {
        /// The target URL.
        url: String,
        /// The version the target speaks.
        server: chorus_protocol::Version,
    },
    /// The target answered no Engine.IO handshake.
    #[error("target {url} is unreachable: {reason}")]
    Unreachable {
        /// The target URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl ConformError {
    /// The process exit code: 3 when the target is unreachable, 2 otherwise (bad input).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unreachable { .. } | Self::Gateway(_) => 3,
            _ => 2,
        }
    }
}
