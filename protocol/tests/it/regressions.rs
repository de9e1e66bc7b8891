//! Replays the committed fuzz corpora of the codec targets
//! (`fuzz/corpus/{eio_packet,sio_packet,polling_payload}/`, seeds and every
//! `regression-*` input a fuzz run found) through the decoders with the same
//! invariants the fuzz targets assert, so `cargo test` guards them without AFL.

use std::path::PathBuf;

use chorus_protocol::engineio::{self, join_payload, split_payload, OpenPacket};
use chorus_protocol::socketio::{self, encode_into};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a corpus file");
            (p, bytes)
        })
        .collect()
}

#[test]
fn engineio_corpus_round_trips() {
    for (path, bytes) in corpus("eio_packet") {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(packet) = engineio::Packet::decode(text) {
            let encoded = packet.encode();
            assert_eq!(
                engineio::Packet::decode(&encoded).as_ref(),
                Ok(&packet),
                "{}",
                path.display()
            );
            if let engineio::Packet::Open(data) = packet {
                if let Ok(open) = OpenPacket::parse(data) {
                    let text = open.encode();
                    assert!(text.starts_with("0{"), "{}", path.display());
                }
            }
        }
    }
}

#[test]
fn socketio_corpus_round_trips() {
    for (path, bytes) in corpus("sio_packet") {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok((packet, event)) = socketio::Packet::decode_with_event(text) else {
            continue;
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
        let (again, again_event) = socketio::Packet::decode_with_event(&encoded)
            .unwrap_or_else(|e| panic!("{}: {encoded:?}: {e}", path.display()));
        assert_eq!(again, packet, "{}", path.display());
        assert_eq!(
            event.map(|e| e.name.into_owned()),
            again_event.map(|e| e.name.into_owned()),
            "{}",
            path.display()
        );
    }
}

#[test]
fn polling_corpus_round_trips() {
    for (path, bytes) in corpus("polling_payload") {
        let Ok(body) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let decoded: Vec<_> = split_payload(body)
            .filter_map(|r| engineio::Packet::decode(r).ok())
            .collect();
        if decoded.is_empty() {
            continue;
        }
        let joined = join_payload(decoded.iter().map(engineio::Packet::encode));
        let again: Vec<_> = split_payload(&joined)
            .map(|r| engineio::Packet::decode(r).expect("re-encoded records decode"))
            .collect();
        assert_eq!(again, decoded, "{}", path.display());
    }
}
