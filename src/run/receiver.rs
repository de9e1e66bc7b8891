//! What a virtual user's client does with everything it receives, inline in
//! the client's reader task: time every delivery, check it against the
//! protocol model, keep the delivery ledger, and pass what the flow waits for
//! (expected events, acks) to the virtual user through its [`Inbox`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use crate::client::{CloseReason, Handler, Incoming};
use crate::rules::Recipients;

use super::context::{Context, Role};
use super::correlate::Mark;
use super::ledger::{name_hash, Arrival, ReceiverRecord};
use super::violations::Kind;

/// How many not-yet-expected events a client keeps for a later `expect` step.
const BACKLOG: usize = 256;
/// How many bytes of their JSON it keeps at most (the oldest go first), so
/// that a server sending large events cannot grow the driver without bound.
/// Kept as text: parsed, a large array takes 16 to 32 times its text.
const BACKLOG_BYTES: usize = 16 << 20;
/// Every event's payload is checked this many times per client, then one in
/// [`CHECK_EVERY`], so checking stays cheap at hundreds of thousands of deliveries a second.
const CHECK_FIRST: u32 = 100;
/// See [`CHECK_FIRST`].
const CHECK_EVERY: u32 = 16;
/// Marks an unset instant.
const UNSET: u64 = u64::MAX;

/// The answer to an ack: when it came and its arguments as JSON.
pub type AckAnswer = (Instant, String);

enum AckSlot {
    Waiting(oneshot::Sender<AckAnswer>),
    Arrived(AckAnswer),
}

/// What a client's reader task and its virtual user share.
pub struct Inbox {
    /// The virtual user.
    pub vu: u32,
    /// When the client started to connect (µs since the epoch).
    pub connect_started_us: AtomicU64,
    /// When the client entered the namespace (µs since the epoch).
    pub connected_at_us: AtomicU64,
    /// When it last received a delivery owed to everyone (for the liveness watchdog).
    pub last_delivery_us: AtomicU64,
    /// Whether the watchdog already reported this client stalled.
    pub reported_stalled: AtomicBool,
    /// Whether its session has ended.
    pub closed: AtomicBool,
    /// Intended time of a join still waiting for its reply.
    join_pending_us: AtomicU64,
    /// Whether it ever sent a join.
    join_sent: AtomicBool,
    /// The name it joined with.
    join_name: Mutex<Option<String>>,
    backlog: Mutex<Backlog>,
    arrived: Notify,
    acks: Mutex<HashMap<u64, AckSlot>>,
}

impl Inbox {
    /// The inbox of virtual user `vu`.
    pub fn new(vu: u32) -> Self {
        Self {
            vu,
            connect_started_us: AtomicU64::new(UNSET),
            connected_at_us: AtomicU64::new(UNSET),
            last_delivery_us: AtomicU64::new(UNSET),
            reported_stalled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            join_pending_us: AtomicU64::new(UNSET),
            join_sent: AtomicBool::new(false),
            join_name: Mutex::new(None),
            backlog: Mutex::default(),
            arrived: Notify::new(),
            acks: Mutex::default(),
        }
    }

    /// The virtual user sent a join as `name`, meaning to at `intended_us`.
    pub fn join_sent(&self, name: Option<String>, intended_us: u64) {
        *self.join_name.lock().expect("name lock") = name;
        self.join_sent.store(true, Relaxed);
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
                let found = backlog.events.iter().enumerate().find_map(|(i, (n, raw))| {
                    let value = (n == event).then(|| parse_kept(raw.as_deref()))?;
                    accept(&value).then_some((i, value))
                });
                if let Some((i, value)) = found {
                    backlog.remove(i);
                    return Some(value);
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
        let raw: Option<Box<str>> = arg.map(|a| a.get().into());
        let size = raw.as_deref().map_or(0, str::len);
        let mut backlog = self.backlog.lock().expect("backlog lock");
        while !backlog.events.is_empty()
            && (backlog.events.len() == BACKLOG || backlog.bytes + size > BACKLOG_BYTES)
        {
            backlog.remove(0);
        }
        backlog.bytes += size;
        backlog.events.push_back((name.to_owned(), raw));
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

/// The events kept for later `expect` steps: name and first argument as JSON text.
#[derive(Default)]
struct Backlog {
    events: VecDeque<(String, Option<Box<str>>)>,
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

/// A JSON string, borrowed from the input when it has no escapes; any other
/// JSON value is skipped and read as `None`.
struct MaybeStr<'de>(Option<Cow<'de, str>>);

impl<'de> serde::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Two string fields of a JSON object, borrowed when unescaped, found without
/// building the whole object.
fn two_fields<'a>(json: &'a str, names: [&str; 2]) -> [Option<Cow<'a, str>>; 2] {
    struct Pick<'n>([&'n str; 2]);
    impl<'de> Visitor<'de> for Pick<'_> {
        type Value = [Option<Cow<'de, str>>; 2];
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = [None, None];
            while let Some(MaybeStr(key)) = map.next_key::<MaybeStr<'de>>()? {
                match self
                    .0
                    .iter()
                    .position(|n| !n.is_empty() && key.as_deref() == Some(*n))
                {
                    Some(i) => out[i] = map.next_value::<MaybeStr<'de>>()?.0,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(Pick(names)).unwrap_or([None, None])
}

/// The [`Handler`] of one virtual user's client.
pub struct Receiver {
    ctx: Arc<Context>,
    inbox: Arc<Inbox>,
    expected: Arc<HashSet<String>>,
    ledger: ReceiverRecord,
    /// Per sender: how many of its unmarked broadcasts this client has matched.
    unmarked_seen: HashMap<u32, usize>,
    /// Whether it has seen its own join announcement.
    own_announce_seen: bool,
    /// Payload checks per event name, for sampling.
    checks: HashMap<String, u32>,
}

impl Receiver {
    /// The handler for a client of group `group`.
    pub fn new(ctx: Arc<Context>, inbox: Arc<Inbox>, group: usize) -> Self {
        let ledger = ReceiverRecord {
            vu: inbox.vu,
            ..Default::default()
        };
        Self {
            expected: ctx.expected_events[group].clone(),
            ctx,
            inbox,
            ledger,
            unmarked_seen: HashMap::new(),
            own_announce_seen: false,
            checks: HashMap::new(),
        }
    }

    fn vu(&self) -> u32 {
        self.inbox.vu
    }

    fn violation(&self, kind: Kind, event: &str, expected: String, got: String, at_us: u64) {
        self.ctx
            .violation(kind, self.vu(), event, expected, got, at_us);
    }

    fn record_delivery(&self, event: &str, at_us: u64, intended_us: u64, sent_us: u64) {
        if let Some(&(corrected, uncorrected)) = self.ctx.ids.delivery.get(event) {
            let rec = &self.ctx.recorder;
            rec.record(corrected, at_us.saturating_sub(intended_us));
            rec.record(uncorrected, at_us.saturating_sub(sent_us));
        }
    }

    fn count_received(&self, event: &str) {
        if let Some(&id) = self.ctx.ids.received.get(event) {
            self.ctx.recorder.add(id, 1);
        }
    }

    /// Checks the payload against the model's schema (every one at first, then a sample).
    fn check_payload(&mut self, name: &str, arg: Option<&RawValue>, at_us: u64) {
        if !self.ctx.model.payloads.contains_key(name) {
            return;
        }
        let n = match self.checks.get_mut(name) {
            Some(n) => n,
            None => self.checks.entry(name.to_owned()).or_default(),
        };
        *n += 1;
        if *n > CHECK_FIRST && *n % CHECK_EVERY != 0 {
            return;
        }
        let value = arg.and_then(|a| serde_json::from_str::<Value>(a.get()).ok());
        if let Some(problem) =
            self.ctx
                .model
                .payload_problem(name, value.as_ref(), SystemTime::now())
        {
            let got = arg.map_or("no payload".to_owned(), |a| a.get().to_owned());
            self.violation(Kind::Payload, name, problem, got, at_us);
        }
    }

    fn on_event(&mut self, at: Instant, name: &str, args: &[&RawValue]) {
        let Some(&role) = self.ctx.roles.get(name) else {
            return;
        };
        let at_us = self.ctx.micros(at);
        let arg = args.first().copied();
        self.check_payload(name, arg, at_us);
        let model = &self.ctx.model;
        match role {
            Role::Broadcast(i) => {
                let rule = &model.broadcasts[i];
                self.count_received(name);
                if rule.to == Recipients::Everyone {
                    self.inbox.last_delivery_us.store(at_us, Relaxed);
                }
                let [who, text] = arg.map_or([None, None], |a| {
                    two_fields(
                        a.get(),
                        [
                            rule.name_field.as_str(),
                            rule.mark_field.as_deref().unwrap_or(""),
                        ],
                    )
                });
                match text.as_deref().and_then(Mark::find) {
                    Some(mark) => self.on_marked(name, rule.to, mark, who.as_deref(), at_us),
                    None if rule.mark_field.is_none() => {
                        self.on_unmarked(name, rule.to, who.as_deref(), at_us)
                    }
                    None => {}
                }
            }
            Role::JoinAnnounce | Role::LeaveAnnounce => {
                self.count_received(name);
                self.inbox.last_delivery_us.store(at_us, Relaxed);
                let [who, _] = arg.map_or([None, None], |a| {
                    two_fields(a.get(), [model.join.name_field.as_str(), ""])
                });
                // Settled by name at the end (senders may be in other shards);
                // timed here when the sender is in this process.
                let subject = who.as_deref().and_then(|w| self.ctx.roster.by_name(w));
                let subject_vu = subject.as_ref().map(|(vu, _)| *vu);
                let who = who.unwrap_or_default();
                if role == Role::JoinAnnounce {
                    let mine = self.inbox.join_name.lock().expect("name lock").clone();
                    if mine.as_deref() == Some(&*who) {
                        self.own_announce_seen = true;
                    }
                    let times = subject.and_then(|(_, log)| log.join_times());
                    if let Some((intended, sent)) = times.filter(|&(_, s)| s <= at_us) {
                        self.record_delivery(name, at_us, intended, sent);
                    }
                    self.ledger.online_seen.add(subject_vu, &who);
                } else {
                    let left = subject.and_then(|(_, log)| log.left_at());
                    if let Some(left) = left.filter(|&l| l <= at_us) {
                        self.record_delivery(name, at_us, left, left);
                    }
                    self.ledger.offline_seen.add(subject_vu, &who);
                }
            }
            Role::JoinReply => self.on_join_reply(name, arg, at_us),
            Role::Snapshot => self.check_snapshot(name, arg, at_us),
            Role::Error => self.ctx.recorder.add(self.ctx.ids.errors_exception, 1),
        }
    }

    fn on_marked(
        &mut self,
        event: &str,
        to: Recipients,
        mark: Mark,
        who: Option<&str>,
        at_us: u64,
    ) {
        self.record_delivery(event, at_us, mark.intended_us, mark.sent_us);
        if to == Recipients::Others && mark.vu == self.vu() {
            self.violation(
                Kind::Recipient,
                event,
                "never to its sender".into(),
                format!("its own message #{}", mark.seq),
                at_us,
            );
        }
        match self
            .ledger
            .from
            .entry(mark.vu)
            .or_default()
            .insert(mark.seq)
        {
            Arrival::OutOfOrder => self.violation(
                Kind::Order,
                event,
                format!("vu {}'s messages in the order sent", mark.vu),
                format!("#{} after a later one", mark.seq),
                at_us,
            ),
            Arrival::Duplicate => self.violation(
                Kind::Duplicate,
                event,
                "each message once".into(),
                format!("vu {}'s #{} again", mark.vu, mark.seq),
                at_us,
            ),
            Arrival::InOrder | Arrival::Gap => {}
        }
        // Checked when the sender plays in this process (shards see only their own).
        let sender_name = self.ctx.roster.get(mark.vu).and_then(|log| log.name());
        if let (Some(expected), got) = (sender_name, who) {
            if got != Some(expected.as_str()) {
                self.violation(
                    Kind::Payload,
                    event,
                    format!("the sender's name {expected:?}"),
                    format!("{got:?} on vu {}'s #{}", mark.vu, mark.seq),
                    at_us,
                );
            }
        }
    }

    fn on_unmarked(&mut self, event: &str, to: Recipients, who: Option<&str>, at_us: u64) {
        let Some(who) = who else { return };
        let mine = self.inbox.join_name.lock().expect("name lock").clone();
        if to == Recipients::Others && mine.as_deref() == Some(who) {
            self.violation(
                Kind::Recipient,
                event,
                "never to its sender".into(),
                "its own event".into(),
                at_us,
            );
            return;
        }
        *self.ledger.typing_from.entry(name_hash(who)).or_default() += 1;
        // Timed when the sender is in this process.
        let Some((vu, log)) = self.ctx.roster.by_name(who) else {
            return;
        };
        // Matched in order: the k-th seen from a sender is its next one sent
        // after this client entered the namespace.
        let times = {
            let sent = log.typing.lock().expect("log lock");
            let joined = self.inbox.connected_at_us.load(Relaxed);
            let seen = self
                .unmarked_seen
                .entry(vu)
                .or_insert_with(|| sent.partition_point(|&(_, s)| s < joined));
            let times = sent.get(*seen).copied();
            *seen += 1;
            times
        };
        if let Some((intended, sent)) = times.filter(|&(_, s)| s <= at_us) {
            self.record_delivery(event, at_us, intended, sent);
        }
    }

    fn on_join_reply(&mut self, event: &str, arg: Option<&RawValue>, at_us: u64) {
        let pending = self.inbox.join_pending_us.swap(UNSET, Relaxed);
        if pending == UNSET {
            return self.violation(
                Kind::Recipient,
                event,
                "only to a client that joined".into(),
                "a reply to no join".into(),
                at_us,
            );
        }
        self.ledger.join_replied = true;
        self.ctx
            .recorder
            .record(self.ctx.ids.join, at_us.saturating_sub(pending));
        self.ctx.roster.sender(self.vu()).join_confirmed(at_us);
        if !self.own_announce_seen {
            self.violation(
                Kind::Order,
                event,
                format!("after its own {}", self.ctx.model.join.announce.event),
                "before it".into(),
                at_us,
            );
        }
        let mine = self.inbox.join_name.lock().expect("name lock").clone();
        let [who, _] = arg.map_or([None, None], |a| {
            two_fields(a.get(), [self.ctx.model.join.name_field.as_str(), ""])
        });
        if mine.is_some() && who.as_deref() != mine.as_deref() {
            self.violation(
                Kind::Payload,
                event,
                format!("the joining name {mine:?}"),
                format!("{who:?}"),
                at_us,
            );
        }
    }

    /// The snapshot must hold every client surely joined when this one
    /// connected, and none surely gone by then.
    fn check_snapshot(&self, event: &str, arg: Option<&RawValue>, at_us: u64) {
        let entries: Vec<Value> = arg
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or_default();
        let names: HashSet<&str> = entries.iter().filter_map(|e| e.get(1)?.as_str()).collect();
        let started = self.inbox.connect_started_us.load(Relaxed);
        let margin = super::LEDGER_MARGIN.as_micros() as u64;
        for (vu, log) in self.ctx.roster.joined_senders() {
            let Some(name) = log.name() else { continue };
            let surely_in = log
                .join_confirmed_at()
                .is_some_and(|c| c + margin < started)
                && log.left_at().is_none_or(|l| l > at_us);
            let deadline = super::DELIVERY_DEADLINE.as_micros() as u64;
            let surely_out = log.left_at().is_some_and(|l| l + deadline < started);
            if surely_in && !names.contains(name.as_str()) {
                self.violation(
                    Kind::Presence,
                    event,
                    format!("to list {name:?} (vu {vu}, joined before)"),
                    "not listed".into(),
                    at_us,
                );
            } else if surely_out && names.contains(name.as_str()) {
                self.violation(
                    Kind::Presence,
                    event,
                    format!("not to list {name:?} (vu {vu}, gone)"),
                    "listed".into(),
                    at_us,
                );
            }
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
        let at_us = self.ctx.micros(at);
        let label = match &reason {
            CloseReason::ClientDisconnect => "client",
            CloseReason::NamespaceDisconnect => "server_namespace",
            CloseReason::ConnectRefused(_) => "refused",
            CloseReason::ServerClosed { .. } => "server_closed",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Transport(_) => "transport_error",
            CloseReason::Io(_) => "io_error",
            CloseReason::Limit(_) => "limit",
        };
        self.ctx
            .recorder
            .add_by_name(&format!("disconnects.{label}"), 1);
        if let CloseReason::Limit(breach) = &reason {
            // A named error: `errors.limit.ws_frame_size`, …
            let name = format!("errors.{}", breach.limit.metric_name());
            self.ctx.recorder.add_by_name(&name, 1);
        }
        if !matches!(
            reason,
            CloseReason::ClientDisconnect | CloseReason::NamespaceDisconnect
        ) {
            self.violation(
                Kind::Liveness,
                "disconnect",
                "the session to last until the client leaves".into(),
                reason.to_string(),
                at_us,
            );
        }
        self.inbox.closed.store(true, Relaxed);
        self.inbox.arrived.notify_waiters();
        self.ctx.roster.sender(self.vu()).left(at_us);
        let joined = self.inbox.connected_at_us.load(Relaxed);
        if joined != UNSET {
            let mut record = std::mem::take(&mut self.ledger);
            record.vu = self.vu();
            record.joined_at_us = joined;
            record.left_at_us = at_us;
            record.join_sent = self.inbox.join_sent.load(Relaxed);
            record.online_seen.seal();
            record.offline_seen.seal();
            self.ctx.roster.receiver_done(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_two_fields_without_building_the_object() {
        let [a, b] = two_fields(
            r#"{"x":{"y":[1]},"username":"ann","message":"hi \"you\""}"#,
            ["username", "message"],
        );
        assert_eq!(a.as_deref(), Some("ann"));
        assert!(matches!(a, Some(Cow::Borrowed(_))));
        assert_eq!(b.as_deref(), Some("hi \"you\""));
        assert_eq!(two_fields("[1,2]", ["a", "b"]), [None, None]);
        assert_eq!(two_fields(r#"{"a":5}"#, ["a", "b"]), [None, None]);
    }
}
