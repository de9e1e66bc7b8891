//! What each virtual user sent, shared with every receiver: the send times of
//! its correlated messages and typing events, when it joined and left, and
//! which virtual user goes by which name. Times are [`WallTime`]s
//! (wall-clock µs since the UNIX epoch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::clock::{AtomicTime, WallTime};
use super::fasthash::FastMap;
use super::ledger::{
    name_hash, ReceiverRecord, RoomSnapshotRecord, SendLog, SenderFacts, SnapshotRecord,
    MAX_SNAPSHOTS, MAX_SNAPSHOT_NAMES,
};
use super::shard::Shard;

/// The most senders looked up without a lock (16 bytes each, allocated up front).
const MAX_SLOTS: u64 = 1 << 20;

/// One virtual user's sending history.
#[derive(Debug, Default)]
pub struct SenderLog {
    /// Send time of each correlated message, by sequence number.
    pub messages: Mutex<SendLog>,
    /// Intended and actual send times of each uncorrelated broadcast cause, in order.
    pub typing: Mutex<Vec<(WallTime, WallTime)>>,
    /// Its room sends, joins and leaves (see [`SenderFacts`]).
    pub rooms: Mutex<RoomSends>,
    join_intended: AtomicTime,
    join_sent: AtomicTime,
    join_confirmed: AtomicTime,
    left: AtomicTime,
    name: Mutex<Option<String>>,
    /// Whether `name` is set, and its [`name_hash`]: receivers compare names
    /// without the lock.
    named: AtomicBool,
    name_hash: AtomicU64,
}

impl SenderLog {
    /// Records a join sent under `name`.
    pub fn joined(&self, name: Option<String>, intended: WallTime, sent: WallTime) {
        self.join_intended.set(intended);
        self.join_sent.set(sent);
        let hash = name.as_deref().map(name_hash);
        *self.name.lock().expect("name lock") = name;
        self.name_hash.store(hash.unwrap_or_default(), Relaxed);
        self.named.store(hash.is_some(), Relaxed);
    }
    /// The intended and actual time of the latest join.
    pub fn join_times(&self) -> Option<(WallTime, WallTime)> {
        Some((self.join_intended.get()?, self.join_sent.get()?))
    }
    /// The join's reply arrived.
    pub fn join_confirmed(&self, at: WallTime) {
        self.join_confirmed.set(at);
    }
    /// When the join's reply arrived.
    pub fn join_confirmed_at(&self) -> Option<WallTime> {
        self.join_confirmed.get()
    }
    /// Records the start of leaving (the first call counts).
    pub fn left(&self, at: WallTime) {
        self.left.set_once(at);
    }
    /// It is coming back after a drop: neither gone nor surely joined
    /// until the reply to its new join (snapshots taken meanwhile may or
    /// may not list it).
    pub fn returning(&self) {
        self.left.take();
        self.join_confirmed.take();
    }
    /// When it started to leave.
    pub fn left_at(&self) -> Option<WallTime> {
        self.left.get()
    }
    /// The [`name_hash`] of the name it joined with, read without the lock.
    pub fn name_hash(&self) -> Option<u64> {
        self.named
            .load(Relaxed)
            .then(|| self.name_hash.load(Relaxed))
    }

    /// The name it joined with.
    pub fn name(&self) -> Option<String> {
        self.name.lock().expect("name lock").clone()
    }

    /// The name it joined with when `got` is not that name (`None` when it
    /// is, or it joined with none). Equal hashes count as the same name, so
    /// the usual case takes no lock.
    pub fn misnamed(&self, got: Option<&str>) -> Option<String> {
        if !self.named.load(Relaxed) {
            return None;
        }
        if got.is_some_and(|g| name_hash(g) == self.name_hash.load(Relaxed)) {
            return None;
        }
        let name = self.name()?;
        (got != Some(name.as_str())).then_some(name)
    }

    fn facts(&self) -> SenderFacts {
        let rooms = self.rooms.lock().expect("log lock");
        SenderFacts {
            room_messages: rooms.messages.clone(),
            room_typing: rooms.typing.clone(),
            room_joins: rooms.joins.clone(),
            room_leaves: rooms.leaves.clone(),
            room_confirmed: rooms.confirmed.clone(),
            name: self.name(),
            messages: self.messages.lock().expect("log lock").clone(),
            typing: self
                .typing
                .lock()
                .expect("log lock")
                .iter()
                .map(|&(_, sent)| sent)
                .collect(),
            join_sent: self.join_sent.get(),
            left: self.left_at(),
            join_confirmed: self.join_confirmed.get(),
        }
    }
}

/// What one sender did in rooms, as [`SenderFacts`] keeps it.
#[derive(Debug, Default)]
pub struct RoomSends {
    /// (sequence number, room) of its correlated room messages.
    pub messages: Vec<(u64, u64)>,
    /// (index among its uncorrelated causes, room) of its room typing.
    pub typing: Vec<(u64, u64)>,
    /// (room, send time) of its joins.
    pub joins: Vec<(u64, WallTime)>,
    /// (room, time) of its leaves.
    pub leaves: Vec<(u64, WallTime)>,
    /// (room, time) of its own room announcements confirming its joins.
    pub confirmed: Vec<(u64, WallTime)>,
}

/// Every sender's log, the name directory, and the receivers' records.
#[derive(Debug)]
pub struct Roster {
    senders: Senders,
    /// Virtual users by the [`name_hash`] of the name they joined with.
    names: RwLock<FastMap<u64, u32>>,
    receivers: Mutex<Vec<ReceiverRecord>>,
    /// Presence snapshots kept for `chorus merge` (shards only), and how
    /// many names they hold.
    snapshots: Mutex<(Vec<SnapshotRecord>, usize)>,
    /// Room snapshots kept for `chorus merge`, under the same bounds.
    room_snapshots: Mutex<(Vec<RoomSnapshotRecord>, usize)>,
}

/// The senders of this process by virtual-user number: a slot per number
/// the load phases can give this shard, so a receiver finds a sender with
/// two atomic reads (every delivery does); numbers beyond (none, unless the
/// phases gave more than planned) go to a map under a lock.
#[derive(Debug)]
struct Senders {
    shard: Shard,
    slots: Box<[OnceLock<Arc<SenderLog>>]>,
    overflow: RwLock<HashMap<u32, Arc<SenderLog>>>,
}

impl Senders {
    fn slot(&self, vu: u32) -> Option<&OnceLock<Arc<SenderLog>>> {
        if !self.shard.owns(vu) {
            return None;
        }
        self.slots.get((vu / self.shard.count) as usize)
    }

    fn all(&self) -> Vec<(u32, Arc<SenderLog>)> {
        let (index, count) = (self.shard.index, self.shard.count);
        let mut all: Vec<_> = (0u32..)
            .zip(self.slots.iter())
            .filter_map(|(i, slot)| Some((i * count + index, slot.get()?.clone())))
            .collect();
        let overflow = self.overflow.read().expect("roster lock");
        all.extend(overflow.iter().map(|(vu, log)| (*vu, log.clone())));
        all
    }
}

impl Roster {
    /// The roster of shard `shard` of a run whose phases number at most
    /// `vus` virtual users.
    pub fn new(shard: Shard, vus: u64) -> Self {
        let slots = vus.div_ceil(u64::from(shard.count)).min(MAX_SLOTS) as usize;
        Self {
            senders: Senders {
                shard,
                slots: (0..slots).map(|_| OnceLock::new()).collect(),
                overflow: RwLock::default(),
            },
            names: RwLock::default(),
            receivers: Mutex::default(),
            snapshots: Mutex::default(),
            room_snapshots: Mutex::default(),
        }
    }

    /// Keeps a presence snapshot for `chorus merge`, unless the shard's
    /// [`MAX_SNAPSHOTS`] or [`MAX_SNAPSHOT_NAMES`] would be exceeded: then
    /// `false` (the caller counts it).
    pub fn keep_snapshot(&self, record: SnapshotRecord) -> bool {
        let mut kept = self.snapshots.lock().expect("roster lock");
        let (records, names) = &mut *kept;
        if records.len() >= MAX_SNAPSHOTS || *names + record.names.len() > MAX_SNAPSHOT_NAMES {
            return false;
        }
        *names += record.names.len();
        records.push(record);
        true
    }

    /// Like [`Roster::keep_snapshot`], for a room snapshot.
    pub fn keep_room_snapshot(&self, record: RoomSnapshotRecord) -> bool {
        let mut kept = self.room_snapshots.lock().expect("roster lock");
        let (records, names) = &mut *kept;
        let n = record.snapshot.names.len();
        if records.len() >= MAX_SNAPSHOTS || *names + n > MAX_SNAPSHOT_NAMES {
            return false;
        }
        *names += n;
        records.push(record);
        true
    }

    /// Takes the room snapshots kept so far.
    pub fn take_room_snapshots(&self) -> Vec<RoomSnapshotRecord> {
        std::mem::take(&mut self.room_snapshots.lock().expect("roster lock").0)
    }

    /// Takes the snapshots kept so far.
    pub fn take_snapshots(&self) -> Vec<SnapshotRecord> {
        std::mem::take(&mut self.snapshots.lock().expect("roster lock").0)
    }

    /// The log of virtual user `vu`, created on first use.
    pub fn sender(&self, vu: u32) -> Arc<SenderLog> {
        if let Some(slot) = self.senders.slot(vu) {
            return slot.get_or_init(Arc::default).clone();
        }
        let senders = &self.senders.overflow;
        if let Some(log) = senders.read().expect("roster lock").get(&vu) {
            return log.clone();
        }
        senders
            .write()
            .expect("roster lock")
            .entry(vu)
            .or_default()
            .clone()
    }

    /// `f` of the log of virtual user `vu`, if it plays in this process: no
    /// lock for a sender of this shard.
    pub fn with_sender<R>(&self, vu: u32, f: impl FnOnce(&SenderLog) -> R) -> Option<R> {
        match self.senders.slot(vu) {
            Some(slot) => slot.get().map(|log| f(log)),
            None => {
                let overflow = self.senders.overflow.read().expect("roster lock");
                overflow.get(&vu).map(|log| f(log))
            }
        }
    }

    /// `f` of the virtual user and log of the sender that joined with the
    /// name of [`name_hash`] `hash`, if it plays in this process.
    pub fn with_named<R>(&self, hash: u64, f: impl FnOnce(u32, &SenderLog) -> R) -> Option<R> {
        let vu = *self.names.read().expect("roster lock").get(&hash)?;
        self.with_sender(vu, |log| f(vu, log))
    }

    /// Remembers that `vu` joined as `name`.
    pub fn name(&self, name: &str, vu: u32) {
        self.names
            .write()
            .expect("roster lock")
            .insert(name_hash(name), vu);
    }

    /// `f` of every sender that has joined, in place: the slots are read
    /// without a lock and nothing is collected (a presence snapshot checks
    /// every sender); the few beyond the slots are copied out of their lock first.
    pub fn for_each_joined(&self, mut f: impl FnMut(u32, &SenderLog)) {
        let (index, count) = (self.senders.shard.index, self.senders.shard.count);
        for (i, slot) in (0u32..).zip(self.senders.slots.iter()) {
            if let Some(log) = slot.get().filter(|log| log.join_times().is_some()) {
                f(i * count + index, log);
            }
        }
        let overflow: Vec<(u32, Arc<SenderLog>)> = {
            let overflow = self.senders.overflow.read().expect("roster lock");
            overflow
                .iter()
                .map(|(vu, log)| (*vu, log.clone()))
                .collect()
        };
        for (vu, log) in overflow.iter().filter(|(_, l)| l.join_times().is_some()) {
            f(*vu, log);
        }
    }

    /// A receiver's session ended.
    pub fn receiver_done(&self, record: ReceiverRecord) {
        self.receivers.lock().expect("roster lock").push(record);
    }

    /// Takes every receiver record, with what the ledger needs of every sender.
    pub fn take_ledger(&self) -> (Vec<ReceiverRecord>, HashMap<u32, SenderFacts>) {
        let receivers = std::mem::take(&mut *self.receivers.lock().expect("roster lock"));
        let senders = self
            .senders
            .all()
            .into_iter()
            .map(|(vu, log)| (vu, log.facts()))
            .collect();
        (receivers, senders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_without_the_lock_and_exactly_when_they_differ() {
        let log = SenderLog::default();
        assert_eq!(log.misnamed(Some("x")), None, "no name yet");
        let t = WallTime::from_micros(1);
        log.joined(Some("ann".into()), t, t);
        assert_eq!(log.misnamed(Some("ann")), None);
        assert_eq!(log.misnamed(Some("bob")).as_deref(), Some("ann"));
        assert_eq!(log.misnamed(None).as_deref(), Some("ann"));
        let roster = Roster::new(Shard::WHOLE, 10);
        roster.sender(4).joined(Some("ann".into()), t, t);
        roster.name("ann", 4);
        assert_eq!(roster.with_named(name_hash("ann"), |vu, _| vu), Some(4));
        assert!(roster.with_named(name_hash("bob"), |_, _| ()).is_none());
    }

    #[test]
    fn kept_snapshots_are_bounded() {
        let roster = Roster::new(Shard { index: 0, count: 2 }, 10);
        let snapshot = |names: usize| SnapshotRecord {
            names: vec![0; names],
            ..Default::default()
        };
        assert!(roster.keep_snapshot(snapshot(MAX_SNAPSHOT_NAMES - 1)));
        assert!(!roster.keep_snapshot(snapshot(2)), "over the names");
        assert!(roster.keep_snapshot(snapshot(1)));
        for _ in 2..MAX_SNAPSHOTS {
            assert!(roster.keep_snapshot(snapshot(0)));
        }
        assert!(!roster.keep_snapshot(snapshot(0)), "over the count");
        assert_eq!(roster.take_snapshots().len(), MAX_SNAPSHOTS);
    }

    #[test]
    fn senders_are_found_in_their_slot_or_beyond() {
        let shard = Shard { index: 1, count: 3 };
        let roster = Roster::new(shard, 9);
        let (mine, beyond) = (roster.sender(4), roster.sender(10));
        let found = |vu| roster.with_sender(vu, |log| log as *const SenderLog);
        assert_eq!(found(4), Some(Arc::as_ptr(&mine)), "slot 1");
        assert_eq!(found(10), Some(Arc::as_ptr(&beyond)), "past the slots");
        assert_eq!(found(7), None, "not created");
        assert_eq!(found(5), None, "another shard's");
        let mut vus: Vec<u32> = roster.take_ledger().1.into_keys().collect();
        vus.sort_unstable();
        assert_eq!(vus, [4, 10]);
        let mut joined = 0;
        roster.for_each_joined(|_, _| joined += 1);
        assert_eq!(joined, 0, "none joined yet");
        let t = WallTime::from_micros(1);
        roster.sender(4).joined(None, t, t);
        roster.sender(10).joined(None, t, t);
        let mut vus = Vec::new();
        roster.for_each_joined(|vu, _| vus.push(vu));
        assert_eq!(vus, [4, 10], "in a slot and beyond");
    }
}
