//! Property tests of the codec: decoding what was encoded gives back the
//! packet (Engine.IO packets, polling payloads, Socket.IO packets of every
//! type, events, placeholders), and no input, however malformed, panics a
//! decoder. The coverage-guided fuzz targets in `fuzz/` check the same
//! invariants from the other side (decode first, then encode).

use std::borrow::Cow;

use chorus_protocol::engineio::{self, join_payload, split_payload, OpenPacket};
use chorus_protocol::socketio::{
    self, encode_event, encode_into, parse_args, resolve_placeholders, Event, PacketType,
    RESERVED_EVENTS,
};
use proptest::prelude::*;
use serde_json::Value;

/// An owned Engine.IO packet, so strategies can build them.
#[derive(Debug, Clone)]
enum Eio {
    Open(String),
    Close,
    Ping(String),
    Pong(String),
    Message(String),
    Upgrade,
    Noop,
    Binary(Vec<u8>),
}

impl Eio {
    fn packet(&self) -> engineio::Packet<'_> {
        use engineio::Packet as P;
        match self {
            Eio::Open(d) => P::Open(d),
            Eio::Close => P::Close,
            Eio::Ping(d) => P::Ping(d),
            Eio::Pong(d) => P::Pong(d),
            Eio::Message(d) => P::Message(d),
            Eio::Upgrade => P::Upgrade,
            Eio::Noop => P::Noop,
            Eio::Binary(b) => P::Binary(Cow::Borrowed(b)),
        }
    }
}

/// Text that may hold anything but the polling record separator.
fn record_text() -> impl Strategy<Value = String> + Clone {
    any::<String>().prop_map(|s| s.replace('\x1e', ""))
}

fn eio_packet(text: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = Eio> {
    prop_oneof![
        text.clone().prop_map(Eio::Open),
        Just(Eio::Close),
        text.clone().prop_map(Eio::Ping),
        text.clone().prop_map(Eio::Pong),
        text.prop_map(Eio::Message),
        Just(Eio::Upgrade),
        Just(Eio::Noop),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Eio::Binary),
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> + Clone {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A namespace: `/` or `/` followed by text without a comma.
fn namespace() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just("/".to_owned()),
        Just("/chat".to_owned()),
        "/[^,]{1,12}".prop_map(|s| s),
    ]
}

fn event_name() -> impl Strategy<Value = String> + Clone {
    any::<String>().prop_filter("not a reserved event", |n| {
        !RESERVED_EVENTS.contains(&n.as_str())
    })
}

/// A Socket.IO packet of a random type with data that fits the type:
/// (kind, attachments, namespace, ack id, data text).
fn sio_packet() -> impl Strategy<Value = (PacketType, usize, String, Option<u64>, Option<String>)> {
    let args = proptest::collection::vec(json(), 0..4);
    let event_data = (event_name(), args.clone()).prop_map(|(name, args)| {
        let mut all = vec![Value::String(name)];
        all.extend(args);
        Some(Value::Array(all).to_string())
    });
    let ack_data = args.prop_map(|a| Some(Value::Array(a).to_string()));
    let object = proptest::collection::btree_map(any::<String>(), json(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()).to_string());
    let connect_data = proptest::option::of(object.clone());
    let error_data = prop_oneof![
        object.prop_map(Some),
        any::<String>().prop_map(|s| Some(Value::String(s).to_string())),
    ];
    let kind_and_data = prop_oneof![
        (Just(PacketType::Connect), connect_data),
        (Just(PacketType::Disconnect), Just(None)),
        (Just(PacketType::Event), event_data.clone()),
        (Just(PacketType::Ack), ack_data.clone()),
        (Just(PacketType::ConnectError), error_data),
        (Just(PacketType::BinaryEvent), event_data),
        (Just(PacketType::BinaryAck), ack_data),
    ];
    (
        kind_and_data,
        1usize..=10,
        namespace(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|((kind, data), attachments, nsp, id)| {
            let attachments = if kind.is_binary() { attachments } else { 0 };
            (kind, attachments, nsp, id, data)
        })
}

/// Text that looks like a Socket.IO packet but need not be one.
fn packet_like() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just(String::new()),
        "[0-9]{0,3}-".prop_map(|s| s),
        "[0-9]{15,25}-".prop_map(|s| s),
    ];
    let nsp = prop_oneof![Just(String::new()), "/[a-z,]{0,6},?".prop_map(|s| s)];
    let id = "[0-9]{0,22}";
    let body = prop_oneof![
        Just(String::new()),
        json().prop_map(|v| v.to_string()),
        "[\\[\\]{}\",:a-z0-9_ -]{0,40}".prop_map(|s| s),
        "\\[+".prop_map(|s| s),
    ];
    ("[0-9a-z]", head, nsp, id, body).prop_map(|(t, h, n, i, b)| format!("{t}{h}{n}{i}{b}"))
}

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::Object(m) if m.get("_placeholder") == Some(&Value::Bool(true)) => true,
        Value::Object(m) => m.values().any(has_placeholder),
        Value::Array(a) => a.iter().any(has_placeholder),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn engineio_decode_of_encode_is_identity(p in eio_packet(any::<String>())) {
        let packet = p.packet();
        let text = packet.encode();
        prop_assert_eq!(engineio::Packet::decode(&text), Ok(packet));
    }

    #[test]
    fn polling_payload_round_trips(ps in proptest::collection::vec(eio_packet(record_text()), 1..8)) {
        let packets: Vec<_> = ps.iter().map(Eio::packet).collect();
        let body = join_payload(packets.iter().map(engineio::Packet::encode));
        let decoded: Result<Vec<_>, _> = split_payload(&body).map(engineio::Packet::decode).collect();
        prop_assert_eq!(decoded, Ok(packets));
    }

    #[test]
    fn open_packet_round_trips(
        sid in any::<String>(),
        upgrades in proptest::collection::vec(any::<String>(), 0..3),
        ping_interval in any::<u64>(),
        ping_timeout in any::<u64>(),
        max_payload in any::<u64>(),
    ) {
        let open = OpenPacket { sid, upgrades, ping_interval, ping_timeout, max_payload };
        let text = open.encode();
        let Ok(engineio::Packet::Open(data)) = engineio::Packet::decode(&text) else {
            return Err(TestCaseError::fail("not an open packet"));
        };
        prop_assert_eq!(OpenPacket::parse(data), Ok(open));
    }

    #[test]
    fn socketio_decode_of_encode_is_identity((kind, attachments, nsp, id, data) in sio_packet()) {
        let mut text = String::new();
        encode_into(&mut text, kind, &nsp, id, attachments, data.as_deref());
        let decoded = socketio::Packet::decode_with_event(&text);
        let Ok((packet, event)) = decoded else {
            return Err(TestCaseError::fail(format!("{text:?}: {decoded:?}")));
        };
        prop_assert_eq!(packet.kind, kind);
        prop_assert_eq!(packet.attachments, attachments);
        prop_assert_eq!(packet.nsp, nsp.as_str());
        prop_assert_eq!(packet.id, id);
        prop_assert_eq!(packet.data, data.as_deref());
        prop_assert_eq!(event.is_some(), matches!(kind, PacketType::Event | PacketType::BinaryEvent));
        if let Some(event) = event {
            let all: Vec<Value> = serde_json::from_str(data.as_deref().unwrap_or_default()).unwrap_or_default();
            prop_assert_eq!(Value::String(event.name.into_owned()), all[0].clone());
            prop_assert_eq!(event.args.len(), all.len() - 1);
        }
    }

    #[test]
    fn encoded_events_decode_to_their_name_and_args(
        nsp in namespace(),
        id in proptest::option::of(any::<u64>()),
        name in event_name(),
        args in proptest::collection::vec(json(), 0..4),
    ) {
        let texts: Vec<String> = args.iter().map(Value::to_string).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let text = encode_event(&nsp, id, &name, &refs);
        let (packet, event) = socketio::Packet::decode_with_event(&text).expect("an encoded event decodes");
        prop_assert_eq!((packet.kind, packet.nsp, packet.id), (PacketType::Event, nsp.as_str(), id));
        let event = event.expect("an EVENT hands back its event");
        prop_assert_eq!(event.name.as_ref(), name.as_str());
        let got: Vec<&str> = event.args.iter().map(|a| a.get()).collect();
        prop_assert_eq!(got, refs, "the arguments come back as the exact JSON text sent");
    }

    #[test]
    fn placeholders_resolve_to_their_attachments(
        attachments in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..6),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let nums: Vec<usize> = picks.iter().map(|i| i.index(attachments.len())).collect();
        let mut value = Value::Array(
            nums.iter()
                .map(|n| serde_json::json!({"_placeholder": true, "num": n}))
                .collect(),
        );
        resolve_placeholders(&mut value, &attachments).expect("every placeholder names an attachment");
        let expected = Value::Array(
            nums.iter()
                .map(|&n| Value::Array(attachments[n].iter().map(|b| Value::from(*b)).collect()))
                .collect(),
        );
        prop_assert!(!has_placeholder(&value));
        prop_assert_eq!(value, expected);
    }

    #[test]
    fn a_placeholder_past_the_attachments_is_an_error(n in 0usize..8, extra in 0u64..1000) {
        let attachments = vec![vec![1u8]; n];
        let mut value = serde_json::json!(["x", {"_placeholder": true, "num": n as u64 + extra}]);
        prop_assert!(resolve_placeholders(&mut value, &attachments).is_err());
    }

    #[test]
    fn no_string_panics_the_decoders(text in any::<String>()) {
        decode_everything(&text);
    }

    #[test]
    fn no_packet_like_text_panics_the_decoders(text in packet_like()) {
        decode_everything(&text);
        decode_everything(&format!("4{text}"));
    }

    #[test]
    fn no_bytes_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&String::from_utf8_lossy(&bytes));
    }
}

/// Feeds `text` to every decoder; only a panic fails.
fn decode_everything(text: &str) {
    if let Ok(engineio::Packet::Open(data)) = engineio::Packet::decode(text) {
        let _ = OpenPacket::parse(data);
    }
    for record in split_payload(text) {
        let _ = engineio::Packet::decode(record);
    }
    let _ = socketio::Packet::decode_with_event(text);
    let _ = Event::parse(text);
    let _ = parse_args(text);
    if let Ok(mut value) = serde_json::from_str::<Value>(text) {
        let _ = resolve_placeholders(&mut value, &[vec![0], vec![1, 2]]);
    }
}
