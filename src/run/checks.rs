//! The protocol checks a receiver runs on what it gets, beside the ledger:
//! payload schemas (every one at first, then a sample) and the snapshot of
//! who is in the namespace.

use std::collections::HashSet;
use std::time::SystemTime;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::rules::schema_problem;

use super::clock::WallTime;
use super::ledger::{DELIVERY_DEADLINE, LEDGER_MARGIN};
use super::plan::{EventId, RunPlan};
use super::roster::Roster;

/// Every event's payload is checked this many times per client, then one in
/// [`CHECK_EVERY`], so checking stays cheap at hundreds of thousands of deliveries a second.
const CHECK_FIRST: u32 = 100;
/// See [`CHECK_FIRST`].
const CHECK_EVERY: u32 = 16;

/// One client's payload checks so far, per event id (for sampling).
#[derive(Debug, Default)]
pub struct PayloadChecks {
    seen: Vec<u32>,
}

impl PayloadChecks {
    /// What is wrong with this payload of event `id`, and the payload as
    /// received: `None` when the event has no schema, the payload fits, or
    /// this one is not in the sample.
    pub fn check(
        &mut self,
        plan: &RunPlan,
        id: EventId,
        arg: Option<&RawValue>,
    ) -> Option<(String, String)> {
        let schema = plan.event(id).schema.as_ref()?;
        if self.seen.len() <= id.index() {
            self.seen.resize(plan.event_count(), 0);
        }
        let n = &mut self.seen[id.index()];
        *n += 1;
        if *n > CHECK_FIRST && !n.is_multiple_of(CHECK_EVERY) {
            return None;
        }
        let value = arg.and_then(|a| serde_json::from_str::<Value>(a.get()).ok());
        let problem = schema_problem(schema, value.as_ref(), SystemTime::now())?;
        let got = arg.map_or("no payload".to_owned(), |a| a.get().to_owned());
        Some((problem, got))
    }
}

/// The names a snapshot lists (`[[id, name], …]`).
pub fn listed_names(arg: Option<&RawValue>) -> Vec<String> {
    let entries: Vec<Value> = arg
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| Some(e.get(1)?.as_str()?.to_owned()))
        .collect()
}

/// The snapshot (the names it `listed`, see [`listed_names`]) must hold
/// every client surely joined when this one started to connect (at
/// `started`; never, when unknown), and none surely gone by then: what it
/// got wrong, as (expected, got) pairs.
pub fn snapshot_problems(
    roster: &Roster,
    listed: &[String],
    started: Option<WallTime>,
    at: WallTime,
) -> Vec<(String, String)> {
    let names: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let margin = LEDGER_MARGIN.as_micros() as u64;
    let deadline = DELIVERY_DEADLINE.as_micros() as u64;
    let before_start = |t: WallTime| started.is_none_or(|s| t < s);
    let mut problems = Vec::new();
    for (vu, log) in roster.joined_senders() {
        let Some(name) = log.name() else { continue };
        let surely_in = log
            .join_confirmed_at()
            .is_some_and(|c| before_start(c.plus_us(margin)))
            && log.left_at().is_none_or(|l| l > at);
        let surely_out = log
            .left_at()
            .is_some_and(|l| before_start(l.plus_us(deadline)));
        if surely_in && !names.contains(name.as_str()) {
            problems.push((
                format!("to list {name:?} (vu {vu}, joined before)"),
                "not listed".into(),
            ));
        } else if surely_out && names.contains(name.as_str()) {
            problems.push((
                format!("not to list {name:?} (vu {vu}, gone)"),
                "listed".into(),
            ));
        }
    }
    problems
}
