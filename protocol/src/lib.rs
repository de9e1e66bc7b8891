//! The pure Engine.IO / Socket.IO codec that the chorus driver and the
//! reference gateway share: Engine.IO v4 / Socket.IO v5 (socket.io 3 and
//! later) and, for the driver, Engine.IO v3 / Socket.IO v4 (socket.io 2.x),
//! the two told apart by a [`Version`] value passed in. Nothing here does I/O, so every packet form can be
//! unit-tested and fuzzed on its own.
//!
//! Everything here reads untrusted bytes, so outside tests it may not unwrap,
//! expect, panic or index unchecked.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod engineio;
pub mod json;
pub mod pick;
pub mod socketio;
pub mod timestamp;

/// The socket.io generation a peer speaks; it fixes the Engine.IO and Socket.IO
/// protocol revisions together, so one value picks every difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// socket.io 2.x: Engine.IO v3 (`EIO=3`, client-sent pings, polling
    /// payloads framed `<length>:<packet>`) and Socket.IO protocol v4 (no
    /// CONNECT `auth`, no `sid` in the CONNECT answer).
    V2,
    /// socket.io 3 and 4: Engine.IO v4 and Socket.IO protocol v5.
    #[default]
    V4,
}

impl Version {
    /// The socket.io major version as scenarios and the command line write it.
    pub fn major(self) -> u8 {
        match self {
            Self::V2 => 2,
            Self::V4 => 4,
        }
    }

    /// The version for a socket.io major version, `2` or `4`.
    pub fn from_major(major: u64) -> Option<Self> {
        match major {
            2 => Some(Self::V2),
            4 => Some(Self::V4),
            _ => None,
        }
    }

    /// The Engine.IO protocol revision: `3` or `4`.
    pub fn engineio(self) -> u8 {
        match self {
            Self::V2 => 3,
            Self::V4 => 4,
        }
    }

    /// The value of the `EIO` query parameter of every request.
    pub fn eio_query(self) -> &'static str {
        match self {
            Self::V2 => "3",
            Self::V4 => "4",
        }
    }

    /// The one line that names a server of this version to a client set up
    /// for the other.
    pub fn mismatch_line(self) -> &'static str {
        match self {
            Self::V2 => "the server speaks Engine.IO v3 (socket.io 2.x): set `socketio.version: 2`",
            Self::V4 => {
                "the server speaks Engine.IO v4 (socket.io 3 or later): set `socketio.version: 4`"
            }
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame was empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not a known packet type.
    #[error("unknown packet type {0:?}")]
    PacketType(char),
    /// A `b…` polling record is not valid base64.
    #[error("invalid base64 in a binary packet")]
    Base64,
    /// The attachment count of a binary packet is missing or malformed, or a
    /// placeholder names an attachment that did not arrive.
    #[error("invalid binary attachment header or placeholder")]
    Attachments,
    /// A binary packet announces more attachments than
    /// [`socketio::MAX_ATTACHMENTS`] (socket.io-parser's limit).
    #[error("too many binary attachments (at most {0})")]
    TooManyAttachments(usize),
    /// The JSON data nests arrays and objects deeper than the limit
    /// ([`json::MAX_DEPTH`]).
    #[error("JSON nested deeper than {0}")]
    TooDeep(usize),
    /// The ack id is not a number that fits in 64 bits.
    #[error("invalid ack id")]
    AckId,
    /// The data is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON is valid but not of the shape the packet type requires.
    #[error("invalid packet data: {0}")]
    Shape(&'static str),
    /// The peer speaks the other protocol version (e.g. a v3 open packet,
    /// without `maxPayload`, read by a v4 client); `0` is the peer's version.
    #[error("{}", .0.mismatch_line())]
    Version(Version),
    /// A `<length>:<packet>` record of an Engine.IO v3 polling payload is
    /// malformed or its length does not match.
    #[error("invalid Engine.IO v3 payload framing")]
    Framing,
    /// A client emitted an event name the protocol reserves.
    #[error("reserved event name {0:?}")]
    ReservedEvent(String),
}
