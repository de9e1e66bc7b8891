//! Rooms in a protocol model: how a client joins and leaves a room, what
//! the server answers, and which broadcasts a `room` field scopes to the
//! room's members (docs/protocol.md section 8 for the `strict` model).

use std::collections::HashMap;

use serde::Deserialize;

use super::{schemas, Schema};

/// The most rooms a model may let one client be in at once: the driver
/// keeps this many memberships per client, so it bounds what it holds.
pub const MAX_ROOMS_PER_CLIENT: usize = 1024;

/// The rooms of a model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsRule {
    /// The payload field holding the room's name, in the client's room
    /// events, in the scoped causes and in everything the server sends of a room.
    pub field: String,
    /// The client event that joins a room (`{field: name}`).
    pub join: String,
    /// The client event that leaves a room.
    pub leave: String,
    /// The reply to the joiner: the room's members, itself included.
    pub snapshot: RoomSnapshotRule,
    /// The announcement of a join, to every member (the joiner included).
    pub joined: RoomAnnounce,
    /// The announcement of a leave (or of a member's disconnect), to the
    /// members and the leaver.
    pub left: RoomAnnounce,
    /// Causes of the model's broadcasts that a room field scopes: their
    /// broadcast goes to the room's members (`to: everyone`) or to the
    /// members but the sender (`to: others`).
    pub scoped: Vec<String>,
    /// How many rooms one client may be in at once.
    #[serde(default = "default_max")]
    pub max_per_client: usize,
    /// Payload schemas of the scoped broadcasts when they carry a room
    /// (the room's events themselves are in the model's `payloads`).
    #[serde(default, deserialize_with = "schemas")]
    pub payloads: HashMap<String, Schema>,
}

fn default_max() -> usize {
    50
}

/// The room snapshot sent to a joiner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSnapshotRule {
    /// Its event name.
    pub event: String,
    /// The field holding `[[socketId, name], …]`.
    pub users_field: String,
}

/// A room announcement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomAnnounce {
    /// Its event name; the subject's name is in the join rule's `name_field`.
    pub event: String,
    /// The field holding the subject's socket id, if any.
    #[serde(default)]
    pub id_field: Option<String>,
}

impl RoomsRule {
    /// What is wrong with the rule, if anything (checked when the model loads).
    pub fn problem(&self) -> Option<String> {
        if self.max_per_client == 0 || self.max_per_client > MAX_ROOMS_PER_CLIENT {
            return Some(format!(
                "rooms.max_per_client must be 1 to {MAX_ROOMS_PER_CLIENT}, not {}",
                self.max_per_client
            ));
        }
        if self.field.is_empty() {
            return Some("rooms.field is empty".into());
        }
        None
    }

    /// Whether a broadcast caused by `cause` is scoped by a room field.
    pub fn scopes(&self, cause: &str) -> bool {
        self.scoped.iter().any(|c| c == cause)
    }
}
