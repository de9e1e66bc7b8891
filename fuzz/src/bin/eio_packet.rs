//! Engine.IO v4 packets (one websocket text frame or one polling record) and
//! the open packet's JSON: decoding never panics, and what decodes re-encodes
//! to a text that decodes to the same packet (byte-identical for the types
//! that carry data).
use std::borrow::Cow;

use chorus_protocol::engineio::{OpenPacket, Packet};

fn check(text: &str) {
    let Ok(packet) = Packet::decode(text) else {
        return;
    };
    let encoded = packet.encode();
    let again = Packet::decode(&encoded).expect("an encoded packet decodes");
    assert_eq!(again, packet, "decode(encode(p)) != p for {text:?}");
    match &packet {
        Packet::Open(_) | Packet::Ping(_) | Packet::Pong(_) | Packet::Message(_) => {
            assert_eq!(encoded, text, "a data packet re-encodes byte for byte")
        }
        Packet::Binary(Cow::Owned(bytes)) => {
            assert!(
                bytes.len() <= text.len(),
                "base64 decoding cannot grow the data"
            )
        }
        _ => assert_eq!(encoded.len(), 1, "a data-less packet encodes as its digit"),
    }
    if let Packet::Open(data) = packet {
        if let Ok(open) = OpenPacket::parse(data) {
            let reencoded = open.encode();
            let Ok(Packet::Open(json)) = Packet::decode(&reencoded) else {
                panic!("an encoded open packet is an open packet: {reencoded:?}");
            };
            assert_eq!(OpenPacket::parse(json).as_ref(), Ok(&open));
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
