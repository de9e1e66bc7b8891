//! The run plan: a scenario compiled against its protocol model once, before
//! any client starts. Every event name the run can meet is interned to an
//! [`EventId`]; one table indexed by it holds the event's role in the model,
//! its metric ids and its payload schema; every `emit` step knows its rule
//! and ack metric, and every `expect` step its event id. A received frame is
//! looked up by name once ([`RunPlan::event_id`]), then everything by index.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::client::ClientConfig;
use crate::metrics::{CounterId, LatencyId, Registry, SCHEDULE_LAG, WAKEUP_LAG};
use crate::rules::{ProtocolModel, Schema};
use crate::scenario::{
    Arrival, Emit, Expect, Phase, Reconnect, Scenario, Step, Think, TokenSource,
    CONNECT_ERROR_EVENT,
};

use super::clock::Clock;
use super::failure::PANIC_COUNTER;
use super::fasthash::FastMap;
use super::nodes::{delivery_ids, NodeIds, Nodes};
use super::shard::Shard;

/// An event name interned by the plan: an index into [`RunPlan::event`]'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(u32);

/// What an incoming event is, in the protocol model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A broadcast caused by a client event (index into the model's broadcasts).
    Broadcast(usize),
    /// The reply to a join.
    JoinReply,
    /// The announcement of a join.
    JoinAnnounce,
    /// The announcement of a leave.
    LeaveAnnounce,
    /// The list of joined sockets on entering.
    Snapshot,
    /// The server's error reply.
    Error,
    /// The members of a room, sent to its joiner.
    RoomSnapshot,
    /// The announcement of a room join.
    RoomJoined,
    /// The announcement of a room leave.
    RoomLeft,
}

/// One server event of the plan's table.
#[derive(Debug)]
pub struct Event {
    /// Its name.
    pub name: String,
    /// Its role in the model; `None` for an event only `expect` steps wait for.
    pub role: Option<Role>,
    /// `delivery.<event>` and `delivery_uncorrected.<event>`, for timed events.
    pub delivery: Option<(LatencyId, LatencyId)>,
    /// `deliveries.received.<event>`, for broadcasts and announcements.
    pub received: Option<CounterId>,
    /// `node.<i>.delivery.<event>` by the receiver's node, for timed
    /// events of a run with several nodes (empty otherwise).
    pub node_delivery: Vec<LatencyId>,
    /// The model's payload schema, checked for events with a role.
    pub schema: Option<Schema>,
    /// The schema of a room-scoped broadcast that carries its room.
    pub room_schema: Option<Schema>,
    /// `delivery.<event>.room_size.<bucket>`, by [`room_size_bucket`], for
    /// a room-scoped timed broadcast of a run that uses rooms.
    pub room_size: Vec<LatencyId>,
}

/// The room-size buckets of `delivery.<event>.room_size.<bucket>`: the
/// largest size of each (the last holds everything above).
pub const ROOM_SIZE_BUCKETS: [(u32, &str); 4] = [
    (10, "1-10"),
    (100, "11-100"),
    (1000, "101-1000"),
    (u32::MAX, "over-1000"),
];

/// The bucket of a room of `members` members.
#[inline]
pub fn room_size_bucket(members: u32) -> usize {
    ROOM_SIZE_BUCKETS
        .iter()
        .position(|&(max, _)| members <= max)
        .unwrap_or(ROOM_SIZE_BUCKETS.len() - 1)
}

/// Metric ids of the run that belong to no one event.
#[derive(Debug)]
pub struct Ids {
    /// `connect`: TCP + transport + open packet + namespace CONNECT.
    pub connect: LatencyId,
    /// The phases of `connect`, each its own histogram.
    pub connect_phases: ConnectPhases,
    /// `join`: `joinChat` to `joined`.
    pub join: LatencyId,
    /// `schedule_lag`: how far behind schedule scheduled sends went out.
    pub schedule_lag: LatencyId,
    /// `driver.wakeup_lag`: how late a sender waiting for its slot woke up.
    pub wakeup_lag: LatencyId,
    /// `connections`: attempts.
    pub connections: CounterId,
    /// `connections.ok`.
    pub connections_ok: CounterId,
    /// `connections.refused`: CONNECT_ERROR answers.
    pub connections_refused: CounterId,
    /// `errors.panic`: virtual users whose task panicked.
    pub panics: CounterId,
    /// `errors.emit`: sends that failed.
    pub errors_emit: CounterId,
    /// `errors.exception`: `exception` events received.
    pub errors_exception: CounterId,
    /// `timeouts.expect`.
    pub timeouts_expect: CounterId,
    /// `timeouts.ack`.
    pub timeouts_ack: CounterId,
    /// `emits`.
    pub emits: CounterId,
    /// `arrivals.dropped`: open-model arrivals refused by a phase's `max`.
    pub arrivals_dropped: CounterId,
    /// The reconnection metrics, when some group reconnects.
    pub reconnects: Option<ReconnectIds>,
}

/// The metrics of reconnection, registered only when some group reconnects.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectIds {
    /// `reconnect`: from a session seen dropped to joined again (the join's reply).
    pub latency: LatencyId,
    /// `reconnects.attempted`: tries.
    pub attempted: CounterId,
    /// `reconnects.succeeded`: tries that connected and joined again.
    pub succeeded: CounterId,
    /// `reconnects.failed`: tries that did not.
    pub failed: CounterId,
    /// `reconnects.exhausted`: drops after which every try failed (the client is dropped).
    pub exhausted: CounterId,
}

/// How a group's clients come back after a drop.
#[derive(Debug, Clone, Copy)]
pub struct Rejoin {
    /// The backoff and the most tries.
    pub policy: Reconnect,
    /// How many of the flow's first steps are its connect and join (the
    /// `connect`, the join `emit` and the `expect`s right after it): what a
    /// reconnecting client plays again before it goes on.
    pub prefix: usize,
}

/// The histograms of the phases a connect goes through.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPhases {
    /// `connect.tcp`: resolving the host and the TCP connect.
    pub tcp: LatencyId,
    /// `connect.tls`: the TLS handshake (TLS targets only).
    pub tls: LatencyId,
    /// `connect.handshake`: the websocket upgrade or polling GET up to the
    /// Engine.IO open packet (with a polling-then-upgrade's probe).
    pub handshake: LatencyId,
    /// `connect.namespace`: the namespace CONNECT to its answer.
    pub namespace: LatencyId,
}

/// What an `emit` step means to the model, decided at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitKind {
    /// The model's join event.
    Join,
    /// The cause of the model's broadcast rule of this index.
    Cause(usize),
    /// Anything else.
    Plain,
}

/// A `join_room` or `leave_room` step, compiled.
#[derive(Debug)]
pub struct PlannedRoom {
    /// Joining (else leaving).
    pub join: bool,
    /// The client event sent (the model's room join or leave event).
    pub event: String,
    /// The room's name (templated).
    pub room: crate::scenario::Template,
}

/// An `emit` step, compiled.
#[derive(Debug)]
pub struct PlannedEmit {
    /// The step as written.
    pub emit: Emit,
    /// Its meaning in the model.
    pub kind: EmitKind,
    /// `ack.<event>`, when the step asks for an ack.
    pub ack: Option<LatencyId>,
}

/// An `expect` step, compiled.
#[derive(Debug)]
pub struct PlannedExpect {
    /// The step as written.
    pub expect: Expect,
    /// The event it waits for.
    pub event: EventId,
}

/// A `loop` step, compiled.
#[derive(Debug)]
pub struct PlannedLoop {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many iterations.
    pub count: Option<u64>,
    /// Start iterations at this rate (per client, per second).
    pub rate: Option<f64>,
    /// How iterations are spaced at `rate`.
    pub arrival: Arrival,
    /// The repeated steps.
    pub steps: Vec<PlanStep>,
}

/// One step of a flow, compiled.
#[derive(Debug)]
pub enum PlanStep {
    /// Open the connection and join the namespace.
    Connect,
    /// A `connect` followed by `expect: { event: connect_error }`: a connect
    /// meant to be refused, one step.
    ConnectRefused(Expect),
    /// Send an event.
    Emit(PlannedEmit),
    /// Wait for an event.
    Expect(PlannedExpect),
    /// Repeat steps.
    Loop(PlannedLoop),
    /// Pause.
    Think(Think),
    /// Stay connected, receiving, for a while.
    Listen(Duration),
    /// Close the connection.
    Disconnect,
    /// Join or leave a room.
    Room(PlannedRoom),
}

/// A run compiled: what every virtual user reads and nobody writes.
#[derive(Debug)]
pub struct RunPlan {
    /// The scenario as run.
    pub scenario: Scenario,
    /// The delivery rules checked.
    pub model: ProtocolModel,
    /// Connection settings common to all clients (per-client query, headers and auth are added).
    pub client: ClientConfig,
    /// Where tokens come from, if the scenario authenticates.
    pub tokens: Option<TokenSource>,
    /// Local source addresses to spread connections over (empty: the OS picks).
    pub local_ips: Vec<IpAddr>,
    /// This process's part of the run.
    pub shard: Shard,
    /// The target's nodes and which client goes to which.
    pub nodes: Nodes,
    /// Per-node metric ids (none with one node).
    pub node_ids: NodeIds,
    /// How many virtual-user numbers the load phases give out at most (all shards).
    pub vus: u64,
    /// The run's clock.
    pub clock: Clock,
    /// Metric ids of no one event.
    pub ids: Ids,
    /// Per broadcast rule of the model: whether a room field scopes it.
    pub room_scoped: Vec<bool>,
    events: Vec<Event>,
    by_name: FastMap<Box<str>, EventId>,
    /// Per group, per event id: whether its flow's `expect` steps wait for it.
    expected: Vec<Vec<bool>>,
    flows: Vec<Vec<PlanStep>>,
    /// Per group, how its clients reconnect (`None`: they do not).
    rejoins: Vec<Option<Rejoin>>,
}

/// What the plan is built from, besides the scenario and the model.
#[derive(Debug)]
pub struct Setup {
    /// Connection settings common to all clients.
    pub client: ClientConfig,
    /// Where tokens come from.
    pub tokens: Option<TokenSource>,
    /// Local source addresses.
    pub local_ips: Vec<IpAddr>,
    /// This process's part of the run.
    pub shard: Shard,
    /// The target's nodes.
    pub nodes: Nodes,
}

/// The event table while it is built.
#[derive(Default)]
struct Interner {
    events: Vec<Event>,
    by_name: FastMap<Box<str>, EventId>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> EventId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = EventId(u32::try_from(self.events.len()).expect("fewer than 2^32 events"));
        self.events.push(Event {
            name: name.to_owned(),
            role: None,
            delivery: None,
            received: None,
            node_delivery: Vec::new(),
            schema: None,
            room_schema: None,
            room_size: Vec::new(),
        });
        self.by_name.insert(name.into(), id);
        id
    }

    fn get_mut(&mut self, id: EventId) -> &mut Event {
        &mut self.events[id.0 as usize]
    }
}

impl RunPlan {
    /// Compiles `scenario` against `model`, registering every metric the
    /// run records (in the order the run always registered them).
    pub fn new(
        scenario: Scenario,
        model: ProtocolModel,
        setup: Setup,
        registry: &Registry,
    ) -> Self {
        let mut table = Interner::default();
        // Roles in the model's order; a later rule for the same name wins.
        let mut roles: Vec<(&str, Role)> = model
            .broadcasts
            .iter()
            .enumerate()
            .map(|(i, b)| (b.event.as_str(), Role::Broadcast(i)))
            .collect();
        roles.push((&model.join.reply.event, Role::JoinReply));
        roles.push((&model.join.announce.event, Role::JoinAnnounce));
        roles.push((&model.leave.announce.event, Role::LeaveAnnounce));
        if let Some(snapshot) = &model.snapshot {
            roles.push((&snapshot.event, Role::Snapshot));
        }
        if let Some(error) = &model.error_event {
            roles.push((error, Role::Error));
        }
        if let Some(rooms) = &model.rooms {
            roles.push((&rooms.snapshot.event, Role::RoomSnapshot));
            roles.push((&rooms.joined.event, Role::RoomJoined));
            roles.push((&rooms.left.event, Role::RoomLeft));
        }
        for (name, role) in roles {
            let id = table.intern(name);
            let event = table.get_mut(id);
            event.role = Some(role);
            event.schema = model.payloads.get(name).cloned();
            event.room_schema = model
                .rooms
                .as_ref()
                .and_then(|r| r.payloads.get(name).cloned());
        }
        let room_scoped: Vec<bool> = model
            .broadcasts
            .iter()
            .map(|b| model.rooms.as_ref().is_some_and(|r| r.scopes(&b.cause)))
            .collect();
        let uses_rooms = scenario.groups.iter().any(|g| uses_rooms(&g.flow));

        // Flows first: their `ack.<event>` metrics were always registered first.
        let mut acks = HashMap::new();
        let mut expected_names: Vec<Vec<EventId>> = Vec::new();
        let flows: Vec<Vec<PlanStep>> = scenario
            .groups
            .iter()
            .map(|group| {
                let mut expected = Vec::new();
                let mut compiler = Compiler {
                    model: &model,
                    registry,
                    table: &mut table,
                    acks: &mut acks,
                    expected: &mut expected,
                };
                let flow = compiler.steps(&group.flow);
                expected_names.push(expected);
                flow
            })
            .collect();

        // Then, kind by kind, in the order the run always registered them
        // (interval logs list metrics in it): these latencies, the timed
        // events' latencies, the counters, the timed events' counters.
        let [connect, join, schedule_lag, wakeup_lag] =
            ["connect", "join", SCHEDULE_LAG, WAKEUP_LAG].map(|name| registry.latency(name));
        let timed: Vec<EventId> = model
            .broadcasts
            .iter()
            .map(|b| b.event.as_str())
            .chain([
                model.join.announce.event.as_str(),
                model.leave.announce.event.as_str(),
            ])
            .map(|name| table.intern(name))
            .collect();
        for &id in &timed {
            let name = table.get_mut(id).name.clone();
            let corrected = registry.latency(&format!("delivery.{name}"));
            let uncorrected = registry.latency(&format!("delivery_uncorrected.{name}"));
            table.get_mut(id).delivery = Some((corrected, uncorrected));
        }
        let [tcp, tls, handshake, namespace] = [
            "connect.tcp",
            "connect.tls",
            "connect.handshake",
            "connect.namespace",
        ]
        .map(|name| registry.latency(name));
        let connect_phases = ConnectPhases {
            tcp,
            tls,
            handshake,
            namespace,
        };
        let counters = [
            "connections",
            "connections.ok",
            "connections.refused",
            PANIC_COUNTER,
            "errors.emit",
            "errors.exception",
            "timeouts.expect",
            "timeouts.ack",
            "emits",
        ]
        .map(|name| registry.counter(name));
        for &id in &timed {
            let name = table.get_mut(id).name.clone();
            table.get_mut(id).received =
                Some(registry.counter(&format!("deliveries.received.{name}")));
        }
        let [connections, connections_ok, connections_refused, panics, errors_emit, errors_exception, timeouts_expect, timeouts_ack, emits] =
            counters;
        let mut ids = Ids {
            connect,
            connect_phases,
            join,
            schedule_lag,
            wakeup_lag,
            connections,
            connections_ok,
            connections_refused,
            panics,
            errors_emit,
            errors_exception,
            timeouts_expect,
            timeouts_ack,
            emits,
            arrivals_dropped: registry.counter("arrivals.dropped"),
            reconnects: None,
        };
        let rejoins: Vec<Option<Rejoin>> = scenario
            .groups
            .iter()
            .zip(&flows)
            .map(|(group, flow)| {
                let policy = group.reconnect.or(scenario.reconnect)?;
                let prefix = rejoin_prefix(flow)?;
                policy.enabled().then_some(Rejoin { policy, prefix })
            })
            .collect();
        if rejoins.iter().any(Option::is_some) {
            let [attempted, succeeded, failed, exhausted] = [
                "reconnects.attempted",
                "reconnects.succeeded",
                "reconnects.failed",
                "reconnects.exhausted",
            ]
            .map(|name| registry.counter(name));
            ids.reconnects = Some(ReconnectIds {
                latency: registry.latency("reconnect"),
                attempted,
                succeeded,
                failed,
                exhausted,
            });
        }
        // Per-node metrics last, so a run of one node registers what it always did.
        let node_ids = NodeIds::register(&setup.nodes, registry);
        for &id in &timed {
            let name = table.get_mut(id).name.clone();
            table.get_mut(id).node_delivery = delivery_ids(&setup.nodes, registry, &name);
        }
        // Room metrics last, and only in runs that use rooms.
        if uses_rooms {
            // Marked broadcasts only: unmarked ones in rooms are not timed.
            let scoped = model.broadcasts.iter().zip(&room_scoped);
            for (rule, _) in scoped.filter(|(r, s)| **s && r.mark_field.is_some()) {
                let id = table.intern(&rule.event);
                let name = rule.event.clone();
                table.get_mut(id).room_size = ROOM_SIZE_BUCKETS
                    .iter()
                    .map(|(_, bucket)| {
                        registry.latency(&format!("delivery.{name}.room_size.{bucket}"))
                    })
                    .collect();
            }
            if let Some(rooms) = &model.rooms {
                for name in [
                    &rooms.snapshot.event,
                    &rooms.joined.event,
                    &rooms.left.event,
                ] {
                    let id = table.intern(name);
                    table.get_mut(id).received =
                        Some(registry.counter(&format!("deliveries.received.{name}")));
                }
            }
        }

        let expected = expected_names
            .iter()
            .map(|names| {
                let mut wanted = vec![false; table.events.len()];
                for id in names {
                    wanted[id.0 as usize] = true;
                }
                wanted
            })
            .collect();
        Self {
            vus: vu_numbers(&scenario),
            clock: Clock::new(registry.started(), registry.started_at()),
            scenario,
            model,
            client: setup.client,
            tokens: setup.tokens,
            local_ips: setup.local_ips,
            shard: setup.shard,
            nodes: setup.nodes,
            node_ids,
            ids,
            room_scoped,
            events: table.events,
            by_name: table.by_name,
            expected,
            flows,
            rejoins,
        }
    }

    /// How clients of group `group` reconnect, if they do.
    pub fn rejoin(&self, group: usize) -> Option<Rejoin> {
        self.rejoins[group]
    }

    /// The id of the event called `name`, if the run knows it: the one name
    /// lookup of a received frame.
    #[inline]
    pub fn event_id(&self, name: &str) -> Option<EventId> {
        self.by_name.get(name).copied()
    }

    /// The event of `id`.
    #[inline]
    pub fn event(&self, id: EventId) -> &Event {
        &self.events[id.0 as usize]
    }

    /// How many events the table holds (ids are `0..len`).
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// Whether the flow of group `group` waits for event `id`.
    #[inline]
    pub fn expected_by(&self, group: usize, id: EventId) -> bool {
        self.expected[group][id.0 as usize]
    }

    /// The compiled flow of group `group`.
    pub fn flow(&self, group: usize) -> &[PlanStep] {
        &self.flows[group]
    }
}

impl EventId {
    /// The id as a table index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The length of a flow's connect-and-join prefix: through its first
/// top-level `connect`, then through the first join `emit` and the `expect`s
/// right after it when the join comes before any other `emit` or loop
/// (pauses and `expect`s may come between).
/// `None` when the flow does not start with a plain connect.
fn rejoin_prefix(flow: &[PlanStep]) -> Option<usize> {
    let connect = flow.iter().position(|s| matches!(s, PlanStep::Connect))?;
    if flow[..connect]
        .iter()
        .any(|s| !matches!(s, PlanStep::Think(_) | PlanStep::Listen(_)))
    {
        return None;
    }
    let mut end = connect + 1;
    for (i, step) in flow.iter().enumerate().skip(connect + 1) {
        match step {
            PlanStep::Think(_) | PlanStep::Listen(_) | PlanStep::Expect(_) => {}
            PlanStep::Emit(e) if e.kind == EmitKind::Join => {
                end = i + 1;
                while matches!(flow.get(end), Some(PlanStep::Expect(_))) {
                    end += 1;
                }
                break;
            }
            _ => break,
        }
    }
    Some(end)
}

/// Whether a flow has room steps or emits to a room.
fn uses_rooms(steps: &[Step]) -> bool {
    steps.iter().any(|s| match s {
        Step::JoinRoom(_) | Step::LeaveRoom(_) => true,
        Step::Emit(e) => e.room.is_some(),
        Step::Loop(lp) => uses_rooms(&lp.steps),
        _ => false,
    })
}

/// Checks that `model` can run the room steps of `scenario`: room steps
/// need a model with rooms, `room:` only goes on an emit of a cause the
/// model scopes, and the spread's rooms per client fit the model's cap.
/// The error names the step.
pub fn check_rooms(
    scenario: &Scenario,
    model: &ProtocolModel,
    model_name: &str,
) -> Result<(), crate::scenario::ScenarioError> {
    use crate::scenario::{Location, ScenarioError, Template};
    let at = |t: &Template, message: String| ScenarioError::Invalid {
        at: Location::new(scenario.origin.clone(), t.pos()),
        message,
    };
    fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
        for s in steps {
            match s {
                Step::Loop(lp) => walk(&lp.steps, out),
                s => out.push(s),
            }
        }
    }
    let mut steps = Vec::new();
    for g in &scenario.groups {
        walk(&g.flow, &mut steps);
    }
    for step in steps {
        match (step, &model.rooms) {
            (Step::JoinRoom(t) | Step::LeaveRoom(t), None) => {
                return Err(at(
                    t,
                    format!(
                        "room steps need a protocol model with `rooms:`, and `{model_name}` has none \
                         (the seed profile has no rooms: use `protocol: strict`, or a model of your own)"
                    ),
                ))
            }
            (Step::Emit(e), rooms) => {
                let Some(t) = &e.room else { continue };
                match rooms {
                    None => {
                        return Err(at(
                            t,
                            format!("`room:` needs a protocol model with `rooms:`, and `{model_name}` has none"),
                        ))
                    }
                    Some(r) if !r.scopes(&e.event) => {
                        return Err(at(
                            t,
                            format!(
                                "`{}` is not room-scoped in model `{model_name}` (rooms.scoped: {})",
                                e.event,
                                r.scoped.join(", ")
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }
    if let (Some(spread), Some(rooms)) = (&scenario.rooms, &model.rooms) {
        if spread.per_client as usize > rooms.max_per_client {
            return Err(ScenarioError::Model {
                origin: scenario.origin.clone(),
                message: format!(
                    "rooms.per_client {} is over model `{model_name}`'s max_per_client {}",
                    spread.per_client, rooms.max_per_client
                ),
            });
        }
    }
    Ok(())
}

/// How many virtual-user numbers the phases give out at most: one per
/// client a ramp up starts and per arrival (capped ones included).
fn vu_numbers(scenario: &Scenario) -> u64 {
    let mut level = 0u64;
    let mut numbers = 0u64;
    for phase in &scenario.load.phases {
        match phase {
            Phase::Ramp { to, .. } => {
                numbers = numbers.saturating_add(to.saturating_sub(level));
                level = *to;
            }
            Phase::Hold(_) => {}
            Phase::Arrive { .. } => numbers = numbers.saturating_add(phase.arrivals()),
        }
    }
    numbers
}

/// Compiles the steps of one group's flow.
struct Compiler<'a> {
    model: &'a ProtocolModel,
    registry: &'a Registry,
    table: &'a mut Interner,
    acks: &'a mut HashMap<String, LatencyId>,
    expected: &'a mut Vec<EventId>,
}

impl Compiler<'_> {
    fn steps(&mut self, steps: &[Step]) -> Vec<PlanStep> {
        let mut out = Vec::with_capacity(steps.len());
        let mut i = 0;
        while let Some(step) = steps.get(i) {
            if let (Step::Connect, Some(Step::Expect(expect))) = (step, steps.get(i + 1)) {
                if expect.event == CONNECT_ERROR_EVENT {
                    self.expect_event(&expect.event);
                    out.push(PlanStep::ConnectRefused(expect.clone()));
                    i += 2;
                    continue;
                }
            }
            out.push(self.step(step));
            i += 1;
        }
        out
    }

    fn expect_event(&mut self, name: &str) -> EventId {
        let id = self.table.intern(name);
        self.expected.push(id);
        id
    }

    fn step(&mut self, step: &Step) -> PlanStep {
        match step {
            Step::Connect => PlanStep::Connect,
            Step::Emit(emit) => {
                let kind = if emit.event == self.model.join.event {
                    EmitKind::Join
                } else {
                    self.model
                        .broadcasts
                        .iter()
                        .position(|b| b.cause == emit.event)
                        .map_or(EmitKind::Plain, EmitKind::Cause)
                };
                let ack = emit.ack.then(|| {
                    *self
                        .acks
                        .entry(emit.event.clone())
                        .or_insert_with(|| self.registry.latency(&format!("ack.{}", emit.event)))
                });
                PlanStep::Emit(PlannedEmit {
                    emit: emit.clone(),
                    kind,
                    ack,
                })
            }
            Step::Expect(expect) => PlanStep::Expect(PlannedExpect {
                event: self.expect_event(&expect.event),
                expect: expect.clone(),
            }),
            Step::Loop(lp) => PlanStep::Loop(PlannedLoop {
                duration: lp.duration,
                count: lp.count,
                rate: lp.rate,
                arrival: lp.arrival,
                steps: self.steps(&lp.steps),
            }),
            Step::Think(think) => PlanStep::Think(*think),
            Step::Listen(d) => PlanStep::Listen(*d),
            Step::Disconnect => PlanStep::Disconnect,
            Step::JoinRoom(room) | Step::LeaveRoom(room) => {
                let join = matches!(step, Step::JoinRoom(_));
                // A model without rooms is refused before the plan ([`check_rooms`]).
                let event = self.model.rooms.as_ref().map_or_else(String::new, |r| {
                    if join {
                        r.join.clone()
                    } else {
                        r.leave.clone()
                    }
                });
                PlanStep::Room(PlannedRoom {
                    join,
                    event,
                    room: room.clone(),
                })
            }
        }
    }
}

/// A plan for unit tests of the run engine: the `strict` model, one
/// process, one node at an unreachable address, no tokens.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::{RunPlan, Setup};
    use crate::client::ClientConfig;
    use crate::metrics::Registry;
    use crate::rules::ProtocolModel;
    use crate::run::nodes::Nodes;
    use crate::run::shard::Shard;
    use crate::scenario::Scenario;

    /// Compiles `scenario` for a test, its metrics registered in `registry`.
    pub fn plan(scenario: Scenario, registry: &Registry) -> RunPlan {
        let model = ProtocolModel::resolve("strict", Path::new(".")).expect("strict loads");
        let setup = Setup {
            client: ClientConfig::new("http://127.0.0.1:1"),
            tokens: None,
            local_ips: Vec::new(),
            shard: Shard::WHOLE,
            nodes: Nodes::new(vec!["http://127.0.0.1:1".into()], None),
        };
        RunPlan::new(scenario, model, setup, registry)
    }

    /// [`plan`] of a scenario whose `vus` clients only connect to `/chat`.
    pub fn connect_only(vus: u32, registry: &Registry) -> RunPlan {
        let scenario = Scenario::from_str(
            &format!(
                "name: t\nsocketio: {{ namespace: /chat }}\n\
                 groups:\n  - name: g\n    flow: [connect]\n\
                 load:\n  phases:\n    - ramp: {{ to: {vus}, over: 1s }}\n"
            ),
            "t.yml",
        )
        .expect("the scenario loads");
        plan(scenario, registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RunPlan {
        let scenario = Scenario::from_str(
            "name: t\nsocketio: { namespace: /chat }\n\
             groups:\n  - name: g\n    flow:\n      - connect\n      - expect: { event: onlineUsers }\n\
             \x20     - emit: { event: joinChat, data: { username: a } }\n\
             \x20     - loop:\n          count: 2\n          steps:\n\
             \x20           - emit: { event: sendMessage, data: { message: hi }, ack: true }\n\
             \x20           - expect: { event: custom }\n\
             \x20     - emit: { event: typing, data: { isTyping: true } }\n\
             \x20 - name: h\n    flow: [connect, { expect: { event: connect_error } }, connect, { emit: { event: other } }]\n\
             load:\n  phases:\n    - hold: 1s\n",
            "t.yml",
        )
        .expect("the scenario loads");
        testing::plan(scenario, &Registry::new())
    }

    #[test]
    fn a_group_reconnects_only_with_attempts_and_replays_its_connect_and_join() {
        let plan = plan();
        assert!(plan.rejoin(0).is_none() && plan.ids.reconnects.is_none());
        let scenario = |reconnect: &str| {
            Scenario::from_str(
                &format!(
                    "name: t\nsocketio: {{ namespace: /chat }}\n{reconnect}\
                     groups:\n  - name: g\n    flow:\n      - connect\n      - expect: {{ event: onlineUsers }}\n\
                     \x20     - think: 1s\n      - emit: {{ event: joinChat, data: {{ username: a }} }}\n\
                     \x20     - expect: {{ event: joined }}\n      - emit: {{ event: typing }}\n\
                     \x20 - name: h\n    reconnect: {{ attempts: 0 }}\n    flow: [connect, {{ listen: 1s }}]\n\
                     \x20 - name: i\n    flow: [connect, {{ listen: 1s }}]\n\
                     load:\n  phases:\n    - hold: 1s\n"
                ),
                "t.yml",
            )
            .expect("the scenario loads")
        };
        let compile = |scenario| testing::plan(scenario, &Registry::new());
        let plan = compile(scenario("reconnect: { attempts: 3 }\n"));
        // connect, expect, think, join, and the expect of its reply.
        assert_eq!(plan.rejoin(0).map(|r| r.prefix), Some(5));
        assert!(plan.rejoin(1).is_none(), "the group's own attempts: 0 wins");
        assert_eq!(
            plan.rejoin(2).map(|r| r.prefix),
            Some(1),
            "no join: the connect alone"
        );
        assert!(plan.ids.reconnects.is_some());
        let off = compile(scenario("reconnect: { delay: 1s }\n"));
        assert!(
            (0..3).all(|g| off.rejoin(g).is_none()),
            "no attempts, no reconnect"
        );
        assert!(off.ids.reconnects.is_none());
    }

    #[test]
    fn events_are_interned_once_with_their_role_and_metrics() {
        let plan = plan();
        let id = plan.event_id("newMessage").expect("a broadcast");
        let message = plan.event(id);
        assert_eq!(message.role, Some(Role::Broadcast(0)));
        assert!(message.delivery.is_some() && message.received.is_some());
        assert!(message.schema.is_some());
        let joined = plan.event(plan.event_id("joined").expect("the join reply"));
        assert_eq!(joined.role, Some(Role::JoinReply));
        assert!(joined.delivery.is_none(), "replies are timed as `join`");
        // An event only a flow waits for is known, with no role.
        let custom = plan.event_id("custom").expect("expected by group g");
        assert_eq!(plan.event(custom).role, None);
        assert!(plan.expected_by(0, custom));
        assert!(!plan.expected_by(1, custom));
        assert!(plan.expected_by(0, plan.event_id("onlineUsers").expect("a snapshot")));
        assert_eq!(plan.event_id("unknownEvent"), None);
    }

    #[test]
    fn emit_steps_know_their_rule_and_ack_metric() {
        let plan = plan();
        let kinds: Vec<(EmitKind, bool)> = plan
            .flow(0)
            .iter()
            .flat_map(|s| match s {
                PlanStep::Loop(lp) => lp.steps.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .filter_map(|s| match s {
                PlanStep::Emit(e) => Some((e.kind, e.ack.is_some())),
                _ => None,
            })
            .collect();
        let typing = plan
            .model
            .broadcasts
            .iter()
            .position(|b| b.cause == "typing")
            .expect("a typing rule");
        assert_eq!(
            kinds,
            [
                (EmitKind::Join, false),
                (EmitKind::Cause(0), true),
                (EmitKind::Cause(typing), false)
            ]
        );
        // A connect followed by an expected refusal is one step.
        assert!(matches!(
            plan.flow(1),
            [
                PlanStep::ConnectRefused(_),
                PlanStep::Connect,
                PlanStep::Emit(PlannedEmit {
                    kind: EmitKind::Plain,
                    ..
                })
            ]
        ));
    }

    #[test]
    fn the_phases_number_every_client_they_start() {
        let scenario = Scenario::from_str(
            "name: t\nsocketio: { namespace: /chat }\ngroups:\n  - name: g\n    flow: [connect]\n\
             load:\n  phases:\n    - ramp: { to: 5, over: 1s }\n    - ramp: { to: 2, over: 1s }\n\
             \x20   - ramp: { to: 4, over: 1s }\n    - arrive: { rate: 2/s, duration: 3s }\n",
            "t.yml",
        )
        .expect("the scenario loads");
        assert_eq!(vu_numbers(&scenario), 5 + 2 + 6);
    }
}
