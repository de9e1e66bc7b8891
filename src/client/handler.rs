//! The callbacks through which a client hands what it receives to its owner.

use std::fmt;
use std::time::Instant;

use serde_json::value::RawValue;

use super::error::LimitExceeded;
use super::rx_time::RxTime;

/// One Socket.IO packet received on the client's namespace, borrowing from the
/// frame it was read from.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// An EVENT (binary attachments already put in place as arrays of byte values).
    Event {
        /// The event name.
        name: &'a str,
        /// The arguments after the name, as raw JSON.
        args: &'a [&'a RawValue],
        /// The id the server wants an ACK for, if any (see [`Handler::ack_reply`]).
        ack_id: Option<u64>,
    },
    /// The ACK for one of our `emit_with_ack` calls.
    Ack {
        /// The id that [`super::Client::emit_with_ack`] returned.
        id: u64,
        /// The ack arguments, as raw JSON.
        args: &'a [&'a RawValue],
    },
}

/// What to answer to a server EVENT that carries an ack id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AckReply {
    /// Answer `3<nsp>,<id>[]`.
    #[default]
    Empty,
    /// Answer with these arguments: a JSON array, e.g. `[{"ok":true}]`.
    Args(String),
    /// Do not answer.
    Ignore,
}

/// Why a connected client's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We called [`super::Client::disconnect`].
    ClientDisconnect,
    /// The server sent a namespace DISCONNECT (`41<nsp>,`).
    NamespaceDisconnect,
    /// The server sent a CONNECT_ERROR after the namespace was joined; the payload JSON.
    ConnectRefused(String),
    /// The server closed the Engine.IO session (close packet `1`, a websocket close
    /// frame with its status code if any, or the end of the stream).
    ServerClosed {
        /// The websocket close code, when the server sent one.
        code: Option<u16>,
    },
    /// No ping from the server within `pingInterval + pingTimeout`.
    PingTimeout,
    /// The server broke the protocol (undecodable packet, bad frame, HTTP error).
    Transport(String),
    /// The server went over one of the client's [`super::Limits`].
    Limit(LimitExceeded),
    /// A socket error.
    Io(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientDisconnect => f.write_str("client disconnected"),
            Self::NamespaceDisconnect => f.write_str("server disconnected the namespace"),
            Self::ConnectRefused(data) => write!(f, "server refused the namespace: {data}"),
            Self::ServerClosed { code: Some(code) } => write!(f, "server closed (code {code})"),
            Self::ServerClosed { code: None } => f.write_str("server closed"),
            Self::PingTimeout => f.write_str("ping timeout"),
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::Limit(e) => e.fmt(f),
            Self::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// Receives everything a client gets, inline in its reader task: keep it quick
/// and never block. `received_at` is when the kernel received the read that
/// completed the websocket frame (or the polling body), where the kernel
/// gives receive timestamps, else when chorus read it (see [`RxTime`]).
pub trait Handler: Send + 'static {
    /// An EVENT or ACK arrived.
    fn on_message(&mut self, received_at: Instant, message: Incoming<'_>);

    /// A websocket message or a polling body was read, before its packets
    /// are handed to [`Handler::on_message`]: when it was received and read.
    fn on_frame(&mut self, _rx: RxTime) {}

    /// Called after [`Handler::on_message`] for a server EVENT that carries an
    /// ack id: what to answer. Answers `[]` unless overridden.
    fn ack_reply(&mut self, _name: &str, _args: &[&RawValue]) -> AckReply {
        AckReply::Empty
    }

    /// The session ended; called once, last.
    fn on_closed(&mut self, at: Instant, reason: CloseReason);
}
