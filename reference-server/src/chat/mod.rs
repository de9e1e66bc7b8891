//! The `/chat` namespace: who is connected, who has joined, and the delivery
//! rules of PROTOCOL.md section 2, shared by both profiles. The profiles differ
//! only in how events are authenticated, validated and acknowledged
//! ([`seed`] and [`strict`]).
//!
//! One mutex guards the namespace's membership. Broadcasts queue a shared
//! frame to every receiver while holding it, without waiting (a full queue
//! marks the receiver for disconnection), so broadcasts leave in one total
//! order, every receiver sees every sender's events in the order they were
//! handled, and an `onlineUsers` snapshot is exact at the moment the socket
//! entered the namespace.

pub mod auth;
mod payload;
mod seed;
mod strict;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_protocol::socketio::{self, Event, PacketType};
use indexmap::IndexMap;
use parking_lot::Mutex;

use crate::config::{GatewayConfig, Profile};
use crate::engine::{message_frame, CloseReason, Conn, Frame};
use crate::metrics::Metrics;
use crate::sio::CHAT;
use payload::Js;
pub use strict::ConnRate;

/// The namespace state and rules.
pub struct Chat {
    profile: Profile,
    verifier: auth::Verifier,
    metrics: Arc<Metrics>,
    limits: strict::Limits,
    /// Rate-limit buckets per token subject (strict), so reconnecting does not refill them.
    subjects: Mutex<strict::Subjects>,
    state: Mutex<State>,
    /// Injected faults (tests only).
    #[cfg(feature = "faults")]
    pub(crate) faults: crate::faults::Injector,
}

#[derive(Default)]
struct State {
    /// Every socket in the namespace, joined or not: the broadcast audience.
    members: IndexMap<Arc<str>, Arc<Conn>>,
    /// The online-users map, in join order (a rename keeps the position, like a JS `Map`).
    users: IndexMap<Arc<str>, Js>,
}

/// One socket in `/chat`.
pub struct ChatSocket {
    sid: Arc<str>,
    /// The seed profile re-verifies the handshake token on every event.
    token: Option<String>,
    /// The rate-limit key of the token's subject (strict profile).
    subject: Option<u64>,
    expiry: Option<tokio::task::AbortHandle>,
}

impl Drop for ChatSocket {
    fn drop(&mut self) {
        if let Some(expiry) = self.expiry.take() {
            expiry.abort();
        }
    }
}

/// A refused namespace CONNECT: the CONNECT_ERROR payload and the metric label.
pub struct Refused {
    /// Label for the refused-handshakes metric.
    pub reason: &'static str,
    /// JSON data of the `44/chat,…` packet.
    pub payload: String,
}

/// What handling a packet left to do once no lock is held: disconnect the
/// receivers whose queues overflowed.
#[must_use]
#[derive(Default)]
pub struct Outcome {
    victims: Vec<Arc<Conn>>,
}

impl Outcome {
    /// Queues a frame for one receiver, remembering it if its queue is full.
    fn send(&mut self, conn: &Arc<Conn>, frame: Frame) {
        if conn.send(frame).is_err() && !self.victims.iter().any(|v| Arc::ptr_eq(v, conn)) {
            self.victims.push(conn.clone());
        }
    }

    /// Disconnects the slow receivers. Call with no lock held.
    pub fn apply(self) {
        for victim in self.victims {
            if victim.close_reason().is_none() {
                victim.engine.metrics.slow_consumer();
                tracing::warn!(sid = %victim.sid, "receiver queue full: disconnecting it");
            }
            victim.close(CloseReason::SlowConsumer);
        }
    }
}

impl Chat {
    /// The namespace for a gateway configuration.
    pub fn new(config: &GatewayConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            profile: config.profile,
            verifier: auth::Verifier::new(
                &config.jwt_secret,
                &config.jwt_algorithms,
                config.jwt_leeway_s,
            ),
            metrics,
            limits: strict::Limits::from(config),
            subjects: Mutex::new(strict::Subjects::new()),
            state: Mutex::new(State::default()),
            #[cfg(feature = "faults")]
            faults: crate::faults::Injector::new(config.faults.clone()),
        }
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Fresh rate-limit buckets for one Engine.IO connection (kept by the
    /// connection across namespace reconnects).
    pub fn conn_rate(&self) -> ConnRate {
        ConnRate::new(&self.limits)
    }

    /// A socket asks to enter `/chat`. On success `40/chat,{"sid":…}` and
    /// `onlineUsers` are queued to it before any later broadcast.
    pub fn connect(
        &self,
        conn: &Arc<Conn>,
        auth: Option<&str>,
    ) -> Result<(ChatSocket, Outcome), Refused> {
        let mut socket = ChatSocket {
            sid: crate::engine::new_sid(),
            token: None,
            subject: None,
            expiry: None,
        };
        match self.profile {
            Profile::Seed => socket.token = auth::seed_token(&conn.handshake),
            #[cfg(feature = "faults")]
            Profile::Strict if self.faults.faults.accept_any_token => {}
            Profile::Strict => {
                let token = auth::strict_token(&conn.handshake, auth);
                let verified = token
                    .as_deref()
                    .ok_or(auth::Refusal::Missing)
                    .and_then(|t| self.verifier.verify_strict(t))
                    .map_err(|refusal| Refused {
                        reason: refusal.metric(),
                        payload: payload::object(&[
                            ("message", Some(&payload::string(refusal.message()))),
                            (
                                "data",
                                Some(&payload::object(&[(
                                    "code",
                                    Some(&payload::string(refusal.code())),
                                )])),
                            ),
                        ]),
                    })?;
                if let Some(token) = token.as_deref() {
                    let key = self.subjects.lock().key(verified.subject.as_deref(), token);
                    socket.subject = Some(key);
                }
                if let Some(exp) = verified.exp {
                    let exp = exp.saturating_add(self.verifier.leeway_s());
                    socket.expiry = self.expire_at(conn, exp);
                }
            }
        }
        let mut out = Outcome::default();
        let connected = payload::object(&[("sid", Some(&payload::string(&socket.sid)))]);
        let mut state = self.state();
        out.send(
            conn,
            message_frame(&socketio::encode(
                PacketType::Connect,
                CHAT,
                None,
                Some(&connected),
            )),
        );
        #[cfg(feature = "faults")]
        let snapshot = if self.faults.faults.snapshot_missing_newest {
            let mut users = state.users.clone();
            users.pop();
            online_users(&users)
        } else {
            online_users(&state.users)
        };
        #[cfg(not(feature = "faults"))]
        let snapshot = online_users(&state.users);
        out.send(conn, payload::event_frame("onlineUsers", &snapshot));
        state.members.insert(socket.sid.clone(), conn.clone());
        #[cfg(feature = "faults")]
        self.faults.chat_socket_connected(conn);
        drop(state);
        self.metrics.socket(1);
        Ok((socket, out))
    }

    /// Disconnects the socket once its token expires (strict profile). An
    /// `exp` too far away to represent never expires (no task is started).
    fn expire_at(&self, conn: &Arc<Conn>, exp_s: u64) -> Option<tokio::task::AbortHandle> {
        let weak: Weak<Conn> = Arc::downgrade(conn);
        let deadline = UNIX_EPOCH.checked_add(Duration::from_secs(exp_s))?;
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        // `sleep` saturates a deadline past tokio's horizon, but be explicit:
        // nothing here adds a client-chosen duration to an `Instant`.
        let deadline = tokio::time::Instant::now().checked_add(wait)?;
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(conn) = weak.upgrade() {
                tracing::debug!(sid = %conn.sid, "token expired: disconnecting the socket");
                crate::sio::server_disconnect(&conn);
            }
        });
        Some(task.abort_handle())
    }

    /// A socket left `/chat` (or its connection closed).
    pub fn disconnect(&self, socket: ChatSocket) {
        let mut out = Outcome::default();
        let mut state = self.state();
        state.members.swap_remove(&socket.sid);
        let leaving = state.users.get(&socket.sid).cloned();
        let client_id = payload::string(&socket.sid);
        #[cfg(feature = "faults")]
        let skip_offline = self.faults.faults.skip_user_offline;
        #[cfg(not(feature = "faults"))]
        let skip_offline = false;
        // A falsy stored name is never removed (seed: the NestJS gateway's leak).
        if let Some(name) = leaving.as_ref().filter(|n| payload::truthy(n)) {
            state.users.shift_remove(&socket.sid);
            let data = payload::object(&[
                ("username", name.as_deref()),
                ("clientId", Some(&client_id)),
            ]);
            if !skip_offline {
                self.broadcast(&state, "userOffline", &data, None, &mut out);
            }
            self.metrics.joined(-1);
        }
        #[cfg(feature = "faults")]
        if leaving.is_none() && self.faults.faults.offline_for_unjoined && !skip_offline {
            let data =
                payload::object(&[("username", Some("null")), ("clientId", Some(&client_id))]);
            self.broadcast(&state, "userOffline", &data, None, &mut out);
        }
        drop(state);
        self.metrics.socket(-1);
        out.apply();
    }

    /// An event arrived on a socket of `/chat`.
    pub fn event(
        &self,
        conn: &Arc<Conn>,
        socket: &mut ChatSocket,
        rate: &mut ConnRate,
        event: &Event<'_>,
        ack: Option<u64>,
    ) -> Outcome {
        let started = Instant::now();
        self.metrics.event(&event.name);
        let mut out = Outcome::default();
        match self.profile {
            Profile::Seed => seed::handle(self, conn, socket, event, ack, &mut out),
            Profile::Strict => strict::handle(self, conn, socket, rate, event, ack, &mut out),
        }
        tracing::debug!(
            event = %event.name,
            client = %socket.sid,
            bytes = event.args.iter().map(|a| a.get().len()).sum::<usize>(),
            handling_us = started.elapsed().as_micros() as u64,
            "event"
        );
        out
    }

    /// Stores (or renames) the user, broadcasts `userOnline` to everyone, then
    /// queues `joined` to the sender. Returns the `joined` payload.
    fn join(&self, conn: &Arc<Conn>, sid: &Arc<str>, username: Js, out: &mut Outcome) -> String {
        let client_id = payload::string(sid);
        let online = payload::object(&[
            ("username", username.as_deref()),
            ("clientId", Some(&client_id)),
        ]);
        #[cfg(feature = "faults")]
        let joined_name = username
            .as_deref()
            .filter(|_| !self.faults.faults.wrong_joined);
        #[cfg(not(feature = "faults"))]
        let joined_name = username.as_deref();
        let joined = payload::object(&[
            ("username", joined_name),
            ("message", Some(&payload::string(payload::JOINED_MESSAGE))),
        ]);
        let mut state = self.state();
        if state.users.insert(sid.clone(), username).is_none() {
            self.metrics.joined(1);
        }
        self.broadcast(&state, "userOnline", &online, None, out);
        #[cfg(feature = "faults")]
        if self.faults.faults.joined_as_ack {
            return joined;
        }
        out.send(conn, payload::event_frame("joined", &joined));
        self.metrics.delivery();
        joined
    }

    /// The stored name of a socket that has joined with a truthy name.
    fn joined_name(&self, sid: &str) -> Option<String> {
        let name = self
            .state()
            .users
            .get(sid)
            .filter(|n| payload::truthy(n))
            .cloned()
            .flatten();
        #[cfg(feature = "faults")]
        let name = name.or_else(|| {
            self.faults
                .faults
                .unjoined_messages
                .then(|| "null".to_owned())
        });
        name
    }

    /// Broadcasts `newMessage` to everyone; returns its timestamp.
    fn send_message(&self, username: &str, message: Js, out: &mut Outcome) -> String {
        let state = self.state();
        // Stamped under the lock so timestamps never go backwards along the broadcast order.
        let timestamp = chorus_protocol::timestamp::format_iso(SystemTime::now());
        #[cfg(feature = "faults")]
        let (username, stamp) = self.message_faults(&state, username, &timestamp);
        #[cfg(not(feature = "faults"))]
        let stamp = payload::string(&timestamp);
        let data = payload::object(&[
            ("username", Some(username)),
            ("message", message.as_deref()),
            ("timestamp", Some(&stamp)),
        ]);
        self.broadcast(&state, "newMessage", &data, None, out);
        timestamp
    }

    /// Broadcasts `userTyping` to everyone but the sender.
    fn typing(&self, sid: &str, username: &str, is_typing: Js, out: &mut Outcome) {
        let data = payload::object(&[
            ("username", Some(username)),
            ("isTyping", is_typing.as_deref()),
        ]);
        #[cfg(feature = "faults")]
        let except = (!self.faults.faults.echo_typing).then_some(sid);
        #[cfg(not(feature = "faults"))]
        let except = Some(sid);
        let state = self.state();
        self.broadcast(&state, "userTyping", &data, except, out);
    }

    /// The `username` and raw `timestamp` of a `newMessage` under the
    /// `wrong_username` and `bad_timestamp` faults.
    #[cfg(feature = "faults")]
    fn message_faults<'a>(
        &self,
        state: &'a State,
        username: &'a str,
        timestamp: &str,
    ) -> (&'a str, String) {
        let stamp = if self.faults.faults.bad_timestamp {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            millis.to_string()
        } else {
            payload::string(timestamp)
        };
        let other = state
            .users
            .values()
            .flatten()
            .find(|name| name.as_str() != username);
        match other {
            Some(other) if self.faults.wrong_username_now() => (other, stamp),
            _ => (username, stamp),
        }
    }

    /// Queues an event to every member (but `except`), under the state lock.
    fn broadcast(
        &self,
        state: &State,
        name: &str,
        data: &str,
        except: Option<&str>,
        out: &mut Outcome,
    ) {
        let frame = payload::event_frame(name, data);
        #[cfg(feature = "faults")]
        let frames = self.faults.frames(name, data, frame);
        let mut receivers = 0;
        for (sid, conn) in &state.members {
            if except != Some(&**sid) {
                #[cfg(feature = "faults")]
                for frame in &frames {
                    for copy in self.faults.deliver(conn, frame) {
                        out.send(conn, copy);
                    }
                }
                #[cfg(not(feature = "faults"))]
                out.send(conn, frame.clone());
                receivers += 1;
            }
        }
        self.metrics.broadcast(name, receivers);
    }

    /// Queues an `exception` event to the sender alone.
    fn exception(&self, conn: &Arc<Conn>, payload: &str, out: &mut Outcome) {
        out.send(conn, payload::event_frame("exception", payload));
        self.metrics.delivery();
    }

    /// Queues an ACK with one argument.
    fn ack(&self, conn: &Arc<Conn>, id: u64, payload: &str, out: &mut Outcome) {
        let data = format!("[{payload}]");
        out.send(
            conn,
            message_frame(&socketio::encode(
                PacketType::Ack,
                CHAT,
                Some(id),
                Some(&data),
            )),
        );
        self.metrics.delivery();
    }
}

/// `[["<sid>",<name>],…]`: the Map entries in join order, `undefined` as `null`.
fn online_users(users: &IndexMap<Arc<str>, Js>) -> String {
    let mut out = String::from("[");
    for (i, (sid, name)) in users.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        out.push_str(&payload::string(sid));
        out.push(',');
        out.push_str(name.as_deref().unwrap_or("null"));
        out.push(']');
    }
    out.push(']');
    out
}
