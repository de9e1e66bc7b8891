//! What a client's reader task and its virtual user share: the events and
//! acks the flow waits for, the client's connect and join times, and what the
//! liveness watchdog reads. Below both the virtual user and the receiver.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use super::clock::{AtomicTime, WallTime};
use super::ledger::ReceiverRecord;
use super::plan::EventId;
use super::rooms::RoomBook;

/// How many not-yet-expected events a client keeps for a later `expect` step.
const BACKLOG: usize = 256;
/// How many bytes of their JSON it keeps at most (the oldest go first), so
/// that a server sending large events cannot grow the driver without bound.
/// Kept as text: parsed, a large array takes 16 to 32 times its text.
const BACKLOG_BYTES: usize = 16 << 20;

/// The answer to an ack: when it came (its arguments are not kept: no
/// check reads them, so the receive path does not copy them).
pub type AckAnswer = Instant;

enum AckSlot {
    Waiting(oneshot::Sender<AckAnswer>),
    Arrived(AckAnswer),
}

/// What a client's reader task and its virtual user share.
pub struct Inbox {
    /// The virtual user.
    pub vu: u32,
    /// When the client started to connect.
    pub connect_started: AtomicTime,
    /// When the client entered the namespace.
    pub connected_at: AtomicTime,
    /// When it last received a delivery owed to everyone (for the liveness watchdog).
    pub last_delivery: AtomicTime,
    /// Whether the watchdog already reported this client stalled.
    pub reported_stalled: AtomicBool,
    /// Whether its session has ended.
    closed: AtomicBool,
    /// When its session ended without a goodbye, for a client that
    /// reconnects: the virtual user waits for it.
    dropped_at: AtomicTime,
    /// When the drop a reconnect is answering was seen: the join reply
    /// that ends the reconnect takes it (the `reconnect` latency).
    rejoin_from: AtomicTime,
    /// The ledger record of the sessions before a reconnect, handed on to the next one.
    carried: Mutex<Option<ReceiverRecord>>,
    /// Dropped and not back yet: counted once in `Clients::now_reconnecting`,
    /// from the drop (so the run never sees every client gone and none
    /// coming back in between) until the virtual user is back or gives up.
    away: AtomicBool,
    /// Whether the client list holds this inbox (see `Clients::reconnected`).
    pub listed: AtomicBool,
    /// Intended time of a join still waiting for its reply.
    join_pending: AtomicTime,
    /// How many joins it sent: the receiver re-reads the name when it changes.
    joins: AtomicU64,
    /// The name it joined with.
    join_name: Mutex<Option<String>>,
    backlog: Mutex<Backlog>,
    /// Its rooms: the virtual user writes its joins and leaves, the
    /// receiver their confirmations (rare next to deliveries, so the lock
    /// is seldom contended).
    pub rooms: Mutex<RoomBook>,
    arrived: Notify,
    acks: Mutex<HashMap<u64, AckSlot>>,
}

impl Inbox {
    /// The inbox of virtual user `vu`.
    pub fn new(vu: u32) -> Self {
        Self {
            vu,
            connect_started: AtomicTime::none(),
            connected_at: AtomicTime::none(),
            last_delivery: AtomicTime::none(),
            reported_stalled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            dropped_at: AtomicTime::none(),
            rejoin_from: AtomicTime::none(),
            carried: Mutex::new(None),
            away: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            join_pending: AtomicTime::none(),
            joins: AtomicU64::new(0),
            join_name: Mutex::new(None),
            backlog: Mutex::default(),
            rooms: Mutex::default(),
            arrived: Notify::new(),
            acks: Mutex::default(),
        }
    }

    /// The virtual user sent a join as `name`, meaning to at `intended`.
    pub fn join_sent(&self, name: Option<String>, intended: WallTime) {
        *self.join_name.lock().expect("name lock") = name;
        self.joins.fetch_add(1, Relaxed);
        self.join_pending.set(intended);
    }

    /// How many joins were sent so far (one atomic read; see [`Inbox::join_name`]).
    pub fn joins(&self) -> u64 {
        self.joins.load(Relaxed)
    }

    /// The name of the latest join.
    pub fn join_name(&self) -> Option<String> {
        self.join_name.lock().expect("name lock").clone()
    }

    /// Takes the intended time of the join waiting for its reply.
    pub fn take_join_pending(&self) -> Option<WallTime> {
        self.join_pending.take()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        // Acquire, with the Release of `close`: whoever sees the session
        // ended also sees every event kept before it ended.
        self.closed.load(Acquire)
    }

    /// The session ended: waiting `expect` steps give up.
    pub fn close(&self) {
        self.closed.store(true, Release);
        self.arrived.notify_waiters();
    }

    /// The session dropped at `at` and the client will try to reconnect:
    /// keeps its ledger record for the next session, then ends this one.
    pub fn dropped(&self, at: WallTime, record: Option<ReceiverRecord>) {
        *self.carried.lock().expect("carry lock") = record;
        self.dropped_at.set(at);
        self.close();
    }

    /// Marks the client away after a drop; whether it was not already.
    pub fn set_away(&self) -> bool {
        !self.away.swap(true, Relaxed)
    }

    /// Marks the client no longer away (back, or given up); whether it was.
    pub fn back(&self) -> bool {
        self.away.swap(false, Relaxed)
    }

    /// Waits until the session drops (forever, if it never does).
    pub async fn wait_dropped(&self) -> WallTime {
        loop {
            let notified = self.arrived.notified();
            if let Some(at) = self.dropped_at.get() {
                return at;
            }
            notified.await;
        }
    }

    /// When the session dropped, if it did and no reconnect has answered it yet.
    pub fn dropped_at(&self) -> Option<WallTime> {
        self.dropped_at.get()
    }

    /// A reconnect starts: the inbox serves the next session, and the drop
    /// it answers is timed by the next join's reply.
    pub fn reopen(&self) {
        // Timed from the first drop, however many tries it takes.
        if let Some(at) = self.dropped_at.take() {
            self.rejoin_from.set_once(at);
        }
        self.join_pending.take();
        *self.backlog.lock().expect("backlog lock") = Backlog::default();
        self.acks.lock().expect("ack lock").clear();
        self.reported_stalled.store(false, Relaxed);
        self.closed.store(false, Relaxed);
    }

    /// Forgets the drop and its timing: the client is not coming back.
    pub fn forget_drop(&self) {
        self.dropped_at.take();
        self.rejoin_from.take();
    }

    /// Takes when the drop the current reconnect answers was seen.
    pub fn take_rejoin_from(&self) -> Option<WallTime> {
        self.rejoin_from.take()
    }

    /// Takes the ledger record of the sessions before this one.
    pub fn take_carried(&self) -> Option<ReceiverRecord> {
        self.carried.lock().expect("carry lock").take()
    }

    /// Waits for an ack answer (it may already have arrived).
    pub fn ack_answer(&self, id: u64) -> oneshot::Receiver<AckAnswer> {
        let (tx, rx) = oneshot::channel();
        let mut acks = self.acks.lock().expect("ack lock");
        match acks.remove(&id) {
            Some(AckSlot::Arrived(answer)) => {
                let _ = tx.send(answer);
            }
            _ => {
                acks.insert(id, AckSlot::Waiting(tx));
            }
        }
        rx
    }

    /// Forgets an ack that timed out.
    pub fn forget_ack(&self, id: u64) {
        self.acks.lock().expect("ack lock").remove(&id);
    }

    /// Hands an ack's answer to whoever waits for it (or keeps it for them).
    pub fn ack_arrived(&self, id: u64, answer: AckAnswer) {
        let mut acks = self.acks.lock().expect("ack lock");
        match acks.remove(&id) {
            Some(AckSlot::Waiting(tx)) => {
                let _ = tx.send(answer);
            }
            _ => {
                acks.insert(id, AckSlot::Arrived(answer));
            }
        }
    }

    /// Takes the first kept event `event` whose first argument `accept`s,
    /// waiting for one until `deadline`. `None` on timeout or once the session ended.
    pub async fn expect(
        &self,
        event: EventId,
        deadline: tokio::time::Instant,
        accept: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        loop {
            let notified = self.arrived.notified();
            // Looked at before the backlog: an event kept before the session
            // ended is then surely in it. Looked at after, an event kept and
            // a close landing between the two looks would be missed.
            let closed = self.is_closed();
            {
                let mut backlog = self.backlog.lock().expect("backlog lock");
                let found = backlog
                    .events
                    .iter()
                    .enumerate()
                    .find_map(|(i, (id, raw))| {
                        let value = (*id == event).then(|| parse_kept(raw.as_deref()))?;
                        accept(&value).then_some((i, value))
                    });
                if let Some((i, value)) = found {
                    backlog.remove(i);
                    return Some(value);
                }
            }
            if closed {
                return None;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Keeps an event a later `expect` step may wait for.
    pub fn keep(&self, event: EventId, arg: Option<&RawValue>) {
        let raw: Option<Box<str>> = arg.map(|a| a.get().into());
        let size = raw.as_deref().map_or(0, str::len);
        let mut backlog = self.backlog.lock().expect("backlog lock");
        while !backlog.events.is_empty()
            && (backlog.events.len() == BACKLOG || backlog.bytes + size > BACKLOG_BYTES)
        {
            backlog.remove(0);
        }
        backlog.bytes += size;
        backlog.events.push_back((event, raw));
        drop(backlog);
        self.arrived.notify_waiters();
    }
}

/// The events kept for later `expect` steps: event and first argument as JSON text.
#[derive(Default)]
struct Backlog {
    events: VecDeque<(EventId, Option<Box<str>>)>,
    /// The bytes of the kept JSON.
    bytes: usize,
}

impl Backlog {
    fn remove(&mut self, i: usize) {
        if let Some((_, raw)) = self.events.remove(i) {
            self.bytes = self
                .bytes
                .saturating_sub(raw.as_deref().map_or(0, str::len));
        }
    }
}

/// A kept argument as a JSON value (`null` when absent or not JSON).
fn parse_kept(raw: Option<&str>) -> Value {
    raw.and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use serde_json::value::RawValue;

    use super::Inbox;
    use crate::metrics::Registry;

    /// An event kept just before the session ends is still what a waiting
    /// `expect` gets: the close landing between the wait's look at the
    /// backlog and its look at the close once made it give up. A barrier
    /// starts both sides together, round after round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_kept_just_before_the_close_is_still_expected() {
        const ROUNDS: usize = 50_000;
        let plan = crate::run::plan::testing::connect_only(1, &Registry::new());
        let event = plan.event_id("joined").expect("the model's join reply");
        let inboxes: Arc<Vec<Inbox>> = Arc::new((0..ROUNDS).map(|_| Inbox::new(0)).collect());
        let barrier = Arc::new(Barrier::new(2));
        let reader = {
            let (inboxes, barrier) = (inboxes.clone(), barrier.clone());
            std::thread::spawn(move || {
                let arg = RawValue::from_string(r#"{"username":"ann"}"#.into()).expect("json");
                for inbox in inboxes.iter() {
                    barrier.wait();
                    inbox.keep(event, Some(&arg));
                    inbox.close();
                }
            })
        };
        for (round, inbox) in inboxes.iter().enumerate() {
            barrier.wait();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let got = inbox.expect(event, deadline, |_| true).await;
            assert!(got.is_some(), "round {round}: the kept event was missed");
        }
        reader.join().expect("reader");
    }
}
