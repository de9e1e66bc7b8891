//! What each virtual user sent, shared with every receiver: the send times of
//! its correlated messages and typing events, when it joined and left, and
//! which virtual user goes by which username.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::ledger::{ReceiverRecord, SendLog};

/// Marks an unset instant.
const UNSET: u64 = u64::MAX;

/// One virtual user's sending history (times in µs since the run epoch).
#[derive(Debug)]
pub struct SenderLog {
    /// Send time of each correlated message, by sequence number.
    pub messages: Mutex<SendLog>,
    /// Intended and actual send times of each `typing` event, in order.
    pub typing: Mutex<Vec<(u64, u64)>>,
    /// Intended and actual time of the latest `joinChat`.
    join: [AtomicU64; 2],
    /// When it started to leave.
    leave: AtomicU64,
}

impl Default for SenderLog {
    fn default() -> Self {
        Self {
            messages: Mutex::default(),
            typing: Mutex::default(),
            join: [AtomicU64::new(UNSET), AtomicU64::new(UNSET)],
            leave: AtomicU64::new(UNSET),
        }
    }
}

fn get(a: &AtomicU64) -> Option<u64> {
    Some(a.load(Relaxed)).filter(|&v| v != UNSET)
}

impl SenderLog {
    /// Records a `joinChat` send.
    pub fn joined(&self, intended_us: u64, sent_us: u64) {
        self.join[0].store(intended_us, Relaxed);
        self.join[1].store(sent_us, Relaxed);
    }
    /// The intended and actual time of the latest `joinChat`.
    pub fn join_times(&self) -> Option<(u64, u64)> {
        Some((get(&self.join[0])?, get(&self.join[1])?))
    }
    /// Records the start of a disconnect.
    pub fn left(&self, at_us: u64) {
        self.leave.store(at_us, Relaxed);
    }
    /// When it started to leave.
    pub fn leave_time(&self) -> Option<u64> {
        get(&self.leave)
    }
}

/// Every sender's log, the username directory, and the receivers' records.
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

    /// Looks up a sender's log by the username it joined with.
    pub fn by_name(&self, username: &str) -> Option<(u32, Arc<SenderLog>)> {
        let vu = *self.names.read().expect("roster lock").get(username)?;
        let log = self.senders.read().expect("roster lock").get(&vu)?.clone();
        Some((vu, log))
    }

    /// Remembers that `vu` joined as `username`.
    pub fn name(&self, username: &str, vu: u32) {
        self.names
            .write()
            .expect("roster lock")
            .insert(username.to_owned(), vu);
    }

    /// A receiver's session ended.
    pub fn receiver_done(&self, record: ReceiverRecord) {
        self.receivers.lock().expect("roster lock").push(record);
    }

    /// Takes every receiver record and a copy of every sender's message log.
    pub fn take_ledger(&self) -> (Vec<ReceiverRecord>, HashMap<u32, SendLog>) {
        let receivers = std::mem::take(&mut *self.receivers.lock().expect("roster lock"));
        let senders = self
            .senders
            .read()
            .expect("roster lock")
            .iter()
            .map(|(vu, log)| (*vu, log.messages.lock().expect("log lock").clone()))
            .filter(|(_, log)| !log.is_empty())
            .collect();
        (receivers, senders)
    }
}
