//! What each virtual user sent, shared with every receiver: the send times of
//! its correlated messages and typing events, when it joined and left, and
//! which virtual user goes by which name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::ledger::{ReceiverRecord, SendLog, SenderFacts};

/// Marks an unset instant.
const UNSET: u64 = u64::MAX;

fn get(a: &AtomicU64) -> Option<u64> {
    Some(a.load(Relaxed)).filter(|&v| v != UNSET)
}

/// One virtual user's sending history (times in µs since the run epoch).
#[derive(Debug)]
pub struct SenderLog {
    /// Send time of each correlated message, by sequence number.
    pub messages: Mutex<SendLog>,
    /// Intended and actual send times of each uncorrelated broadcast cause, in order.
    pub typing: Mutex<Vec<(u64, u64)>>,
    join_intended: AtomicU64,
    join_sent: AtomicU64,
    join_confirmed: AtomicU64,
    left: AtomicU64,
    name: Mutex<Option<String>>,
}

impl Default for SenderLog {
    fn default() -> Self {
        Self {
            messages: Mutex::default(),
            typing: Mutex::default(),
            join_intended: AtomicU64::new(UNSET),
            join_sent: AtomicU64::new(UNSET),
            join_confirmed: AtomicU64::new(UNSET),
            left: AtomicU64::new(UNSET),
            name: Mutex::default(),
        }
    }
}

impl SenderLog {
    /// Records a join sent under `name`.
    pub fn joined(&self, name: Option<String>, intended_us: u64, sent_us: u64) {
        self.join_intended.store(intended_us, Relaxed);
        self.join_sent.store(sent_us, Relaxed);
        *self.name.lock().expect("name lock") = name;
    }
    /// The intended and actual time of the latest join.
    pub fn join_times(&self) -> Option<(u64, u64)> {
        Some((get(&self.join_intended)?, get(&self.join_sent)?))
    }
    /// The join's reply arrived.
    pub fn join_confirmed(&self, at_us: u64) {
        self.join_confirmed.store(at_us, Relaxed);
    }
    /// When the join's reply arrived.
    pub fn join_confirmed_at(&self) -> Option<u64> {
        get(&self.join_confirmed)
    }
    /// Records the start of leaving (the first call counts).
    pub fn left(&self, at_us: u64) {
        let _ = self.left.compare_exchange(UNSET, at_us, Relaxed, Relaxed);
    }
    /// When it started to leave.
    pub fn left_at(&self) -> Option<u64> {
        get(&self.left)
    }
    /// The name it joined with.
    pub fn name(&self) -> Option<String> {
        self.name.lock().expect("name lock").clone()
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
            join_sent: get(&self.join_sent),
            left: self.left_at(),
        }
    }
}

/// Every sender's log, the name directory, and the receivers' records.
#[derive(Debug, Default)]
pub struct Roster {
    senders: RwLock<HashMap<u32, Arc<SenderLog>>>,
    names: RwLock<HashMap<String, u32>>,
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

    /// Looks up a sender by the name it joined with.
    pub fn by_name(&self, name: &str) -> Option<(u32, Arc<SenderLog>)> {
        let vu = *self.names.read().expect("roster lock").get(name)?;
        let log = self.senders.read().expect("roster lock").get(&vu)?.clone();
        Some((vu, log))
    }

    /// Remembers that `vu` joined as `name`.
    pub fn name(&self, name: &str, vu: u32) {
        self.names
            .write()
            .expect("roster lock")
            .insert(name.to_owned(), vu);
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
