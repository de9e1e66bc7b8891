//! What a virtual user's client does with everything it receives, inline in
//! the client's reader task: time every correlated broadcast, keep the
//! delivery ledger, and pass what the flow is waiting for (expected events,
//! acks) to the virtual user through its [`Inbox`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use crate::client::{CloseReason, Handler, Incoming};

use super::chat;
use super::context::Context;
use super::correlate::Mark;
use super::ledger::{Arrival, ReceiverRecord};

/// How many not-yet-expected events a client keeps for a later `expect` step.
const BACKLOG: usize = 256;
/// Marks an unset instant.
const UNSET: u64 = u64::MAX;

/// The answer to an ack: when it came and its arguments as JSON.
pub type AckAnswer = (Instant, String);

enum AckSlot {
    Waiting(oneshot::Sender<AckAnswer>),
    Arrived(AckAnswer),
}

/// What a client's reader task hands to its virtual user.
pub struct Inbox {
    /// When the client entered the namespace (µs since the epoch).
    pub connected_at_us: AtomicU64,
    /// Intended time of a `joinChat` still waiting for its `joined`.
    join_pending_us: AtomicU64,
    backlog: Mutex<VecDeque<(String, Value)>>,
    arrived: Notify,
    acks: Mutex<HashMap<u64, AckSlot>>,
    closed: AtomicBool,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            connected_at_us: AtomicU64::new(UNSET),
            join_pending_us: AtomicU64::new(UNSET),
            backlog: Mutex::default(),
            arrived: Notify::new(),
            acks: Mutex::default(),
            closed: AtomicBool::new(false),
        }
    }
}

impl Inbox {
    /// The virtual user sent `joinChat` meaning to at `intended_us`.
    pub fn join_sent(&self, intended_us: u64) {
        self.join_pending_us.store(intended_us, Relaxed);
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

    /// Takes the first kept event named `event` whose first argument `accept`s,
    /// waiting for one until `deadline`. `None` on timeout or once the session ended.
    pub async fn expect(
        &self,
        event: &str,
        deadline: tokio::time::Instant,
        accept: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        loop {
            let notified = self.arrived.notified();
            {
                let mut backlog = self.backlog.lock().expect("backlog lock");
                if let Some(i) = backlog.iter().position(|(n, v)| n == event && accept(v)) {
                    return backlog.remove(i).map(|(_, v)| v);
                }
            }
            if self.closed.load(Relaxed) {
                return None;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    fn keep(&self, name: &str, arg: Option<&RawValue>) {
        let value = arg
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or(Value::Null);
        let mut backlog = self.backlog.lock().expect("backlog lock");
        if backlog.len() == BACKLOG {
            backlog.pop_front();
        }
        backlog.push_back((name.to_owned(), value));
        drop(backlog);
        self.arrived.notify_waiters();
    }

    fn ack_arrived(&self, id: u64, answer: AckAnswer) {
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
}

/// Only the fields the driver correlates on, borrowed from the frame.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    message: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    username: Option<std::borrow::Cow<'a, str>>,
}

/// The [`Handler`] of one virtual user's client.
pub struct Receiver {
    ctx: Arc<Context>,
    inbox: Arc<Inbox>,
    expected: Arc<HashSet<String>>,
    ledger: ReceiverRecord,
    /// Per sender: how many of its typing events this client has matched.
    typing_seen: HashMap<u32, usize>,
}

impl Receiver {
    /// The handler for a client of group `group`.
    pub fn new(ctx: Arc<Context>, inbox: Arc<Inbox>, group: usize) -> Self {
        Self {
            expected: ctx.expected_events[group].clone(),
            ctx,
            inbox,
            ledger: ReceiverRecord::default(),
            typing_seen: HashMap::new(),
        }
    }

    fn record_delivery(&self, event: &'static str, at_us: u64, intended_us: u64, sent_us: u64) {
        let ids = &self.ctx.ids;
        let (corrected, uncorrected) = ids.delivery[event];
        let rec = &self.ctx.recorder;
        rec.record(corrected, at_us.saturating_sub(intended_us));
        rec.record(uncorrected, at_us.saturating_sub(sent_us));
    }

    fn on_event(&mut self, at: Instant, name: &str, args: &[&RawValue]) {
        let at_us = self.ctx.micros(at);
        let fields = args
            .first()
            .and_then(|a| serde_json::from_str::<Fields<'_>>(a.get()).ok());
        let ids = &self.ctx.ids;
        match name {
            chat::NEW_MESSAGE => {
                self.ctx.recorder.add(ids.received[chat::NEW_MESSAGE], 1);
                let Some(mark) = fields
                    .as_ref()
                    .and_then(|f| Mark::find(f.message.as_deref()?))
                else {
                    return;
                };
                self.record_delivery(chat::NEW_MESSAGE, at_us, mark.intended_us, mark.sent_us);
                match self
                    .ledger
                    .from
                    .entry(mark.vu)
                    .or_default()
                    .insert(mark.seq)
                {
                    Arrival::OutOfOrder => self.ctx.recorder.add(ids.violations_order, 1),
                    Arrival::Duplicate => self.ctx.recorder.add(ids.violations_duplicate, 1),
                    Arrival::InOrder | Arrival::Gap => {}
                }
            }
            chat::USER_TYPING | chat::USER_ONLINE | chat::USER_OFFLINE => {
                let event = chat::BROADCASTS
                    .iter()
                    .find(|e| **e == name)
                    .expect("a broadcast");
                self.ctx.recorder.add(ids.received[event], 1);
                let Some((vu, log)) = fields
                    .as_ref()
                    .and_then(|f| self.ctx.roster.by_name(f.username.as_deref()?))
                else {
                    return;
                };
                let times = match *event {
                    chat::USER_ONLINE => log.join_times(),
                    chat::USER_OFFLINE => log.leave_time().map(|t| (t, t)),
                    _ => {
                        // The k-th typing event seen from a sender is its next one
                        // sent after this client entered the namespace.
                        let typing = log.typing.lock().expect("typing lock");
                        let joined = self.inbox.connected_at_us.load(Relaxed);
                        let seen = self
                            .typing_seen
                            .entry(vu)
                            .or_insert_with(|| typing.partition_point(|&(_, sent)| sent < joined));
                        let times = typing.get(*seen).copied();
                        *seen += 1;
                        times
                    }
                };
                if let Some((intended, sent)) = times.filter(|&(_, sent)| sent <= at_us) {
                    self.record_delivery(event, at_us, intended, sent);
                }
            }
            chat::JOINED => {
                let pending = self.inbox.join_pending_us.swap(UNSET, Relaxed);
                if pending != UNSET {
                    self.ctx
                        .recorder
                        .record(ids.join, at_us.saturating_sub(pending));
                }
            }
            chat::EXCEPTION => self.ctx.recorder.add(ids.errors_exception, 1),
            _ => {}
        }
    }
}

impl Handler for Receiver {
    fn on_message(&mut self, received_at: Instant, message: Incoming<'_>) {
        match message {
            Incoming::Event { name, args, .. } => {
                self.on_event(received_at, name, args);
                if self.expected.contains(name) {
                    self.inbox.keep(name, args.first().copied());
                }
            }
            Incoming::Ack { id, args } => {
                let json = format!(
                    "[{}]",
                    args.iter().map(|a| a.get()).collect::<Vec<_>>().join(",")
                );
                self.inbox.ack_arrived(id, (received_at, json));
            }
        }
    }

    fn on_closed(&mut self, at: Instant, reason: CloseReason) {
        let label = match reason {
            CloseReason::ClientDisconnect => "client",
            CloseReason::NamespaceDisconnect => "server_namespace",
            CloseReason::ConnectRefused(_) => "refused",
            CloseReason::ServerClosed { .. } => "server_closed",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Transport(_) => "transport_error",
            CloseReason::Io(_) => "io_error",
        };
        self.ctx
            .recorder
            .add_by_name(&format!("disconnects.{label}"), 1);
        self.inbox.closed.store(true, Relaxed);
        self.inbox.arrived.notify_waiters();
        let joined = self.inbox.connected_at_us.load(Relaxed);
        if joined != UNSET {
            let mut record = std::mem::take(&mut self.ledger);
            record.joined_at_us = joined;
            record.left_at_us = self.ctx.micros(at);
            self.ctx.roster.receiver_done(record);
        }
    }
}
