//! What every virtual user of a run shares: the scenario, the client settings,
//! the metric ids, the roster, the clock.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::client::ClientConfig;
use crate::metrics::{CounterId, LatencyId, Recorder, Registry};
use crate::scenario::{Scenario, Step, TokenSource};

use super::failure::ConnectFailures;
use super::receiver::Inbox;
use super::roster::Roster;
use super::shard::Shard;
use super::violations::{Evidence, Kind, Violations};
use crate::rules::ProtocolModel;

/// Interned metric ids for the hot paths.
#[derive(Debug)]
pub struct Ids {
    /// `connect`: TCP + transport + open packet + namespace CONNECT.
    pub connect: LatencyId,
    /// `join`: `joinChat` to `joined`.
    pub join: LatencyId,
    /// `schedule_lag`: how far behind schedule scheduled sends went out.
    pub schedule_lag: LatencyId,
    /// `driver.wakeup_lag`: how late a sender waiting for its slot woke up.
    pub wakeup_lag: LatencyId,
    /// `delivery.<event>` and `delivery_uncorrected.<event>` per broadcast and announcement.
    pub delivery: HashMap<String, (LatencyId, LatencyId)>,
    /// `ack.<event>` per emitted event that asks for acks.
    pub ack: HashMap<String, LatencyId>,
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
    /// `deliveries.received.<event>` per broadcast and announcement.
    pub received: HashMap<String, CounterId>,
    /// `arrivals.dropped`: open-model arrivals refused by a phase's `max`.
    pub arrivals_dropped: CounterId,
}

impl Ids {
    fn new(registry: &Registry, scenario: &Scenario, model: &ProtocolModel) -> Self {
        let timed: Vec<&str> = model
            .broadcasts
            .iter()
            .map(|b| b.event.as_str())
            .chain([
                model.join.announce.event.as_str(),
                model.leave.announce.event.as_str(),
            ])
            .collect();
        let mut ack = HashMap::new();
        for group in &scenario.groups {
            visit_emits(&group.flow, &mut |event, wants_ack| {
                if wants_ack {
                    ack.entry(event.to_owned())
                        .or_insert_with(|| registry.latency(&format!("ack.{event}")));
                }
            });
        }
        Self {
            connect: registry.latency("connect"),
            join: registry.latency("join"),
            schedule_lag: registry.latency(crate::metrics::SCHEDULE_LAG),
            wakeup_lag: registry.latency(crate::metrics::WAKEUP_LAG),
            delivery: timed
                .iter()
                .map(|e| {
                    let corrected = registry.latency(&format!("delivery.{e}"));
                    let uncorrected = registry.latency(&format!("delivery_uncorrected.{e}"));
                    (e.to_string(), (corrected, uncorrected))
                })
                .collect(),
            ack,
            connections: registry.counter("connections"),
            connections_ok: registry.counter("connections.ok"),
            connections_refused: registry.counter("connections.refused"),
            panics: registry.counter(super::failure::PANIC_COUNTER),
            errors_emit: registry.counter("errors.emit"),
            errors_exception: registry.counter("errors.exception"),
            timeouts_expect: registry.counter("timeouts.expect"),
            timeouts_ack: registry.counter("timeouts.ack"),
            emits: registry.counter("emits"),
            received: timed
                .iter()
                .map(|e| {
                    (
                        e.to_string(),
                        registry.counter(&format!("deliveries.received.{e}")),
                    )
                })
                .collect(),
            arrivals_dropped: registry.counter("arrivals.dropped"),
        }
    }
}

/// Calls `f(event, ack)` for every emit step, loops included.
fn visit_emits(steps: &[Step], f: &mut impl FnMut(&str, bool)) {
    for step in steps {
        match step {
            Step::Emit(e) => f(&e.event, e.ack),
            Step::Loop(l) => visit_emits(&l.steps, f),
            _ => {}
        }
    }
}

/// The event names that a flow's `expect` steps wait for.
fn expected_events(steps: &[Step], out: &mut HashSet<String>) {
    for step in steps {
        match step {
            Step::Expect(e) => {
                out.insert(e.event.clone());
            }
            Step::Loop(l) => expected_events(&l.steps, out),
            _ => {}
        }
    }
}

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
}

fn roles(model: &ProtocolModel) -> HashMap<String, Role> {
    let mut roles: HashMap<String, Role> = model
        .broadcasts
        .iter()
        .enumerate()
        .map(|(i, b)| (b.event.clone(), Role::Broadcast(i)))
        .collect();
    roles.insert(model.join.reply.event.clone(), Role::JoinReply);
    roles.insert(model.join.announce.event.clone(), Role::JoinAnnounce);
    roles.insert(model.leave.announce.event.clone(), Role::LeaveAnnounce);
    if let Some(snapshot) = &model.snapshot {
        roles.insert(snapshot.event.clone(), Role::Snapshot);
    }
    if let Some(error) = &model.error_event {
        roles.insert(error.clone(), Role::Error);
    }
    roles
}

/// Shared by every virtual user of a run.
pub struct Context {
    /// The scenario as run.
    pub scenario: Scenario,
    /// Connection settings common to all clients (per-client query, headers and auth are added).
    pub client: ClientConfig,
    /// Where tokens come from, if the scenario authenticates.
    pub tokens: Option<TokenSource>,
    /// Local source addresses to spread connections over (empty: the OS picks).
    pub local_ips: Vec<IpAddr>,
    /// The delivery rules checked.
    pub model: ProtocolModel,
    /// Each server event's role in the model.
    pub roles: HashMap<String, Role>,
    /// Violations found so far.
    pub violations: Violations,
    /// The inboxes of connected clients, for the liveness watchdog.
    pub inboxes: Mutex<Vec<Weak<Inbox>>>,
    /// The metrics recording handle.
    pub recorder: Recorder,
    /// Interned metric ids.
    pub ids: Ids,
    /// Send logs and receiver records.
    pub roster: Roster,
    /// Per group: the events its `expect` steps wait for.
    pub expected_events: Vec<Arc<HashSet<String>>>,
    /// The run's time origin.
    pub epoch: Instant,
    /// The time origin as microseconds since the UNIX epoch: ledger and mark
    /// times are wall-clock based, so that shards on other processes agree.
    epoch_unix_us: u64,
    /// This process's part of the run.
    pub shard: Shard,
    /// Clients connected right now.
    pub connected: AtomicI64,
    /// Clients that connected at all so far.
    pub ever_connected: AtomicU64,
    /// Connects that failed, by reason (`errors.connect.<reason>`).
    pub failures: ConnectFailures,
    /// Emits being written right now (the driver's send backlog).
    pub sending: AtomicI64,
    /// Next slot of the global message schedule, once it has started.
    next_slot: Mutex<Option<Instant>>,
}

impl Context {
    /// The context of a run.
    pub fn new(
        scenario: Scenario,
        model: ProtocolModel,
        client: ClientConfig,
        tokens: Option<TokenSource>,
        local_ips: Vec<IpAddr>,
        shard: Shard,
        registry: &Registry,
    ) -> Self {
        let expected_events = scenario
            .groups
            .iter()
            .map(|g| {
                let mut set = HashSet::new();
                expected_events(&g.flow, &mut set);
                Arc::new(set)
            })
            .collect();
        Self {
            ids: Ids::new(registry, &scenario, &model),
            roles: roles(&model),
            model,
            violations: Violations::new(registry),
            inboxes: Mutex::new(Vec::new()),
            recorder: registry.recorder(),
            scenario,
            client,
            tokens,
            local_ips,
            roster: Roster::default(),
            expected_events,
            epoch: registry.started(),
            epoch_unix_us: registry
                .started_at()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            shard,
            connected: AtomicI64::new(0),
            ever_connected: AtomicU64::new(0),
            failures: ConnectFailures::new(registry.recorder()),
            sending: AtomicI64::new(0),
            next_slot: Mutex::new(None),
        }
    }

    /// Reports a violation of `kind` seen by virtual user `vu` at `at_us`.
    pub fn violation(
        &self,
        kind: Kind,
        vu: u32,
        event: &str,
        expected: String,
        got: String,
        at_us: u64,
    ) {
        self.violations.report(
            1,
            Evidence {
                t_s: at_us.saturating_sub(self.epoch_unix_us) as f64 / 1e6,
                kind,
                client: format!("vu {vu}"),
                event: event.to_owned(),
                expected,
                got,
            },
        );
    }

    /// `at` in microseconds since the UNIX epoch, on this process's clock.
    pub fn micros(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_micros();
        self.epoch_unix_us + u64::try_from(since).unwrap_or(u64::MAX / 2)
    }

    /// Claims the next slot of the global message schedule (`load.messages`),
    /// returning its intended instant, or `None` when the scenario has none.
    /// Slots are spaced by the schedule's arrival process over all clients.
    pub fn next_global_slot(&self, rng: &mut impl rand::Rng) -> Option<Instant> {
        let schedule = self.scenario.load.messages.as_ref()?;
        let mut next = self.next_slot.lock().expect("schedule lock");
        let slot = next.unwrap_or_else(Instant::now);
        // Each shard keeps its share of the global rate.
        let rate = schedule.rate / f64::from(self.shard.count);
        *next = Some(slot + schedule.arrival.next_gap(rate, rng));
        Some(slot)
    }
}
