//! Presence snapshots across the shards of a distributed run: each shard
//! checks a snapshot against its own senders as it arrives
//! ([`super::checks::snapshot_problems`]) and keeps it in its ledger;
//! `chorus merge` checks it here against the senders of every other shard,
//! with the same margins, so a cluster whose snapshots miss the users of
//! other nodes fails.

use super::ledger::{name_hash, LedgerFile, SnapshotRecord, Window};
use super::violations::{Evidence, Kind};

/// How many names one violation's evidence spells out.
const NAMES_SHOWN: usize = 5;

/// What is wrong with one snapshot, about the senders of other shards.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SnapshotFinding {
    /// The receiving virtual user.
    pub vu: u32,
    /// When the snapshot arrived.
    pub at: super::clock::WallTime,
    /// Names surely joined (and not gone) that it did not list, with their vu.
    pub missing: Vec<(String, u32)>,
    /// Names surely gone that it listed, with their vu.
    pub stale: Vec<(String, u32)>,
}

/// Checks every shard's snapshots against the senders of the other shards:
/// a sender whose join was confirmed a margin before the receiver started to
/// connect, and that had not left when the snapshot came, must be listed; one
/// that left a delivery deadline before must not be.
pub fn check_across_shards(ledgers: &[&LedgerFile], w: Window) -> Vec<SnapshotFinding> {
    let mut out = Vec::new();
    for (i, ledger) in ledgers.iter().enumerate() {
        for snapshot in &ledger.snapshots {
            let others = ledgers
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, l)| *l);
            let finding = check_one(snapshot, others, w);
            if !finding.missing.is_empty() || !finding.stale.is_empty() {
                out.push(finding);
            }
        }
    }
    out
}

fn check_one<'a>(
    snapshot: &SnapshotRecord,
    others: impl Iterator<Item = &'a LedgerFile>,
    w: Window,
) -> SnapshotFinding {
    let before_start = |t: super::clock::WallTime| snapshot.started.is_none_or(|s| t < s);
    let mut finding = SnapshotFinding {
        vu: snapshot.vu,
        at: snapshot.at,
        ..Default::default()
    };
    for ledger in others {
        for (&vu, facts) in &ledger.senders {
            let Some(name) = facts.name.as_deref() else {
                continue;
            };
            if facts.join_sent.is_none() {
                continue;
            }
            let listed = snapshot.names.binary_search(&name_hash(name)).is_ok();
            let surely_in = facts
                .join_confirmed
                .is_some_and(|c| before_start(c.plus_us(w.margin_us)))
                && facts.left.is_none_or(|l| l > snapshot.at);
            let surely_out = facts
                .left
                .is_some_and(|l| before_start(l.plus_us(w.deadline_us)));
            if surely_in && !listed {
                finding.missing.push((name.to_owned(), vu));
            } else if surely_out && listed {
                finding.stale.push((name.to_owned(), vu));
            }
        }
    }
    finding.missing.sort_unstable();
    finding.stale.sort_unstable();
    finding
}

/// The findings as violation evidence (one record per snapshot and
/// direction, counting every name), for the snapshot event `event`;
/// `t_s(at)` places a time in the run.
pub fn evidence(
    findings: &[SnapshotFinding],
    event: &str,
    t_s: impl Fn(super::clock::WallTime) -> f64,
) -> Vec<(u64, Evidence)> {
    let spell = |names: &[(String, u32)]| {
        let shown: Vec<String> = names
            .iter()
            .take(NAMES_SHOWN)
            .map(|(name, vu)| format!("{name:?} (vu {vu})"))
            .collect();
        let more = names.len().saturating_sub(NAMES_SHOWN);
        match more {
            0 => shown.join(", "),
            n => format!("{} and {n} more", shown.join(", ")),
        }
    };
    let mut out = Vec::new();
    for f in findings {
        for (names, expected, got) in [
            (
                &f.missing,
                "to list the users of other shards joined before",
                "not listed",
            ),
            (
                &f.stale,
                "not to list the users of other shards gone before",
                "listed",
            ),
        ] {
            if names.is_empty() {
                continue;
            }
            out.push((
                names.len() as u64,
                Evidence {
                    t_s: t_s(f.at),
                    kind: Kind::Presence,
                    client: format!("vu {}", f.vu),
                    event: event.to_owned(),
                    expected: format!("{expected}: {}", spell(names)),
                    got: got.to_owned(),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::run::clock::WallTime;
    use crate::run::ledger::SenderFacts;

    fn t(ms: u64) -> WallTime {
        WallTime::from_micros(ms * 1_000)
    }

    fn sender(name: &str, confirmed_ms: u64, left_ms: Option<u64>) -> SenderFacts {
        SenderFacts {
            name: Some(name.into()),
            join_sent: Some(t(confirmed_ms - 1)),
            join_confirmed: Some(t(confirmed_ms)),
            left: left_ms.map(t),
            ..Default::default()
        }
    }

    fn shard(senders: &[(u32, SenderFacts)], snapshots: Vec<SnapshotRecord>) -> LedgerFile {
        LedgerFile {
            senders: senders.iter().cloned().collect::<HashMap<_, _>>(),
            snapshots,
            ..Default::default()
        }
    }

    fn snapshot(vu: u32, started_ms: u64, names: &[&str]) -> SnapshotRecord {
        let mut names: Vec<u64> = names.iter().map(|n| name_hash(n)).collect();
        names.sort_unstable();
        SnapshotRecord {
            vu,
            started: Some(t(started_ms)),
            at: t(started_ms + 5),
            names,
        }
    }

    #[test]
    fn a_snapshot_must_list_the_other_shards_users_joined_well_before() {
        let w = Window::RUN; // margin 100 ms, deadline 2 s
                             // Shard 1: ann confirmed at 1 s, bob at 4.95 s (inside the margin),
                             // cy gone at 1 s, dee gone at 4.5 s (inside the deadline).
        let far = shard(
            &[
                (1, sender("ann", 1_000, None)),
                (3, sender("bob", 4_950, None)),
                (5, sender("cy", 500, Some(1_000))),
                (7, sender("dee", 500, Some(4_500))),
            ],
            Vec::new(),
        );
        // Shard 0: a client that started to connect at 5 s.
        let missing = shard(&[], vec![snapshot(0, 5_000, &["cy", "dee"])]);
        let findings = check_across_shards(&[&missing, &far], w);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].missing, [("ann".to_owned(), 1)]);
        assert_eq!(findings[0].stale, [("cy".to_owned(), 5)]);
        let records = evidence(&findings, "onlineUsers", |_| 5.0);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, 1);
        assert!(
            records[0].1.expected.contains("\"ann\" (vu 1)"),
            "{records:?}"
        );
        // Listing ann and not cy is right; its own shard is not checked here.
        let right = shard(
            &[(0, sender("zed", 10, None))],
            vec![snapshot(0, 5_000, &["ann", "dee"])],
        );
        assert!(check_across_shards(&[&right, &far], w).is_empty());
    }
}
