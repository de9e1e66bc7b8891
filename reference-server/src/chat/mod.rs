//! The `/chat` namespace: who is connected, who has joined, and the delivery
//! rules of docs/protocol.md section 2, shared by both profiles. The profiles differ
//! only in how events are authenticated, validated and acknowledged
//! (`seed` and `strict`).
//!
//! One mutex guards the namespace's state. Broadcasts hand one shared frame
//! to the namespace's `Adapter` while holding it, which queues it to every
//! receiver without waiting (a full queue marks the receiver for
//! disconnection), so broadcasts leave in one total order, every receiver sees every sender's events in the order they were
//! handled, and an `onlineUsers` snapshot is exact at the moment the socket
//! entered the namespace.

pub mod auth;
pub(crate) mod payload;
mod rooms;
mod seed;
mod strict;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_protocol::socketio::{self, Event, PacketType};
use indexmap::IndexMap;
use parking_lot::Mutex;

use crate::config::{GatewayConfig, Profile};
use crate::engine::{message_frame, Conn};
use crate::metrics::Metrics;
use crate::sio::adapter::{Adapter, LocalAdapter, Outcome, Recipients, RemoteUser};
use crate::sio::{Namespace, Refused, CHAT};
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
    /// Delivers the namespace's frames; called under the state lock.
    adapter: Arc<dyn Adapter>,
}

#[derive(Default)]
struct State {
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

impl ChatSocket {
    /// The socket's id in `/chat` (its `clientId`).
    pub fn sid(&self) -> &Arc<str> {
        &self.sid
    }
}

impl Drop for ChatSocket {
    fn drop(&mut self) {
        if let Some(expiry) = self.expiry.take() {
            expiry.abort();
        }
    }
}

impl Chat {
    /// The namespace for a gateway configuration, delivering in process.
    pub fn new(config: &GatewayConfig, metrics: Arc<Metrics>) -> Self {
        Self::with_adapter(config, metrics, Arc::new(LocalAdapter::default()))
    }

    /// The namespace for a gateway configuration, delivering through `adapter`.
    pub fn with_adapter(
        config: &GatewayConfig,
        metrics: Arc<Metrics>,
        adapter: Arc<dyn Adapter>,
    ) -> Self {
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
            adapter,
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
        let state = self.state();
        let Ok(remote) = self.adapter.enter(socket.sid.clone(), conn.clone()) else {
            return Err(Refused {
                reason: "cluster_unavailable",
                payload: payload::object(&[(
                    "message",
                    Some(&payload::string("cluster unavailable")),
                )]),
            });
        };
        let to = Recipients::Socket(&socket.sid);
        let connected = socketio::encode(PacketType::Connect, CHAT, None, Some(&connected));
        self.adapter
            .deliver(&message_frame(&connected), to, &mut out);
        let snapshot = payload::event_frame("onlineUsers", &online_users(&state.users, &remote));
        self.adapter.deliver(&snapshot, to, &mut out);
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
                conn.server_disconnect();
            }
        });
        Some(task.abort_handle())
    }

    /// A socket left `/chat` (or its connection closed).
    pub fn disconnect(&self, socket: ChatSocket) {
        let mut out = Outcome::default();
        let mut state = self.state();
        let leaving = state.users.get(&socket.sid).cloned();
        // Section 8.3: every room is left, each with its `roomLeft`, before `userOffline`.
        if let Some(Some(name)) = &leaving {
            self.leave_all_rooms(&state, &socket.sid, name, &mut out);
        }
        self.adapter.remove(&socket.sid);
        let client_id = payload::string(&socket.sid);
        // A falsy stored name is never removed (seed: the NestJS gateway's leak).
        if let Some(name) = leaving.as_ref().filter(|n| payload::truthy(n)) {
            state.users.shift_remove(&socket.sid);
            let data = payload::object(&[
                ("username", name.as_deref()),
                ("clientId", Some(&client_id)),
            ]);
            self.broadcast(&state, "userOffline", &data, Recipients::All, &mut out);
            self.metrics.joined(-1);
        }
        drop(state);
        self.metrics.socket(-1);
        out.apply();
    }

    /// An event arrived on a socket of `/chat`.
    pub fn event(
        &self,
        socket: &mut ChatSocket,
        rate: &mut ConnRate,
        event: &Event<'_>,
        ack: Option<u64>,
    ) -> Outcome {
        let started = Instant::now();
        self.metrics.event(&event.name);
        let mut out = Outcome::default();
        match self.profile {
            Profile::Seed => seed::handle(self, socket, event, &mut out),
            Profile::Strict => strict::handle(self, socket, rate, event, ack, &mut out),
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
    fn join(&self, sid: &Arc<str>, username: Js, out: &mut Outcome) -> String {
        let client_id = payload::string(sid);
        let online = payload::object(&[
            ("username", username.as_deref()),
            ("clientId", Some(&client_id)),
        ]);
        let joined = payload::object(&[
            ("username", username.as_deref()),
            ("message", Some(&payload::string(payload::JOINED_MESSAGE))),
        ]);
        let mut state = self.state();
        if state.users.insert(sid.clone(), username).is_none() {
            self.metrics.joined(1);
        }
        self.broadcast(&state, "userOnline", &online, Recipients::All, out);
        let frame = payload::event_frame("joined", &joined);
        self.adapter.deliver(&frame, Recipients::Socket(sid), out);
        self.metrics.delivery();
        joined
    }

    /// Whether the socket `sid` has joined (under any name, even a falsy one).
    pub fn has_joined(&self, sid: &str) -> bool {
        self.state().users.contains_key(sid)
    }

    /// Broadcasts the event `name` with `data` to the sockets `to` selects.
    pub fn announce(&self, name: &str, data: &str, to: Recipients<'_>) -> Outcome {
        let mut out = Outcome::default();
        let state = self.state();
        self.broadcast(&state, name, data, to, &mut out);
        out
    }

    /// The stored name of a socket that has joined with a truthy name.
    pub fn joined_name(&self, sid: &str) -> Option<String> {
        let name = self
            .state()
            .users
            .get(sid)
            .filter(|n| payload::truthy(n))
            .cloned()
            .flatten();
        name
    }

    /// Broadcasts `newMessage` to everyone; returns its timestamp.
    pub fn send_message(&self, username: &str, message: Js, out: &mut Outcome) -> String {
        let state = self.state();
        // Stamped under the lock so timestamps never go backwards along the broadcast order.
        let timestamp = chorus_protocol::timestamp::format_iso(SystemTime::now());
        let stamp = payload::string(&timestamp);
        let data = payload::object(&[
            ("username", Some(username)),
            ("message", message.as_deref()),
            ("timestamp", Some(&stamp)),
        ]);
        self.broadcast(&state, "newMessage", &data, Recipients::All, out);
        timestamp
    }

    /// Broadcasts `userTyping` to everyone but the sender.
    pub fn typing(&self, sid: &str, username: &str, is_typing: Js, out: &mut Outcome) {
        let data = payload::object(&[
            ("username", Some(username)),
            ("isTyping", is_typing.as_deref()),
        ]);
        let state = self.state();
        self.broadcast(&state, "userTyping", &data, Recipients::AllBut(sid), out);
    }

    /// Queues an event to the sockets `to` selects, through the adapter;
    /// `_state` is the held state lock, which orders every broadcast.
    fn broadcast(
        &self,
        _state: &State,
        name: &str,
        data: &str,
        to: Recipients<'_>,
        out: &mut Outcome,
    ) {
        let frame = payload::event_frame(name, data);
        let receivers = self.adapter.deliver(&frame, to, out);
        self.metrics.broadcast(name, receivers);
    }

    /// Queues an `exception` event to the socket `sid` alone.
    fn exception(&self, sid: &str, payload: &str, out: &mut Outcome) {
        let frame = payload::event_frame("exception", payload);
        self.adapter.deliver(&frame, Recipients::Socket(sid), out);
        self.metrics.delivery();
    }

    /// Queues an ACK with one argument to the socket `sid`.
    pub fn ack(&self, sid: &str, id: u64, payload: &str, out: &mut Outcome) {
        let data = format!("[{payload}]");
        let ack = socketio::encode(PacketType::Ack, CHAT, Some(id), Some(&data));
        self.adapter
            .deliver(&message_frame(&ack), Recipients::Socket(sid), out);
        self.metrics.delivery();
    }
}

impl Namespace for Chat {
    type Socket = ChatSocket;
    type ConnState = ConnRate;

    fn conn_state(&self) -> ConnRate {
        self.conn_rate()
    }

    fn connect(
        &self,
        conn: &Arc<Conn>,
        auth: Option<&str>,
    ) -> Result<(ChatSocket, Outcome), Refused> {
        Chat::connect(self, conn, auth)
    }

    fn event(
        &self,
        _conn: &Arc<Conn>,
        socket: &mut ChatSocket,
        rate: &mut ConnRate,
        event: &Event<'_>,
        ack: Option<u64>,
    ) -> Outcome {
        Chat::event(self, socket, rate, event, ack)
    }

    fn disconnect(&self, socket: ChatSocket) {
        Chat::disconnect(self, socket)
    }
}

/// `[["<sid>",<name>],…]`: the Map entries in join order, `undefined` as
/// `null`, then the users of the cluster's other nodes (strict).
fn online_users(users: &IndexMap<Arc<str>, Js>, remote: &[RemoteUser]) -> String {
    let local = users.iter().map(|(sid, name)| (&**sid, name.as_deref()));
    let others = remote.iter().map(|(sid, name)| (&**sid, Some(&**name)));
    payload::user_pairs(local.chain(others))
}
