//! Rooms of the strict profile (docs/protocol.md section 8): joining and
//! leaving, and the room-scoped `newMessage` and `userTyping`. Membership
//! lives in the namespace's adapter, which routes a room's frames; every
//! change and every room broadcast happens under the namespace's state lock,
//! so a room event reaches exactly the members of that moment.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::{payload, Chat, Outcome, State};
use crate::sio::adapter::{Recipients, RemoteUser};

/// Longest room name, in characters.
pub(super) const MAX_ROOM_CHARS: usize = 64;

/// Why a room operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RoomRefusal {
    /// The socket is in as many rooms as it may be.
    Full(usize),
    /// The socket is not a member of the room it sent to.
    NotMember,
}

impl RoomRefusal {
    /// The exception's message.
    pub(super) fn message(&self) -> String {
        match self {
            Self::Full(max) => format!("at most {max} rooms per socket"),
            Self::NotMember => "not in room".to_owned(),
        }
    }

    /// The `refused_events` metric's reason.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Full(_) => "room_limit",
            Self::NotMember => "not_in_room",
        }
    }
}

/// The `room` field of an event's argument: `Ok(None)` when absent, the
/// name when valid (section 8.1), else what is wrong with it.
pub(super) fn room_field(arg: Option<&Value>) -> Result<Option<&str>, String> {
    match arg.and_then(|a| a.get("room")) {
        None => Ok(None),
        Some(room) => valid_name(room).map(Some),
    }
}

/// `{"room": string}`, the argument of `joinRoom` and `leaveRoom`.
pub(super) fn room_arg<'a>(arg: Option<&'a Value>, event: &str) -> Result<&'a str, String> {
    match arg.and_then(|a| a.get("room")) {
        Some(room) => valid_name(room),
        None => Err(format!("{event} needs {{\"room\": string}}")),
    }
}

fn valid_name(room: &Value) -> Result<&str, String> {
    let bad = || format!("room must be 1 to {MAX_ROOM_CHARS} characters of A-Z a-z 0-9 _ . : -");
    let name = room.as_str().ok_or_else(bad)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if name.is_empty() || name.len() > MAX_ROOM_CHARS || !name.chars().all(allowed) {
        return Err(bad());
    }
    Ok(name)
}

impl Chat {
    /// The socket `sid` (joined as `username`, raw JSON) joins `room`: the
    /// joiner gets `roomUsers`, then every member gets `roomJoined`. A second
    /// join changes nothing.
    pub(super) fn join_room(
        &self,
        sid: &Arc<str>,
        username: &str,
        room: &str,
        out: &mut Outcome,
    ) -> Result<(), RoomRefusal> {
        let state = self.state();
        if self.adapter.is_member(sid, room) {
            return Ok(());
        }
        if self.adapter.rooms_of(sid).len() >= self.limits.max_rooms {
            return Err(RoomRefusal::Full(self.limits.max_rooms));
        }
        let remote = self.adapter.join_snapshot(sid, room);
        let room_json = payload::string(room);
        let users = room_users(&state, &self.adapter.members(room), &remote);
        let snapshot = payload::object(&[("room", Some(&room_json)), ("users", Some(&users))]);
        let frame = payload::event_frame("roomUsers", &snapshot);
        self.adapter.deliver(&frame, Recipients::Socket(sid), out);
        self.metrics.delivery();
        let joined = presence(&room_json, username, sid);
        self.broadcast(&state, "roomJoined", &joined, Recipients::Room(room), out);
        Ok(())
    }

    /// The socket `sid` leaves `room`: `roomLeft` to the members and to the
    /// leaver. Leaving a room one is not in changes nothing.
    pub(super) fn leave_room(&self, sid: &Arc<str>, username: &str, room: &str, out: &mut Outcome) {
        let state = self.state();
        if !self.adapter.is_member(sid, room) {
            return;
        }
        let left = presence(&payload::string(room), username, sid);
        // Sent while the leaver is still a member, so it gets its own `roomLeft`.
        self.broadcast(&state, "roomLeft", &left, Recipients::Room(room), out);
        self.adapter.leave(sid, room);
    }

    /// Every room of a socket that is leaving `/chat`, each with its
    /// `roomLeft` to the remaining members. Called under the state lock.
    pub(super) fn leave_all_rooms(
        &self,
        state: &State,
        sid: &Arc<str>,
        username: &str,
        out: &mut Outcome,
    ) {
        for room in self.adapter.rooms_of(sid) {
            self.adapter.leave(sid, &room);
            let left = presence(&payload::string(&room), username, sid);
            self.broadcast(state, "roomLeft", &left, Recipients::Room(&room), out);
        }
    }

    /// `newMessage` with a `room` key to the room's members; returns its
    /// timestamp, or the refusal when the sender is not a member.
    pub(super) fn room_message(
        &self,
        sid: &str,
        username: &str,
        message: &str,
        room: &str,
        out: &mut Outcome,
    ) -> Result<String, RoomRefusal> {
        let state = self.state();
        if !self.adapter.is_member(sid, room) {
            return Err(RoomRefusal::NotMember);
        }
        let timestamp = chorus_protocol::timestamp::format_iso(SystemTime::now());
        let data = payload::object(&[
            ("username", Some(username)),
            ("message", Some(&payload::string(message))),
            ("timestamp", Some(&payload::string(&timestamp))),
            ("room", Some(&payload::string(room))),
        ]);
        self.broadcast(&state, "newMessage", &data, Recipients::Room(room), out);
        Ok(timestamp)
    }

    /// `userTyping` with a `room` key to the room's members but the sender.
    pub(super) fn room_typing(
        &self,
        sid: &str,
        username: &str,
        is_typing: bool,
        room: &str,
        out: &mut Outcome,
    ) -> Result<(), RoomRefusal> {
        let state = self.state();
        if !self.adapter.is_member(sid, room) {
            return Err(RoomRefusal::NotMember);
        }
        let typing = if is_typing { "true" } else { "false" };
        let data = payload::object(&[
            ("username", Some(username)),
            ("isTyping", Some(typing)),
            ("room", Some(&payload::string(room))),
        ]);
        self.broadcast(
            &state,
            "userTyping",
            &data,
            Recipients::RoomBut(room, sid),
            out,
        );
        Ok(())
    }
}

/// `{"room":…,"username":…,"clientId":…}` of `roomJoined` and `roomLeft`.
fn presence(room_json: &str, username: &str, sid: &str) -> String {
    payload::object(&[
        ("room", Some(room_json)),
        ("username", Some(username)),
        ("clientId", Some(&payload::string(sid))),
    ])
}

/// `[["<sid>",<name>],…]` of a room's members, in the order they joined,
/// then its members on the cluster's other nodes.
fn room_users(state: &State, members: &[Arc<str>], remote: &[RemoteUser]) -> String {
    let local = members
        .iter()
        .map(|sid| (&**sid, state.users.get(sid).and_then(|n| n.as_deref())));
    let others = remote.iter().map(|(sid, name)| (&**sid, Some(&**name)));
    payload::user_pairs(local.chain(others))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn room_names_follow_section_8_1() {
        let ok = json!({"room": "room-1.a:B_c"});
        assert_eq!(room_arg(Some(&ok), "joinRoom"), Ok("room-1.a:B_c"));
        let longest = json!({"room": "r".repeat(MAX_ROOM_CHARS)});
        assert!(room_arg(Some(&longest), "joinRoom").is_ok());
        for bad in [
            json!({"room": ""}),
            json!({"room": "r".repeat(MAX_ROOM_CHARS + 1)}),
            json!({"room": "a b"}),
            json!({"room": "é"}),
            json!({"room": 7}),
            json!({"room": null}),
        ] {
            assert!(room_arg(Some(&bad), "joinRoom").is_err(), "{bad}");
            assert!(room_field(Some(&bad)).is_err(), "{bad}");
        }
        assert!(room_arg(Some(&json!({})), "leaveRoom").is_err());
        assert_eq!(room_field(Some(&json!({"message": "x"}))), Ok(None));
    }
}
