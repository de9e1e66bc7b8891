//! The delivery ledger for correlated broadcasts (`newMessage`): which
//! messages each receiver had to get, which it got, and in what order.
//!
//! Every correlated message carries its sender and a per-sender sequence
//! number. A receiver keeps, per sender, the sequence numbers it got as sorted
//! runs (`[0..=41]`, usually a single run), so the record stays a few words
//! whatever the traffic. When the receiver's session ends, its runs are
//! compared with the senders' logs: a message was owed to the receiver when it
//! was sent while the receiver was surely in the namespace (after it had
//! joined plus a margin, and at least the delivery deadline before it left).
//! Every time here is a [`WallTime`] (wall-clock µs since the UNIX epoch),
//! serialized as the bare number.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clock::WallTime;
use super::error::RunError;
use super::fasthash::FastMap;
use crate::error::FileError;

/// A receiver is owed messages sent this long after it entered the namespace.
pub const LEDGER_MARGIN: Duration = Duration::from_millis(100);
/// A message must reach its receivers within this long to count as delivered
/// to a receiver that leaves; it is also the drain time at the end of a run.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(2);

/// The most presence windows one receiver keeps (one per session: a
/// client that reconnected 63 times over the run), so that a flaky network
/// over a long soak cannot grow its record without bound.
pub const MAX_WINDOWS: usize = 64;

/// Sequence numbers received from one sender, as sorted, disjoint, inclusive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqRuns {
    runs: Vec<(u64, u64)>,
}

/// What inserting one sequence number found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one expected, or the first from this sender.
    InOrder,
    /// Later than the next expected: some numbers were skipped (lost or late).
    Gap,
    /// Earlier than one already received: delivered out of order.
    OutOfOrder,
    /// Already received.
    Duplicate,
}

impl SeqRuns {
    /// Records `seq`.
    pub fn insert(&mut self, seq: u64) -> Arrival {
        let Some(&(_, last_end)) = self.runs.last() else {
            self.runs.push((seq, seq));
            return Arrival::InOrder;
        };
        if seq == last_end + 1 {
            self.runs.last_mut().expect("a run").1 = seq;
            return Arrival::InOrder;
        }
        if seq > last_end + 1 {
            self.runs.push((seq, seq));
            return Arrival::Gap;
        }
        // An older number: find where it belongs.
        let i = self.runs.partition_point(|&(_, end)| end < seq);
        let (start, _) = self.runs[i];
        if seq >= start {
            return Arrival::Duplicate;
        }
        let joins_prev = i > 0 && self.runs[i - 1].1 + 1 == seq;
        let joins_next = seq + 1 == start;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.runs[i - 1].1 = self.runs[i].1;
                self.runs.remove(i);
            }
            (true, false) => self.runs[i - 1].1 = seq,
            (false, true) => self.runs[i].0 = seq,
            (false, false) => self.runs.insert(i, (seq, seq)),
        }
        Arrival::OutOfOrder
    }

    /// Whether `seq` was received.
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.runs.partition_point(|&(_, end)| end < seq);
        self.runs.get(i).is_some_and(|&(start, _)| start <= seq)
    }

    /// Every received number, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().flat_map(|&(s, e)| s..=e)
    }

    /// How many received numbers lie in `lo..=hi`.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        self.runs
            .iter()
            .map(|&(s, e)| {
                let (s, e) = (s.max(lo), e.min(hi));
                if s <= e {
                    e - s + 1
                } else {
                    0
                }
            })
            .sum()
    }
}

/// A 64-bit FNV-1a hash of a name: how a receiver remembers a name it
/// could not resolve to a sender of its own process (a sender of another shard).
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The senders a receiver heard announced: those of its own process by
/// virtual-user number, as compact runs (joins come in order, so usually one
/// run); others by `name_hash`. A few words per receiver, whatever the crowd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Announced senders of this process.
    pub vus: SeqRuns,
    /// Hashes of announced names not resolved here, sorted once the session ends.
    pub names: Vec<u64>,
}

impl Seen {
    /// Records an announcement of `name`, resolved to `vu` when the sender plays here.
    pub fn add(&mut self, vu: Option<u32>, name: &str) {
        self.add_hashed(vu, name_hash(name));
    }

    /// Like [`Seen::add`], with the name's `name_hash` already computed.
    pub fn add_hashed(&mut self, vu: Option<u32>, hash: u64) {
        match vu {
            Some(vu) => {
                self.vus.insert(u64::from(vu));
            }
            None => self.names.push(hash),
        }
    }

    /// Sorts the name hashes for lookups (call once, when the session ends).
    pub fn seal(&mut self) {
        self.names.sort_unstable();
        self.names.dedup();
    }

    /// Whether sender `vu` called `name` was announced.
    pub fn contains(&self, vu: u32, name: &str) -> bool {
        self.vus.contains(u64::from(vu)) || self.names.binary_search(&name_hash(name)).is_ok()
    }
}

/// Send times of one sender's correlated messages, by sequence number.
pub type SendLog = Vec<WallTime>;

/// The send time of a message the client refused to send (its session had
/// ended): before every receiver's window, so owed to no one.
pub const NEVER_SENT: WallTime = WallTime::from_micros(0);

/// What the ledger needs to know of one sender.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderFacts {
    /// The name it joined with (announcements and unmarked broadcasts carry it).
    pub name: Option<String>,
    /// Send time of each correlated message, by sequence number.
    pub messages: SendLog,
    /// Send time of each uncorrelated broadcast cause (`typing`), in order.
    pub typing: Vec<WallTime>,
    /// When it sent its latest join.
    pub join_sent: Option<WallTime>,
    /// When it started to leave (or its session ended).
    pub left: Option<WallTime>,
    /// When the reply to its latest join arrived (snapshots of other
    /// shards must list it after that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_confirmed: Option<WallTime>,
    /// The correlated messages sent to a room: (sequence number, room's `name_hash`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_messages: Vec<(u64, u64)>,
    /// The uncorrelated causes sent to a room: (index in `typing`, room's `name_hash`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_typing: Vec<(u64, u64)>,
    /// Its joins of rooms it was not in: (room's `name_hash`, send time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_joins: Vec<(u64, WallTime)>,
    /// Its leaves of rooms it was in (a session's end leaves them all): (room, time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_leaves: Vec<(u64, WallTime)>,
    /// When its own room announcements confirmed its joins: (room, time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_confirmed: Vec<(u64, WallTime)>,
}

/// One presence snapshot (`onlineUsers`) a receiver of a shard got, kept so
/// that `chorus merge` can check it against the senders of every other shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The receiving virtual user.
    pub vu: u32,
    /// When it started to connect (the snapshot is as of its entering).
    #[serde(rename = "started_us")]
    pub started: Option<WallTime>,
    /// When the snapshot arrived.
    #[serde(rename = "at_us")]
    pub at: WallTime,
    /// The `name_hash`es of the names it listed, sorted.
    pub names: Vec<u64>,
}

/// One receiver's record, handed in when its session ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverRecord {
    /// The receiving virtual user.
    pub vu: u32,
    /// When the receiver entered the namespace.
    #[serde(rename = "joined_at_us")]
    pub joined_at: WallTime,
    /// When its session ended.
    #[serde(rename = "left_at_us")]
    pub left_at: WallTime,
    /// Every stretch it was in the namespace, in order: (entered, session
    /// ended), one per session of a client that reconnected. Empty for a
    /// client of one session (and in ledgers written before reconnection):
    /// then it is `joined_at..left_at`.
    #[serde(default, rename = "windows_us", skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<(WallTime, WallTime)>,
    /// Correlated sequence numbers received, per sender.
    pub from: FastMap<u32, SeqRuns>,
    /// Uncorrelated broadcasts (`userTyping`) received, per sender (`name_hash` of its name).
    pub typing_from: HashMap<u64, u64>,
    /// Whose join announcement it received.
    pub online_seen: Seen,
    /// Whose leave announcement it received (a nameless one as the empty name).
    pub offline_seen: Seen,
    /// Whether it sent a join, and whether the join's reply came.
    pub join_sent: bool,
    /// Whether the reply to its join arrived.
    pub join_replied: bool,
    /// Every stretch it was a member of a room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_windows: Vec<RoomWindow>,
    /// Whose room joins it heard: `super::rooms::room_key`s of (room, name), sorted at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_online: Vec<u64>,
    /// Whose room leaves it heard, the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_offline: Vec<u64>,
    /// Uncorrelated room broadcasts received, per `super::rooms::room_key` of (room, sender name).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub room_typing_from: HashMap<u64, u64>,
    /// Whether it heard more room announcements than it keeps (its room
    /// presence then goes unchecked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_seen_full: bool,
}

impl ReceiverRecord {
    /// Every stretch it was in the namespace, in order.
    pub fn presence(&self) -> impl Iterator<Item = (WallTime, WallTime)> + '_ {
        let single = self
            .windows
            .is_empty()
            .then_some((self.joined_at, self.left_at));
        self.windows.iter().copied().chain(single)
    }

    /// Adds the stretch of a later session (a reconnect): from `entered`
    /// the namespace again to `ended`. Past `MAX_WINDOWS` the oldest is
    /// forgotten (what was owed in it goes unchecked, never falsely owed).
    pub fn add_window(&mut self, entered: WallTime, ended: WallTime) {
        if self.windows.is_empty() {
            self.windows.push((self.joined_at, self.left_at));
        }
        if self.windows.len() >= MAX_WINDOWS {
            self.windows.remove(0);
        }
        self.windows.push((entered, ended));
        self.left_at = ended;
    }
}

/// A shard's half of the ledger, `ledger.json` in its run directory: what
/// `chorus merge` settles across shards.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LedgerFile {
    /// The protocol model the run was checked against (a shipped name or a path).
    pub protocol: String,
    /// Which shard wrote it (`I/N`).
    pub shard: String,
    /// Every receiver of the shard.
    pub receivers: Vec<ReceiverRecord>,
    /// Every sender of the shard.
    pub senders: HashMap<u32, SenderFacts>,
    /// The presence snapshots its receivers got (at most `MAX_SNAPSHOTS`
    /// holding `MAX_SNAPSHOT_NAMES` names in all; the rest counted in
    /// `ledger.snapshots_dropped`).
    #[serde(default)]
    pub snapshots: Vec<SnapshotRecord>,
    /// The room snapshots (`roomUsers`) its receivers got, under the same bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_snapshots: Vec<RoomSnapshotRecord>,
}

/// One room snapshot a receiver of a shard got, for `chorus merge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshotRecord {
    /// The room's `name_hash`.
    pub room: u64,
    /// The snapshot; `started_us` is when the receiver sent its join of the room.
    #[serde(flatten)]
    pub snapshot: SnapshotRecord,
}

/// The most snapshot names one shard keeps for `chorus merge` (8 bytes each).
pub const MAX_SNAPSHOT_NAMES: usize = 1_000_000;
/// The most snapshots one shard keeps for `chorus merge` (each is checked
/// against every sender of the other shards).
pub const MAX_SNAPSHOTS: usize = 10_000;

impl LedgerFile {
    /// The file's name in a run directory.
    pub const FILE: &'static str = "ledger.json";

    /// Writes `ledger.json` into `run_dir`.
    pub fn write(&self, run_dir: &std::path::Path) -> Result<(), RunError> {
        let path = run_dir.join(Self::FILE);
        let json = serde_json::to_vec(self).expect("the ledger serializes");
        std::fs::write(&path, json).map_err(|source| FileError::new(path, source).into())
    }

    /// Reads `ledger.json` from `run_dir`.
    pub fn read(run_dir: &std::path::Path) -> Result<Self, RunError> {
        let path = run_dir.join(Self::FILE);
        let bytes = std::fs::read(&path).map_err(|source| FileError::new(&path, source))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            FileError::new(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
            .into()
        })
    }
}

/// One stretch a client was a member of a room: `(room, from, until)`,
/// from its own `roomJoined` to its leave's send (or its session's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomWindow(pub u64, pub WallTime, pub WallTime);

/// Delivery totals of one kind of broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Deliveries owed to receivers.
    pub expected: u64,
    /// Of those, delivered.
    pub received: u64,
    /// Of those, never delivered.
    pub lost: u64,
}

impl LedgerTotals {
    /// Counts `expected` deliveries owed to one receiver, `received` of them got.
    pub(crate) fn add(&mut self, expected: u64, received: u64) {
        self.expected += expected;
        self.received += received;
        self.lost += expected - received;
    }
}

/// A violation found when settling, before it is given a time and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// `count` correlated messages from `sender` never reached `receiver`.
    MessagesLost {
        /// The receiving virtual user.
        receiver: u32,
        /// The sending virtual user.
        sender: u32,
        /// How many were lost.
        count: u64,
    },
    /// `count` typing broadcasts from `sender` never reached `receiver`.
    TypingLost {
        /// The receiving virtual user.
        receiver: u32,
        /// The sending virtual user.
        sender: u32,
        /// How many were lost.
        count: u64,
    },
    /// `receiver` never got the join announcement of `subject`.
    OnlineMissing {
        /// The receiving virtual user.
        receiver: u32,
        /// The virtual user that joined.
        subject: u32,
    },
    /// `receiver` never got the leave announcement of `subject`.
    OfflineMissing {
        /// The receiving virtual user.
        receiver: u32,
        /// The virtual user that left.
        subject: u32,
    },
    /// `receiver` got a leave announcement for a client that never joined
    /// (`subject` is `None`: no sender has that name) or never left.
    OfflineSpurious {
        /// The receiving virtual user.
        receiver: u32,
        /// The virtual user announced gone, when one has that name.
        subject: Option<u32>,
    },
    /// `receiver` joined but the join's reply never came.
    ReplyMissing {
        /// The virtual user that joined.
        receiver: u32,
    },
    /// `receiver`, a member of a room, never heard `subject` join it.
    RoomJoinMissing {
        /// The receiving virtual user.
        receiver: u32,
        /// The virtual user that joined the room.
        subject: u32,
    },
    /// `receiver`, a member of a room, never heard `subject` leave it.
    RoomLeaveMissing {
        /// The receiving virtual user.
        receiver: u32,
        /// The virtual user that left the room.
        subject: u32,
    },
}

/// What settling found.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    /// Correlated broadcasts (`newMessage`).
    pub messages: LedgerTotals,
    /// Uncorrelated broadcasts to others (`userTyping`).
    pub typing: LedgerTotals,
    /// Every violation.
    pub findings: Vec<Finding>,
}

/// How long around joining and leaving a receiver's dues are uncertain.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// After entering the namespace, messages sent concurrently may still be missed.
    pub margin_us: u64,
    /// A message must reach its receivers this fast to be owed to one that leaves.
    pub deadline_us: u64,
}

impl Window {
    /// The window every run and merge settles with.
    pub const RUN: Window = Window {
        margin_us: LEDGER_MARGIN.as_micros() as u64,
        deadline_us: DELIVERY_DEADLINE.as_micros() as u64,
    };
}

/// Adds up, for every receiver, what it was owed and what it got, room
/// messages aside (those are `super::rooms::settle_rooms`'s). Senders
/// and receivers may come from several shards: they meet here by id and name.
pub fn settle<'a>(
    receivers: impl IntoIterator<Item = &'a ReceiverRecord> + Clone,
    senders: &HashMap<u32, SenderFacts>,
    w: Window,
) -> Settlement {
    let mut out = Settlement::default();
    let by_hash: HashMap<u64, u32> = senders
        .iter()
        .filter(|(_, f)| f.join_sent.is_some())
        .filter_map(|(vu, f)| Some((name_hash(f.name.as_deref()?), *vu)))
        .collect();
    for r in receivers {
        if r.join_sent && !r.join_replied && r.left_at > r.joined_at.plus_us(w.deadline_us) {
            out.findings.push(Finding::ReplyMissing { receiver: r.vu });
        }
        let announced_gone = r.offline_seen.vus.iter().map(|vu| Some(vu as u32));
        let announced_by_name = r.offline_seen.names.iter().map(|h| by_hash.get(h).copied());
        for subject in announced_gone.chain(announced_by_name) {
            let legit = subject
                .and_then(|s| senders.get(&s))
                .is_some_and(|f| f.join_sent.is_some() && f.left.is_some());
            if !legit {
                out.findings.push(Finding::OfflineSpurious {
                    receiver: r.vu,
                    subject,
                });
            }
        }
        // What it was surely present for: each stretch in the namespace,
        // after the margin and a delivery deadline before it ended.
        let spans: Vec<(WallTime, WallTime)> = r
            .presence()
            .map(|(joined, left)| (joined.plus_us(w.margin_us), left.minus_us(w.deadline_us)))
            .filter(|(from, until)| from < until)
            .collect();
        if spans.is_empty() {
            continue;
        }
        let owed = |t: WallTime| spans.iter().any(|&(from, until)| t >= from && t <= until);
        for (&sender, facts) in senders {
            // Sends are in time order, so the owed ones of each stretch form
            // one range of sequence numbers.
            let (mut due, mut got) = (0, 0);
            for &(from, until) in &spans {
                let lo = facts.messages.partition_point(|&t| t < from) as u64;
                let hi = facts.messages.partition_point(|&t| t <= until) as u64;
                if lo < hi {
                    due += hi - lo;
                    let runs = r.from.get(&sender);
                    got += runs.map_or(0, |runs| runs.count_in(lo, hi - 1));
                    // Room messages are owed to members only (`super::rooms::settle_rooms`).
                    let first = facts.room_messages.partition_point(|&(s, _)| s < lo);
                    for &(seq, _) in facts.room_messages[first..]
                        .iter()
                        .take_while(|&&(s, _)| s < hi)
                    {
                        due -= 1;
                        got -= u64::from(runs.is_some_and(|runs| runs.contains(seq)));
                    }
                }
            }
            if due > 0 {
                out.messages.add(due, got);
                if got < due {
                    out.findings.push(Finding::MessagesLost {
                        receiver: r.vu,
                        sender,
                        count: due - got,
                    });
                }
            }
            let name = facts.name.as_deref().unwrap_or_default();
            if sender != r.vu {
                let in_rooms = facts
                    .room_typing
                    .iter()
                    .filter(|&&(i, _)| facts.typing.get(i as usize).is_some_and(|&t| owed(t)))
                    .count() as u64;
                let due = facts.typing.iter().filter(|&&t| owed(t)).count() as u64 - in_rooms;
                if due > 0 {
                    // Without a mark, deliveries from near the window's edges may
                    // count too: a loss is only what even they cannot make up.
                    let got = r
                        .typing_from
                        .get(&name_hash(name))
                        .copied()
                        .unwrap_or(0)
                        .min(due);
                    out.typing.add(due, got);
                    if got < due {
                        out.findings.push(Finding::TypingLost {
                            receiver: r.vu,
                            sender,
                            count: due - got,
                        });
                    }
                }
            }
            if facts.join_sent.is_some_and(owed) && !r.online_seen.contains(sender, name) {
                out.findings.push(Finding::OnlineMissing {
                    receiver: r.vu,
                    subject: sender,
                });
            }
            if sender != r.vu
                && facts.join_sent.is_some()
                && facts.left.is_some_and(owed)
                && !r.offline_seen.contains(sender, name)
            {
                out.findings.push(Finding::OfflineMissing {
                    receiver: r.vu,
                    subject: sender,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_classify_arrivals() {
        let mut r = SeqRuns::default();
        assert_eq!(r.insert(5), Arrival::InOrder);
        assert_eq!(r.insert(6), Arrival::InOrder);
        assert_eq!(r.insert(9), Arrival::Gap);
        assert_eq!(r.insert(8), Arrival::OutOfOrder);
        assert_eq!(r.insert(7), Arrival::OutOfOrder);
        assert_eq!(r, SeqRuns { runs: vec![(5, 9)] });
        assert_eq!(r.insert(7), Arrival::Duplicate);
        assert_eq!(r.insert(2), Arrival::OutOfOrder);
        assert_eq!(r.count_in(0, 100), 6);
        assert_eq!(r.count_in(3, 6), 2);
    }

    fn seen(entries: &[(Option<u32>, &str)]) -> Seen {
        let mut s = Seen::default();
        for (vu, name) in entries {
            s.add(*vu, name);
        }
        s.seal();
        s
    }

    #[test]
    fn names_from_other_shards_are_found_by_hash() {
        let s = seen(&[(Some(3), "c"), (None, "far-away")]);
        assert!(s.contains(3, "anything"));
        assert!(s.contains(99, "far-away"));
        assert!(!s.contains(4, "near"));
    }

    fn window(margin_us: u64, deadline_us: u64) -> Window {
        Window {
            margin_us,
            deadline_us,
        }
    }

    fn t(micros: u64) -> WallTime {
        WallTime::from_micros(micros)
    }

    #[test]
    fn settle_counts_only_what_was_owed() {
        // Sender 1 sent seqs 0..10 at t = 0, 100, …, 900 µs.
        let facts = SenderFacts {
            messages: (0..10).map(|i| t(i * 100)).collect(),
            ..Default::default()
        };
        let senders = HashMap::from([(1, facts)]);
        let mut runs = SeqRuns::default();
        for seq in [3, 4, 6] {
            runs.insert(seq);
        }
        // In the namespace from 250 to 950, margin 50, deadline 150: owed seqs 3..=8.
        let r = ReceiverRecord {
            vu: 2,
            joined_at: t(250),
            left_at: t(950),
            from: FastMap::from_iter([(1, runs)]),
            ..Default::default()
        };
        let s = settle(&[r], &senders, window(50, 150));
        assert_eq!(
            s.messages,
            LedgerTotals {
                expected: 6,
                received: 3,
                lost: 3
            }
        );
        assert_eq!(
            s.findings,
            vec![Finding::MessagesLost {
                receiver: 2,
                sender: 1,
                count: 3
            }]
        );
    }

    #[test]
    fn presence_and_replies_are_settled() {
        let named = |name: &str, join_sent: Option<u64>, left: Option<u64>| SenderFacts {
            name: Some(name.into()),
            join_sent: join_sent.map(t),
            left: left.map(t),
            ..Default::default()
        };
        let senders = HashMap::from([
            // a joined at 100 and left at 500; c never joined; d joined and never left.
            (1, named("a", Some(100), Some(500))),
            (3, named("c", None, Some(300))),
            (4, named("d", Some(50), None)),
        ]);
        let r = ReceiverRecord {
            vu: 2,
            joined_at: t(0),
            left_at: t(10_000),
            online_seen: seen(&[(Some(4), "d")]),
            offline_seen: seen(&[(None, "c"), (Some(4), "d")]),
            join_sent: true,
            ..Default::default()
        };
        let s = settle(&[r], &senders, window(10, 100));
        let has = |f: Finding| s.findings.contains(&f);
        assert!(has(Finding::OnlineMissing {
            receiver: 2,
            subject: 1
        }));
        assert!(has(Finding::OfflineMissing {
            receiver: 2,
            subject: 1
        }));
        assert!(has(Finding::OfflineSpurious {
            receiver: 2,
            subject: None
        }));
        assert!(has(Finding::OfflineSpurious {
            receiver: 2,
            subject: Some(4)
        }));
        assert!(has(Finding::ReplyMissing { receiver: 2 }));
        assert_eq!(s.findings.len(), 5, "{:?}", s.findings);
    }

    #[test]
    fn ledger_times_serialize_as_bare_microseconds() {
        let facts = SenderFacts {
            name: Some("a".into()),
            messages: vec![t(5)],
            typing: vec![t(6)],
            join_sent: Some(t(7)),
            left: None,
            join_confirmed: None,
            ..Default::default()
        };
        let json = r#"{"name":"a","messages":[5],"typing":[6],"join_sent":7,"left":null}"#;
        assert_eq!(serde_json::to_string(&facts).unwrap(), json);
        let r = ReceiverRecord {
            vu: 1,
            joined_at: t(10),
            left_at: t(20),
            ..Default::default()
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.starts_with(r#"{"vu":1,"joined_at_us":10,"left_at_us":20,"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ReceiverRecord>(&text).unwrap(), r);
    }

    /// Sender 1 sent seqs 0..30 at t = 0, 100, …, 2900 µs; receiver 2 was
    /// in from 0 to 1000, dropped, and back from 2000 to 3000 (margin 50,
    /// deadline 150): owed 1..=8 before the drop and 21..=28 after it.
    fn reconnected(received: impl IntoIterator<Item = u64>) -> Settlement {
        let facts = SenderFacts {
            messages: (0..30).map(|i| t(i * 100)).collect(),
            ..Default::default()
        };
        let senders = HashMap::from([(1, facts)]);
        let mut runs = SeqRuns::default();
        for seq in received {
            runs.insert(seq);
        }
        let mut r = ReceiverRecord {
            vu: 2,
            joined_at: t(0),
            left_at: t(1000),
            from: [(1, runs)].into_iter().collect(),
            ..Default::default()
        };
        r.add_window(t(2000), t(3000));
        assert_eq!(r.presence().count(), 2);
        settle(&[r], &senders, window(50, 150))
    }

    #[test]
    fn a_message_sent_while_the_receiver_was_away_is_not_owed() {
        // Everything of both stretches arrived; 9..=20 (sent while away) did not.
        let s = reconnected((1..=8).chain(21..=28));
        assert_eq!(
            s.messages,
            LedgerTotals {
                expected: 16,
                received: 16,
                lost: 0
            }
        );
        assert!(s.findings.is_empty(), "{:?}", s.findings);
    }

    #[test]
    fn a_message_sent_after_the_rejoin_is_owed_and_its_loss_found() {
        let s = reconnected((1..=8).chain(21..=26));
        assert_eq!(s.messages.lost, 2);
        assert_eq!(
            s.findings,
            vec![Finding::MessagesLost {
                receiver: 2,
                sender: 1,
                count: 2
            }]
        );
    }

    #[test]
    fn a_message_sent_before_the_drop_is_owed() {
        // 3 and 4 went missing before the drop; what came after it makes nothing up.
        let s = reconnected([1, 2, 5, 6, 7, 8].into_iter().chain(9..=28));
        assert_eq!(
            s.messages,
            LedgerTotals {
                expected: 16,
                received: 14,
                lost: 2
            }
        );
        assert_eq!(s.findings.len(), 1, "{:?}", s.findings);
    }

    #[test]
    fn windows_round_trip_and_old_ledgers_still_read() {
        let mut r = ReceiverRecord {
            vu: 1,
            joined_at: t(10),
            left_at: t(20),
            ..Default::default()
        };
        let old = serde_json::to_string(&r).unwrap();
        assert!(
            !old.contains("windows_us"),
            "one session writes as before: {old}"
        );
        r.add_window(t(30), t(40));
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""windows_us":[[10,20],[30,40]]"#), "{text}");
        assert_eq!(serde_json::from_str::<ReceiverRecord>(&text).unwrap(), r);
        let back: ReceiverRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(back.presence().collect::<Vec<_>>(), [(t(10), t(20))]);
        for i in 0..100 {
            r.add_window(t(100 + 10 * i), t(105 + 10 * i));
        }
        assert_eq!(r.windows.len(), MAX_WINDOWS, "bounded: the oldest go");
        assert_eq!(r.windows.last(), Some(&(t(1090), t(1095))));
        assert_eq!(r.left_at, t(1095));
    }

    #[test]
    fn typing_losses_are_counted_per_sender() {
        let facts = SenderFacts {
            name: Some("a".into()),
            typing: vec![t(100), t(200), t(300)],
            ..Default::default()
        };
        let senders = HashMap::from([(1, facts)]);
        let r = ReceiverRecord {
            vu: 2,
            left_at: t(1_000),
            typing_from: HashMap::from([(name_hash("a"), 1)]),
            ..Default::default()
        };
        let s = settle(&[r], &senders, window(0, 0));
        assert_eq!(
            s.typing,
            LedgerTotals {
                expected: 3,
                received: 1,
                lost: 2
            }
        );
    }
}
