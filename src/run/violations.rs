//! Protocol violations found during a run: counted per kind (the
//! `violations.<kind>` counters, usable in thresholds) and the first ones kept
//! with their evidence for `violations.json` and the report.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::metrics::{CounterId, Recorder, Registry};

/// Evidence kept at most, per run.
const MAX_EVIDENCE: usize = 200;

/// The kinds of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A broadcast owed to a receiver never reached it.
    Loss,
    /// A delivery arrived twice.
    Duplicate,
    /// A sender's broadcasts arrived out of order, or a reply before its announcement.
    Order,
    /// An event reached a socket that must not get it.
    Recipient,
    /// Announcements or snapshots that do not match who joined and left.
    Presence,
    /// A payload with wrong keys, types, names or timestamps.
    Payload,
    /// A reply the model requires never came.
    Reply,
    /// A socket stopped receiving, or the server stopped answering or closed connections.
    Liveness,
    /// A room's event reached a socket surely not a member of the room.
    Leak,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Loss,
        Kind::Duplicate,
        Kind::Order,
        Kind::Recipient,
        Kind::Presence,
        Kind::Payload,
        Kind::Reply,
        Kind::Liveness,
        Kind::Leak,
    ];

    /// The name used in counters and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Loss => "loss",
            Kind::Duplicate => "duplicate",
            Kind::Order => "order",
            Kind::Recipient => "recipient",
            Kind::Presence => "presence",
            Kind::Payload => "payload",
            Kind::Reply => "reply",
            Kind::Liveness => "liveness",
            Kind::Leak => "leak",
        }
    }
}

/// One violation with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    /// Seconds since the run started.
    pub t_s: f64,
    /// The kind.
    pub kind: Kind,
    /// The virtual user that saw it.
    pub client: String,
    /// The event concerned.
    pub event: String,
    /// What the protocol model required.
    pub expected: String,
    /// What arrived (or did not).
    pub got: String,
}

/// Counts violations and keeps the first ones' evidence.
pub struct Violations {
    recorder: Recorder,
    ids: Vec<(Kind, CounterId)>,
    kept: Mutex<Vec<Evidence>>,
}

impl Violations {
    /// Registers a `violations.<kind>` counter for every kind.
    pub fn new(registry: &Registry) -> Self {
        Self {
            recorder: registry.recorder(),
            ids: Kind::ALL
                .iter()
                .map(|k| (*k, registry.counter(&format!("violations.{}", k.as_str()))))
                .collect(),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Counts `n` violations of one kind with the evidence of the first.
    pub fn report(&self, n: u64, evidence: Evidence) {
        if n == 0 {
            return;
        }
        let id = self
            .ids
            .iter()
            .find(|(k, _)| *k == evidence.kind)
            .expect("every kind")
            .1;
        self.recorder.add(id, n);
        let mut kept = self.kept.lock().expect("evidence lock");
        if kept.len() < MAX_EVIDENCE {
            kept.push(evidence);
        }
    }

    /// Writes `violations.json`: the kept evidence, in time order.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        write_evidence(run_dir, self.kept.lock().expect("evidence lock").clone())
    }
}

/// The evidence file's name in a run directory.
pub const EVIDENCE_FILE: &str = "violations.json";

/// Writes evidence to `violations.json`, in time order, at most the first ones kept.
pub fn write_evidence(run_dir: &Path, mut evidence: Vec<Evidence>) -> std::io::Result<()> {
    evidence.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    evidence.truncate(MAX_EVIDENCE);
    let json = serde_json::to_string_pretty(&evidence).expect("evidence serializes");
    std::fs::write(run_dir.join(EVIDENCE_FILE), json)
}

/// Reads `violations.json` (none when absent).
pub fn read_evidence(run_dir: &Path) -> std::io::Result<Vec<Evidence>> {
    match std::fs::read(run_dir.join(EVIDENCE_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
