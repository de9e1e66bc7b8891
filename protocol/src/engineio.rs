//! Engine.IO packets (protocol v4, and v3 where [`Version::V2`] says so): the
//! transport-level framing under Socket.IO.
//!
//! Over websocket every packet travels in its own frame: text packets as a text
//! frame (`<type digit><data>`), binary packets as a binary frame holding only
//! the bytes (v3: the bytes after a leading packet-type byte `4`). Over HTTP
//! long-polling several packets share one body, separated by the record
//! separator `\x1e`; binary packets are written `b<base64>`. In v3 each record
//! is framed `<length>:<packet>` instead, the length counted in UTF-16 code
//! units as JavaScript's `String.length` does, and binary packets are written
//! `b4<base64>` (the client asks for that text form with `b64=1`).

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{DecodeError, Version};

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

    /// Decodes a text packet of `version`: as [`Packet::decode`], except that
    /// a v3 binary record is `b4<base64>`.
    pub fn decode_as(version: Version, text: &'a str) -> Result<Self, DecodeError> {
        match (version, text.strip_prefix('b')) {
            (Version::V2, Some(rest)) => {
                let data = rest.strip_prefix('4').ok_or(DecodeError::PacketType('b'))?;
                Ok(Packet::Binary(Cow::Owned(
                    base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .map_err(|_| DecodeError::Base64)?,
                )))
            }
            _ => Self::decode(text),
        }
    }

    /// Appends the text form of this packet to `out` as `version` writes it
    /// (a v3 binary packet as `b4<base64>`).
    pub fn encode_into_as(&self, version: Version, out: &mut String) {
        match (version, self) {
            (Version::V2, Packet::Binary(b)) => {
                out.push_str("b4");
                base64::engine::general_purpose::STANDARD.encode_string(b, out);
            }
            _ => self.encode_into(out),
        }
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

/// The bytes of a binary message in a websocket binary frame of `version`
/// (v3 frames lead with the packet-type byte `4`, which must be there).
pub fn binary_frame_data(version: Version, frame: &[u8]) -> Result<&[u8], DecodeError> {
    match version {
        Version::V4 => Ok(frame),
        Version::V2 => match frame.split_first() {
            Some((4, data)) => Ok(data),
            Some((other, _)) => Err(DecodeError::PacketType(char::from(*other))),
            None => Err(DecodeError::Empty),
        },
    }
}

/// The records of a polling body of `version`, each still to be decoded with
/// [`Packet::decode_as`].
pub fn payload_records(version: Version, body: &str) -> Records<'_> {
    match version {
        Version::V4 => Records::V4(body.split(RECORD_SEPARATOR)),
        Version::V2 => Records::V3(body),
    }
}

/// The records of a polling body, from [`payload_records`].
#[derive(Debug, Clone)]
pub enum Records<'a> {
    /// v4: separated by `\x1e`.
    V4(std::str::Split<'a, char>),
    /// v3: what is left of a body framed `<length>:<packet>…`.
    V3(&'a str),
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a str, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Records::V4(split) => split.next().map(Ok),
            Records::V3(rest) => loop {
                if rest.is_empty() {
                    return None;
                }
                match split_framed(rest) {
                    // `0:` is the empty payload socket.io 2.x sends: no record.
                    Ok(("", after)) => *rest = after,
                    Ok((record, after)) => {
                        *rest = after;
                        return Some(Ok(record));
                    }
                    Err(e) => {
                        *rest = "";
                        return Some(Err(e));
                    }
                }
            },
        }
    }
}

/// Splits the first `<length>:<packet>` record off a v3 body: the packet and
/// what follows it.
fn split_framed(body: &str) -> Result<(&str, &str), DecodeError> {
    let (digits, rest) = body.split_once(':').ok_or(DecodeError::Framing)?;
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::Framing);
    }
    let units: usize = digits.parse().map_err(|_| DecodeError::Framing)?;
    // Walk the characters counting UTF-16 code units, as `String.length` does.
    let mut counted = 0;
    let mut end = 0;
    for c in rest.chars() {
        if counted == units {
            break;
        }
        counted += c.len_utf16();
        end += c.len_utf8();
    }
    if counted != units {
        // Too short, or the length splits a surrogate pair.
        return Err(DecodeError::Framing);
    }
    rest.split_at_checked(end).ok_or(DecodeError::Framing)
}

/// Appends one record to a v3 polling body: `<length>:<packet>`, the length
/// in UTF-16 code units.
pub fn push_framed(out: &mut String, record: &str) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(out, "{}:", record.encode_utf16().count());
    out.push_str(record);
}

/// Joins already-encoded packet records into one polling body of `version`.
pub fn join_payload_as<I, S>(version: Version, records: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    match version {
        Version::V4 => join_payload(records),
        Version::V2 => {
            let mut out = String::new();
            for r in records {
                push_framed(&mut out, r.as_ref());
            }
            out
        }
    }
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
    /// Largest incoming packet (bytes) the server accepts. Engine.IO v3
    /// announces none; a v3 open packet reads as `u64::MAX` here.
    pub max_payload: u64,
}

/// The open packet's JSON as either version writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyOpen {
    sid: String,
    upgrades: Vec<String>,
    ping_interval: u64,
    ping_timeout: u64,
    max_payload: Option<u64>,
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

    /// Parses the JSON data of an Engine.IO v4 open packet.
    pub fn parse(data: &str) -> Result<Self, DecodeError> {
        Self::parse_as(Version::V4, data)
    }

    /// Parses the JSON data of an open packet of `version`. A well-formed
    /// open packet of the other version (v3 has no `maxPayload`, v4 has one)
    /// is [`DecodeError::Version`], naming the server's version.
    pub fn parse_as(version: Version, data: &str) -> Result<Self, DecodeError> {
        let open: AnyOpen =
            serde_json::from_str(data).map_err(|e| DecodeError::Json(e.to_string()))?;
        let max_payload = match (version, open.max_payload) {
            (Version::V4, Some(max)) => max,
            (Version::V2, None) => u64::MAX,
            (Version::V4, None) => return Err(DecodeError::Version(Version::V2)),
            (Version::V2, Some(_)) => return Err(DecodeError::Version(Version::V4)),
        };
        Ok(Self {
            sid: open.sid,
            upgrades: open.upgrades,
            ping_interval: open.ping_interval,
            ping_timeout: open.ping_timeout,
            max_payload,
        })
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

    // The expected strings below are what socket.io 2.5's own packages
    // (engine.io-parser 2.2.1, socket.io-parser 3.4.5, in tests/js/v2) write.
    #[test]
    fn v3_payloads_count_utf16_code_units() {
        let body = "19:42/chat,[\"x\",\"é😀\"]1:2";
        let records: Vec<_> = payload_records(Version::V2, body)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records, ["42/chat,[\"x\",\"é😀\"]", "2"]);
        assert_eq!(join_payload_as(Version::V2, &records), body);
        // The empty payload, and one record followed by `0:`.
        assert_eq!(payload_records(Version::V2, "0:").count(), 0);
        assert_eq!(
            payload_records(Version::V2, "1:20:").collect::<Vec<_>>(),
            [Ok("2")]
        );
        // What engine.io-parser 2.2 refuses: a length that overruns, splits a
        // surrogate pair or is not a number, and a missing colon.
        for bad in ["5:4ab", "1:😀", "1:4😀", "x:4", ":4", "4", "3:4ab3"] {
            let all: Vec<_> = payload_records(Version::V2, bad).collect();
            assert!(all.iter().any(Result::is_err), "{bad:?} gave {all:?}");
        }
        // v4 bodies are untouched.
        assert_eq!(
            payload_records(Version::V4, "4a\x1e2").collect::<Vec<_>>(),
            [Ok("4a"), Ok("2")]
        );
    }

    proptest::proptest! {
        // Any records (astral characters included) survive v3 framing, and the
        // length written is what JavaScript's `String.length` gives.
        #[test]
        fn v3_framing_round_trips(records in proptest::collection::vec("\\PC{1,12}", 0..6)) {
            let body = join_payload_as(Version::V2, &records);
            let again: Vec<&str> = payload_records(Version::V2, &body)
                .collect::<Result<_, _>>()
                .unwrap();
            proptest::prop_assert_eq!(&again, &records);
            if let Some(first) = records.first() {
                let prefix = format!("{}:", first.encode_utf16().count());
                proptest::prop_assert!(body.starts_with(&prefix));
            }
        }
    }

    #[test]
    fn v3_binary_forms() {
        let body = "49:451-/chat,3[\"blob\",{\"_placeholder\":true,\"num\":0}]6:b4AQID";
        let records: Vec<_> = payload_records(Version::V2, body)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            Packet::decode_as(Version::V2, records[1]).unwrap(),
            Packet::Binary(Cow::Owned(vec![1, 2, 3]))
        );
        let mut out = String::new();
        Packet::Binary(Cow::Owned(vec![1, 2, 3])).encode_into_as(Version::V2, &mut out);
        assert_eq!(out, "b4AQID");
        assert_eq!(
            Packet::decode_as(Version::V2, "b2AQID"),
            Err(DecodeError::PacketType('b'))
        );
        assert_eq!(
            Packet::decode_as(Version::V2, "42").unwrap(),
            Packet::Message("2")
        );
        assert_eq!(
            binary_frame_data(Version::V2, &[4, 1, 2, 3]).unwrap(),
            [1, 2, 3]
        );
        assert!(binary_frame_data(Version::V2, &[]).is_err());
        assert!(binary_frame_data(Version::V2, &[1, 2]).is_err());
        assert_eq!(binary_frame_data(Version::V4, &[4, 1]).unwrap(), [4, 1]);
    }

    #[test]
    fn open_packets_name_the_other_version() {
        let v3 =
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#;
        let v4 = r#"{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            OpenPacket::parse(v3),
            Err(DecodeError::Version(Version::V2))
        );
        assert_eq!(
            DecodeError::Version(Version::V2).to_string(),
            "the server speaks Engine.IO v3 (socket.io 2.x): set `socketio.version: 2`"
        );
        let open = OpenPacket::parse_as(Version::V2, v3).unwrap();
        assert_eq!(
            (open.ping_interval, open.ping_timeout, open.max_payload),
            (25000, 5000, u64::MAX)
        );
        assert_eq!(
            OpenPacket::parse_as(Version::V2, v4),
            Err(DecodeError::Version(Version::V4))
        );
        assert_eq!(
            OpenPacket::parse_as(Version::V4, v4).unwrap().max_payload,
            1_000_000
        );
        assert!(matches!(
            OpenPacket::parse_as(Version::V2, "{}"),
            Err(DecodeError::Json(_))
        ));
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
