//! What a virtual user's client does with everything it receives, inline in
//! the client's reader task: a checker over the [`RunPlan`]. Each frame's
//! event is looked up once ([`RunPlan::event_id`]); by its role the receiver
//! times the delivery ([`super::timing`]), checks it ([`super::checks`]) and
//! keeps the delivery ledger, and passes what the flow waits for (expected
//! events, acks) to the virtual user through its [`Inbox`].

use std::sync::Arc;
use std::time::Instant;

use chorus_protocol::pick::fields;
use serde_json::value::RawValue;

use crate::client::{CloseReason, Handler, Incoming, RxTime};
use crate::rules::Recipients;

use super::checks::{listed_hashes, snapshot_problems, PayloadChecks};
use super::clock::WallTime;
use super::closes;
use super::context::Context;
use super::correlate::Mark;
use super::inbox::Inbox;
use super::ledger::{
    name_hash, Arrival, ReceiverRecord, RoomSnapshotRecord, SnapshotRecord, Window,
};
use super::plan::{room_size_bucket, EventId, Role};
use super::rooms::{
    room_key, room_snapshot_names, room_snapshot_problems, Standing, MAX_ROOM_SEEN,
};
use super::timing::{record_delivery, UnmarkedMatch};
use super::violations::Kind;

/// Snapshots a shard could not keep for `chorus merge` (over its cap).
const SNAPSHOTS_DROPPED: &str = "ledger.snapshots_dropped";

/// The [`Handler`] of one virtual user's client.
pub struct Receiver {
    ctx: Arc<Context>,
    inbox: Arc<Inbox>,
    group: u32,
    /// The node it is connected to.
    node: u8,
    /// Whether it has seen its own join announcement.
    own_announce_seen: bool,
    ledger: ReceiverRecord,
    unmarked: UnmarkedMatch,
    checks: PayloadChecks,
    /// The name of its own latest join, read again only when it joins again.
    my_name: MyName,
    /// Whether its ledger record goes on from an earlier session (a reconnect).
    carried: bool,
    /// Whether a drop of this session is answered with a reconnect.
    reconnects: bool,
}

/// A copy of the inbox's join name, as of its `joins`-th join.
#[derive(Default)]
struct MyName {
    joins: u64,
    name: Option<String>,
}

impl Receiver {
    /// The handler for a client of group `group`.
    pub fn new(ctx: Arc<Context>, inbox: Arc<Inbox>, group: usize) -> Self {
        let carried = inbox.take_carried();
        let was_carried = carried.is_some();
        let ledger = carried.unwrap_or_else(|| ReceiverRecord {
            vu: inbox.vu,
            ..Default::default()
        });
        Self {
            node: ctx.plan.nodes.node_of(inbox.vu),
            carried: was_carried,
            reconnects: ctx.plan.rejoin(group).is_some(),
            ctx,
            inbox,
            group: u32::try_from(group).expect("fewer than 2^32 groups"),
            own_announce_seen: false,
            ledger,
            unmarked: UnmarkedMatch::default(),
            checks: PayloadChecks::default(),
            my_name: MyName::default(),
        }
    }

    fn vu(&self) -> u32 {
        self.inbox.vu
    }

    fn violation(&self, kind: Kind, event: EventId, expected: String, got: String, at: WallTime) {
        let name = &self.ctx.plan.event(event).name;
        self.ctx.violation(kind, self.vu(), name, expected, got, at);
    }

    /// Whether `who` is the name this client last joined with: one atomic
    /// read unless it joined again since the last call.
    fn is_me(&mut self, who: &str) -> bool {
        let joins = self.inbox.joins();
        if joins != self.my_name.joins {
            self.my_name = MyName {
                joins,
                name: self.inbox.join_name(),
            };
        }
        self.my_name.name.as_deref() == Some(who)
    }

    fn count_received(&self, id: EventId) {
        if let Some(counter) = self.ctx.plan.event(id).received {
            self.ctx.recorder.add(counter, 1);
        }
    }

    fn record_delivery(&self, id: EventId, at: WallTime, intended: WallTime, sent: WallTime) {
        let ctx = &*self.ctx;
        record_delivery(
            &ctx.recorder,
            ctx.plan.event(id),
            self.node,
            at,
            (intended, sent),
        );
    }

    fn on_event(&mut self, at: Instant, id: EventId, role: Role, arg: Option<&RawValue>) {
        let at = self.ctx.plan.clock.wall(at);
        if let Some((problem, got)) = self.checks.check(&self.ctx.plan, id, arg) {
            self.violation(Kind::Payload, id, problem, got, at);
        }
        match role {
            Role::Broadcast(i) => self.on_broadcast(id, i, arg, at),
            Role::JoinAnnounce | Role::LeaveAnnounce => {
                self.on_announce(id, role == Role::JoinAnnounce, arg, at)
            }
            Role::JoinReply => self.on_join_reply(id, arg, at),
            Role::Snapshot => {
                let started = self.inbox.connect_started.get();
                let listed = listed_hashes(arg);
                for (expected, got) in snapshot_problems(&self.ctx.roster, &listed, started, at) {
                    self.violation(Kind::Presence, id, expected, got, at);
                }
                // Users of other shards are checked by `chorus merge`.
                if self.ctx.plan.shard.count > 1 {
                    let record = SnapshotRecord {
                        vu: self.vu(),
                        started,
                        at,
                        names: listed,
                    };
                    if !self.ctx.roster.keep_snapshot(record) {
                        self.ctx.recorder.add_by_name(SNAPSHOTS_DROPPED, 1);
                    }
                }
            }
            Role::Error => self.ctx.recorder.add(self.ctx.plan.ids.errors_exception, 1),
            Role::RoomSnapshot => self.on_room_snapshot(id, arg, at),
            Role::RoomJoined | Role::RoomLeft => {
                self.on_room_announce(id, role == Role::RoomJoined, arg, at)
            }
        }
    }

    /// Where this client stands in the room named `room`, with a `leak`
    /// violation when it is surely not a member: it never joined the room
    /// in this session, or its own leave was confirmed before the event
    /// was sent (`sent`, for a marked event) or a delivery deadline before
    /// it arrived (an event that carries no send time). `None` when it is
    /// not in the room.
    fn room_standing(
        &self,
        id: EventId,
        room: &str,
        sent: Option<WallTime>,
        at: WallTime,
    ) -> Option<u32> {
        let standing = self
            .inbox
            .rooms
            .lock()
            .expect("rooms lock")
            .standing(name_hash(room));
        let w = Window::RUN;
        let leak = match standing {
            Standing::In(size) => return Some(size),
            Standing::Never => Some("never joined it".to_owned()),
            Standing::LeftAt(left) => match sent {
                Some(sent) => (sent > left.plus_us(w.margin_us)).then(|| {
                    format!(
                        "sent {:.3} s after its leave was confirmed",
                        sent.micros_since(left) as f64 / 1e6
                    )
                }),
                None => (at > left.plus_us(w.deadline_us)).then(|| {
                    format!(
                        "{:.3} s after its leave was confirmed",
                        at.micros_since(left) as f64 / 1e6
                    )
                }),
            },
        };
        if let Some(why) = leak {
            self.violation(
                Kind::Leak,
                id,
                format!("events of room {room:?} to its members only"),
                format!("one, to a client not in it ({why})"),
                at,
            );
        }
        None
    }

    fn on_room_announce(&mut self, id: EventId, join: bool, arg: Option<&RawValue>, at: WallTime) {
        self.count_received(id);
        let plan = &self.ctx.plan;
        let Some(rooms) = &plan.model.rooms else {
            return;
        };
        let [who, room] = arg.map_or([None, None], |a| {
            fields(
                a.get(),
                [plan.model.join.name_field.as_str(), rooms.field.as_str()],
            )
        });
        let Some(room) = room else { return };
        let who = who.as_deref().unwrap_or_default();
        let hash = name_hash(&room);
        if self.is_me(who) {
            let mut book = self.inbox.rooms.lock().expect("rooms lock");
            let members = match join {
                true => book.joined(hash, at),
                false => book.left(hash, at),
            };
            let standing = book.standing(hash);
            drop(book);
            match (join, members) {
                (true, Some(members)) => {
                    members.confirmed(self.vu(), at);
                    let log = self.ctx.roster.sender(self.vu());
                    log.rooms
                        .lock()
                        .expect("log lock")
                        .confirmed
                        .push((hash, at));
                }
                (true, None) if standing == Standing::Never => {
                    self.room_standing(id, &room, None, at);
                }
                _ => {}
            }
            return;
        }
        if self.room_standing(id, &room, None, at).is_none() {
            return;
        }
        let ledger = &mut self.ledger;
        if ledger.room_online.len() + ledger.room_offline.len() >= MAX_ROOM_SEEN {
            ledger.room_seen_full = true;
            return;
        }
        let key = room_key(hash, name_hash(who));
        match join {
            true => ledger.room_online.push(key),
            false => ledger.room_offline.push(key),
        }
    }

    fn on_room_snapshot(&mut self, id: EventId, arg: Option<&RawValue>, at: WallTime) {
        self.count_received(id);
        let ctx = self.ctx.clone();
        let Some(rooms) = &ctx.plan.model.rooms else {
            return;
        };
        let Some((Some(room), listed)) = arg
            .and_then(|a| room_snapshot_names(a.get(), &rooms.field, &rooms.snapshot.users_field))
        else {
            return;
        };
        if self.room_standing(id, &room, None, at).is_none() {
            return;
        }
        let hash = name_hash(&room);
        let members = ctx.rooms.room(hash);
        let started = members
            .members
            .lock()
            .expect("room lock")
            .iter()
            .find(|m| m.vu == self.vu())
            .map(|m| m.join_sent);
        let Some(started) = started else { return };
        for (expected, got) in room_snapshot_problems(&members, &listed, started, at, Window::RUN) {
            self.violation(Kind::Presence, id, format!("{room:?}: {expected}"), got, at);
        }
        // Members of other shards are checked by `chorus merge`.
        if ctx.plan.shard.count > 1 {
            let record = RoomSnapshotRecord {
                room: hash,
                snapshot: SnapshotRecord {
                    vu: self.vu(),
                    started: Some(started),
                    at,
                    names: listed,
                },
            };
            if !ctx.roster.keep_room_snapshot(record) {
                ctx.recorder.add_by_name(SNAPSHOTS_DROPPED, 1);
            }
        }
    }

    fn on_broadcast(&mut self, id: EventId, index: usize, arg: Option<&RawValue>, at: WallTime) {
        let plan = &self.ctx.plan;
        let rule = &plan.model.broadcasts[index];
        let (to, marked) = (rule.to, rule.mark_field.is_some());
        let room_field = match (plan.room_scoped[index], &plan.model.rooms) {
            (true, Some(rooms)) => rooms.field.as_str(),
            _ => "",
        };
        let [who, text, room] = arg.map_or([None, None, None], |a| {
            fields(
                a.get(),
                [
                    rule.name_field.as_str(),
                    rule.mark_field.as_deref().unwrap_or(""),
                    room_field,
                ],
            )
        });
        self.count_received(id);
        let mark = text.as_deref().and_then(Mark::find);
        let Some(room) = room else {
            if to == Recipients::Everyone {
                self.inbox.last_delivery.set(at);
            }
            match mark {
                Some(mark) => self.on_marked(id, to, mark, who.as_deref(), at),
                None if !marked => self.on_unmarked(id, to, who.as_deref(), at),
                None => {}
            }
            return;
        };
        // A room's broadcast: for its members only.
        let Some(size) = self.room_standing(id, &room, mark.map(|m| m.sent), at) else {
            return;
        };
        match mark {
            Some(mark) => {
                let plan = &self.ctx.plan;
                let buckets = &plan.event(id).room_size;
                if let Some(&by_size) = buckets.get(room_size_bucket(size.max(1))) {
                    if u64::from(mark.vu) < plan.vus {
                        self.ctx
                            .recorder
                            .record(by_size, at.micros_since(mark.intended));
                    }
                }
                self.on_marked(id, to, mark, who.as_deref(), at);
            }
            None if !marked => {
                let Some(who) = who.as_deref() else { return };
                if to == Recipients::Others && self.is_me(who) {
                    return self.violation(
                        Kind::Recipient,
                        id,
                        "never to its sender".into(),
                        format!("its own event in room {room:?}"),
                        at,
                    );
                }
                let key = room_key(name_hash(&room), name_hash(who));
                let ledger = &mut self.ledger;
                let full = ledger.room_typing_from.len() >= MAX_ROOM_SEEN;
                match ledger.room_typing_from.get_mut(&key) {
                    Some(n) => *n += 1,
                    None if !full => {
                        ledger.room_typing_from.insert(key, 1);
                    }
                    None => ledger.room_seen_full = true,
                }
            }
            None => {}
        }
    }

    fn on_announce(&mut self, id: EventId, join: bool, arg: Option<&RawValue>, at: WallTime) {
        self.count_received(id);
        self.inbox.last_delivery.set(at);
        let name_field = self.ctx.plan.model.join.name_field.as_str();
        let [who, _] = arg.map_or([None, None], |a| fields(a.get(), [name_field, ""]));
        // Settled by name at the end (senders may be in other shards);
        // timed here when the sender is in this process.
        let hash = name_hash(who.as_deref().unwrap_or_default());
        let roster = &self.ctx.roster;
        // The subject's number and, for a join, the join's times; for a leave, when it left.
        let subject = who.as_ref().and_then(|_| {
            roster.with_named(hash, |vu, log| {
                let times = match join {
                    true => log.join_times(),
                    false => log.left_at().map(|l| (l, l)),
                };
                (vu, times)
            })
        });
        let subject_vu = subject.map(|(vu, _)| vu);
        let times = subject.and_then(|(_, times)| times);
        if join && self.is_me(who.as_deref().unwrap_or_default()) {
            self.own_announce_seen = true;
        }
        if let Some((intended, sent)) = times.filter(|&(_, s)| s <= at) {
            self.record_delivery(id, at, intended, sent);
        }
        let seen = match join {
            true => &mut self.ledger.online_seen,
            false => &mut self.ledger.offline_seen,
        };
        seen.add_hashed(subject_vu, hash);
    }

    fn on_marked(
        &mut self,
        id: EventId,
        to: Recipients,
        mark: Mark,
        who: Option<&str>,
        at: WallTime,
    ) {
        // Senders are numbered below the run's count: a mark naming another
        // is ignored, so that a server cannot grow the per-sender map.
        if u64::from(mark.vu) >= self.ctx.plan.vus {
            return self.violation(
                Kind::Payload,
                id,
                "a mark that names a client of the run".into(),
                format!("vu {} of {}", mark.vu, self.ctx.plan.vus),
                at,
            );
        }
        self.record_delivery(id, at, mark.intended, mark.sent);
        let plan = &self.ctx.plan;
        if let Some(crossed) = plan
            .node_ids
            .crossed(self.node, plan.nodes.node_of(mark.vu))
        {
            self.ctx.recorder.add(crossed, 1);
        }
        if to == Recipients::Others && mark.vu == self.vu() {
            self.violation(
                Kind::Recipient,
                id,
                "never to its sender".into(),
                format!("its own message #{}", mark.seq),
                at,
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
                id,
                format!("vu {}'s messages in the order sent", mark.vu),
                format!("#{} after a later one", mark.seq),
                at,
            ),
            Arrival::Duplicate => self.violation(
                Kind::Duplicate,
                id,
                "each message once".into(),
                format!("vu {}'s #{} again", mark.vu, mark.seq),
                at,
            ),
            Arrival::InOrder | Arrival::Gap => {}
        }
        // Checked when the sender plays in this process (shards see only their own).
        let misnamed = self
            .ctx
            .roster
            .with_sender(mark.vu, |log| log.misnamed(who))
            .flatten();
        if let Some(expected) = misnamed {
            self.violation(
                Kind::Payload,
                id,
                format!("the sender's name {expected:?}"),
                format!("{who:?} on vu {}'s #{}", mark.vu, mark.seq),
                at,
            );
        }
    }

    fn on_unmarked(&mut self, id: EventId, to: Recipients, who: Option<&str>, at: WallTime) {
        let Some(who) = who else { return };
        if to == Recipients::Others && self.is_me(who) {
            self.violation(
                Kind::Recipient,
                id,
                "never to its sender".into(),
                "its own event".into(),
                at,
            );
            return;
        }
        let hash = name_hash(who);
        *self.ledger.typing_from.entry(hash).or_default() += 1;
        // Timed when the sender is in this process.
        let joined = self.inbox.connected_at.get();
        let unmarked = &mut self.unmarked;
        let times = self
            .ctx
            .roster
            .with_named(hash, |vu, log| unmarked.next(vu, log, joined))
            .flatten();
        if let Some((intended, sent)) = times.filter(|&(_, s)| s <= at) {
            self.record_delivery(id, at, intended, sent);
        }
    }

    fn on_join_reply(&mut self, id: EventId, arg: Option<&RawValue>, at: WallTime) {
        let Some(pending) = self.inbox.take_join_pending() else {
            return self.violation(
                Kind::Recipient,
                id,
                "only to a client that joined".into(),
                "a reply to no join".into(),
                at,
            );
        };
        self.ledger.join_replied = true;
        let ctx = &*self.ctx;
        ctx.recorder
            .record(ctx.plan.ids.join, at.micros_since(pending));
        if let (Some(from), Some(ids)) = (self.inbox.take_rejoin_from(), ctx.plan.ids.reconnects) {
            ctx.recorder.record(ids.latency, at.micros_since(from));
        }
        ctx.roster.sender(self.vu()).join_confirmed(at);
        let model = &ctx.plan.model;
        if !self.own_announce_seen {
            self.violation(
                Kind::Order,
                id,
                format!("after its own {}", model.join.announce.event),
                "before it".into(),
                at,
            );
        }
        let mine = self.inbox.join_name();
        let [who, _] = arg.map_or([None, None], |a| {
            fields(a.get(), [model.join.name_field.as_str(), ""])
        });
        if mine.is_some() && who.as_deref() != mine.as_deref() {
            self.violation(
                Kind::Payload,
                id,
                format!("the joining name {mine:?}"),
                format!("{who:?}"),
                at,
            );
        }
    }
}

impl Handler for Receiver {
    #[inline]
    fn on_frame(&mut self, rx: RxTime) {
        self.ctx.rx.record(&self.ctx.recorder, rx);
    }

    fn on_message(&mut self, received_at: Instant, message: Incoming<'_>) {
        match message {
            Incoming::Event { name, args, .. } => {
                let Some(id) = self.ctx.plan.event_id(name) else {
                    return;
                };
                let arg = args.first().copied();
                if let Some(role) = self.ctx.plan.event(id).role {
                    self.on_event(received_at, id, role, arg);
                }
                if self.ctx.plan.expected_by(self.group as usize, id) {
                    self.inbox.keep(id, arg);
                }
            }
            Incoming::Ack { id, .. } => self.inbox.ack_arrived(id, received_at),
        }
    }

    fn on_closed(&mut self, at: Instant, reason: CloseReason) {
        let at = self.ctx.plan.clock.wall(at);
        closes::count(&self.ctx.recorder, &reason);
        // A client that reconnects is not dropped yet: if every try fails,
        // its virtual user reports it.
        let reconnect = self.reconnects && closes::reconnects(&reason);
        if !closes::is_goodbye(&reason) && !reconnect {
            self.ctx.violation(
                Kind::Liveness,
                self.vu(),
                "disconnect",
                "the session to last until the client leaves".into(),
                reason.to_string(),
                at,
            );
        }
        self.ctx.roster.sender(self.vu()).left(at);
        let ended = self
            .inbox
            .rooms
            .lock()
            .expect("rooms lock")
            .end_session(at, Window::RUN.deadline_us);
        if !ended.left.is_empty() {
            let log = self.ctx.roster.sender(self.vu());
            let mut sends = log.rooms.lock().expect("log lock");
            for (room, members) in &ended.left {
                members.left(self.vu(), at);
                sends.leaves.push((*room, at));
            }
        }
        if ended.unconfirmed > 0 {
            if let Some(rooms) = &self.ctx.plan.model.rooms {
                self.ctx.violation(
                    Kind::Reply,
                    self.vu(),
                    &rooms.joined.event,
                    format!("its own {} after each {}", rooms.joined.event, rooms.join),
                    format!("{} joins never confirmed", ended.unconfirmed),
                    at,
                );
            }
        }
        self.ledger.room_windows.extend(ended.windows);
        let record = self.inbox.connected_at.get().map(|joined| {
            let mut record = std::mem::take(&mut self.ledger);
            record.vu = self.vu();
            if self.carried {
                record.add_window(joined, at);
            } else {
                record.joined_at = joined;
                record.left_at = at;
            }
            record.join_sent = self.inbox.joins() > 0;
            record.online_seen.seal();
            record.offline_seen.seal();
            for seen in [&mut record.room_online, &mut record.room_offline] {
                seen.sort_unstable();
                seen.dedup();
            }
            record
        });
        if reconnect {
            if self.inbox.set_away() {
                self.ctx.clients.reconnecting(1);
            }
            // The next session goes on with the record; the virtual user
            // hands it in when it stops reconnecting.
            self.inbox.dropped(
                at,
                record.or_else(|| self.carried.then(|| std::mem::take(&mut self.ledger))),
            );
        } else {
            self.inbox.close();
            if let Some(record) = record {
                self.ctx.roster.receiver_done(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::value::RawValue;

    use super::*;
    use crate::metrics::Registry;

    /// A receiver (vu 0) of a run of two virtual users, and its registry.
    fn receiver() -> (Receiver, Registry) {
        let registry = Registry::new();
        let plan = crate::run::plan::testing::connect_only(2, &registry);
        assert_eq!(plan.vus, 2);
        let ctx = Arc::new(Context::new(plan, &registry));
        (Receiver::new(ctx, Arc::new(Inbox::new(0)), 0), registry)
    }

    fn new_message(receiver: &mut Receiver, mark: Mark) {
        let mut message = String::from("hi");
        mark.append_to(&mut message);
        let payload = serde_json::json!({
            "username": "someone",
            "message": message,
            "timestamp": chorus_protocol::timestamp::format_iso(SystemTime::now()),
        });
        let raw = RawValue::from_string(payload.to_string()).expect("json");
        let args = [&*raw];
        receiver.on_message(
            Instant::now(),
            Incoming::Event {
                name: "newMessage",
                args: &args,
                ack_id: None,
            },
        );
    }

    fn event(receiver: &mut Receiver, name: &str, payload: serde_json::Value) {
        let raw = RawValue::from_string(payload.to_string()).expect("json");
        let args = [&*raw];
        receiver.on_message(
            Instant::now(),
            Incoming::Event {
                name,
                args: &args,
                ack_id: None,
            },
        );
    }

    fn room_message(receiver: &mut Receiver, room: &str, sent: WallTime) {
        let mut message = String::from("hi");
        let mark = Mark {
            vu: 1,
            seq: 0,
            intended: sent,
            sent,
        };
        mark.append_to(&mut message);
        let timestamp = chorus_protocol::timestamp::format_iso(SystemTime::now());
        let payload = serde_json::json!({
            "username": "someone", "message": message, "timestamp": timestamp, "room": room,
        });
        event(receiver, "newMessage", payload);
    }

    #[test]
    fn a_rooms_event_to_a_client_surely_not_in_it_is_a_leak_and_in_flight_ones_are_not() {
        let (mut receiver, registry) = receiver();
        let leaks = |registry: &Registry| {
            registry.collect_interval(Instant::now());
            registry
                .cumulative()
                .counter("violations.leak")
                .unwrap_or(0)
        };
        let now = receiver.ctx.plan.clock.now();
        room_message(&mut receiver, "r1", now);
        assert_eq!(leaks(&registry), 1, "never joined r1");
        let room = name_hash("r1");
        let members = receiver.ctx.rooms.room(room);
        let joined = receiver
            .inbox
            .rooms
            .lock()
            .unwrap()
            .join_sent(room, now, 50, || members);
        assert!(joined);
        room_message(&mut receiver, "r1", now);
        assert_eq!(leaks(&registry), 1, "joining: in flight");
        // Its own announcements confirm the join, then the leave (it is "me"
        // once it has sent a chat join under that name).
        receiver.inbox.join_sent(Some("me".into()), now);
        let announce = |r: &str| serde_json::json!({"room": r, "username": "me", "clientId": "x"});
        event(&mut receiver, "roomJoined", announce("r1"));
        room_message(&mut receiver, "r1", now);
        assert!(receiver.inbox.rooms.lock().unwrap().leave_sent(room, now));
        event(&mut receiver, "roomLeft", announce("r1"));
        assert_eq!(leaks(&registry), 1, "a member, then leaving");
        // Sent before the leave was confirmed: may have been handled before it.
        room_message(&mut receiver, "r1", now);
        assert_eq!(leaks(&registry), 1);
        let later = receiver.ctx.plan.clock.now().plus_us(1_000_000);
        room_message(&mut receiver, "r1", later);
        assert_eq!(
            leaks(&registry),
            2,
            "sent a second after its leave was confirmed"
        );
        event(&mut receiver, "roomJoined", announce("r2"));
        assert_eq!(
            leaks(&registry),
            3,
            "an announcement of a room it never joined"
        );
    }

    #[test]
    fn marks_naming_no_client_of_the_run_are_violations_and_kept_out_of_the_ledger() {
        let (mut receiver, registry) = receiver();
        let now = receiver.ctx.plan.clock.wall(Instant::now());
        let mark = |vu, seq| Mark {
            vu,
            seq,
            intended: now,
            sent: now,
        };
        new_message(&mut receiver, mark(1, 0));
        for vu in [2, 1_000, u32::MAX] {
            new_message(&mut receiver, mark(vu, 0));
        }
        assert_eq!(receiver.ledger.from.len(), 1, "only vu 1 has runs");
        assert!(receiver.ledger.from.contains_key(&1));
        registry.collect_interval(Instant::now());
        let count = |name: &str| registry.cumulative().counter(name).unwrap_or(0);
        assert_eq!(count("violations.payload"), 3, "one per fabricated sender");
        assert_eq!(
            count("deliveries.received.newMessage"),
            4,
            "all were received"
        );
    }
}
