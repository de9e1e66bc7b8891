//! Rooms on the driver's side: each client's memberships ([`RoomBook`],
//! shared by its virtual user, which sends the joins and leaves, and its
//! receiver, which sees them confirmed), the process-wide directory of who
//! is in which room ([`RoomDirectory`]: room snapshots and room sizes), and
//! the settling of what rooms owed each receiver ([`settle_rooms`]).
//!
//! Rooms are known by the [`name_hash`] of their name everywhere: the same
//! in every shard, so `chorus merge` settles rooms across shards, and a
//! room name arriving from the server is hashed (no allocation) and found
//! among the client's few memberships, never in a map of strings.
//!
//! Membership windows are the presence windows of the namespace, per room:
//! a member is owed a room's events sent from its own `roomJoined` (the
//! server had handled its join by then) plus [`LEDGER_MARGIN`], up to the
//! [`DELIVERY_DEADLINE`] before it sent its leave (or its session ended).
//! A **leak** is an event of a room reaching a client surely not in it: one
//! that never asked to join it in this session, or whose own `roomLeft`
//! came before the event was sent (marked events carry their send time;
//! others count as leaks only a delivery deadline after that `roomLeft`).
//! Joins and leaves in flight are never leaks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::clock::WallTime;
use super::fasthash::FastMap;
use super::ledger::{
    name_hash, Finding, ReceiverRecord, RoomWindow, SenderFacts, Settlement, Window,
};

/// Closed membership windows one client keeps (past them the oldest are
/// forgotten: what they owed goes unchecked, never falsely owed).
pub const MAX_ROOM_WINDOWS: usize = 4096;
/// Room announcements one receiver remembers for the presence check (8
/// bytes each); past them its room presence goes unchecked.
pub const MAX_ROOM_SEEN: usize = 1 << 20;
/// Rooms a client remembers having left, so that events still in flight
/// after a leave are not leaks.
const MAX_TOMBSTONES: usize = 256;

/// The room a send to a room the sender is not in is logged under: owed
/// to no one (the server answers it with an error and sends nothing).
pub const NO_ROOM: u64 = 0;

/// The key of "`name` was announced in room `room`" in a receiver's record.
#[inline]
pub fn room_key(room: u64, name: u64) -> u64 {
    room ^ name.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The join was sent at `sent`; its `roomJoined` has not come.
    Joining { sent: WallTime },
    /// A member since its own `roomJoined`.
    Member { since: WallTime },
    /// The leave was sent at `sent`; `since` when it was a member.
    Leaving {
        since: Option<WallTime>,
        sent: WallTime,
    },
    /// Its own `roomLeft` came at `at`.
    Left { at: WallTime },
}

#[derive(Debug)]
struct Entry {
    room: u64,
    state: State,
    members: Arc<RoomMembers>,
}

/// Where a client stands in a room when one of the room's events arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A member, or joining or leaving: the event may be for it. The room's
    /// current size (members confirmed in this process).
    In(u32),
    /// Its own `roomLeft` came at this time.
    LeftAt(WallTime),
    /// Not in the room, and never was in this session.
    Never,
}

/// A client's rooms. Bounded: at most the model's `max_per_client`
/// memberships (a join beyond is not tracked: the server must refuse it,
/// so anything of that room is a leak), [`MAX_TOMBSTONES`] left rooms and
/// [`MAX_ROOM_WINDOWS`] closed windows.
#[derive(Debug, Default)]
pub struct RoomBook {
    entries: Vec<Entry>,
    windows: Vec<RoomWindow>,
}

impl RoomBook {
    fn find(&self, room: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.room == room)
    }

    fn active(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.state, State::Left { .. }))
            .count()
    }

    fn close(&mut self, room: u64, since: Option<WallTime>, until: WallTime) {
        if let Some(since) = since.filter(|&s| s <= until) {
            if self.windows.len() >= MAX_ROOM_WINDOWS {
                self.windows.remove(0);
            }
            self.windows.push(RoomWindow(room, since, until));
        }
    }

    /// Its virtual user sends a join of `room`: whether it is a new one
    /// (not already a member or joining, and within `cap` rooms).
    pub fn join_sent(
        &mut self,
        room: u64,
        at: WallTime,
        cap: usize,
        members: impl FnOnce() -> Arc<RoomMembers>,
    ) -> bool {
        let joining = State::Joining { sent: at };
        match self.find(room).map(|i| (i, self.entries[i].state)) {
            Some((_, State::Joining { .. } | State::Member { .. })) => false,
            Some((i, State::Leaving { since, sent })) => {
                // A join right after a leave: the old stretch ends at the leave.
                self.close(room, since, sent);
                if since.is_some() {
                    self.entries[i].members.count.fetch_sub(1, Relaxed);
                }
                self.entries[i].state = joining;
                true
            }
            Some((i, State::Left { .. })) => {
                if self.active() >= cap {
                    return false;
                }
                self.entries[i].state = joining;
                true
            }
            None => {
                if self.active() >= cap {
                    return false;
                }
                let tombstones = self.entries.len() - self.active();
                if tombstones >= MAX_TOMBSTONES {
                    if let Some(i) = self
                        .entries
                        .iter()
                        .position(|e| matches!(e.state, State::Left { .. }))
                    {
                        self.entries.remove(i);
                    }
                }
                self.entries.push(Entry {
                    room,
                    state: joining,
                    members: members(),
                });
                true
            }
        }
    }

    /// Its virtual user sends a leave of `room` at `at`: whether it was in it.
    pub fn leave_sent(&mut self, room: u64, at: WallTime) -> bool {
        let Some(i) = self.find(room) else {
            return false;
        };
        let since = match self.entries[i].state {
            State::Joining { .. } => None,
            State::Member { since } => Some(since),
            State::Leaving { .. } | State::Left { .. } => return false,
        };
        self.entries[i].state = State::Leaving { since, sent: at };
        true
    }

    /// Its own `roomJoined` of `room` came at `at`: the room's members, when
    /// this confirms a join (it now counts among them).
    pub fn joined(&mut self, room: u64, at: WallTime) -> Option<Arc<RoomMembers>> {
        let entry = self.entries.iter_mut().find(|e| e.room == room)?;
        match entry.state {
            State::Joining { .. } => {
                entry.state = State::Member { since: at };
                entry.members.count.fetch_add(1, Relaxed);
                Some(entry.members.clone())
            }
            State::Leaving { since: None, sent } => {
                // Joined and left before the join was confirmed: a member
                // only until the leave was sent.
                entry.members.count.fetch_add(1, Relaxed);
                entry.state = State::Leaving {
                    since: Some(at),
                    sent,
                };
                Some(entry.members.clone())
            }
            _ => None,
        }
    }

    /// Its own `roomLeft` of `room` came at `at`: the room's members, when
    /// it had been counted among them.
    pub fn left(&mut self, room: u64, at: WallTime) -> Option<Arc<RoomMembers>> {
        let i = self.find(room)?;
        let (since, until) = match self.entries[i].state {
            State::Member { since } => (Some(since), at),
            State::Leaving { since, sent } => (since, sent),
            State::Joining { .. } | State::Left { .. } => (None, at),
        };
        self.close(room, since, until);
        self.entries[i].state = State::Left { at };
        since.map(|_| {
            let members = self.entries[i].members.clone();
            members.count.fetch_sub(1, Relaxed);
            members
        })
    }

    /// Whether a send of the client to `room` reaches the room: it is
    /// joining (the server handles the join first) or a member.
    pub fn may_send(&self, room: u64) -> bool {
        self.find(room).is_some_and(|i| {
            matches!(
                self.entries[i].state,
                State::Joining { .. } | State::Member { .. }
            )
        })
    }

    /// Where the client stands in `room`.
    pub fn standing(&self, room: u64) -> Standing {
        match self.find(room).map(|i| &self.entries[i]) {
            None => Standing::Never,
            Some(Entry {
                state: State::Left { at },
                ..
            }) => Standing::LeftAt(*at),
            Some(e) => Standing::In(e.members.count.load(Relaxed)),
        }
    }

    /// The session ended at `at` (the server forgets its rooms): every
    /// stretch closes. What it ended: see [`SessionRooms`].
    pub fn end_session(&mut self, at: WallTime, deadline_us: u64) -> SessionRooms {
        let mut left = Vec::new();
        let mut unconfirmed = 0;
        for e in std::mem::take(&mut self.entries) {
            let (since, until) = match e.state {
                State::Member { since } => (Some(since), at),
                State::Leaving { since, sent } => (since, sent),
                State::Joining { sent } => {
                    if sent.plus_us(deadline_us) < at {
                        unconfirmed += 1;
                    }
                    (None, at)
                }
                State::Left { .. } => continue,
            };
            if since.is_some() {
                e.members.count.fetch_sub(1, Relaxed);
            }
            if let Some(since) = since.filter(|&s| s <= until) {
                if self.windows.len() >= MAX_ROOM_WINDOWS {
                    self.windows.remove(0);
                }
                self.windows.push(RoomWindow(e.room, since, until));
            }
            if !matches!(e.state, State::Leaving { .. }) {
                left.push((e.room, e.members));
            }
        }
        SessionRooms {
            windows: std::mem::take(&mut self.windows),
            left,
            unconfirmed,
        }
    }
}

/// What the end of a session did to a client's rooms.
#[derive(Debug)]
pub struct SessionRooms {
    /// Every membership stretch closed in the session.
    pub windows: Vec<RoomWindow>,
    /// Each room it was in or joining at the end, with the room's members
    /// (it no longer counts among them): it left them by leaving.
    pub left: Vec<(u64, Arc<RoomMembers>)>,
    /// Joins sent more than a delivery deadline before the end whose own
    /// `roomJoined` never came.
    pub unconfirmed: usize,
}

/// One member of a room, as the directory knows it.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// The virtual user.
    pub vu: u32,
    /// The [`name_hash`] of its chat name.
    pub name: u64,
    /// When it sent its latest join of the room.
    pub join_sent: WallTime,
    /// When its own `roomJoined` came.
    pub confirmed: Option<WallTime>,
    /// When it sent its leave (or its session ended) after that join.
    pub left: Option<WallTime>,
}

/// One room's members in this process.
#[derive(Debug, Default)]
pub struct RoomMembers {
    /// How many are confirmed members now (the room's size, for latency buckets).
    pub count: AtomicU32,
    /// Everyone that joined it, latest join per virtual user.
    pub members: Mutex<Vec<Member>>,
}

impl RoomMembers {
    fn update(&self, vu: u32, f: impl FnOnce(&mut Member)) {
        let mut members = self.members.lock().expect("room lock");
        if let Some(m) = members.iter_mut().find(|m| m.vu == vu) {
            f(m);
        }
    }

    /// `vu`, called `name`, sent a join at `at`.
    pub fn join_sent(&self, vu: u32, name: u64, at: WallTime) {
        let mut members = self.members.lock().expect("room lock");
        let fresh = Member {
            vu,
            name,
            join_sent: at,
            confirmed: None,
            left: None,
        };
        match members.iter_mut().find(|m| m.vu == vu) {
            Some(m) => *m = fresh,
            None => members.push(fresh),
        }
    }

    /// `vu`'s own `roomJoined` came at `at`.
    pub fn confirmed(&self, vu: u32, at: WallTime) {
        self.update(vu, |m| m.confirmed = Some(at));
    }

    /// `vu` sent its leave (or its session ended) at `at`.
    pub fn left(&self, vu: u32, at: WallTime) {
        self.update(vu, |m| {
            m.left.get_or_insert(at);
        });
    }
}

/// Every room the clients of this process joined, by [`name_hash`]:
/// written on joins (a few per client), read on room snapshots.
#[derive(Debug, Default)]
pub struct RoomDirectory {
    rooms: RwLock<FastMap<u64, Arc<RoomMembers>>>,
}

impl RoomDirectory {
    /// The members of `room`, created on first use.
    pub fn room(&self, room: u64) -> Arc<RoomMembers> {
        if let Some(m) = self.rooms.read().expect("rooms lock").get(&room) {
            return m.clone();
        }
        self.rooms
            .write()
            .expect("rooms lock")
            .entry(room)
            .or_default()
            .clone()
    }
}

/// A room snapshot (the [`name_hash`]es it listed, sorted) received at `at`
/// by a client that sent its join at `started`: it must list every member
/// surely in the room then, and none surely gone. What it got wrong, as
/// (expected, got) pairs.
pub fn room_snapshot_problems(
    members: &RoomMembers,
    listed: &[u64],
    started: WallTime,
    at: WallTime,
    w: Window,
) -> Vec<(String, String)> {
    let members = members.members.lock().expect("room lock").clone();
    let mut problems = Vec::new();
    for m in members {
        let surely_in = m
            .confirmed
            .is_some_and(|c| c.plus_us(w.margin_us) < started)
            && m.left.is_none_or(|l| l > at);
        let surely_out = m
            .left
            .is_some_and(|l| l.plus_us(w.deadline_us) < started && m.join_sent <= l);
        let is_listed = listed.binary_search(&m.name).is_ok();
        if surely_in && !is_listed {
            problems.push((
                format!("to list vu {} (a member before this join)", m.vu),
                "not listed".into(),
            ));
        } else if surely_out && is_listed {
            problems.push((
                format!("not to list vu {} (it left the room before)", m.vu),
                "listed".into(),
            ));
        }
    }
    problems
}

/// One room snapshot of a shard that got members of other shards wrong:
/// the receiver, when it arrived, and what was wrong (expected, got).
pub type RoomSnapshotFinding = (u32, WallTime, String, String);

/// Checks every shard's room snapshots against the members of the other
/// shards' rooms, with the margins [`room_snapshot_problems`] uses: a sender
/// whose own `roomJoined` of the room came a margin before the receiver sent
/// its join, and that had not left the room when the snapshot came, must be
/// listed; one that left it a delivery deadline before (and did not join
/// again) must not be.
pub fn room_snapshots_across_shards(
    ledgers: &[&super::ledger::LedgerFile],
    w: Window,
) -> Vec<RoomSnapshotFinding> {
    let mut out = Vec::new();
    for (i, ledger) in ledgers.iter().enumerate() {
        for record in &ledger.room_snapshots {
            let s = &record.snapshot;
            let Some(started) = s.started else { continue };
            let others = ledgers.iter().enumerate().filter(|&(j, _)| j != i);
            for (vu, facts) in others.flat_map(|(_, l)| l.senders.iter()) {
                let of_room = |list: &[(u64, WallTime)]| -> Vec<WallTime> {
                    list.iter()
                        .filter(|(r, _)| *r == record.room)
                        .map(|&(_, t)| t)
                        .collect()
                };
                let (confirmed, leaves, joins) = (
                    of_room(&facts.room_confirmed),
                    of_room(&facts.room_leaves),
                    of_room(&facts.room_joins),
                );
                let in_since = confirmed
                    .iter()
                    .copied()
                    .filter(|c| c.plus_us(w.margin_us) < started)
                    .max();
                let surely_in =
                    in_since.is_some_and(|c| !leaves.iter().any(|&l| l >= c && l <= s.at));
                let gone_at = leaves
                    .iter()
                    .copied()
                    .filter(|l| l.plus_us(w.deadline_us) < started)
                    .max();
                let surely_out =
                    gone_at.is_some_and(|l| !joins.iter().any(|&j| j > l && j <= s.at));
                let name = name_hash(facts.name.as_deref().unwrap_or_default());
                let listed = s.names.binary_search(&name).is_ok();
                if surely_in && !listed {
                    out.push((
                        s.vu,
                        s.at,
                        format!("to list vu {vu} (a member, of another shard, before this join)"),
                        "not listed".into(),
                    ));
                } else if surely_out && listed {
                    out.push((
                        s.vu,
                        s.at,
                        format!("not to list vu {vu} (it left the room before, in another shard)"),
                        "listed".into(),
                    ));
                }
            }
        }
    }
    out
}

/// The [`name_hash`]es of the names in a room snapshot's users field
/// (`[[id, name], …]`), sorted; and the room it names. `None` when the
/// payload is not an object.
pub fn room_snapshot_names(
    payload: &str,
    room_field: &str,
    users_field: &str,
) -> Option<(Option<String>, Vec<u64>)> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let object = value.as_object()?;
    let room = object
        .get(room_field)
        .and_then(|r| r.as_str())
        .map(str::to_owned);
    let mut names: Vec<u64> = object
        .get(users_field)
        .and_then(|u| u.as_array())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.get(1)?.as_str().map(name_hash))
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    Some((room, names))
}

/// Adds to `out` what rooms owed every receiver: room-scoped messages and
/// typing sent while it was surely a member (and in the namespace), and
/// the room joins and leaves of others then. Called by the ledger's
/// [`super::ledger::settle`], which leaves room-scoped sends out of what
/// the namespace owes.
pub fn settle_rooms<'a>(
    receivers: impl IntoIterator<Item = &'a ReceiverRecord>,
    senders: &HashMap<u32, SenderFacts>,
    w: Window,
    out: &mut Settlement,
) {
    // Per sender, per room: its room messages' sequence numbers, its room
    // typing's send times, its joins' and leaves' send times.
    #[derive(Default)]
    struct ByRoom {
        messages: Vec<u64>,
        typing: Vec<WallTime>,
        joins: Vec<WallTime>,
        leaves: Vec<WallTime>,
    }
    let mut index: Vec<(u32, &SenderFacts, u64, FastMap<u64, ByRoom>)> = Vec::new();
    for (&vu, facts) in senders {
        let mut rooms: FastMap<u64, ByRoom> = FastMap::default();
        for &(seq, room) in &facts.room_messages {
            rooms.entry(room).or_default().messages.push(seq);
        }
        for &(i, room) in &facts.room_typing {
            if let Some(&t) = facts.typing.get(i as usize) {
                rooms.entry(room).or_default().typing.push(t);
            }
        }
        for &(room, t) in &facts.room_joins {
            rooms.entry(room).or_default().joins.push(t);
        }
        for &(room, t) in &facts.room_leaves {
            rooms.entry(room).or_default().leaves.push(t);
        }
        if !rooms.is_empty() {
            let name = name_hash(facts.name.as_deref().unwrap_or_default());
            index.push((vu, facts, name, rooms));
        }
    }
    for r in receivers {
        // Each membership, after the margin and up to a deadline before it ended.
        let owed: Vec<(u64, WallTime, WallTime)> = r
            .room_windows
            .iter()
            .map(|&RoomWindow(room, from, until)| {
                (
                    room,
                    from.plus_us(w.margin_us),
                    until.minus_us(w.deadline_us),
                )
            })
            .filter(|(_, from, until)| from < until)
            .collect();
        if owed.is_empty() {
            continue;
        }
        for (sender, facts, name, rooms) in &index {
            for &(room, from, until) in &owed {
                let Some(by) = rooms.get(&room) else { continue };
                let inside = |t: WallTime| t >= from && t <= until;
                let (mut due, mut got) = (0, 0);
                for &seq in &by.messages {
                    if facts
                        .messages
                        .get(seq as usize)
                        .copied()
                        .is_some_and(inside)
                    {
                        due += 1;
                        got += u64::from(r.from.get(sender).is_some_and(|runs| runs.contains(seq)));
                    }
                }
                if due > 0 {
                    out.messages.add(due, got);
                    if got < due {
                        out.findings.push(Finding::MessagesLost {
                            receiver: r.vu,
                            sender: *sender,
                            count: due - got,
                        });
                    }
                }
                if *sender == r.vu {
                    continue;
                }
                let due = by.typing.iter().filter(|&&t| inside(t)).count() as u64;
                if due > 0 {
                    // Unmarked: counted per sender, as the namespace's typing.
                    let got = r
                        .room_typing_from
                        .get(&room_key(room, *name))
                        .copied()
                        .unwrap_or(0)
                        .min(due);
                    out.typing.add(due, got);
                    if got < due {
                        out.findings.push(Finding::TypingLost {
                            receiver: r.vu,
                            sender: *sender,
                            count: due - got,
                        });
                    }
                }
                if r.room_seen_full {
                    continue;
                }
                let key = room_key(room, *name);
                if by.joins.iter().any(|&t| inside(t)) && r.room_online.binary_search(&key).is_err()
                {
                    out.findings.push(Finding::RoomJoinMissing {
                        receiver: r.vu,
                        subject: *sender,
                    });
                }
                if by.leaves.iter().any(|&t| inside(t))
                    && r.room_offline.binary_search(&key).is_err()
                {
                    out.findings.push(Finding::RoomLeaveMissing {
                        receiver: r.vu,
                        subject: *sender,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::ledger::SeqRuns;

    /// What a run settles: the namespace's ledger, then the rooms'.
    fn settle_both(
        receivers: &[ReceiverRecord],
        senders: &HashMap<u32, SenderFacts>,
        w: Window,
    ) -> Settlement {
        let mut out = super::super::ledger::settle(receivers, senders, w);
        settle_rooms(receivers, senders, w, &mut out);
        out
    }

    fn t(micros: u64) -> WallTime {
        WallTime::from_micros(micros)
    }

    fn book_with(room: u64) -> RoomBook {
        let mut book = RoomBook::default();
        assert!(book.join_sent(room, t(0), 50, Arc::default));
        book
    }

    #[test]
    fn a_membership_opens_on_its_own_announcement_and_closes_at_the_leave() {
        let mut book = book_with(1);
        assert_eq!(book.standing(1), Standing::In(0), "joining: in flight");
        assert_eq!(book.standing(2), Standing::Never);
        assert!(
            !book.join_sent(1, t(1), 50, Arc::default),
            "a second join changes nothing"
        );
        assert!(book.may_send(1) && !book.may_send(2));
        let members = book.joined(1, t(100)).expect("confirmed");
        assert_eq!(members.count.load(Relaxed), 1);
        assert_eq!(book.standing(1), Standing::In(1));
        assert!(book.leave_sent(1, t(500)));
        assert_eq!(book.standing(1), Standing::In(1), "leaving: in flight");
        assert!(!book.may_send(1), "the server handles the leave first");
        book.left(1, t(600));
        assert_eq!(book.standing(1), Standing::LeftAt(t(600)));
        assert_eq!(members.count.load(Relaxed), 0);
        assert!(!book.leave_sent(1, t(700)), "not in it any more");
        let ended = book.end_session(t(1000), 100);
        assert_eq!(
            ended.windows,
            [RoomWindow(1, t(100), t(500))],
            "to the leave's send"
        );
        assert!(ended.left.is_empty());
    }

    #[test]
    fn memberships_are_capped_and_the_session_end_closes_them() {
        let mut book = RoomBook::default();
        for room in 0..3 {
            assert!(book.join_sent(room, t(0), 3, Arc::default));
            book.joined(room, t(10));
        }
        assert!(
            !book.join_sent(9, t(0), 3, Arc::default),
            "over the cap: not tracked"
        );
        assert_eq!(book.standing(9), Standing::Never, "so its events are leaks");
        assert!(book.join_sent(7, t(20), 4, Arc::default));
        assert!(book.join_sent(8, t(45), 5, Arc::default));
        let ended = book.end_session(t(50), 10);
        assert_eq!(ended.windows.len(), 3, "unconfirmed joins have no window");
        assert_eq!(ended.left.len(), 5);
        assert_eq!(
            ended.unconfirmed, 1,
            "the one sent over a deadline before the end"
        );
        assert_eq!(
            book.standing(0),
            Standing::Never,
            "a new session starts in no room"
        );
    }

    fn facts(name: &str) -> SenderFacts {
        SenderFacts {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// Sender 1 sent seqs 0..10 at t = 0, 100, …, 900: 2, 4, 6 and 8 to room
    /// "a", the rest namespace-wide. Receiver 2 was in the namespace from 0
    /// to 2000 and in "a" from 250 to 750 (margin 50, deadline 150: owed
    /// room seqs 4 and 6).
    fn settled(received: &[u64]) -> Settlement {
        let a = name_hash("a");
        let mut f = facts("s");
        f.messages = (0..10).map(|i| t(i * 100)).collect();
        f.room_messages = [2, 4, 6, 8].iter().map(|&s| (s, a)).collect();
        let senders = HashMap::from([(1, f)]);
        let mut runs = SeqRuns::default();
        for &seq in received {
            runs.insert(seq);
        }
        let r = ReceiverRecord {
            vu: 2,
            joined_at: t(0),
            left_at: t(2000),
            from: FastMap::from_iter([(1, runs)]),
            room_windows: vec![RoomWindow(a, t(250), t(750))],
            ..Default::default()
        };
        settle_both(
            &[r],
            &senders,
            Window {
                margin_us: 50,
                deadline_us: 150,
            },
        )
    }

    #[test]
    fn a_room_message_is_owed_to_the_members_only() {
        let s = settled(&[0, 1, 3, 5, 7, 9, 4, 6]);
        assert!(s.findings.is_empty(), "{:?}", s.findings);
        // 1, 3, 5, 7 and 9 namespace-wide (0 was before the margin) + 4 and 6 of the room.
        assert_eq!(s.messages.expected, 7);
        let s = settled(&[0, 1, 3, 5, 7, 9, 4]);
        assert_eq!(s.messages.lost, 1);
        assert_eq!(
            s.findings,
            [Finding::MessagesLost {
                receiver: 2,
                sender: 1,
                count: 1
            }]
        );
        // A room message got by a non-member is not owed: no credit, no loss
        // (the receiver reports it as a leak as it arrives).
        let s = settled(&[0, 1, 3, 5, 7, 9, 4, 6, 2, 8]);
        assert_eq!((s.messages.expected, s.messages.received), (7, 7));
        assert!(s.findings.is_empty());
    }

    #[test]
    fn room_joins_and_leaves_are_owed_to_members() {
        let a = name_hash("a");
        let mut f = facts("s");
        f.room_joins = vec![(a, t(300)), (a, t(5000))];
        f.room_leaves = vec![(a, t(600))];
        let senders = HashMap::from([(1, f)]);
        let mut r = ReceiverRecord {
            vu: 2,
            left_at: t(2000),
            room_windows: vec![RoomWindow(a, t(250), t(900))],
            room_online: vec![room_key(a, name_hash("s"))],
            ..Default::default()
        };
        let w = Window {
            margin_us: 10,
            deadline_us: 100,
        };
        let s = settle_both(&[r.clone()], &senders, w);
        assert_eq!(
            s.findings,
            [Finding::RoomLeaveMissing {
                receiver: 2,
                subject: 1
            }]
        );
        r.room_offline = r.room_online.clone();
        let s = settle_both(&[r], &senders, w);
        assert!(s.findings.is_empty(), "{:?}", s.findings);
    }

    #[test]
    fn room_snapshots_list_the_sure_members() {
        let members = RoomMembers::default();
        let w = Window {
            margin_us: 10,
            deadline_us: 100,
        };
        members.join_sent(1, name_hash("in"), t(0));
        members.confirmed(1, t(50));
        members.join_sent(2, name_hash("gone"), t(0));
        members.confirmed(2, t(50));
        members.left(2, t(100));
        members.join_sent(3, name_hash("flight"), t(990));
        let none = room_snapshot_problems(&members, &[], t(1000), t(1010), w);
        assert_eq!(none.len(), 1, "{none:?}");
        assert!(none[0].0.contains("vu 1"));
        let mut all: Vec<u64> = ["in", "gone", "flight"].map(name_hash).to_vec();
        all.sort_unstable();
        let extra = room_snapshot_problems(&members, &all, t(1000), t(1010), w);
        assert_eq!(extra.len(), 1, "{extra:?}");
        assert!(extra[0].0.contains("vu 2"));
        let (room, names) = room_snapshot_names(
            r#"{"room":"x","users":[["s1","in"],["s2",5]]}"#,
            "room",
            "users",
        )
        .unwrap();
        assert_eq!(room.as_deref(), Some("x"));
        assert_eq!(names, [name_hash("in")]);
    }
}
