//! The strict profile's event handling (docs/protocol.md section 7): the socket was
//! authenticated at the handshake; input is validated; events are rate limited
//! and acknowledged when the client asks.

use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use chorus_protocol::socketio::Event;
use indexmap::IndexMap;
use serde_json::Value;

use super::rooms::{self, RoomRefusal};
use super::{payload, Chat, ChatSocket, Outcome};
use crate::config::GatewayConfig;

/// Longest username, in characters.
const MAX_USERNAME_CHARS: usize = 32;

/// The strict profile's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    rate_per_sec: f64,
    burst: f64,
    join_rate_per_sec: f64,
    join_burst: f64,
    max_subjects: usize,
    max_message_bytes: usize,
    pub(super) max_rooms: usize,
}

impl From<&GatewayConfig> for Limits {
    fn from(c: &GatewayConfig) -> Self {
        Self {
            rate_per_sec: c.rate_per_sec,
            burst: f64::from(c.rate_burst.max(1)),
            join_rate_per_sec: c.join_rate_per_sec,
            join_burst: f64::from(c.join_burst.max(1)),
            max_subjects: c.max_rate_subjects.max(1),
            max_message_bytes: c.max_message_bytes,
            max_rooms: c.max_rooms_per_socket,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub(super) struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    fn refill(&mut self, now: Instant) {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// Whether the bucket would be full now (forgetting it loses nothing).
    fn is_full(&self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens + refill >= self.burst
    }
}

/// Takes one token from every bucket, or from none when one of them is empty.
fn take_all(buckets: &mut [&mut TokenBucket]) -> bool {
    let now = Instant::now();
    for b in buckets.iter_mut() {
        b.refill(now);
    }
    if buckets.iter().all(|b| b.tokens >= 1.0) {
        for b in buckets.iter_mut() {
            b.tokens -= 1.0;
        }
        true
    } else {
        false
    }
}

/// The buckets of one identity: every limited event, and (optionally) valid `joinChat`s alone.
#[derive(Debug, Clone)]
pub struct ConnRate {
    events: TokenBucket,
    joins: TokenBucket,
}

impl ConnRate {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            events: TokenBucket::new(limits.rate_per_sec, limits.burst),
            joins: TokenBucket::new(limits.join_rate_per_sec, limits.join_burst),
        }
    }

    fn is_full(&self, now: Instant) -> bool {
        self.events.is_full(now) && self.joins.is_full(now)
    }
}

/// The buckets of every token subject, bounded: at `max_subjects`, buckets
/// that have refilled are forgotten (a fresh bucket is the same), then the
/// oldest entries.
pub(super) struct Subjects {
    hasher: RandomState,
    buckets: IndexMap<u64, ConnRate>,
}

impl Subjects {
    pub(super) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            buckets: IndexMap::new(),
        }
    }

    /// The key of an identity: the `sub` claim, else the whole token. Keyed
    /// with a per-process random hash, so clients cannot aim at collisions.
    pub(super) fn key(&self, subject: Option<&str>, token: &str) -> u64 {
        match subject {
            Some(sub) => self.hasher.hash_one(("sub", sub)),
            None => self.hasher.hash_one(("token", token)),
        }
    }

    fn get(&mut self, key: u64, limits: &Limits) -> &mut ConnRate {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= limits.max_subjects {
            let now = Instant::now();
            self.buckets.retain(|_, b| !b.is_full(now));
            while self.buckets.len() >= limits.max_subjects {
                self.buckets.shift_remove_index(0);
            }
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| ConnRate::new(limits))
    }

    /// How many subjects are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// Which buckets an event counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    /// `sendMessage`, `typing` and refused `joinChat`s: the event bucket.
    Event,
    /// A valid `joinChat` (a join or a rename, broadcast to everyone): the
    /// event bucket (docs/protocol.md section 7.4), and the join bucket when
    /// `--join-rate-per-sec` sets one.
    Join,
}

/// Takes a token for `kind` from the connection's and the subject's buckets,
/// or from none of them when one is empty.
fn allow(chat: &Chat, socket: &ChatSocket, conn_rate: &mut ConnRate, kind: Limited) -> bool {
    let joins = kind == Limited::Join && chat.limits.join_rate_per_sec > 0.0;
    let Some(key) = socket.subject else {
        let ConnRate { events, joins: j } = conn_rate;
        return if joins {
            take_all(&mut [events, j])
        } else {
            take_all(&mut [events])
        };
    };
    let mut subjects = chat.subjects.lock();
    let subject = subjects.get(key, &chat.limits);
    let (
        ConnRate {
            events: ce,
            joins: cj,
        },
        ConnRate {
            events: se,
            joins: sj,
        },
    ) = (conn_rate, subject);
    if joins {
        take_all(&mut [ce, cj, se, sj])
    } else {
        take_all(&mut [ce, se])
    }
}

/// Handles one event of a strict-profile socket.
pub(super) fn handle(
    chat: &Chat,
    socket: &mut ChatSocket,
    rate: &mut ConnRate,
    event: &Event<'_>,
    ack: Option<u64>,
    out: &mut Outcome,
) {
    let name = event.name.as_ref();
    let refuse = |message: &str, reason: &'static str, out: &mut Outcome| {
        chat.metrics.refused_event(reason);
        let exception = payload::exception(message, name, None);
        chat.exception(&socket.sid, &exception, out);
        if let Some(id) = ack {
            chat.ack(&socket.sid, id, &exception, out);
        }
    };
    let arg: Option<Value> = event
        .first_arg()
        .and_then(|a| serde_json::from_str(a.get()).ok());
    match name {
        "joinChat" => match validate_username(arg.as_ref()) {
            Ok(_) if !allow(chat, socket, rate, Limited::Join) => {
                refuse("rate limited", "rate_limited", out)
            }
            // Refusals cost the sender the event bucket: a flood of them is limited too.
            Err(_) if !allow(chat, socket, rate, Limited::Event) => {
                refuse("rate limited", "rate_limited", out)
            }
            Ok(username) => {
                let joined = chat.join(&socket.sid, Some(payload::string(&username)), out);
                if let Some(id) = ack {
                    chat.ack(&socket.sid, id, &joined, out);
                }
            }
            Err(why) => refuse(&why, "invalid_payload", out),
        },
        "sendMessage" | "typing" | "joinRoom" | "leaveRoom" => {
            let Some(username) = chat.joined_name(&socket.sid) else {
                // Section 2: events before joining are ignored; an ack is still answered.
                if let Some(id) = ack {
                    chat.ack(
                        &socket.sid,
                        id,
                        &payload::exception("not joined", name, None),
                        out,
                    );
                }
                return;
            };
            if !allow(chat, socket, rate, Limited::Event) {
                return refuse("rate limited", "rate_limited", out);
            }
            let acked = match name {
                "sendMessage" => send_message(chat, socket, &username, arg.as_ref(), out),
                "typing" => typing(chat, socket, &username, arg.as_ref(), out),
                _ => room_membership(chat, socket, &username, name, arg.as_ref(), out),
            };
            match acked {
                Ok(reply) => {
                    if let Some(id) = ack {
                        chat.ack(&socket.sid, id, &reply, out);
                    }
                }
                Err(Refusal { message, reason }) => refuse(&message, reason, out),
            }
        }
        _ => {}
    }
}

/// Why an event was refused: the exception's message and the metric's reason.
struct Refusal {
    message: String,
    reason: &'static str,
}

impl Refusal {
    fn invalid(message: String) -> Self {
        Self {
            message,
            reason: "invalid_payload",
        }
    }
}

impl From<RoomRefusal> for Refusal {
    fn from(r: RoomRefusal) -> Self {
        Self {
            message: r.message(),
            reason: r.reason(),
        }
    }
}

/// `sendMessage`, to everyone or (with `room`) to the room's members; the ack's reply.
fn send_message(
    chat: &Chat,
    socket: &ChatSocket,
    username: &str,
    arg: Option<&Value>,
    out: &mut Outcome,
) -> Result<String, Refusal> {
    let message = validate_message(arg, chat.limits.max_message_bytes).map_err(Refusal::invalid)?;
    let timestamp = match rooms::room_field(arg).map_err(Refusal::invalid)? {
        None => chat.send_message(username, Some(payload::string(message)), out),
        Some(room) => chat.room_message(&socket.sid, username, message, room, out)?,
    };
    Ok(payload::object(&[
        ("ok", Some("true")),
        ("timestamp", Some(&payload::string(&timestamp))),
    ]))
}

/// `typing`, to everyone but the sender or (with `room`) to the room's other members.
fn typing(
    chat: &Chat,
    socket: &ChatSocket,
    username: &str,
    arg: Option<&Value>,
    out: &mut Outcome,
) -> Result<String, Refusal> {
    let is_typing = arg
        .and_then(|a| a.get("isTyping"))
        .and_then(Value::as_bool)
        .ok_or_else(|| Refusal::invalid("typing needs {\"isTyping\": boolean}".to_owned()))?;
    match rooms::room_field(arg).map_err(Refusal::invalid)? {
        None => chat.typing(&socket.sid, username, Some(is_typing.to_string()), out),
        Some(room) => chat.room_typing(&socket.sid, username, is_typing, room, out)?,
    }
    Ok(r#"{"ok":true}"#.to_owned())
}

/// `joinRoom` or `leaveRoom` (section 8); the ack's reply.
fn room_membership(
    chat: &Chat,
    socket: &ChatSocket,
    username: &str,
    event: &str,
    arg: Option<&Value>,
    out: &mut Outcome,
) -> Result<String, Refusal> {
    let room = rooms::room_arg(arg, event).map_err(Refusal::invalid)?;
    if event == "joinRoom" {
        chat.join_room(&socket.sid, username, room, out)?;
    } else {
        chat.leave_room(&socket.sid, username, room, out);
    }
    Ok(payload::object(&[
        ("ok", Some("true")),
        ("room", Some(&payload::string(room))),
    ]))
}

/// `{"username": string}`, trimmed, 1 to 32 characters, no control characters.
fn validate_username(arg: Option<&Value>) -> Result<String, String> {
    let name = arg
        .and_then(|a| a.get("username"))
        .and_then(Value::as_str)
        .ok_or("joinChat needs {\"username\": string}")?
        .trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS {
        return Err(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("username must not contain control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// `{"message": string}` of 1 to `max` bytes.
fn validate_message(arg: Option<&Value>, max: usize) -> Result<&str, String> {
    let message = arg
        .and_then(|a| a.get("message"))
        .and_then(Value::as_str)
        .ok_or("sendMessage needs {\"message\": string}")?;
    if message.is_empty() || message.len() > max {
        return Err(format!("message must be 1 to {max} bytes"));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usernames_are_trimmed_and_bounded() {
        assert_eq!(
            validate_username(Some(&json!({"username": "  ann "}))),
            Ok("ann".to_owned())
        );
        for bad in [
            json!({}),
            json!({"username": 5}),
            json!({"username": "   "}),
            json!({"username": "a\u{7}b"}),
            json!({"username": "x".repeat(33)}),
        ] {
            assert!(validate_username(Some(&bad)).is_err(), "{bad}");
        }
        assert!(validate_username(None).is_err());
    }

    #[test]
    fn messages_are_bounded_in_bytes() {
        assert!(validate_message(Some(&json!({"message": "hé"})), 3).is_ok());
        assert!(validate_message(Some(&json!({"message": "héé"})), 3).is_err());
        assert!(validate_message(Some(&json!({"message": ""})), 3).is_err());
    }

    fn limits(max_subjects: usize) -> Limits {
        Limits {
            rate_per_sec: 0.0,
            burst: 3.0,
            join_rate_per_sec: 0.0,
            join_burst: 1.0,
            max_subjects,
            max_message_bytes: 1,
            max_rooms: 1,
        }
    }

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let mut b = TokenBucket::new(0.0, 3.0);
        assert!((0..3).all(|_| take_all(&mut [&mut b])));
        assert!(!take_all(&mut [&mut b]));
    }

    #[test]
    fn an_empty_bucket_takes_nothing_from_the_others() {
        let mut full = TokenBucket::new(0.0, 2.0);
        let mut empty = TokenBucket::new(0.0, 1.0);
        assert!(take_all(&mut [&mut full, &mut empty]));
        assert!(!take_all(&mut [&mut full, &mut empty]));
        assert!(!take_all(&mut [&mut full, &mut empty]));
        assert!(take_all(&mut [&mut full]), "the refusals left its token");
    }

    #[test]
    fn subjects_are_bounded_and_keep_used_buckets_first() {
        let limits = limits(3);
        let mut subjects = Subjects::new();
        let keys: Vec<u64> = (0..5)
            .map(|i| subjects.key(Some(&format!("user{i}")), "t"))
            .collect();
        assert_ne!(subjects.key(Some("a"), "t"), subjects.key(None, "a"));
        // Subject 0 spends a token, so its bucket is not full and must be kept.
        assert!(take_all(&mut [&mut subjects.get(keys[0], &limits).events]));
        for key in &keys[1..] {
            subjects.get(*key, &limits);
            assert!(subjects.len() <= 3);
        }
        assert_eq!(subjects.len(), 3);
        assert!(subjects.buckets.contains_key(&keys[0]));
        let tokens = subjects.get(keys[0], &limits).events.tokens;
        assert!(tokens < 3.0, "the used bucket was not reset: {tokens}");
    }
}
