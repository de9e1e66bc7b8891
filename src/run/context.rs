//! What every virtual user of a run shares: the [`RunPlan`] (read only) and
//! the run's shared state: the roster the ledger is settled from, the
//! violations found, the clients' counts, and the global message schedule.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::metrics::{Recorder, Registry};

use super::clock::WallTime;
use super::failure::ConnectFailures;
use super::inbox::Inbox;
use super::plan::RunPlan;
use super::rooms::RoomDirectory;
use super::roster::Roster;
use super::timing::RxIds;
use super::violations::{Evidence, Kind, Violations};

/// Shared by every virtual user of a run.
pub struct Context {
    /// The compiled run.
    pub plan: RunPlan,
    /// The metrics recording handle.
    pub recorder: Recorder,
    /// Send logs and receiver records: what the ledger is settled from.
    pub roster: Roster,
    /// Violations found so far.
    pub violations: Violations,
    /// The clients' counts and inboxes.
    pub clients: Clients,
    /// Next slot of the global message schedule, once it has started.
    next_slot: Mutex<Option<Instant>>,
    /// The receive-time metrics of every frame.
    pub rx: RxIds,
    /// Who is in which room, in this process.
    pub rooms: RoomDirectory,
}

impl Context {
    /// The shared state of a run of `plan`.
    pub fn new(plan: RunPlan, registry: &Registry) -> Self {
        Self {
            roster: Roster::new(plan.shard, plan.vus),
            plan,
            violations: Violations::new(registry),
            recorder: registry.recorder(),
            clients: Clients {
                connected: AtomicI64::new(0),
                ever_connected: AtomicU64::new(0),
                sending: AtomicI64::new(0),
                reconnecting: AtomicI64::new(0),
                failures: ConnectFailures::new(registry.recorder()),
                inboxes: Mutex::new(Vec::new()),
            },
            next_slot: Mutex::new(None),
            rx: RxIds::new(registry),
            rooms: RoomDirectory::default(),
        }
    }

    /// Reports a violation of `kind` seen by virtual user `vu` at `at`.
    pub fn violation(
        &self,
        kind: Kind,
        vu: u32,
        event: &str,
        expected: String,
        got: String,
        at: WallTime,
    ) {
        self.violations.report(
            1,
            Evidence {
                t_s: self.plan.clock.seconds_into_run(at),
                kind,
                client: format!("vu {vu}"),
                event: event.to_owned(),
                expected,
                got,
            },
        );
    }

    /// Claims the next slot of the global message schedule (`load.messages`),
    /// returning its intended instant, or `None` when the scenario has none.
    /// Slots are spaced by the schedule's arrival process over all clients.
    pub fn next_global_slot(&self, rng: &mut impl rand::Rng) -> Option<Instant> {
        let schedule = self.plan.scenario.load.messages.as_ref()?;
        let mut next = self.next_slot.lock().expect("schedule lock");
        let slot = next.unwrap_or_else(Instant::now);
        // Each shard keeps its share of the global rate.
        let rate = schedule.rate / f64::from(self.plan.shard.count);
        *next = Some(slot + schedule.arrival.next_gap(rate, rng));
        Some(slot)
    }
}

/// The clients of a run: how many are connected, how many sends are being
/// written, why connects failed, and the inboxes the liveness watchdog reads.
pub struct Clients {
    connected: AtomicI64,
    ever_connected: AtomicU64,
    sending: AtomicI64,
    reconnecting: AtomicI64,
    /// Connects that failed, by reason (`errors.connect.<reason>`).
    pub failures: ConnectFailures,
    inboxes: Mutex<Vec<Weak<Inbox>>>,
}

impl Clients {
    /// A client entered the namespace.
    pub fn connected(&self, inbox: &Arc<Inbox>) {
        self.connected.fetch_add(1, Relaxed);
        self.ever_connected.fetch_add(1, Relaxed);
        inbox.listed.store(true, Relaxed);
        self.inboxes
            .lock()
            .expect("inbox list lock")
            .push(Arc::downgrade(inbox));
    }

    /// A client entered the namespace again after a drop (its inbox is
    /// listed again if the list forgot it while it was away).
    pub fn reconnected(&self, inbox: &Arc<Inbox>) {
        self.connected.fetch_add(1, Relaxed);
        // Under the lock, so that `open_inboxes` cannot forget it meanwhile.
        let mut inboxes = self.inboxes.lock().expect("inbox list lock");
        if !inbox.listed.swap(true, Relaxed) {
            inboxes.push(Arc::downgrade(inbox));
        }
    }

    /// A dropped client starts (`1`) or stops (`-1`) trying to reconnect.
    pub fn reconnecting(&self, delta: i64) {
        self.reconnecting.fetch_add(delta, Relaxed);
    }

    /// Clients trying to reconnect right now.
    pub fn now_reconnecting(&self) -> i64 {
        self.reconnecting.load(Relaxed)
    }

    /// A connected client left.
    pub fn disconnected(&self) {
        self.connected.fetch_sub(1, Relaxed);
    }

    /// Clients connected right now.
    pub fn now_connected(&self) -> i64 {
        self.connected.load(Relaxed)
    }

    /// Clients that connected at all so far.
    pub fn ever_connected(&self) -> u64 {
        self.ever_connected.load(Relaxed)
    }

    /// An emit starts being written.
    pub fn send_started(&self) {
        self.sending.fetch_add(1, Relaxed);
    }

    /// An emit was written (or failed).
    pub fn send_ended(&self) {
        self.sending.fetch_sub(1, Relaxed);
    }

    /// Emits being written right now (the driver's send backlog).
    pub fn sending(&self) -> i64 {
        self.sending.load(Relaxed)
    }

    /// Client sessions open right now (connected and not closed by the server).
    pub fn open_sessions(&self) -> usize {
        let inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|i| !i.is_closed())
            .count()
    }

    /// The inboxes of the sessions still open (forgetting the others).
    pub fn open_inboxes(&self) -> Vec<Arc<Inbox>> {
        let mut inboxes = self.inboxes.lock().expect("inbox list lock");
        inboxes.retain(|w| {
            w.upgrade().is_some_and(|i| {
                let open = !i.is_closed();
                if !open {
                    i.listed.store(false, Relaxed);
                }
                open
            })
        });
        inboxes.iter().filter_map(Weak::upgrade).collect()
    }
}
