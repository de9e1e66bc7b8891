//! What settling the ledger found, as counters and violation evidence, for a
//! run and for a merge of shards alike.

use super::ledger::{Finding, Settlement};
use super::violations::{Evidence, Kind};
use crate::rules::ProtocolModel;

/// The delivery counters of a settlement.
pub fn counters(s: &Settlement) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (prefix, totals) in [
        ("deliveries", s.messages),
        ("deliveries.unmarked", s.typing),
    ] {
        out.push((format!("{prefix}.expected"), totals.expected));
        out.push((format!("{prefix}.received"), totals.received));
        out.push((format!("{prefix}.lost"), totals.lost));
    }
    out
}

/// Each finding as a count of violations with its evidence, stamped `t_s`
/// seconds into the run (settling happens at the end).
pub fn evidence(s: &Settlement, model: &ProtocolModel, t_s: f64) -> Vec<(u64, Evidence)> {
    let marked = model
        .broadcasts
        .iter()
        .find(|b| b.mark_field.is_some())
        .map_or("", |b| b.event.as_str());
    let unmarked = model
        .broadcasts
        .iter()
        .find(|b| b.mark_field.is_none())
        .map_or("", |b| b.event.as_str());
    s.findings
        .iter()
        .map(|f| {
            let (n, kind, vu, event, expected, got) = match f {
                Finding::MessagesLost {
                    receiver,
                    sender,
                    count,
                } => (
                    *count,
                    Kind::Loss,
                    *receiver,
                    marked,
                    format!("every message vu {sender} sent while it was in"),
                    format!("{count} never arrived"),
                ),
                Finding::TypingLost {
                    receiver,
                    sender,
                    count,
                } => (
                    *count,
                    Kind::Loss,
                    *receiver,
                    unmarked,
                    format!("every {unmarked} of vu {sender} while it was in"),
                    format!("{count} never arrived"),
                ),
                Finding::OnlineMissing { receiver, subject } => (
                    1,
                    Kind::Presence,
                    *receiver,
                    model.join.announce.event.as_str(),
                    format!("the join of vu {subject}"),
                    "never announced".to_owned(),
                ),
                Finding::OfflineMissing { receiver, subject } => (
                    1,
                    Kind::Presence,
                    *receiver,
                    model.leave.announce.event.as_str(),
                    format!("the leave of vu {subject}"),
                    "never announced".to_owned(),
                ),
                Finding::OfflineSpurious { receiver, subject } => (
                    1,
                    Kind::Presence,
                    *receiver,
                    model.leave.announce.event.as_str(),
                    "leaves announced only for clients that joined and left".to_owned(),
                    match subject {
                        Some(vu) => format!("vu {vu} announced gone while still connected"),
                        None => "a client that never joined announced gone".to_owned(),
                    },
                ),
                Finding::ReplyMissing { receiver } => (
                    1,
                    Kind::Reply,
                    *receiver,
                    model.join.reply.event.as_str(),
                    format!("{} after {}", model.join.reply.event, model.join.event),
                    "never arrived".to_owned(),
                ),
            };
            (
                n,
                Evidence {
                    t_s,
                    kind,
                    client: format!("vu {vu}"),
                    event: event.to_owned(),
                    expected,
                    got,
                },
            )
        })
        .collect()
}
