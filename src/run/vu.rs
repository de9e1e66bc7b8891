//! One virtual user: a client playing its group's flow.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::Value;
use tokio::sync::watch;

use crate::client::{Client, ClientConfig, ClientError};
use crate::scenario::{json_contains, Expect, TokenPlace, VuState};

use super::context::Context;
use super::correlate::Mark;
use super::inbox::Inbox;
use super::ledger::{name_hash, NEVER_SENT};
use super::plan::{
    EmitKind, PlanStep, PlannedEmit, PlannedExpect, PlannedLoop, PlannedRoom, Rejoin,
};
use super::receiver::Receiver;
use super::rooms::NO_ROOM;
use super::roster::SenderLog;
use super::violations::Kind;

/// Where a virtual user is told the run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Play the flow.
    Running,
    /// Stop the flow but stay connected, so in-flight deliveries still arrive.
    StopSending,
    /// Disconnect now.
    Disconnect,
}

/// Why a flow stopped early.
enum Halt {
    /// A step failed (counted already); the flow cannot go on.
    Failed,
}

type StepResult = Result<(), Halt>;

/// Where a send was entered in its sender's log.
#[derive(Debug, Clone, Copy)]
enum Logged {
    /// A correlated message, by sequence number.
    Message(usize),
    /// An uncorrelated broadcast cause, by its index.
    Typing(usize),
}

/// A virtual user.
pub struct Vu {
    ctx: Arc<Context>,
    vu: u32,
    group: usize,
    state: VuState,
    rng: SmallRng,
    inbox: Arc<Inbox>,
    log: Arc<SenderLog>,
    client: Option<Client>,
    /// How it comes back after a drop, if it does.
    rejoin: Option<Rejoin>,
    /// Playing the connect and join again after a drop: a failed connect is
    /// a failed try (`reconnects.failed`), not a connect error.
    rejoining: bool,
}

impl Vu {
    /// Virtual user number `vu` of group `group`.
    pub fn new(ctx: Arc<Context>, vu: u32, group: usize) -> Self {
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let state = ctx
            .plan
            .scenario
            .vu_state(u64::from(vu), ctx.plan.tokens.as_ref(), &mut rng)
            .unwrap_or_else(|_| VuState::new(u64::from(vu)));
        Self {
            log: ctx.roster.sender(vu),
            rejoin: ctx.plan.rejoin(group),
            rejoining: false,
            ctx,
            vu,
            group,
            state,
            rng,
            inbox: Arc::new(Inbox::new(vu)),
            client: None,
        }
    }

    /// Plays the flow until it ends or the run says stop, then disconnects.
    pub async fn run(mut self, mut stage: watch::Receiver<Stage>) {
        let ctx = self.ctx.clone();
        let flow = ctx.plan.flow(self.group);
        let stopped = tokio::select! {
            _ = self.steps(flow) => false,
            _ = stage.wait_for(|s| *s >= Stage::StopSending) => true,
        };
        if stopped {
            // Stay connected until told to leave, so the ledger sees the drain.
            let _ = stage.wait_for(|s| *s >= Stage::Disconnect).await;
        }
        // A drop the run ended before it was answered, or while the client
        // was trying to come back: dropped, as a client that does not reconnect.
        if self.inbox.back() {
            ctx.clients.reconnecting(-1);
            self.dropped_for_good("dropped; the run ended before it came back".into());
            self.inbox.close();
        }
        self.disconnect().await;
        // The ledger record of a client that dropped and did not come back.
        if let Some(record) = self.inbox.take_carried() {
            ctx.roster.receiver_done(record);
        }
    }

    async fn steps(&mut self, steps: &[PlanStep]) -> StepResult {
        self.play(steps, None).await
    }

    /// Plays `steps` in order, the first with `intended` as its intended start.
    async fn play(&mut self, steps: &[PlanStep], mut intended: Option<Instant>) -> StepResult {
        for step in steps {
            let intended = intended.take();
            // A loop's own steps are guarded one by one.
            if self.rejoin.is_none() || matches!(step, PlanStep::Loop(_)) {
                self.step(step, intended).await?;
            } else {
                self.guarded(step, intended).await?;
            }
        }
        Ok(())
    }

    /// One step of a client that reconnects: when the session drops during
    /// it (or it failed because it did), the step is given up, the client
    /// comes back, and the flow goes on with the next step.
    async fn guarded(&mut self, step: &PlanStep, intended: Option<Instant>) -> StepResult {
        let inbox = self.inbox.clone();
        let done = tokio::select! {
            biased;
            _ = inbox.wait_dropped() => None,
            r = self.step(step, intended) => Some(r),
        };
        match done {
            Some(result) if inbox.dropped_at().is_none() => result,
            _ => self.come_back().await,
        }
    }

    /// After a drop: tries to connect and join again (the flow's connect
    /// and join steps, pauses left out) with the group's backoff. Out of
    /// tries, the client is dropped for good, as one that does not reconnect.
    async fn come_back(&mut self) -> StepResult {
        let ctx = self.ctx.clone();
        let Some(rejoin) = self.rejoin else {
            return Err(Halt::Failed);
        };
        let ids = ctx
            .plan
            .ids
            .reconnects
            .expect("registered when a group reconnects");
        let prefix = &ctx.plan.flow(self.group)[..rejoin.prefix];
        if self.client.take().is_some() {
            ctx.clients.disconnected();
        }
        let mut back = false;
        for k in 0..rejoin.policy.attempts {
            tokio::time::sleep(rejoin.policy.backoff(k, &mut self.rng)).await;
            ctx.recorder.add(ids.attempted, 1);
            self.inbox.reopen();
            self.log.returning();
            self.rejoining = true;
            let mut ok = true;
            for step in prefix {
                if matches!(step, PlanStep::Think(_) | PlanStep::Listen(_)) {
                    continue;
                }
                if self.step(step, None).await.is_err() {
                    ok = false;
                    break;
                }
            }
            self.rejoining = false;
            if ok && self.inbox.dropped_at().is_none() {
                back = true;
                break;
            }
            ctx.recorder.add(ids.failed, 1);
            // Connected but not joined (no drop): leave, the next try starts afresh.
            if let Some(client) = self.client.take() {
                ctx.clients.disconnected();
                let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
            }
            self.inbox.close();
        }
        if self.inbox.back() {
            ctx.clients.reconnecting(-1);
        }
        if back {
            ctx.recorder.add(ids.succeeded, 1);
            // Timed here when the flow does not wait for the join's reply.
            if let Some(from) = self.inbox.take_rejoin_from() {
                let now = ctx.plan.clock.now();
                ctx.recorder.record(ids.latency, now.micros_since(from));
            }
            return Ok(());
        }
        ctx.recorder.add(ids.exhausted, 1);
        self.dropped_for_good(format!(
            "dropped, and {} reconnect attempts failed",
            rejoin.policy.attempts
        ));
        if let Some(record) = self.inbox.take_carried() {
            ctx.roster.receiver_done(record);
        }
        Err(Halt::Failed)
    }

    /// A connect the flow expects to be refused: a CONNECT_ERROR whose
    /// payload matches is `connections.refused` and
    /// `connections.refused_expected`, not an error; one that does not match
    /// is a failed connect (`errors.connect.refused.<code>`); a connect that
    /// succeeds is `errors.not_refused`.
    async fn connect_refused(&mut self, expect: &Expect) -> StepResult {
        let ctx = self.ctx.clone();
        let config = self.client_config();
        let wanted = expect
            .matches
            .as_ref()
            .map(|m| m.render(&self.state, &mut self.rng));
        ctx.recorder.add(ctx.plan.ids.connections, 1);
        let receiver = Receiver::new(ctx.clone(), self.inbox.clone(), self.group);
        let err = match Client::connect(&config, receiver).await {
            Ok((client, _)) => {
                // Registered on first use, as errors are: most runs never expect a refusal.
                ctx.recorder.add_by_name("errors.not_refused", 1);
                let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
                return Err(Halt::Failed);
            }
            Err(err) => err,
        };
        if let ClientError::ConnectRefused { data, .. } = &err {
            ctx.recorder.add(ctx.plan.ids.connections_refused, 1);
            let payload: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if wanted.as_ref().is_none_or(|w| json_contains(&payload, w)) {
                ctx.recorder.add_by_name("connections.refused_expected", 1);
                for capture in &expect.capture {
                    if let Some(value) = capture.extract(&payload) {
                        self.state.set(capture.var.clone(), value);
                    }
                }
                return Ok(());
            }
        }
        ctx.clients.failures.record(&err);
        Err(Halt::Failed)
    }

    /// One step. Boxed because loops nest; each step gets a box of its own
    /// size, so a client listening for an hour does not hold the space of a
    /// connect.
    fn step<'a>(
        &'a mut self,
        step: &'a PlanStep,
        intended: Option<Instant>,
    ) -> Pin<Box<dyn Future<Output = StepResult> + Send + 'a>> {
        match step {
            PlanStep::Connect => Box::pin(self.connect()),
            PlanStep::ConnectRefused(expect) => Box::pin(self.connect_refused(expect)),
            PlanStep::Emit(emit) => Box::pin(self.emit(emit, intended)),
            PlanStep::Expect(expect) => Box::pin(self.expect(expect)),
            PlanStep::Think(think) => Box::pin(pause(think.sample(&mut self.rng))),
            PlanStep::Listen(d) => Box::pin(pause(*d)),
            PlanStep::Loop(lp) => Box::pin(self.run_loop(lp)),
            PlanStep::Disconnect => Box::pin(async move {
                self.disconnect().await;
                Ok(())
            }),
            PlanStep::Room(room) => Box::pin(self.room(room)),
        }
    }

    async fn connect(&mut self) -> StepResult {
        let ctx = self.ctx.clone();
        let config = self.client_config();
        ctx.recorder.add(ctx.plan.ids.connections, 1);
        self.inbox.connect_started.set(ctx.plan.clock.now());
        let receiver = Receiver::new(ctx.clone(), self.inbox.clone(), self.group);
        match Client::connect(&config, receiver).await {
            Ok((client, timings)) => {
                self.inbox.connected_at.set(ctx.plan.clock.now());
                let ids = &ctx.plan.ids;
                ctx.recorder.record_duration(ids.connect, timings.total());
                let phases = ids.connect_phases;
                ctx.recorder.record_duration(phases.tcp, timings.tcp);
                if let Some(tls) = timings.tls {
                    ctx.recorder.record_duration(phases.tls, tls);
                }
                ctx.recorder
                    .record_duration(phases.handshake, timings.handshake + timings.open);
                ctx.recorder
                    .record_duration(phases.namespace, timings.namespace);
                ctx.recorder.add(ctx.plan.ids.connections_ok, 1);
                let nodes = &ctx.plan.node_ids;
                let node = usize::from(ctx.plan.nodes.node_of(self.vu));
                if let (Some(&connect), Some(&ok)) =
                    (nodes.connect.get(node), nodes.connected.get(node))
                {
                    ctx.recorder.record_duration(connect, timings.total());
                    ctx.recorder.add(ok, 1);
                }
                if self.rejoining {
                    ctx.clients.reconnected(&self.inbox);
                } else {
                    ctx.clients.connected(&self.inbox);
                }
                self.client = Some(client);
                Ok(())
            }
            Err(err) => {
                // Every failed connect is an error of its reason
                // (`errors.connect.refused.INVALID_TOKEN`, `errors.connect.timeout`, …),
                // which fails the run; refusals are also `connections.refused`.
                if matches!(err, ClientError::ConnectRefused { .. }) {
                    ctx.recorder.add(ctx.plan.ids.connections_refused, 1);
                }
                tracing::debug!(vu = self.vu, %err, "connect failed");
                if !self.rejoining {
                    ctx.clients.failures.record(&err);
                }
                Err(Halt::Failed)
            }
        }
    }

    /// The scenario's connection settings, rendered for this virtual user.
    fn client_config(&mut self) -> ClientConfig {
        let plan = &self.ctx.plan;
        let sio = &plan.scenario.socketio;
        let mut config = plan.client.clone();
        if plan.nodes.count() > 1 {
            let node = plan.nodes.node_of(self.vu);
            config.url.clone_from(&plan.nodes.urls()[usize::from(node)]);
        }
        if !plan.local_ips.is_empty() {
            config.local_ip = Some(plan.local_ips[self.vu as usize % plan.local_ips.len()]);
        }
        for (name, value) in &sio.query {
            config
                .query
                .push((name.clone(), value.render(&self.state, &mut self.rng)));
        }
        for (name, value) in &sio.headers {
            config
                .headers
                .push((name.clone(), value.render(&self.state, &mut self.rng)));
        }
        let mut auth = sio
            .auth
            .as_ref()
            .map(|a| a.render(&self.state, &mut self.rng));
        if let (Some(place), Some(token)) = (
            plan.scenario.auth.as_ref().map(|a| a.place),
            self.state.get("token").map(str::to_owned),
        ) {
            match place {
                TokenPlace::Query => config.query.push(("token".into(), token)),
                TokenPlace::Header => config
                    .headers
                    .push(("Authorization".into(), format!("Bearer {token}"))),
                TokenPlace::Auth => {
                    let mut payload = match auth.take() {
                        Some(Value::Object(map)) => map,
                        _ => serde_json::Map::new(),
                    };
                    payload.insert("token".into(), Value::String(token));
                    auth = Some(Value::Object(payload));
                }
            }
        }
        config.auth = auth.map(|a| a.to_string());
        config
    }

    async fn emit(&mut self, planned: &PlannedEmit, intended: Option<Instant>) -> StepResult {
        let ctx = self.ctx.clone();
        let emit = &planned.emit;
        let Some(client) = self.client.as_ref() else {
            ctx.recorder.add(ctx.plan.ids.errors_emit, 1);
            return Err(Halt::Failed);
        };
        let mut data = emit
            .data
            .as_ref()
            .map(|d| d.render(&self.state, &mut self.rng));
        // A room-scoped send: the room goes into the payload under the model's field.
        let room = match (&emit.room, &ctx.plan.model.rooms) {
            (Some(template), Some(rooms)) => {
                let room = template.render(&self.state, &mut self.rng);
                let hash = name_hash(&room);
                let map = match &mut data {
                    Some(Value::Object(map)) => map,
                    other => {
                        *other = Some(Value::Object(serde_json::Map::new()));
                        match other {
                            Some(Value::Object(map)) => map,
                            _ => unreachable!("just set"),
                        }
                    }
                };
                map.insert(rooms.field.clone(), Value::String(room));
                // A send to a room it is not in reaches no one.
                let member = self.inbox.rooms.lock().expect("rooms lock").may_send(hash);
                Some(if member { hash } else { NO_ROOM })
            }
            _ => None,
        };
        let now = Instant::now();
        let intended = intended.unwrap_or(now);
        let clock = &ctx.plan.clock;
        let (intended_at, now_at) = (clock.wall(intended), clock.wall(now));
        let model = &ctx.plan.model;
        // What this send put in the sender's log, taken back if it never leaves.
        let mut logged = None;
        match planned.kind {
            EmitKind::Join => {
                let name = data
                    .as_ref()
                    .and_then(|d| d.get(&model.join.name_field))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Some(name) = &name {
                    ctx.roster.name(name, self.vu);
                }
                self.log.joined(name.clone(), intended_at, now_at);
                self.inbox.join_sent(name, intended_at);
            }
            // The model ignores a socket's broadcast causes until it has
            // joined: only then are their deliveries owed.
            EmitKind::Cause(rule) if self.log.join_times().is_some() => {
                match &model.broadcasts[rule].mark_field {
                    Some(field) => {
                        if let Some(Value::String(text)) =
                            data.as_mut().and_then(|d| d.get_mut(field))
                        {
                            let mut messages = self.log.messages.lock().expect("log lock");
                            let mark = Mark {
                                vu: self.vu,
                                seq: messages.len() as u64,
                                intended: intended_at,
                                sent: now_at,
                            };
                            mark.append_to(text);
                            logged = Some(Logged::Message(messages.len()));
                            messages.push(now_at);
                            if let Some(room) = room {
                                let mut rooms = self.log.rooms.lock().expect("log lock");
                                rooms.messages.push((mark.seq, room));
                            }
                        }
                    }
                    None => {
                        let mut typing = self.log.typing.lock().expect("log lock");
                        if let Some(room) = room {
                            let mut rooms = self.log.rooms.lock().expect("log lock");
                            rooms.typing.push((typing.len() as u64, room));
                        }
                        logged = Some(Logged::Typing(typing.len()));
                        typing.push((intended_at, now_at));
                    }
                }
            }
            EmitKind::Cause(_) | EmitKind::Plain => {}
        }
        if intended < now {
            ctx.recorder
                .record_duration(ctx.plan.ids.schedule_lag, now - intended);
        }
        let arg = data.map(|d| d.to_string());
        let args: Vec<&str> = arg.as_deref().into_iter().collect();
        ctx.recorder.add(ctx.plan.ids.emits, 1);
        self.state.seq += 1;
        // Sends waiting on the socket right now: the driver's send backlog.
        ctx.clients.send_started();
        let sent = if emit.ack {
            client.emit_with_ack(&emit.event, &args).await.map(Some)
        } else {
            client.emit(&emit.event, &args).await.map(|_| None)
        };
        ctx.clients.send_ended();
        let sent = match sent {
            Ok(Some(sent)) => sent,
            Ok(None) => return Ok(()),
            Err(_) => {
                self.never_sent(logged);
                return self.send_failed().await;
            }
        };
        let answer = self.inbox.ack_answer(sent.id);
        match tokio::time::timeout(emit.ack_timeout, answer).await {
            Ok(Ok(at)) => {
                if let Some(id) = planned.ack {
                    ctx.recorder
                        .record_duration(id, at.saturating_duration_since(sent.sent_at));
                }
                Ok(())
            }
            _ => {
                self.inbox.forget_ack(sent.id);
                ctx.recorder.add(ctx.plan.ids.timeouts_ack, 1);
                Ok(())
            }
        }
    }

    /// A `join_room` or `leave_room` step: the model's room event with
    /// the room in its field. A join or leave that changes the client's
    /// rooms (it is not a member yet, or it is one) is written down for the
    /// ledger; one before the chat join is sent but ignored, as the
    /// gateway ignores it.
    async fn room(&mut self, planned: &PlannedRoom) -> StepResult {
        let ctx = self.ctx.clone();
        let Some(client) = self.client.as_ref() else {
            ctx.recorder.add(ctx.plan.ids.errors_emit, 1);
            return Err(Halt::Failed);
        };
        let Some(rooms) = &ctx.plan.model.rooms else {
            return Err(Halt::Failed);
        };
        let room = planned.room.render(&self.state, &mut self.rng);
        let hash = name_hash(&room);
        let now = ctx.plan.clock.now();
        if self.log.join_times().is_some() {
            let changed = {
                let mut book = self.inbox.rooms.lock().expect("rooms lock");
                match planned.join {
                    true => {
                        book.join_sent(hash, now, rooms.max_per_client, || ctx.rooms.room(hash))
                    }
                    false => book.leave_sent(hash, now),
                }
            };
            if changed {
                let members = ctx.rooms.room(hash);
                let mut sends = self.log.rooms.lock().expect("log lock");
                if planned.join {
                    let name = self.log.name_hash().unwrap_or_default();
                    members.join_sent(self.vu, name, now);
                    sends.joins.push((hash, now));
                } else {
                    members.left(self.vu, now);
                    sends.leaves.push((hash, now));
                }
            }
        }
        let mut payload = serde_json::Map::new();
        payload.insert(rooms.field.clone(), Value::String(room));
        let arg = Value::Object(payload).to_string();
        ctx.recorder.add(ctx.plan.ids.emits, 1);
        self.state.seq += 1;
        ctx.clients.send_started();
        let sent = client.emit(&planned.event, &[arg.as_str()]).await;
        ctx.clients.send_ended();
        if sent.is_err() {
            return self.send_failed().await;
        }
        Ok(())
    }

    /// Takes back what a send put in the log when the client refused it (its
    /// session had ended): a message that never left is owed to no one.
    fn never_sent(&self, logged: Option<Logged>) {
        match logged {
            Some(Logged::Message(seq)) => {
                if let Some(at) = self.log.messages.lock().expect("log lock").get_mut(seq) {
                    *at = NEVER_SENT;
                }
            }
            Some(Logged::Typing(index)) => {
                if let Some(at) = self.log.typing.lock().expect("log lock").get_mut(index) {
                    *at = (NEVER_SENT, NEVER_SENT);
                }
            }
            None => {}
        }
    }

    /// A send that failed: lost to a drop the reader has not seen yet (the
    /// client comes back instead, `guarded`), or else an emit error.
    async fn send_failed(&self) -> StepResult {
        if self.rejoin.is_some()
            && tokio::time::timeout(Duration::from_secs(1), self.inbox.wait_dropped())
                .await
                .is_ok()
        {
            return Ok(());
        }
        self.ctx.recorder.add(self.ctx.plan.ids.errors_emit, 1);
        Err(Halt::Failed)
    }

    async fn expect(&mut self, planned: &PlannedExpect) -> StepResult {
        let expect = &planned.expect;
        let wanted = expect
            .matches
            .as_ref()
            .map(|m| m.render(&self.state, &mut self.rng));
        let deadline = tokio::time::Instant::now() + expect.timeout;
        let found = self
            .inbox
            .expect(planned.event, deadline, |v| {
                wanted.as_ref().is_none_or(|w| json_contains(v, w))
            })
            .await;
        match found {
            Some(payload) => {
                for capture in &expect.capture {
                    if let Some(value) = capture.extract(&payload) {
                        self.state.set(capture.var.clone(), value);
                    }
                }
                Ok(())
            }
            None => {
                self.ctx.recorder.add(self.ctx.plan.ids.timeouts_expect, 1);
                Err(Halt::Failed)
            }
        }
    }

    /// Iterations at the loop's own rate, at the global message schedule's, or back to back.
    /// A late iteration keeps its intended start time, so latencies measured
    /// from it include the time spent behind schedule.
    async fn run_loop(&mut self, lp: &PlannedLoop) -> StepResult {
        let started = Instant::now();
        let ends = lp.duration.map(|d| started + d);
        let mut next = started;
        let mut done = 0u64;
        loop {
            if lp.count.is_some_and(|c| done >= c) {
                return Ok(());
            }
            let intended = match lp.rate {
                Some(rate) => {
                    let slot = next;
                    next += lp.arrival.next_gap(rate, &mut self.rng);
                    Some(slot)
                }
                None => self.ctx.next_global_slot(&mut self.rng),
            };
            if let Some(slot) = intended {
                if ends.is_some_and(|e| slot >= e) {
                    return Ok(());
                }
                // Waiting for the slot: how late the wake-up comes is chorus's own lag.
                if slot > Instant::now() {
                    tokio::time::sleep_until(slot.into()).await;
                    let late = Instant::now().saturating_duration_since(slot);
                    self.ctx
                        .recorder
                        .record_duration(self.ctx.plan.ids.wakeup_lag, late);
                }
            } else if ends.is_some_and(|e| Instant::now() >= e) {
                return Ok(());
            }
            // The iteration's intended start goes to its first step only.
            self.play(&lp.steps, intended).await?;
            done += 1;
        }
    }

    /// The liveness violation of a client that dropped and did not come back.
    fn dropped_for_good(&self, got: String) {
        self.inbox.forget_drop();
        let ctx = &self.ctx;
        // Gone (a try's session may have said so already: the first time counts).
        self.log.left(ctx.plan.clock.now());
        ctx.violation(
            Kind::Liveness,
            self.vu,
            "disconnect",
            "the session to last until the client leaves".into(),
            got,
            ctx.plan.clock.now(),
        );
    }

    async fn disconnect(&mut self) {
        if let Some(client) = self.client.take() {
            self.log.left(self.ctx.plan.clock.now());
            self.ctx.clients.disconnected();
            let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
        }
    }
}

async fn pause(d: Duration) -> StepResult {
    tokio::time::sleep(d).await;
    Ok(())
}
