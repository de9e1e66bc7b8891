//! HTTP long-polling bodies: records split on `\x1e`, each decoded as an
//! Engine.IO packet (`b<base64>` for binary). Re-encoding every record and
//! joining them gives a body that splits and decodes to the same packets.
use chorus_protocol::engineio::{join_payload, split_payload, Packet};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(body) = std::str::from_utf8(data) else {
            return;
        };
        let records: Vec<&str> = split_payload(body).collect();
        assert_eq!(records.join("\x1e"), body, "split loses nothing");
        let decoded: Vec<Packet<'_>> = records
            .iter()
            .filter_map(|r| Packet::decode(r).ok())
            .collect();
        let joined = join_payload(decoded.iter().map(Packet::encode));
        let again: Vec<Packet<'_>> = if decoded.is_empty() {
            Vec::new()
        } else {
            split_payload(&joined)
                .map(|r| Packet::decode(r).expect("re-encoded records decode"))
                .collect()
        };
        assert_eq!(
            again, decoded,
            "join(encode) then split(decode) is the identity"
        );
    });
}
