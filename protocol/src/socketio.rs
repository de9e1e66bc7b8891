//! Socket.IO packets, carried inside Engine.IO `message` packets: protocol v5
//! (socket.io 3 and later) and protocol v4 (socket.io 2.x), which share the
//! text form; they differ only in the namespace CONNECT ([`connect_packet`],
//! [`connect_sid`]) and in how Engine.IO carries binary attachments.
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<json>]`, for example
//! `2/chat,7["sendMessage",{"message":"hi"}]`. The namespace is omitted for `/`.
//!
//! Decoding borrows from the input and leaves the JSON data raw, so a reader
//! pays only for the parts it looks at; [`Packet::decode`] still checks that the
//! data is well-formed JSON of the shape the packet type requires, as the
//! reference `socket.io-parser` does (a packet it would reject is an error here).

use std::borrow::Cow;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::{DecodeError, Version};

/// The Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: join a namespace (client) or accept the join (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event: a JSON array `[name, ...args]`.
    Event,
    /// `3`: the answer to an event that carried an ack id.
    Ack,
    /// `4`: the server refuses a namespace join.
    ConnectError,
    /// `5`: an event whose arguments hold binary attachments.
    BinaryEvent,
    /// `6`: an ack whose arguments hold binary attachments.
    BinaryAck,
}

impl PacketType {
    fn from_digit(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    /// Whether packets of this type are followed by binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// The most binary attachments one packet may announce (socket.io-parser's
/// `maxAttachments` default); a packet announcing more is refused.
pub const MAX_ATTACHMENTS: usize = 10;

/// Splits `s` after its leading ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at_checked(end).unwrap_or((s, ""))
}

/// Event names that a client may not emit (socket.io-parser's `RESERVED_EVENTS`).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// A decoded Socket.IO packet, borrowing from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The packet type.
    pub kind: PacketType,
    /// Number of binary attachments that follow: 1 to [`MAX_ATTACHMENTS`] for
    /// the binary types, 0 for the others.
    pub attachments: usize,
    /// The namespace, `/` when omitted.
    pub nsp: &'a str,
    /// The ack id, when the sender asks for (or answers) an acknowledgement.
    pub id: Option<u64>,
    /// The raw JSON data, when present.
    pub data: Option<&'a str>,
}

impl<'a> Packet<'a> {
    /// Decodes and validates the text of one Socket.IO packet.
    pub fn decode(text: &'a str) -> Result<Self, DecodeError> {
        Self::decode_with_event(text).map(|(packet, _)| packet)
    }

    /// Like [`Packet::decode`], also handing back the parsed `[name, ...args]`
    /// of an EVENT (validation parses it anyway, so readers need not again).
    ///
    /// A binary packet may announce at most [`MAX_ATTACHMENTS`] attachments and
    /// the data may nest at most [`crate::json::MAX_DEPTH`] deep: both are
    /// checked before anything is allocated or parsed.
    pub fn decode_with_event(text: &'a str) -> Result<(Self, Option<Event<'a>>), DecodeError> {
        let mut chars = text.chars();
        let first = chars.next().ok_or(DecodeError::Empty)?;
        let kind = u8::try_from(first)
            .ok()
            .and_then(PacketType::from_digit)
            .ok_or(DecodeError::PacketType(first))?;
        let mut rest = chars.as_str();

        let mut attachments = 0;
        if kind.is_binary() {
            let (digits, after) = split_digits(rest);
            let after = after.strip_prefix('-').ok_or(DecodeError::Attachments)?;
            if digits.is_empty() {
                return Err(DecodeError::Attachments);
            }
            // Any count over the cap is refused, however many digits it has;
            // socket.io-parser refuses a count of 0 as illegal too.
            attachments = digits
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= MAX_ATTACHMENTS)
                .ok_or(DecodeError::TooManyAttachments(MAX_ATTACHMENTS))?;
            if attachments == 0 {
                return Err(DecodeError::Attachments);
            }
            rest = after;
        }

        let mut nsp = "/";
        if rest.starts_with('/') {
            match rest.split_once(',') {
                Some((name, after)) => {
                    nsp = name;
                    rest = after;
                }
                None => {
                    nsp = rest;
                    rest = "";
                }
            }
        }

        let (digits, after) = split_digits(rest);
        let id = if digits.is_empty() {
            None
        } else {
            Some(digits.parse().map_err(|_| DecodeError::AckId)?)
        };
        rest = after;

        let data = if rest.is_empty() { None } else { Some(rest) };
        if let Some(d) = data {
            crate::json::check_depth(d, crate::json::MAX_DEPTH)?;
        }
        let packet = Packet {
            kind,
            attachments,
            nsp,
            id,
            data,
        };
        let event = packet.validate()?;
        Ok((packet, event))
    }

    /// Checks the data against what the packet type requires (socket.io-parser's
    /// `isPayloadValid`); an event's data is parsed once, here, and returned.
    fn validate(&self) -> Result<Option<Event<'a>>, DecodeError> {
        let fits: fn(Option<&str>) -> bool = match self.kind {
            PacketType::Event | PacketType::BinaryEvent => return self.event().map(Some),
            PacketType::Connect => |raw| raw.is_none_or(|r| r.starts_with('{')),
            PacketType::Disconnect => |raw| raw.is_none(),
            PacketType::ConnectError => |raw| raw.is_some_and(|r| r.starts_with(['{', '"'])),
            PacketType::Ack | PacketType::BinaryAck => {
                |raw| raw.is_some_and(|r| r.starts_with('['))
            }
        };
        let raw = match self.data {
            Some(d) => Some(
                serde_json::from_str::<&RawValue>(d)
                    .map_err(|e| DecodeError::Json(e.to_string()))?
                    .get(),
            ),
            None => None,
        };
        if fits(raw) {
            Ok(None)
        } else {
            Err(DecodeError::Shape("data does not fit the packet type"))
        }
    }

    /// An EVENT's `[name, ...args]`, parsed; reserved names are refused.
    fn event(&self) -> Result<Event<'a>, DecodeError> {
        let data = self
            .data
            .filter(|d| d.starts_with('['))
            .ok_or(DecodeError::Shape("an event needs a JSON array"))?;
        let event = Event::parse(data)?;
        if RESERVED_EVENTS.contains(&event.name.as_ref()) && !event.numeric_name {
            return Err(DecodeError::ReservedEvent(event.name.into_owned()));
        }
        Ok(event)
    }
}

/// Appends the text of a packet to `out`: header, then `data` verbatim.
pub fn encode_into(
    out: &mut String,
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    data: Option<&str>,
) {
    out.push(kind.digit());
    if kind.is_binary() {
        out.push_str(&attachments.to_string());
        out.push('-');
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    if let Some(data) = data {
        out.push_str(data);
    }
}

/// The text of a non-binary packet.
pub fn encode(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&str>) -> String {
    let mut out = String::with_capacity(nsp.len() + data.map_or(0, str::len) + 8);
    encode_into(&mut out, kind, nsp, id, 0, data);
    out
}

/// The text of an EVENT packet `[name, ...args]`, each argument already JSON.
pub fn encode_event(nsp: &str, id: Option<u64>, name: &str, args: &[&str]) -> String {
    let mut data =
        String::with_capacity(name.len() + 4 + args.iter().map(|a| a.len() + 1).sum::<usize>());
    data.push('[');
    crate::json::write_string(&mut data, name);
    for a in args {
        data.push(',');
        data.push_str(a);
    }
    data.push(']');
    encode(PacketType::Event, nsp, id, Some(&data))
}

/// The namespace CONNECT a client of `version` sends, if any: v5 writes
/// `0/chat,` with the `auth` JSON after the comma; v4 has no `auth` (the
/// token travels in the handshake query) and sends nothing for `/`, which
/// the server joins every client to by itself.
pub fn connect_packet(version: Version, nsp: &str, auth: Option<&str>) -> Option<String> {
    match version {
        Version::V4 => Some(encode(PacketType::Connect, nsp, None, auth)),
        Version::V2 if nsp == "/" => None,
        Version::V2 => Some(encode(PacketType::Connect, nsp, None, None)),
    }
}

/// The namespace socket id a server's CONNECT answer gives: v5 sends
/// `{"sid":"…"}`; v4 sends no data, and socket.io 2.x names the socket
/// `<nsp>#<Engine.IO sid>` (the Engine.IO sid itself for `/`).
pub fn connect_sid(
    version: Version,
    nsp: &str,
    eio_sid: &str,
    data: Option<&str>,
) -> Result<String, DecodeError> {
    #[derive(serde::Deserialize)]
    struct ConnectData {
        sid: String,
    }
    match version {
        Version::V4 => serde_json::from_str::<ConnectData>(data.unwrap_or_default())
            .map(|c| c.sid)
            .map_err(|_| DecodeError::Shape("a CONNECT answer needs a sid")),
        Version::V2 if nsp == "/" => Ok(eio_sid.to_owned()),
        Version::V2 => Ok(format!("{nsp}#{eio_sid}")),
    }
}

/// A CONNECT_ERROR's data in the v5 form `{"message":…[,"data":…]}`: v5
/// data is kept as it came; v4 (socket.io 2.x) sends `err.message` as a JSON
/// string, which becomes `{"message":"…"}`, or `err.data` as it is, which
/// becomes `{"data":…}`.
pub fn connect_error_data(version: Version, data: &str) -> Cow<'_, str> {
    match version {
        Version::V4 => Cow::Borrowed(data),
        Version::V2 if data.starts_with('"') => Cow::Owned(format!("{{\"message\":{data}}}")),
        Version::V2 => Cow::Owned(format!("{{\"data\":{data}}}")),
    }
}

/// The data of an EVENT (or ACK) packet split into its name and raw arguments.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The event name (a numeric first element is turned into its decimal text).
    pub name: Cow<'a, str>,
    /// Whether the name was a JSON number rather than a string.
    pub numeric_name: bool,
    /// The arguments after the name, as raw JSON.
    pub args: Vec<&'a RawValue>,
}

impl<'a> Event<'a> {
    /// Parses `[name, ...args]`.
    pub fn parse(data: &'a str) -> Result<Self, DecodeError> {
        let mut de = serde_json::Deserializer::from_str(data);
        let parts = de
            .deserialize_seq(RawSeq)
            .map_err(|e| DecodeError::Json(e.to_string()))?;
        de.end().map_err(|e| DecodeError::Json(e.to_string()))?;
        let mut parts = parts.into_iter();
        let first = parts
            .next()
            .ok_or(DecodeError::Shape("an event needs a name"))?;
        let text = first.get();
        let (name, numeric_name) = if text.starts_with('"') {
            let name = match serde_json::from_str::<&str>(text) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(
                    serde_json::from_str::<String>(text)
                        .map_err(|e| DecodeError::Json(e.to_string()))?,
                ),
            };
            (name, false)
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            (Cow::Borrowed(text), true)
        } else {
            return Err(DecodeError::Shape(
                "an event name must be a string or a number",
            ));
        };
        Ok(Event {
            name,
            numeric_name,
            args: parts.collect(),
        })
    }

    /// The first argument, if any.
    pub fn first_arg(&self) -> Option<&'a RawValue> {
        self.args.first().copied()
    }
}

/// Parses the raw elements of an array (the ACK data `[...args]`).
pub fn parse_args(data: &str) -> Result<Vec<&RawValue>, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(data);
    let parts = de
        .deserialize_seq(RawSeq)
        .map_err(|e| DecodeError::Json(e.to_string()))?;
    de.end().map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(parts)
}

/// Visits a JSON array, keeping each element as raw JSON.
struct RawSeq;

impl<'de> Visitor<'de> for RawSeq {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(2));
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            out.push(v);
        }
        Ok(out)
    }
}

/// Replaces every binary placeholder `{"_placeholder":true,"num":N}` in `value`
/// with the attachment it stands for, written as a JSON array of byte values.
pub fn resolve_placeholders(
    value: &mut serde_json::Value,
    attachments: &[Vec<u8>],
) -> Result<(), DecodeError> {
    replace_placeholders(value, &mut |num| {
        let bytes = attachments.get(num).ok_or(DecodeError::Attachments)?;
        Ok(serde_json::Value::Array(
            bytes.iter().map(|b| serde_json::Value::from(*b)).collect(),
        ))
    })
}

/// Replaces every binary placeholder `{"_placeholder":true,"num":N}` in `value`
/// with what `with(N)` gives; a placeholder without a usable `num`, or one
/// `with` refuses, is an error. The one walk over placeholders that
/// [`resolve_placeholders`] and readers with their own representation of
/// attachments share.
pub fn replace_placeholders(
    value: &mut serde_json::Value,
    with: &mut dyn FnMut(usize) -> Result<serde_json::Value, DecodeError>,
) -> Result<(), DecodeError> {
    use serde_json::Value;
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let num = map
                .get("num")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(DecodeError::Attachments)?;
            *value = with(num)?;
            Ok(())
        }
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|v| replace_placeholders(v, with)),
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| replace_placeholders(v, with)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The strings are what socket.io-parser 3.4.5 (socket.io 2.5, tests/js/v2)
    // writes; the v4 protocol shares the v5 text form.
    #[test]
    fn socketio_v2_packets() {
        assert_eq!(
            connect_packet(Version::V2, "/chat", Some("{\"token\":\"t\"}")).as_deref(),
            Some("0/chat,")
        );
        assert_eq!(connect_packet(Version::V2, "/", None), None);
        assert_eq!(
            connect_packet(Version::V4, "/chat", Some("{\"token\":\"t\"}")).as_deref(),
            Some("0/chat,{\"token\":\"t\"}")
        );
        let answer = Packet::decode("0/chat").unwrap();
        assert_eq!(
            (answer.kind, answer.nsp, answer.data),
            (PacketType::Connect, "/chat", None)
        );
        assert_eq!(
            connect_sid(Version::V2, answer.nsp, "eio1", answer.data).unwrap(),
            "/chat#eio1"
        );
        assert_eq!(connect_sid(Version::V2, "/", "eio1", None).unwrap(), "eio1");
        assert!(connect_sid(Version::V4, "/chat", "eio1", None).is_err());
        assert_eq!(
            connect_sid(Version::V4, "/chat", "e", Some("{\"sid\":\"s1\"}")).unwrap(),
            "s1"
        );
        // v2's CONNECT_ERROR ("ERROR"): a string or an object.
        for text in [
            "4/chat,\"Invalid namespace\"",
            "4/chat,{\"code\":\"NO_TOKEN\"}",
        ] {
            assert_eq!(Packet::decode(text).unwrap().kind, PacketType::ConnectError);
        }
        let ack = Packet::decode("3/chat,7[{\"ok\":true}]").unwrap();
        assert_eq!((ack.kind, ack.id), (PacketType::Ack, Some(7)));
        let bin = Packet::decode("51-/chat,3[\"blob\",{\"_placeholder\":true,\"num\":0}]").unwrap();
        assert_eq!(
            (bin.kind, bin.attachments, bin.id),
            (PacketType::BinaryEvent, 1, Some(3))
        );
    }

    fn p(text: &str) -> Packet<'_> {
        Packet::decode(text).unwrap()
    }

    #[test]
    fn decodes_connect_forms() {
        let c = p("0");
        assert_eq!(
            (c.kind, c.nsp, c.id, c.data),
            (PacketType::Connect, "/", None, None)
        );
        let c = p("0/chat,");
        assert_eq!((c.nsp, c.data), ("/chat", None));
        let c = p("0/chat,{\"token\":\"t\"}");
        assert_eq!((c.nsp, c.data), ("/chat", Some("{\"token\":\"t\"}")));
        let c = p("0/chat");
        assert_eq!((c.nsp, c.data), ("/chat", None));
        let c = p("0{\"sid\":\"x\"}");
        assert_eq!((c.nsp, c.data), ("/", Some("{\"sid\":\"x\"}")));
    }

    #[test]
    fn decodes_events_acks_and_errors() {
        let e = p("2/chat,7[\"joinChat\",{\"username\":\"a\"}]");
        assert_eq!((e.kind, e.nsp, e.id), (PacketType::Event, "/chat", Some(7)));
        let ev = Event::parse(e.data.unwrap()).unwrap();
        assert_eq!(ev.name, "joinChat");
        assert_eq!(ev.args[0].get(), "{\"username\":\"a\"}");

        let a = p("3/chat,12[{\"ok\":true}]");
        assert_eq!((a.kind, a.id), (PacketType::Ack, Some(12)));
        assert_eq!(
            parse_args(a.data.unwrap()).unwrap()[0].get(),
            "{\"ok\":true}"
        );

        let ce = p("4/chat,{\"message\":\"m\",\"data\":{\"code\":\"NO_TOKEN\"}}");
        assert_eq!(ce.kind, PacketType::ConnectError);
        let d = p("1/chat,");
        assert_eq!((d.kind, d.data), (PacketType::Disconnect, None));
        let root = p("2[\"x\"]");
        assert_eq!(root.nsp, "/");
    }

    #[test]
    fn decodes_binary_headers_and_placeholders() {
        let b = p("51-/chat,[\"up\",{\"_placeholder\":true,\"num\":0}]");
        assert_eq!(
            (b.kind, b.attachments, b.nsp),
            (PacketType::BinaryEvent, 1, "/chat")
        );
        let mut v: serde_json::Value = serde_json::from_str(b.data.unwrap()).unwrap();
        resolve_placeholders(&mut v, &[vec![1, 2]]).unwrap();
        assert_eq!(v, serde_json::json!(["up", [1, 2]]));
        let mut v = serde_json::json!({"_placeholder": true, "num": 3});
        assert_eq!(
            resolve_placeholders(&mut v, &[]),
            Err(DecodeError::Attachments)
        );
        assert_eq!(
            Packet::decode("5/chat,[\"x\"]"),
            Err(DecodeError::Attachments)
        );
    }

    #[test]
    fn rejects_what_socket_io_parser_rejects() {
        for bad in [
            "",
            "9/chat,[]",
            "2/chat,[\"joinChat\",{bad",
            "2/chat,{}",
            "2/chat,[]",
            "2/chat,[\"connect\"]",
            "2/chat,[null]",
            "1/chat,{}",
            "0/chat,[1]",
            "3/chat,1{}",
            "2/chat,[\"a\"] trailing",
        ] {
            assert!(Packet::decode(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            Packet::decode("2[1,2]").is_ok(),
            "numeric event names are allowed"
        );
    }

    #[test]
    fn bounds_attachment_counts_before_allocating() {
        let ten = p("510-/chat,[\"x\"]");
        assert_eq!(ten.attachments, MAX_ATTACHMENTS);
        for bad in [
            "511-/chat,[\"x\"]",
            "510000000000000-[\"x\"]",
            "518446744073709551615-[\"x\"]",
            "5999999999999999999999999999999-[\"x\"]",
            "611-/chat,1[1]",
        ] {
            assert_eq!(
                Packet::decode(bad),
                Err(DecodeError::TooManyAttachments(MAX_ATTACHMENTS)),
                "{bad}"
            );
        }
        for bad in [
            "5-[\"x\"]",
            "51[\"x\"]",
            "5",
            "5x-[\"x\"]",
            "50-[\"x\"]",
            "60-/chat,1[1]",
        ] {
            assert_eq!(Packet::decode(bad), Err(DecodeError::Attachments), "{bad}");
        }
    }

    #[test]
    fn one_depth_limit_for_every_packet_type() {
        let max = crate::json::MAX_DEPTH;
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        // `["x", <nest>]` nests one deeper than `<nest>`.
        let ok = format!("2/chat,[\"x\",{}]", nest(max - 1));
        let (_, event) = Packet::decode_with_event(&ok).unwrap();
        let arg = event.unwrap().args[0].get().to_owned();
        assert!(serde_json::from_str::<serde_json::Value>(&arg).is_ok());
        for text in [
            format!("2/chat,[\"x\",{}]", nest(max)),
            format!("51-/chat,[\"x\",{}]", nest(200)),
            format!("3/chat,1[{}]", nest(max)),
            format!("0/chat,{{\"a\":{}}}", nest(max)),
        ] {
            assert_eq!(Packet::decode(&text), Err(DecodeError::TooDeep(max)));
        }
    }

    #[test]
    fn unescapes_event_names() {
        let ev = Event::parse("[\"a\\u0062\",1]").unwrap();
        assert_eq!(ev.name, "ab");
        assert!(matches!(ev.name, Cow::Owned(_)));
    }

    #[test]
    fn encodes() {
        assert_eq!(encode(PacketType::Connect, "/chat", None, None), "0/chat,");
        assert_eq!(
            encode(PacketType::Connect, "/chat", None, Some("{\"sid\":\"s\"}")),
            "0/chat,{\"sid\":\"s\"}"
        );
        assert_eq!(encode(PacketType::Connect, "/", None, None), "0");
        assert_eq!(
            encode_event("/chat", Some(3), "sendMessage", &["{\"message\":\"hi\"}"]),
            "2/chat,3[\"sendMessage\",{\"message\":\"hi\"}]"
        );
        assert_eq!(
            encode(PacketType::Ack, "/chat", Some(3), Some("[]")),
            "3/chat,3[]"
        );
        let mut out = String::new();
        encode_into(
            &mut out,
            PacketType::BinaryEvent,
            "/",
            None,
            2,
            Some("[\"x\"]"),
        );
        assert_eq!(out, "52-[\"x\"]");
    }

    #[test]
    fn round_trips_every_type() {
        for text in [
            "0/chat,",
            "1/chat,",
            "2/chat,5[\"e\",1,\"two\"]",
            "3/chat,5[1]",
            "4/chat,{\"message\":\"x\"}",
            "51-/chat,[\"e\",{\"_placeholder\":true,\"num\":0}]",
            "61-/chat,9[{\"_placeholder\":true,\"num\":0}]",
        ] {
            let pk = p(text);
            let mut out = String::new();
            encode_into(&mut out, pk.kind, pk.nsp, pk.id, pk.attachments, pk.data);
            assert_eq!(out, text);
        }
    }

    /// Decoding arbitrary text never panics: it is an `Ok` or an `Err`.
    #[test]
    fn decoding_noise_never_panics() {
        let alphabet: Vec<char> = "0123456789-/,[]{}\"\\:chat xyz_placeholder\u{1e}é中"
            .chars()
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = Packet::decode(&text);
            let _ = crate::engineio::Packet::decode(&text);
            let _ = Event::parse(&text);
        }
    }
}
