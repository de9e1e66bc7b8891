//! The pure Engine.IO v4 / Socket.IO v5 codec that the chorus driver and the
//! reference gateway share. Nothing here does I/O, so every packet form can be
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
    /// A client emitted an event name the protocol reserves.
    #[error("reserved event name {0:?}")]
    ReservedEvent(String),
}
