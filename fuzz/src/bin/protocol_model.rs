//! Protocol models (`chorus::rules::ProtocolModel::parse`, the loader of
//! `scenarios/protocol/*.yml`): the first part is the model YAML, the second
//! a JSON payload checked against every schema the model has. Nothing panics,
//! and the lookups by event name find the rules the model lists.
use std::time::SystemTime;

use chorus::rules::ProtocolModel;
use chorus_fuzz::{split, PART};

fn main() {
    chorus_fuzz::abort_on_panic();
    afl::fuzz_nohook!(|data: &[u8]| {
        let parts = split(data, PART);
        let Ok(text) = std::str::from_utf8(parts[0]) else {
            return;
        };
        let Ok(model) = ProtocolModel::parse(text, "fuzz.yml") else {
            return;
        };
        let payload: Option<serde_json::Value> =
            parts.get(1).and_then(|p| serde_json::from_slice(p).ok());
        let now = SystemTime::now();
        for b in &model.broadcasts {
            let found = model
                .broadcast(&b.event)
                .expect("a listed broadcast is found");
            assert_eq!(found.event, b.event);
            let cause = model.caused_by(&b.cause).expect("a listed cause is found");
            assert_eq!(cause.cause, b.cause);
        }
        for event in model.payloads.keys() {
            std::hint::black_box(model.payload_problem(event, payload.as_ref(), now));
            std::hint::black_box(model.payload_problem(event, None, now));
        }
        for event in model.acks.keys() {
            std::hint::black_box(model.ack_problem(event, payload.as_ref(), now));
        }
    });
}
