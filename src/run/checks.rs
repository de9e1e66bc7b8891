//! The protocol checks a receiver runs on what it gets, beside the ledger:
//! payload schemas (every one at first, then a sample) and the snapshot of
//! who is in the namespace.

use std::fmt;
use std::time::SystemTime;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::rules::schema_problem;

use super::clock::WallTime;
use super::ledger::{name_hash, DELIVERY_DEADLINE, LEDGER_MARGIN};
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
        let event = plan.event(id);
        if event.schema.is_none() && event.room_schema.is_none() {
            return None;
        }
        if self.seen.len() <= id.index() {
            self.seen.resize(plan.event_count(), 0);
        }
        let n = &mut self.seen[id.index()];
        *n += 1;
        if *n > CHECK_FIRST && !n.is_multiple_of(CHECK_EVERY) {
            return None;
        }
        let value = arg.and_then(|a| serde_json::from_str::<Value>(a.get()).ok());
        // A room-scoped broadcast that carries its room has the room's schema.
        let in_room = plan.model.rooms.as_ref().is_some_and(|r| {
            value
                .as_ref()
                .and_then(Value::as_object)
                .is_some_and(|o| o.contains_key(&r.field))
        });
        let schema = match (in_room, &event.room_schema) {
            (true, Some(room)) => room,
            _ => event.schema.as_ref()?,
        };
        let problem = schema_problem(schema, value.as_ref(), SystemTime::now())?;
        let got = arg.map_or("no payload".to_owned(), |a| a.get().to_owned());
        Some((problem, got))
    }
}

/// The [`name_hash`]es of the names a snapshot lists (`[[id, name], …]`),
/// sorted: parsed straight from the payload, no value tree (an entry whose
/// second element is not a string lists no name).
pub fn listed_hashes(arg: Option<&RawValue>) -> Vec<u64> {
    let mut names: Vec<u64> = arg
        .and_then(|a| serde_json::from_str::<Vec<EntryName>>(a.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.0)
        .collect();
    names.sort_unstable();
    names
}

/// The snapshot (the sorted hashes it `listed`, see [`listed_hashes`]) must
/// hold every client surely joined when this one started to connect (at
/// `started`; never, when unknown), and none surely gone by then: what it
/// got wrong, as (expected, got) pairs.
///
/// No lock is held across the snapshot: each joined sender is looked up by
/// the hash it keeps beside its name (equal hashes count as the same name,
/// as in [`super::roster::SenderLog::misnamed`]), a binary search in the
/// listed hashes; only a sender found wrong has its name read, for the message.
pub fn snapshot_problems(
    roster: &Roster,
    listed: &[u64],
    started: Option<WallTime>,
    at: WallTime,
) -> Vec<(String, String)> {
    let margin = LEDGER_MARGIN.as_micros() as u64;
    let deadline = DELIVERY_DEADLINE.as_micros() as u64;
    let before_start = |t: WallTime| started.is_none_or(|s| t < s);
    let mut problems = Vec::new();
    roster.for_each_joined(|vu, log| {
        let Some(hash) = log.name_hash() else { return };
        let surely_in = log
            .join_confirmed_at()
            .is_some_and(|c| before_start(c.plus_us(margin)))
            && log.left_at().is_none_or(|l| l > at);
        let surely_out = log
            .left_at()
            .is_some_and(|l| before_start(l.plus_us(deadline)));
        let listed = listed.binary_search(&hash).is_ok();
        if surely_in && !listed {
            let name = log.name().unwrap_or_default();
            problems.push((
                format!("to list {name:?} (vu {vu}, joined before)"),
                "not listed".into(),
            ));
        } else if surely_out && listed {
            let name = log.name().unwrap_or_default();
            problems.push((
                format!("not to list {name:?} (vu {vu}, gone)"),
                "listed".into(),
            ));
        }
    });
    problems
}

/// One snapshot entry, `[id, name, ...]`: the [`name_hash`] of its second
/// element when that is a string; nothing for any other entry (as a value
/// tree's `entry.get(1)?.as_str()` would find).
struct EntryName(Option<u64>);

impl<'de> Deserialize<'de> for EntryName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EntryVisitor).map(EntryName)
    }
}

/// Visits an entry; anything but an array is skipped whole.
struct EntryVisitor;

/// Visits an entry's second element: a string's hash, or nothing.
struct NameVisitor;

/// An entry's second element.
struct MaybeName(Option<u64>);

impl<'de> Deserialize<'de> for MaybeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NameVisitor).map(MaybeName)
    }
}

/// Skips any value but an array (for [`EntryVisitor`]) or a string (for
/// [`NameVisitor`]), answering nothing for it.
macro_rules! skip_others {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    };
}

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a snapshot entry")
    }

    skip_others!();

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if seq.next_element::<IgnoredAny>()?.is_none() {
            return Ok(None);
        }
        let name = seq.next_element::<MaybeName>()?.and_then(|n| n.0);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(name)
    }
}

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a name")
    }

    skip_others!();

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Some(name_hash(name)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::shard::Shard;

    fn t(us: u64) -> WallTime {
        WallTime::from_micros(us)
    }

    #[test]
    fn snapshots_must_list_who_is_surely_in_and_not_who_is_surely_gone() {
        let roster = Roster::new(Shard::WHOLE, 10);
        let (ann, bob, cy) = (roster.sender(1), roster.sender(2), roster.sender(3));
        ann.joined(Some("ann".into()), t(100), t(100));
        ann.join_confirmed(t(200));
        bob.joined(Some("bob".into()), t(100), t(100));
        bob.join_confirmed(t(200));
        bob.left(t(300));
        cy.joined(Some("cy".into()), t(100), t(100)); // never confirmed: either way
        let (started, at) = (Some(t(10_000_000)), t(10_000_001));
        let check = |json: &str| {
            let raw = RawValue::from_string(json.to_owned()).expect("json");
            snapshot_problems(&roster, &listed_hashes(Some(&raw)), started, at)
        };
        assert_eq!(check(r#"[["s1","ann"],["s3","cy"]]"#), []);
        assert_eq!(
            check(r#"[{"x":1},5,["s9"],["s8",["ann"]],["s2","bob",{"k":[1]}],["s1","\u0061nn"]]"#),
            [(
                r#"not to list "bob" (vu 2, gone)"#.to_owned(),
                "listed".to_owned()
            )],
            "other shapes skipped, escapes read"
        );
        let missing = [(
            r#"to list "ann" (vu 1, joined before)"#.to_owned(),
            "not listed".to_owned(),
        )];
        assert_eq!(check("[]"), missing);
        assert_eq!(check(r#"{"ann":1}"#), missing, "not a list: nobody listed");
        assert_eq!(
            snapshot_problems(&roster, &listed_hashes(None), started, at),
            missing,
            "no payload"
        );
        assert_eq!(
            snapshot_problems(&roster, &[], Some(t(250)), at),
            [],
            "started before ann was surely in"
        );
    }
}
