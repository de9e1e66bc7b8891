//! Everything that can go wrong while connecting or talking to a server.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_protocol::DecodeError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configured URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve to any address.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// `host:port` as configured.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The TCP connection was refused or the address is unreachable.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address we tried.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The server answered the polling handshake or websocket upgrade with an
    /// unexpected HTTP status.
    #[error("handshake failed with HTTP {status}: {body}")]
    Handshake {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, for the error message.
        body: String,
    },
    /// The server refused the namespace with a CONNECT_ERROR packet.
    #[error("namespace {nsp} refused the connection: {data}")]
    ConnectRefused {
        /// The namespace we tried to join.
        nsp: String,
        /// The server's JSON payload, e.g. `{"message":"Invalid namespace"}`.
        data: String,
    },
    /// A connect phase did not finish in time.
    #[error("timed out after {after:?} during {phase}")]
    Timeout {
        /// The phase that was running.
        phase: &'static str,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The server sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A packet could not be decoded.
    #[error("undecodable packet: {0}")]
    Decode(#[from] DecodeError),
    /// The connection is closed; nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// A socket error on an established connection.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
