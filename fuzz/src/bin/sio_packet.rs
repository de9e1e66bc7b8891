//! Socket.IO v5 packets with attachments, namespaces, ack ids and JSON data,
//! the `[name, ...args]` of events and acks, and binary placeholder
//! resolution. What decodes re-encodes to a text that decodes to the same
//! packet and event; resolving placeholders leaves none behind.
use chorus_protocol::socketio::{
    encode_into, parse_args, resolve_placeholders, Event, Packet, PacketType,
};
use serde_json::Value;

/// The most attachments the target makes up for placeholder resolution: the
/// announced count is the sender's, never an allocation size.
const MAX_MADE_UP_ATTACHMENTS: usize = 16;

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::Object(m) if m.get("_placeholder") == Some(&Value::Bool(true)) => true,
        Value::Object(m) => m.values().any(has_placeholder),
        Value::Array(a) => a.iter().any(has_placeholder),
        _ => false,
    }
}

fn check(text: &str) {
    let Ok((packet, event)) = Packet::decode_with_event(text) else {
        return;
    };
    let mut encoded = String::new();
    encode_into(
        &mut encoded,
        packet.kind,
        packet.nsp,
        packet.id,
        packet.attachments,
        packet.data,
    );
    let (again, again_event) = Packet::decode_with_event(&encoded)
        .unwrap_or_else(|e| panic!("{encoded:?} does not decode: {e}"));
    assert_eq!(again, packet, "decode(encode(p)) != p for {text:?}");
    assert_eq!(event.is_some(), again_event.is_some());
    assert_eq!(
        event.is_some(),
        matches!(packet.kind, PacketType::Event | PacketType::BinaryEvent)
    );
    if let (Some(e), Some(a)) = (&event, &again_event) {
        assert_eq!(e.name, a.name);
        assert_eq!(e.numeric_name, a.numeric_name);
        assert_eq!(e.args.len(), a.args.len());
        let data = packet.data.expect("an event has data");
        let parsed = Event::parse(data).expect("validated event data parses again");
        assert_eq!(parsed.name, e.name);
    }
    if matches!(packet.kind, PacketType::Ack | PacketType::BinaryAck) {
        parse_args(packet.data.expect("an ack has data")).expect("validated ack data is an array");
    }
    if packet.kind.is_binary() {
        if let Some(Ok(mut value)) = packet.data.map(serde_json::from_str::<Value>) {
            let made_up: Vec<Vec<u8>> = (0..packet.attachments.min(MAX_MADE_UP_ATTACHMENTS))
                .map(|i| vec![i as u8; i])
                .collect();
            if resolve_placeholders(&mut value, &made_up).is_ok() {
                assert!(
                    !has_placeholder(&value),
                    "a placeholder survived resolution"
                );
            }
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            check(text);
        }
    });
}
