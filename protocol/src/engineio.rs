//! Engine.IO protocol v4 packets: the transport-level framing under Socket.IO.
//!
//! Over websocket every packet travels in its own frame: text packets as a text
//! frame (`<type digit><data>`), binary packets as a binary frame holding only
//! the bytes. Over HTTP long-polling several packets share one body, separated
//! by the record separator `\x1e`; binary packets are written `b<base64>`.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// The separator between packets in an HTTP long-polling body.
pub const RECORD_SEPARATOR: char = '\x1e';

/// One Engine.IO packet, borrowing its data from the frame it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{json}`: the handshake, sent by the server once.
    Open(&'a str),
    /// `1`: either side closes the session.
    Close,
    /// `2[data]`: heartbeat request (server to client in v4), or `2probe` during upgrade.
    Ping(&'a str),
    /// `3[data]`: heartbeat answer, or `3probe` during upgrade.
    Pong(&'a str),
    /// `4<text>`: an application message (a Socket.IO packet).
    Message(&'a str),
    /// `5`: the client completes an upgrade to websocket.
    Upgrade,
    /// `6`: no operation, used to release a pending poll during upgrade.
    Noop,
    /// A binary message (a websocket binary frame, or `b<base64>` in a polling body).
    Binary(Cow<'a, [u8]>),
}

impl<'a> Packet<'a> {
    /// Decodes a text packet: one websocket text frame, or one record of a polling body.
    /// A record starting with `b` is a base64 binary packet (polling only).
    pub fn decode(text: &'a str) -> Result<Self, DecodeError> {
        let mut chars = text.chars();
        let first = chars.next().ok_or(DecodeError::Empty)?;
        let rest = chars.as_str();
        Ok(match first {
            '0' => Packet::Open(rest),
            '1' => Packet::Close,
            '2' => Packet::Ping(rest),
            '3' => Packet::Pong(rest),
            '4' => Packet::Message(rest),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(Cow::Owned(
                base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| DecodeError::Base64)?,
            )),
            other => return Err(DecodeError::PacketType(other)),
        })
    }

    /// Appends the text form of this packet to `out` (binary packets as `b<base64>`,
    /// the polling form; over websocket send [`Packet::Binary`] as a binary frame instead).
    pub fn encode_into(&self, out: &mut String) {
        match self {
            Packet::Open(d) => {
                out.push('0');
                out.push_str(d)
            }
            Packet::Close => out.push('1'),
            Packet::Ping(d) => {
                out.push('2');
                out.push_str(d)
            }
            Packet::Pong(d) => {
                out.push('3');
                out.push_str(d)
            }
            Packet::Message(d) => {
                out.push('4');
                out.push_str(d)
            }
            Packet::Upgrade => out.push('5'),
            Packet::Noop => out.push('6'),
            Packet::Binary(b) => {
                out.push('b');
                base64::engine::general_purpose::STANDARD.encode_string(b, out);
            }
        }
    }

    /// The text form of this packet as a new string.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }
}

/// Splits an HTTP long-polling body into its packet records.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(RECORD_SEPARATOR)
}

/// Joins already-encoded packet records into one HTTP long-polling body.
pub fn join_payload<I, S>(records: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (i, r) in records.into_iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.push_str(r.as_ref());
    }
    out
}

/// The JSON body of the open packet, with its keys in the order the
/// reference socket.io server writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    /// Engine.IO session id.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` over polling, `[]` over websocket).
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong before closing.
    pub ping_timeout: u64,
    /// Largest incoming packet (bytes) the server accepts.
    pub max_payload: u64,
}

impl OpenPacket {
    /// The full text packet: `0{"sid":…}`.
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(128);
        out.push_str("0{\"sid\":");
        crate::json::write_string(&mut out, &self.sid);
        out.push_str(",\"upgrades\":[");
        for (i, upgrade) in self.upgrades.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::json::write_string(&mut out, upgrade);
        }
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            self.ping_interval, self.ping_timeout, self.max_payload
        );
        out
    }

    /// Parses the JSON data of an open packet.
    pub fn parse(data: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(data).map_err(|e| DecodeError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_text_type() {
        assert_eq!(Packet::decode("0{}").unwrap(), Packet::Open("{}"));
        assert_eq!(Packet::decode("1").unwrap(), Packet::Close);
        assert_eq!(Packet::decode("2").unwrap(), Packet::Ping(""));
        assert_eq!(Packet::decode("2probe").unwrap(), Packet::Ping("probe"));
        assert_eq!(Packet::decode("3probe").unwrap(), Packet::Pong("probe"));
        assert_eq!(Packet::decode("4hello").unwrap(), Packet::Message("hello"));
        assert_eq!(Packet::decode("5").unwrap(), Packet::Upgrade);
        assert_eq!(Packet::decode("6").unwrap(), Packet::Noop);
        assert_eq!(
            Packet::decode("bAQID").unwrap(),
            Packet::Binary(Cow::Owned(vec![1, 2, 3]))
        );
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(Packet::decode(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode("9x"), Err(DecodeError::PacketType('9')));
        assert_eq!(Packet::decode("b!!"), Err(DecodeError::Base64));
    }

    #[test]
    fn round_trips() {
        for p in [
            Packet::Open("{\"a\":1}"),
            Packet::Close,
            Packet::Ping("probe"),
            Packet::Pong(""),
            Packet::Message("2[\"x\"]"),
            Packet::Upgrade,
            Packet::Noop,
            Packet::Binary(Cow::Owned(vec![0, 255, 7])),
        ] {
            assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }
    }

    #[test]
    fn polling_payloads_split_and_join_on_record_separator() {
        let body = join_payload(["4hello", "2", "bAQID"]);
        assert_eq!(body, "4hello\x1e2\x1ebAQID");
        let parts: Vec<_> = split_payload(&body).collect();
        assert_eq!(parts, ["4hello", "2", "bAQID"]);
    }

    #[test]
    fn open_packet_keeps_key_order() {
        let open = OpenPacket {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        };
        assert_eq!(
            open.encode(),
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let text = open.encode();
        let Packet::Open(data) = Packet::decode(&text).unwrap() else {
            panic!()
        };
        assert_eq!(OpenPacket::parse(data).unwrap(), open);
    }
}
