//! The strict profile's event handling (PROTOCOL.md section 7): the socket was
//! authenticated at the handshake; input is validated; events are rate limited
//! and acknowledged when the client asks.

use std::sync::Arc;
use std::time::Instant;

use chorus_protocol::socketio::Event;
use serde_json::Value;

use super::{payload, Chat, ChatSocket, Outcome};
use crate::config::GatewayConfig;
use crate::engine::Conn;

/// Longest username, in characters.
const MAX_USERNAME_CHARS: usize = 32;

/// The strict profile's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    rate_per_sec: f64,
    burst: f64,
    max_message_bytes: usize,
}

impl From<&GatewayConfig> for Limits {
    fn from(c: &GatewayConfig) -> Self {
        Self {
            rate_per_sec: c.rate_per_sec,
            burst: f64::from(c.rate_burst.max(1)),
            max_message_bytes: c.max_message_bytes,
        }
    }
}

/// A per-socket token bucket for `sendMessage` and `typing`.
pub(super) struct TokenBucket {
    tokens: f64,
    last: Instant,
    limits: Limits,
}

impl TokenBucket {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            tokens: limits.burst,
            last: Instant::now(),
            limits: *limits,
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.limits.rate_per_sec;
        self.tokens = (self.tokens + refill).min(self.limits.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Handles one event of a strict-profile socket.
pub(super) fn handle(
    chat: &Chat,
    conn: &Arc<Conn>,
    socket: &mut ChatSocket,
    event: &Event<'_>,
    ack: Option<u64>,
    out: &mut Outcome,
) {
    let name = event.name.as_ref();
    let refuse = |message: &str, reason: &'static str, out: &mut Outcome| {
        chat.metrics.refused_event(reason);
        let exception = payload::exception(message, name, None);
        chat.exception(conn, &exception, out);
        if let Some(id) = ack {
            chat.ack(conn, id, &exception, out);
        }
    };
    let arg: Option<Value> = event
        .first_arg()
        .and_then(|a| serde_json::from_str(a.get()).ok());
    match name {
        "joinChat" => match validate_username(arg.as_ref()) {
            Ok(username) => {
                let joined = chat.join(conn, &socket.sid, Some(payload::string(&username)), out);
                if let Some(id) = ack {
                    chat.ack(conn, id, &joined, out);
                }
            }
            Err(why) => refuse(&why, "invalid_payload", out),
        },
        "sendMessage" | "typing" => {
            let Some(username) = chat.joined_name(&socket.sid) else {
                // Section 2: events before joining are ignored; an ack is still answered.
                if let Some(id) = ack {
                    chat.ack(conn, id, &payload::exception("not joined", name, None), out);
                }
                return;
            };
            if !socket.bucket.take() {
                return refuse("rate limited", "rate_limited", out);
            }
            if name == "sendMessage" {
                match validate_message(arg.as_ref(), chat.limits.max_message_bytes) {
                    Ok(message) => {
                        let timestamp =
                            chat.send_message(&username, Some(payload::string(message)), out);
                        if let Some(id) = ack {
                            let reply = payload::object(&[
                                ("ok", Some("true")),
                                ("timestamp", Some(&payload::string(&timestamp))),
                            ]);
                            chat.ack(conn, id, &reply, out);
                        }
                    }
                    Err(why) => refuse(&why, "invalid_payload", out),
                }
            } else {
                match arg
                    .as_ref()
                    .and_then(|a| a.get("isTyping"))
                    .and_then(Value::as_bool)
                {
                    Some(is_typing) => {
                        chat.typing(&socket.sid, &username, Some(is_typing.to_string()), out);
                        if let Some(id) = ack {
                            chat.ack(conn, id, r#"{"ok":true}"#, out);
                        }
                    }
                    None => refuse(
                        "typing needs {\"isTyping\": boolean}",
                        "invalid_payload",
                        out,
                    ),
                }
            }
        }
        _ => {}
    }
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

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let limits = Limits {
            rate_per_sec: 0.0,
            burst: 3.0,
            max_message_bytes: 1,
        };
        let mut b = TokenBucket::new(&limits);
        assert!((0..3).all(|_| b.take()));
        assert!(!b.take());
    }
}
