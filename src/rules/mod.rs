//! Protocol models: a gateway's delivery rules as data (which client event
//! causes which server events, to whom, with which payloads), so that the
//! checks of every run apply to any gateway its user can describe. The two
//! shipped models, `seed` and `strict`, are `scenarios/protocol/*.yml`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use crate::scenario::{parse_yaml, ScenarioError};

pub mod rooms;

pub use rooms::RoomsRule;

/// Who receives a server event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipients {
    /// Every socket in the namespace, the sender included.
    Everyone,
    /// Every socket in the namespace but the sender.
    Others,
    /// The sender alone.
    Sender,
}

/// A server event and who gets it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The event name.
    pub event: String,
    /// Its recipients.
    pub to: Recipients,
    /// The payload field holding the subject's socket id, if any.
    #[serde(default)]
    pub id_field: Option<String>,
}

/// How a client joins, and what the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRule {
    /// The client event.
    pub event: String,
    /// The field of its payload (and of the announcements) holding the name.
    pub name_field: String,
    /// The reply to the joining socket, after its own announcement.
    pub reply: Delivery,
    /// The announcement to the namespace.
    pub announce: Delivery,
}

/// What the server announces when a joined socket leaves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveRule {
    /// The announcement to the sockets left.
    pub announce: Delivery,
}

/// The list of joined sockets sent to a socket entering the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRule {
    /// Its event name; its first argument is `[[socketId, name], …]`.
    pub event: String,
}

/// A client event that a joined client sends and the broadcast it causes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRule {
    /// The client event.
    pub cause: String,
    /// The server event broadcast for it.
    pub event: String,
    /// Who receives it.
    pub to: Recipients,
    /// The payload field naming the sender.
    pub name_field: String,
    /// A text field of both payloads where the driver's correlation mark
    /// travels; without one, deliveries are matched by sender and order.
    #[serde(default)]
    pub mark_field: Option<String>,
}

/// The type of a payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON boolean.
    Boolean,
    /// A JSON number.
    Number,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// A string in JavaScript's `toISOString()` form.
    Iso8601,
}

impl FieldType {
    /// Whether `value` has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FieldType::String => value.is_string(),
            FieldType::Boolean => value.is_boolean(),
            FieldType::Number => value.is_number(),
            FieldType::Object => value.is_object(),
            FieldType::Array => value.is_array(),
            FieldType::Iso8601 => value
                .as_str()
                .is_some_and(|s| chorus_protocol::timestamp::parse_iso(s).is_some()),
        }
    }
}

/// A payload schema: the exact keys, with their types.
pub type Schema = Vec<(String, FieldType)>;

/// One gateway's delivery rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolModel {
    /// The model's name.
    pub name: String,
    /// The namespace the rules apply to.
    pub namespace: String,
    /// Joining.
    pub join: JoinRule,
    /// Leaving.
    pub leave: LeaveRule,
    /// The snapshot on entering, if the gateway sends one.
    #[serde(default)]
    pub snapshot: Option<SnapshotRule>,
    /// Broadcasts caused by client events.
    #[serde(default)]
    pub broadcasts: Vec<BroadcastRule>,
    /// The server's error reply event, if any.
    #[serde(default)]
    pub error_event: Option<String>,
    /// Payload schemas of server events.
    #[serde(default, deserialize_with = "schemas")]
    pub payloads: HashMap<String, Schema>,
    /// Ack payload schemas by client event.
    #[serde(default, deserialize_with = "schemas")]
    pub acks: HashMap<String, Schema>,
    /// Rooms, if the gateway has them.
    #[serde(default)]
    pub rooms: Option<RoomsRule>,
}

pub(crate) fn schemas<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<HashMap<String, Schema>, D::Error> {
    // Keys in source order, so error messages list them as written.
    let raw: Vec<(String, Vec<(String, FieldType)>)> = ordered::<D, Ordered<FieldType>>(d)?
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(raw.into_iter().collect())
}

/// A mapping read in source order.
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ordered(d).map(Ordered)
    }
}

fn ordered<'de, D, T>(d: D) -> Result<Vec<(String, T)>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = a.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V(std::marker::PhantomData))
}

/// The shipped models, by name.
const BUILTIN: [(&str, &str); 2] = [
    ("seed", include_str!("../../scenarios/protocol/seed.yml")),
    (
        "strict",
        include_str!("../../scenarios/protocol/strict.yml"),
    ),
];

impl ProtocolModel {
    /// A shipped model (`seed` or `strict`), or a model file.
    pub fn resolve(name_or_path: &str, base_dir: &Path) -> Result<Self, ScenarioError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, &format!("scenarios/protocol/{name}.yml"));
        }
        let path = base_dir.join(name_or_path);
        let text =
            std::fs::read_to_string(&path).map_err(|e| crate::error::FileError::new(&path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses a model.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let model: Self = parse_yaml(text, origin)?;
        if let Some(problem) = model.rooms.as_ref().and_then(RoomsRule::problem) {
            return Err(ScenarioError::Model {
                origin: origin.to_owned(),
                message: problem,
            });
        }
        Ok(model)
    }

    /// The rule for a broadcast event, by the server event's name.
    pub fn broadcast(&self, event: &str) -> Option<&BroadcastRule> {
        self.broadcasts.iter().find(|b| b.event == event)
    }

    /// The rule for a client event that causes a broadcast.
    pub fn caused_by(&self, client_event: &str) -> Option<&BroadcastRule> {
        self.broadcasts.iter().find(|b| b.cause == client_event)
    }

    /// Checks a payload against the event's schema; `None` when it fits (or
    /// the model has no schema for the event), else what is wrong. Timestamps
    /// must also lie within [`TIMESTAMP_TOLERANCE`] of `now`.
    pub fn payload_problem(
        &self,
        event: &str,
        payload: Option<&Value>,
        now: SystemTime,
    ) -> Option<String> {
        schema_problem(self.payloads.get(event)?, payload, now)
    }

    /// Like [`ProtocolModel::payload_problem`], for the ack of a client event.
    pub fn ack_problem(
        &self,
        client_event: &str,
        payload: Option<&Value>,
        now: SystemTime,
    ) -> Option<String> {
        schema_problem(self.acks.get(client_event)?, payload, now)
    }
}

/// How far a payload's timestamp may be from the receive time.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5);

/// Checks a payload against a schema: `None` when it fits, else what is
/// wrong (the first problem found). Timestamps must also lie within
/// [`TIMESTAMP_TOLERANCE`] of `now`.
pub fn schema_problem(schema: &Schema, payload: Option<&Value>, now: SystemTime) -> Option<String> {
    let Some(Value::Object(map)) = payload else {
        return Some(format!(
            "expected an object, got {}",
            payload.map_or("nothing".into(), Value::to_string)
        ));
    };
    for (key, ty) in schema {
        match map.get(key) {
            None => return Some(format!("missing key `{key}`")),
            Some(v) if !ty.accepts(v) => return Some(format!("`{key}` should be {ty:?}, got {v}")),
            Some(_) => {}
        }
    }
    if let Some(k) = map.keys().find(|k| !schema.iter().any(|(s, _)| s == *k)) {
        return Some(format!("unexpected key `{k}`"));
    }
    schema
        .iter()
        .filter(|(_, ty)| *ty == FieldType::Iso8601)
        .find_map(|(key, _)| {
            let text = map.get(key)?.as_str()?;
            let at = chorus_protocol::timestamp::parse_iso(text)?;
            let skew = now.duration_since(at).unwrap_or_else(|e| e.duration());
            (skew > TIMESTAMP_TOLERANCE).then(|| {
                format!(
                    "`{key}` {text} is {:.1} s from the receive time",
                    skew.as_secs_f64()
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shipped_models_load() {
        for name in ["seed", "strict"] {
            let m = ProtocolModel::resolve(name, Path::new(".")).unwrap();
            assert_eq!(m.namespace, "/chat");
            assert_eq!(m.join.reply.to, Recipients::Sender);
            assert_eq!(m.caused_by("typing").unwrap().to, Recipients::Others);
            assert_eq!(
                m.broadcast("newMessage").unwrap().mark_field.as_deref(),
                Some("message")
            );
        }
        let strict = ProtocolModel::resolve("strict", Path::new(".")).unwrap();
        assert!(strict
            .ack_problem("typing", Some(&json!({"ok": true})), SystemTime::now())
            .is_none());
    }

    #[test]
    fn payloads_are_checked_against_their_schema() {
        let m = ProtocolModel::resolve("seed", Path::new(".")).unwrap();
        let now = chorus_protocol::timestamp::parse_iso("2026-11-26T02:20:52.000Z").unwrap();
        let good =
            json!({"username": "a", "message": "m", "timestamp": "2026-11-26T02:20:51.123Z"});
        assert_eq!(m.payload_problem("newMessage", Some(&good), now), None);
        let later = now + Duration::from_secs(60);
        assert!(m
            .payload_problem("newMessage", Some(&good), later)
            .unwrap()
            .contains("from the receive time"));
        let bad_time = json!({"username": "a", "message": "m", "timestamp": 1_795_660_851_123u64});
        assert!(m
            .payload_problem("newMessage", Some(&bad_time), now)
            .unwrap()
            .contains("timestamp"));
        let missing = json!({"message": "m", "timestamp": "2026-11-26T02:20:51.123Z"});
        assert!(m
            .payload_problem("newMessage", Some(&missing), now)
            .unwrap()
            .contains("username"));
        let extra = json!({"username": "a", "isTyping": true, "x": 1});
        assert!(m
            .payload_problem("userTyping", Some(&extra), now)
            .unwrap()
            .contains("`x`"));
        assert_eq!(m.payload_problem("unknownEvent", None, now), None);
    }

    #[test]
    fn a_bad_model_names_file_line_and_column() {
        let err =
            ProtocolModel::parse("name: x\nnamespace: /chat\njoin: 3\n", "m.yml").unwrap_err();
        assert!(err.to_string().starts_with("m.yml:3:"), "{err}");
    }
}
