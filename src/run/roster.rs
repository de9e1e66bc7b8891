//! What each virtual user sent, shared with every receiver: the send times of
//! its correlated messages and typing events, when it joined and left, and
//! which virtual user goes by which name. Times are [`WallTime`]s
//! (wall-clock µs since the UNIX epoch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::clock::{AtomicTime, WallTime};
use super::ledger::{name_hash, ReceiverRecord, SendLog, SenderFacts};

/// One virtual user's sending history.
#[derive(Debug, Default)]
pub struct SenderLog {
    /// Send time of each correlated message, by sequence number.
    pub messages: Mutex<SendLog>,
    /// Intended and actual send times of each uncorrelated broadcast cause, in order.
    pub typing: Mutex<Vec<(WallTime, WallTime)>>,
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
    /// When it started to leave.
    pub fn left_at(&self) -> Option<WallTime> {
        self.left.get()
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
        SenderFacts {
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
        }
    }
}

/// Every sender's log, the name directory, and the receivers' records.
#[derive(Debug, Default)]
pub struct Roster {
    senders: RwLock<HashMap<u32, Arc<SenderLog>>>,
    /// Virtual users by the [`name_hash`] of the name they joined with.
    names: RwLock<HashMap<u64, u32>>,
    receivers: Mutex<Vec<ReceiverRecord>>,
}

impl Roster {
    /// The log of virtual user `vu`, created on first use.
    pub fn sender(&self, vu: u32) -> Arc<SenderLog> {
        if let Some(log) = self.senders.read().expect("roster lock").get(&vu) {
            return log.clone();
        }
        self.senders
            .write()
            .expect("roster lock")
            .entry(vu)
            .or_default()
            .clone()
    }

    /// The log of virtual user `vu`, if it plays in this process.
    pub fn get(&self, vu: u32) -> Option<Arc<SenderLog>> {
        self.senders.read().expect("roster lock").get(&vu).cloned()
    }

    /// Looks up a sender by the [`name_hash`] of the name it joined with.
    pub fn by_name_hash(&self, hash: u64) -> Option<(u32, Arc<SenderLog>)> {
        let vu = *self.names.read().expect("roster lock").get(&hash)?;
        let log = self.senders.read().expect("roster lock").get(&vu)?.clone();
        Some((vu, log))
    }

    /// Remembers that `vu` joined as `name`.
    pub fn name(&self, name: &str, vu: u32) {
        self.names
            .write()
            .expect("roster lock")
            .insert(name_hash(name), vu);
    }

    /// Every sender that has joined, with its log.
    pub fn joined_senders(&self) -> Vec<(u32, Arc<SenderLog>)> {
        self.senders
            .read()
            .expect("roster lock")
            .iter()
            .filter(|(_, log)| log.join_times().is_some())
            .map(|(vu, log)| (*vu, log.clone()))
            .collect()
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
            .read()
            .expect("roster lock")
            .iter()
            .map(|(vu, log)| (*vu, log.facts()))
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
        let roster = Roster::default();
        roster.sender(4).joined(Some("ann".into()), t, t);
        roster.name("ann", 4);
        assert_eq!(roster.by_name_hash(name_hash("ann")).map(|(vu, _)| vu), Some(4));
        assert!(roster.by_name_hash(name_hash("bob")).is_none());
    }
}
