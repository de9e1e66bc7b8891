//! What every virtual user of a run shares: the scenario, the client settings,
//! the metric ids, the roster, the clock.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::client::ClientConfig;
use crate::metrics::{CounterId, LatencyId, Recorder, Registry};
use crate::scenario::{Scenario, Step, TokenSource};

use super::chat;
use super::roster::Roster;

/// Interned metric ids for the hot paths.
#[derive(Debug)]
pub struct Ids {
    /// `connect`: TCP + transport + open packet + namespace CONNECT.
    pub connect: LatencyId,
    /// `join`: `joinChat` to `joined`.
    pub join: LatencyId,
    /// `schedule_lag`: how far behind schedule scheduled sends went out.
    pub schedule_lag: LatencyId,
    /// `delivery.<event>` and `delivery_uncorrected.<event>` per broadcast.
    pub delivery: HashMap<&'static str, (LatencyId, LatencyId)>,
    /// `ack.<event>` per emitted event that asks for acks.
    pub ack: HashMap<String, LatencyId>,
    /// `connections`: attempts.
    pub connections: CounterId,
    /// `connections.ok`.
    pub connections_ok: CounterId,
    /// `connections.refused`: CONNECT_ERROR answers.
    pub connections_refused: CounterId,
    /// `errors.connect`: connects that failed otherwise.
    pub errors_connect: CounterId,
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
    /// `deliveries.received.<event>` per broadcast.
    pub received: HashMap<&'static str, CounterId>,
    /// `violations.order`: a sender's messages arrived out of order.
    pub violations_order: CounterId,
    /// `violations.duplicate`: a message arrived twice.
    pub violations_duplicate: CounterId,
    /// `arrivals.dropped`: open-model arrivals refused by a phase's `max`.
    pub arrivals_dropped: CounterId,
}

impl Ids {
    fn new(registry: &Registry, scenario: &Scenario) -> Self {
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
            delivery: chat::BROADCASTS
                .iter()
                .map(|e| {
                    let corrected = registry.latency(&format!("delivery.{e}"));
                    let uncorrected = registry.latency(&format!("delivery_uncorrected.{e}"));
                    (*e, (corrected, uncorrected))
                })
                .collect(),
            ack,
            connections: registry.counter("connections"),
            connections_ok: registry.counter("connections.ok"),
            connections_refused: registry.counter("connections.refused"),
            errors_connect: registry.counter("errors.connect"),
            errors_emit: registry.counter("errors.emit"),
            errors_exception: registry.counter("errors.exception"),
            timeouts_expect: registry.counter("timeouts.expect"),
            timeouts_ack: registry.counter("timeouts.ack"),
            emits: registry.counter("emits"),
            received: chat::BROADCASTS
                .iter()
                .map(|e| (*e, registry.counter(&format!("deliveries.received.{e}"))))
                .collect(),
            violations_order: registry.counter("violations.order"),
            violations_duplicate: registry.counter("violations.duplicate"),
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
    /// Clients connected right now.
    pub connected: AtomicI64,
    /// Next slot of the global message schedule, once it has started.
    next_slot: Mutex<Option<Instant>>,
}

impl Context {
    /// The context of a run.
    pub fn new(
        scenario: Scenario,
        client: ClientConfig,
        tokens: Option<TokenSource>,
        local_ips: Vec<IpAddr>,
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
            ids: Ids::new(registry, &scenario),
            recorder: registry.recorder(),
            scenario,
            client,
            tokens,
            local_ips,
            roster: Roster::default(),
            expected_events,
            epoch: registry.started(),
            connected: AtomicI64::new(0),
            next_slot: Mutex::new(None),
        }
    }

    /// Microseconds from the run epoch to `at`.
    pub fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Claims the next slot of the global message schedule (`load.messages`),
    /// returning its intended instant, or `None` when the scenario has none.
    /// Slots are spaced by the schedule's arrival process over all clients.
    pub fn next_global_slot(&self, rng: &mut impl rand::Rng) -> Option<Instant> {
        let schedule = self.scenario.load.messages.as_ref()?;
        let mut next = self.next_slot.lock().expect("schedule lock");
        let slot = next.unwrap_or_else(Instant::now);
        *next = Some(slot + schedule.arrival.next_gap(schedule.rate, rng));
        Some(slot)
    }
}
