//! Engine.IO v3 (socket.io 2.x) polling bodies framed `<length>:<packet>`,
//! lengths in UTF-16 code units, binary records `b4<base64>`, and the v3 open
//! packet: nothing panics; the records that decode, re-encoded and joined,
//! split and decode to the same packets; an open packet reads as exactly one
//! of the two versions, or neither.
use chorus_protocol::engineio::{join_payload_as, payload_records, OpenPacket, Packet};
use chorus_protocol::{DecodeError, Version};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(body) = std::str::from_utf8(data) else {
            return;
        };
        let decoded: Vec<Packet<'_>> = payload_records(Version::V2, body)
            .map_while(Result::ok)
            .filter_map(|r| Packet::decode_as(Version::V2, r).ok())
            .collect();
        let encoded: Vec<String> = decoded
            .iter()
            .map(|p| {
                let mut out = String::new();
                p.encode_into_as(Version::V2, &mut out);
                out
            })
            .collect();
        let joined = join_payload_as(Version::V2, &encoded);
        let again: Vec<Packet<'_>> = payload_records(Version::V2, &joined)
            .map(|r| Packet::decode_as(Version::V2, r.expect("a joined body splits")))
            .map(|p| p.expect("re-encoded records decode"))
            .collect();
        assert_eq!(again, decoded, "join(encode) then split(decode) is the identity");
        let v3 = OpenPacket::parse_as(Version::V2, body);
        let v4 = OpenPacket::parse_as(Version::V4, body);
        match (&v3, &v4) {
            (Ok(_), Ok(_)) => panic!("{body:?} reads as both versions"),
            (Ok(_), Err(e)) => assert_eq!(e, &DecodeError::Version(Version::V2)),
            (Err(e), Ok(_)) => assert_eq!(e, &DecodeError::Version(Version::V4)),
            (Err(_), Err(_)) => {}
        }
    });
}
