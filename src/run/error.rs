//! Why a run (or a merge) could not be carried out.

use crate::error::FileError;
use crate::metrics::MetricsError;
use crate::scenario::ScenarioError;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario does not load.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The target does not answer.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The target URL.
        url: String,
        /// What connecting said.
        reason: String,
    },
    /// Nodes of the target do not answer: one line each.
    #[error("{}", .0.join("\n"))]
    Nodes(Vec<String>),
    /// The embedded gateway did not start.
    #[error("cannot start the embedded gateway: {0}")]
    Gateway(String),
    /// Writing results failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The live metrics endpoint cannot listen.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsAddr {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A signal came before the run started.
    #[error("interrupted by {signal} before the run started")]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
    },
    /// The run directory cannot be written (or a shard's read).
    #[error("cannot write {0}")]
    Io(#[from] FileError),
}

impl RunError {
    /// The exit code: 2 for a scenario or usage error, 3 for an unreachable
    /// target, an interruption or I/O.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scenario(_) => 2,
            _ => 3,
        }
    }
}
