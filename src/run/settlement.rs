//! Settling the ledger: the one code that a single-process run (its own
//! ledger, one shard of one) and `chorus merge` (every shard's) settle with,
//! and what it found as counters and violation evidence.

use std::borrow::Cow;
use std::collections::HashMap;

use super::ledger::{settle, Finding, LedgerFile, Settlement, Window};
use super::rooms::settle_rooms;
use super::violations::{Evidence, Kind};
use crate::rules::ProtocolModel;

/// What settling a run's ledger gave.
#[derive(Debug, Default)]
pub struct Settled {
    /// The delivery counters (`deliveries.expected`, …) and their values.
    pub counters: Vec<(String, u64)>,
    /// Violations found, each a count with the evidence of the first.
    pub violations: Vec<(u64, Evidence)>,
}

/// Settles the ledger halves of all shards of a run (a single-process run
/// has one) as one run: receivers of every shard against senders of every
/// shard, with [`Window::RUN`]; evidence is worded by `model` and stamped
/// `t_s` seconds into the run (settling happens at the end).
pub fn settle_ledgers(ledgers: &[&LedgerFile], model: &ProtocolModel, t_s: f64) -> Settled {
    let senders = match ledgers {
        [one] => Cow::Borrowed(&one.senders),
        all => Cow::Owned(
            all.iter()
                .flat_map(|l| l.senders.iter().map(|(vu, f)| (*vu, f.clone())))
                .collect::<HashMap<_, _>>(),
        ),
    };
    let receivers = ledgers.iter().flat_map(|l| l.receivers.iter());
    let mut settlement = settle(receivers.clone(), &senders, Window::RUN);
    settle_rooms(receivers, &senders, Window::RUN, &mut settlement);
    Settled {
        counters: counters(&settlement),
        violations: evidence(&settlement, model, t_s),
    }
}

/// The delivery counters of a settlement.
fn counters(s: &Settlement) -> Vec<(String, u64)> {
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
fn evidence(s: &Settlement, model: &ProtocolModel, t_s: f64) -> Vec<(u64, Evidence)> {
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
                Finding::RoomJoinMissing { receiver, subject } => (
                    1,
                    Kind::Presence,
                    *receiver,
                    model.rooms.as_ref().map_or("", |r| r.joined.event.as_str()),
                    format!("the room join of vu {subject}, to a member"),
                    "never announced".to_owned(),
                ),
                Finding::RoomLeaveMissing { receiver, subject } => (
                    1,
                    Kind::Presence,
                    *receiver,
                    model.rooms.as_ref().map_or("", |r| r.left.event.as_str()),
                    format!("the room leave of vu {subject}, to a member"),
                    "never announced".to_owned(),
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
