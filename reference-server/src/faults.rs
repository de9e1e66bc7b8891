//! Injected faults (cargo feature `faults`): a test fixture that makes the
//! gateway misbehave on purpose, so tests can show that `chorus` notices.
//! Never part of a release build: nothing in the shipped layers knows of it.
//!
//! [`start`] builds a gateway out of the shipped parts with wrappers around
//! them, at three depths only:
//! - `FaultyAdapter` wraps the `/chat` namespace's in-process adapter:
//!   every frame the chat rules deliver passes through it, so it drops,
//!   duplicates, delays and reorders broadcasts, starves the stalled socket,
//!   and rewrites what a faulty gateway would send (`userTyping` to its
//!   sender, no `userOffline`, numeric timestamps, wrong names, a short
//!   `onlineUsers`, `joined` without its name or not at all, a room's
//!   messages to a non-member, a short `roomUsers`);
//! - `FaultyChat` wraps the `/chat` rules themselves (a token-blind
//!   CONNECT, unjoined sockets' events handled, `userOffline` for sockets
//!   that never joined, `joined` answered as an ack);
//! - a TCP front (`front`) between the clients and the gateway stalls
//!   every connection's incoming bytes once, and crashes: it stops listening
//!   and drops every connection without a close frame or close packet.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_protocol::socketio::Event;
use indexmap::IndexMap;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::chat::{payload, Chat, ChatSocket, ConnRate};
use crate::config::{GatewayConfig, Profile};
use crate::engine::{Conn, Engine, Frame};
use crate::metrics::Metrics;
use crate::sio::adapter::{Adapter, LocalAdapter, Outcome, Recipients};
use crate::sio::{Namespace, Refused, Sio, CHAT};
use crate::{GatewayError, RunningGateway};

/// A held-back `newMessage` is sent after the next one of the same sender,
/// once every this many `newMessage` of that sender.
pub const REORDER_EVERY: u64 = 50;

/// A `newMessage` carries another user's name once every this many messages.
pub const WRONG_USERNAME_EVERY: u64 = 10;

/// Which faults a gateway injects. `Default` injects none; every switch is independent.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Drop this fraction of broadcast deliveries (per receiver, at random) silently.
    pub drop_fraction: f64,
    /// Deliver this fraction of broadcast deliveries (per receiver, at random) twice.
    pub duplicate_fraction: f64,
    /// Hold back every [`REORDER_EVERY`]th `newMessage` of a sender and deliver
    /// it right after that sender's next one (never, if there is no next one).
    pub reorder: bool,
    /// Deliver this fraction of broadcast deliveries (per receiver, at random)
    /// [`Faults::delay`] late, without holding up the others.
    pub delay_fraction: f64,
    /// How late the deliveries picked by [`Faults::delay_fraction`] arrive.
    pub delay: Duration,
    /// Delay every broadcast delivery by this much, keeping each receiver's order.
    pub delay_all: Duration,
    /// `(after, length)`: the first packet read at least `after` into the
    /// gateway's life stalls the handling of every incoming packet, on every
    /// connection, for `length`.
    pub stall_once: Option<(Duration, Duration)>,
    /// Send `userTyping` to its sender as well.
    pub echo_typing: bool,
    /// Never send `userTyping`.
    pub drop_typing: bool,
    /// Never send `userOffline`.
    pub skip_user_offline: bool,
    /// Send `userOffline` (`username` null) when a socket that never joined leaves.
    pub offline_for_unjoined: bool,
    /// Send `joined` without its `username` field.
    pub wrong_joined: bool,
    /// Answer `joinChat` with an ack (when the client asked for one) instead of the `joined` event.
    pub joined_as_ack: bool,
    /// Strict profile: admit every `/chat` CONNECT without checking its token.
    pub accept_any_token: bool,
    /// Handle `sendMessage` and `typing` of sockets that have not joined, with `username` null.
    pub unjoined_messages: bool,
    /// The n-th `/chat` socket to connect (1-based) receives no broadcast at
    /// all from then on; its connection stays open (Engine.IO pings and its
    /// own replies such as `joined` still reach it), as a stuck receiver would.
    pub stall_socket: Option<usize>,
    /// This long after start the gateway dies: it stops listening and drops
    /// every connection without a close frame or close packet.
    pub crash_after: Option<Duration>,
    /// `newMessage.timestamp` is epoch milliseconds (a number), not an ISO string.
    pub bad_timestamp: bool,
    /// `onlineUsers` leaves out the most recently joined user.
    pub snapshot_missing_newest: bool,
    /// Every [`WRONG_USERNAME_EVERY`]th `newMessage` carries another joined user's name.
    pub wrong_username: bool,
    /// A room's `newMessage` also goes to one socket that is not a member
    /// of the room (the first such one connected).
    pub leak_room: bool,
    /// `roomUsers` leaves out the room's oldest member.
    pub room_snapshot_missing_oldest: bool,
}

/// Starts a gateway like [`crate::start`] that injects `faults`.
pub async fn start(config: GatewayConfig, faults: Faults) -> Result<RunningGateway, GatewayError> {
    let injector = Arc::new(Injector::new(faults));
    let wrapped = injector.clone();
    let mut gateway = crate::start_with(config, None, move |config| {
        let metrics = Arc::new(Metrics::default());
        let adapter = FaultyAdapter::new(Arc::new(LocalAdapter::default()), wrapped.clone());
        let chat = Chat::with_adapter(&config, metrics.clone(), Arc::new(adapter));
        let chat = FaultyChat::new(&config, Arc::new(chat), wrapped);
        Engine::new(config, metrics, Arc::new(Sio::new(Arc::new(chat))))
    })
    .await?;
    let f = &injector.faults;
    if f.stall_once.is_some() || f.crash_after.is_some() {
        let gateway_addr = gateway.addr;
        gateway.addr = front(gateway_addr, f.stall_once, f.crash_after)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: gateway_addr,
                source,
            })?;
    }
    Ok(gateway)
}

/// The faults of one running gateway, with the state they need.
pub(crate) struct Injector {
    /// The switches.
    faults: Faults,
    /// Held-back `newMessage` frames and message counts, by sender name.
    reorder: Mutex<ReorderState>,
    /// `/chat` sockets connected so far.
    chat_sockets: AtomicUsize,
    /// The namespace socket id of the stalled receiver, once chosen.
    stalled: Mutex<Option<Arc<str>>>,
    /// `newMessage` broadcasts so far.
    messages: AtomicU64,
    /// Per-receiver delay lines of `delay_all`, by namespace socket id.
    delay_lines: Mutex<HashMap<Arc<str>, DelayLine>>,
    /// The joined users' names (raw JSON) by `clientId`, in join order, as
    /// `userOnline` and `userOffline` announced them.
    users: Mutex<IndexMap<String, String>>,
    /// `joined` payloads kept back by `joined_as_ack`, by namespace socket id.
    held_joined: Mutex<HashMap<String, String>>,
}

/// The sending end of a receiver's delay line: frames with the time they are due.
type DelayLine = mpsc::UnboundedSender<(Instant, Frame)>;

#[derive(Default)]
struct ReorderState {
    held: HashMap<String, Frame>,
    counts: HashMap<String, u64>,
}

impl Injector {
    /// The injector of a gateway starting now.
    fn new(faults: Faults) -> Self {
        Self {
            faults,
            reorder: Mutex::new(ReorderState::default()),
            chat_sockets: AtomicUsize::new(0),
            stalled: Mutex::new(None),
            messages: AtomicU64::new(0),
            delay_lines: Mutex::new(HashMap::new()),
            users: Mutex::new(IndexMap::new()),
            held_joined: Mutex::new(HashMap::new()),
        }
    }

    /// The frames a broadcast of `name` sends to each receiver, in order:
    /// none (typing dropped, or a message held back), the frame, or the
    /// frame followed by a held-back one of the same sender.
    fn frames(&self, name: &str, data: &str, frame: Frame) -> Vec<Frame> {
        if name == "userTyping" && self.faults.drop_typing {
            return Vec::new();
        }
        if name != "newMessage" || !self.faults.reorder {
            return vec![frame];
        }
        let sender = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|d| d.get("username").map(ToString::to_string))
            .unwrap_or_default();
        let mut state = self.reorder.lock();
        if let Some(held) = state.held.remove(&sender) {
            return vec![frame, held];
        }
        let count = state.counts.entry(sender.clone()).or_default();
        *count += 1;
        if count.is_multiple_of(REORDER_EVERY) {
            state.held.insert(sender, frame);
            return Vec::new();
        }
        vec![frame]
    }

    /// The copies of one broadcast frame to queue to the socket `sid` now;
    /// copies to drop or deliver late (through `adapter`) are taken care of
    /// here and not returned.
    fn deliver(&self, adapter: &Arc<LocalAdapter>, sid: &Arc<str>, frame: &Frame) -> Vec<Frame> {
        let f = &self.faults;
        if self.is_stalled(sid) || chance(f.drop_fraction) {
            return Vec::new();
        }
        let copies = if chance(f.duplicate_fraction) { 2 } else { 1 };
        let mut now = Vec::with_capacity(copies);
        for _ in 0..copies {
            if chance(f.delay_fraction) {
                send_later(adapter.clone(), sid.clone(), frame.clone(), f.delay);
            } else if !f.delay_all.is_zero() {
                self.delay_line(adapter, sid, frame.clone());
            } else {
                now.push(frame.clone());
            }
        }
        now
    }

    /// Counts a `/chat` socket entering; remembers it if it is the one to stall.
    fn chat_socket_connected(&self, sid: &Arc<str>) {
        let n = self.chat_sockets.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.stall_socket == Some(n) {
            tracing::warn!(%sid, "fault: this receiver gets no more broadcasts");
            *self.stalled.lock() = Some(sid.clone());
        }
    }

    fn is_stalled(&self, sid: &str) -> bool {
        self.stalled.lock().as_deref() == Some(sid)
    }

    /// Whether this `newMessage` (counted here) is one to send under another user's name.
    fn wrong_username_now(&self) -> bool {
        let n = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
        self.faults.wrong_username && n.is_multiple_of(WRONG_USERNAME_EVERY)
    }

    /// Follows who is online from a `userOnline` or `userOffline` payload.
    fn track_user(&self, name: &str, data: &str) {
        let client_id = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|d| d.get("clientId")?.as_str().map(str::to_owned));
        let Some(client_id) = client_id else { return };
        let mut users = self.users.lock();
        match (name, field(data, "username")) {
            ("userOnline", Some((username, _))) => {
                users.insert(client_id, username.to_owned());
            }
            ("userOffline", _) => {
                users.shift_remove(&client_id);
            }
            _ => {}
        }
    }

    /// A `newMessage` payload under the `wrong_username` and `bad_timestamp` faults.
    fn message_faults<'a>(&self, data: &'a str) -> Cow<'a, str> {
        let mut data = Cow::Borrowed(data);
        let renamed = field(&data, "username").and_then(|(username, rest)| {
            let other = self
                .users
                .lock()
                .values()
                .find(|name| name.as_str() != username)
                .cloned()?;
            self.wrong_username_now()
                .then(|| format!("{{\"username\":{other}{rest}"))
        });
        if let Some(renamed) = renamed {
            data = Cow::Owned(renamed);
        }
        if !self.faults.bad_timestamp {
            return data;
        }
        let stamped = data.rsplit_once(",\"timestamp\":").map(|(head, _)| {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            format!("{head},\"timestamp\":{millis}}}")
        });
        stamped.map_or(data, Cow::Owned)
    }

    /// Queues `frame` on the socket `sid`'s delay line, which keeps its order.
    fn delay_line(&self, adapter: &Arc<LocalAdapter>, sid: &Arc<str>, frame: Frame) {
        let due = Instant::now() + self.faults.delay_all;
        let mut lines = self.delay_lines.lock();
        let line = lines.entry(sid.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(drain_delay_line(Arc::downgrade(adapter), sid.clone(), rx));
            tx
        });
        let _ = line.send((due, frame));
    }
}

/// The value of an object payload's first field when it is `key`, raw, and
/// what follows it (`,…}` or `}`); `None` when the payload does not start so.
fn field<'a>(data: &'a str, key: &str) -> Option<(&'a str, &'a str)> {
    let rest = data
        .strip_prefix("{\"")?
        .strip_prefix(key)?
        .strip_prefix("\":")?;
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Box<RawValue>>();
    values.next()?.ok()?;
    rest.split_at_checked(values.byte_offset())
}

/// `onlineUsers` data without its last (most recently joined) entry.
fn without_newest(data: &str) -> String {
    match serde_json::from_str::<Vec<Box<RawValue>>>(data) {
        Ok(mut entries) => {
            entries.pop();
            let entries: Vec<&str> = entries.iter().map(|e| e.get()).collect();
            format!("[{}]", entries.join(","))
        }
        Err(_) => data.to_owned(),
    }
}

/// `roomUsers` data without the first (oldest) entry of its `users`.
fn without_oldest_member(data: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(data) else {
        return data.to_owned();
    };
    if let Some(users) = value.get_mut("users").and_then(|u| u.as_array_mut()) {
        if !users.is_empty() {
            users.remove(0);
        }
    }
    value.to_string()
}

/// A `joined` payload without its `username` field.
fn without_username(data: &str) -> String {
    match field(data, "username") {
        Some((_, rest)) => format!("{{{}", rest.strip_prefix(',').unwrap_or(rest)),
        None => data.to_owned(),
    }
}

/// The namespace's real adapter behind the delivery faults: every event
/// frame it is asked to deliver may be rewritten, then a broadcast goes
/// through [`Injector::frames`] and each selected socket's copies through
/// the injector's per-receiver faults.
pub(crate) struct FaultyAdapter {
    inner: Arc<LocalAdapter>,
    injector: Arc<Injector>,
}

impl FaultyAdapter {
    /// Wraps `inner` with the faults of `injector`.
    fn new(inner: Arc<LocalAdapter>, injector: Arc<Injector>) -> Self {
        Self { inner, injector }
    }
}

impl Adapter for FaultyAdapter {
    fn add(&self, sid: Arc<str>, conn: Arc<Conn>) {
        self.injector.chat_socket_connected(&sid);
        self.inner.add(sid, conn);
    }

    fn remove(&self, sid: &str) {
        self.inner.remove(sid);
    }

    fn join(&self, sid: &str, room: &str) -> bool {
        self.inner.join(sid, room)
    }

    fn leave(&self, sid: &str, room: &str) -> bool {
        self.inner.leave(sid, room)
    }

    fn is_member(&self, sid: &str, room: &str) -> bool {
        self.inner.is_member(sid, room)
    }

    fn rooms_of(&self, sid: &str) -> Vec<Arc<str>> {
        self.inner.rooms_of(sid)
    }

    fn members(&self, room: &str) -> Vec<Arc<str>> {
        self.inner.members(room)
    }

    fn select(&self, to: Recipients<'_>) -> Vec<Arc<str>> {
        self.inner.select(to)
    }

    fn deliver(&self, frame: &Frame, to: Recipients<'_>, out: &mut Outcome) -> usize {
        let Some((name, raw)) = split_event(frame) else {
            return self.inner.deliver(frame, to, out);
        };
        let f = &self.injector.faults;
        let mut to = to;
        let mut data = Cow::Borrowed(raw);
        match (name, to) {
            ("userOnline" | "userOffline", _) => {
                self.injector.track_user(name, &data);
                if name == "userOffline" && f.skip_user_offline {
                    return 0;
                }
            }
            ("userTyping", Recipients::AllBut(_)) if f.echo_typing => to = Recipients::All,
            ("newMessage", _) => data = self.injector.message_faults(raw),
            ("roomUsers", _) if f.room_snapshot_missing_oldest => {
                data = Cow::Owned(without_oldest_member(&data));
            }
            ("onlineUsers", _) if f.snapshot_missing_newest => {
                data = Cow::Owned(without_newest(&data));
            }
            ("joined", Recipients::Socket(sid)) => {
                if f.wrong_joined {
                    data = Cow::Owned(without_username(&data));
                }
                if f.joined_as_ack {
                    self.injector
                        .held_joined
                        .lock()
                        .insert(sid.to_owned(), data.into_owned());
                    return 1;
                }
            }
            _ => {}
        }
        let frame = match data {
            Cow::Borrowed(_) => frame.clone(),
            Cow::Owned(ref data) => payload::event_frame(name, data),
        };
        if let Recipients::Socket(_) = to {
            return self.inner.deliver(&frame, to, out);
        }
        let frames = self.injector.frames(name, &data, frame);
        let mut receivers = self.inner.select(to);
        if let ("newMessage", Recipients::Room(_), true) = (name, to, f.leak_room) {
            let outsider = self
                .inner
                .select(Recipients::All)
                .into_iter()
                .find(|sid| !receivers.contains(sid));
            receivers.extend(outsider);
        }
        for sid in &receivers {
            for frame in &frames {
                for copy in self.injector.deliver(&self.inner, sid, frame) {
                    let _ = self.inner.deliver(&copy, Recipients::Socket(sid), out);
                }
            }
        }
        receivers.len()
    }
}

/// The event name and data of a `/chat` event frame (`42/chat,["name",data]`).
fn split_event(frame: &str) -> Option<(&str, &str)> {
    let rest = frame
        .strip_prefix("42")?
        .strip_prefix(CHAT)?
        .strip_prefix(",[\"")?;
    let (name, data) = rest.split_once("\",")?;
    Some((name, data.strip_suffix(']')?))
}

/// True with probability `p`.
fn chance(p: f64) -> bool {
    p > 0.0 && rand::random::<f64>() < p
}

/// Queues `frame` on the socket `sid` once `delay` has passed.
fn send_later(adapter: Arc<LocalAdapter>, sid: Arc<str>, frame: Frame, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        queue(&adapter, &sid, &frame);
    });
}

/// Sends each frame of a delay line when it is due, until its receiver is gone.
async fn drain_delay_line(
    adapter: Weak<LocalAdapter>,
    sid: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<(Instant, Frame)>,
) {
    while let Some((due, frame)) = rx.recv().await {
        tokio::time::sleep_until(due.into()).await;
        let Some(adapter) = adapter.upgrade() else {
            return;
        };
        if queue(&adapter, &sid, &frame) == 0 {
            return;
        }
    }
}

/// Queues a late frame to the socket `sid` (if it is still there); a full
/// queue disconnects the receiver, as on time. Returns how many got it.
fn queue(adapter: &LocalAdapter, sid: &str, frame: &Frame) -> usize {
    let mut out = Outcome::default();
    let delivered = adapter.deliver(frame, Recipients::Socket(sid), &mut out);
    out.apply();
    delivered
}

/// The `/chat` rules with the faults that change what they decide.
pub(crate) struct FaultyChat {
    chat: Arc<Chat>,
    injector: Arc<Injector>,
    profile: Profile,
    /// Signs the tokens that `accept_any_token` puts in place of the client's.
    key: jsonwebtoken::EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
    /// Tokens signed so far (each gets its own subject).
    minted: AtomicU64,
}

impl FaultyChat {
    /// Wraps `chat`, which runs with `config`.
    fn new(config: &GatewayConfig, chat: Arc<Chat>, injector: Arc<Injector>) -> Self {
        let algorithm = config
            .jwt_algorithms
            .iter()
            .find_map(|a| a.parse().ok())
            .unwrap_or(jsonwebtoken::Algorithm::HS256);
        Self {
            chat,
            injector,
            profile: config.profile,
            key: jsonwebtoken::EncodingKey::from_secret(config.jwt_secret.as_bytes()),
            algorithm,
            minted: AtomicU64::new(0),
        }
    }

    /// CONNECT data carrying a valid token of a subject of its own.
    fn valid_auth(&self) -> Option<String> {
        let n = self.minted.fetch_add(1, Ordering::Relaxed);
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + 3600;
        let claims = serde_json::json!({ "sub": format!("fault-{n}"), "exp": exp });
        let header = jsonwebtoken::Header::new(self.algorithm);
        let token = jsonwebtoken::encode(&header, &claims, &self.key).ok()?;
        Some(serde_json::json!({ "token": token }).to_string())
    }

    /// `sendMessage` or `typing` of a socket that never joined, handled as
    /// the seed profile handles a joined one's, under the name `null`.
    fn unjoined_event(&self, socket: &ChatSocket, event: &Event<'_>) -> Outcome {
        let mut out = Outcome::default();
        let data = event
            .args
            .first()
            .and_then(|a| serde_json::from_str::<serde_json::Value>(a.get()).ok())
            .filter(|d| !d.is_null());
        let Some(data) = data else { return out };
        if event.name == "sendMessage" {
            let message = payload::property(&data, "message");
            self.chat.send_message("null", message, &mut out);
        } else {
            let typing = payload::property(&data, "isTyping");
            self.chat.typing(socket.sid(), "null", typing, &mut out);
        }
        out
    }
}

impl Namespace for FaultyChat {
    type Socket = ChatSocket;
    type ConnState = ConnRate;

    fn conn_state(&self) -> ConnRate {
        self.chat.conn_state()
    }

    fn connect(
        &self,
        conn: &Arc<Conn>,
        auth: Option<&str>,
    ) -> Result<(ChatSocket, Outcome), Refused> {
        let forged = match self.profile {
            Profile::Strict if self.injector.faults.accept_any_token => self.valid_auth(),
            _ => None,
        };
        self.chat.connect(conn, forged.as_deref().or(auth))
    }

    fn event(
        &self,
        conn: &Arc<Conn>,
        socket: &mut ChatSocket,
        state: &mut ConnRate,
        event: &Event<'_>,
        ack: Option<u64>,
    ) -> Outcome {
        let name = event.name.as_ref();
        if self.injector.faults.unjoined_messages
            && self.profile == Profile::Seed
            && matches!(name, "sendMessage" | "typing")
            && self.chat.joined_name(socket.sid()).is_none()
        {
            return self.unjoined_event(socket, event);
        }
        let mut out = Namespace::event(&*self.chat, conn, socket, state, event, ack);
        if name == "joinChat" {
            let held = self.injector.held_joined.lock().remove(&**socket.sid());
            // The seed gateway never acks a join: this fault answers with one.
            if let (Profile::Seed, Some(id), Some(joined)) = (self.profile, ack, held) {
                self.chat.ack(socket.sid(), id, &joined, &mut out);
            }
        }
        out
    }

    fn disconnect(&self, socket: ChatSocket) {
        let sid = socket.sid().clone();
        let never_joined = !self.chat.has_joined(&sid);
        self.chat.disconnect(socket);
        if never_joined && self.injector.faults.offline_for_unjoined {
            let client_id = payload::string(&sid);
            let data =
                payload::object(&[("username", Some("null")), ("clientId", Some(&client_id))]);
            self.chat
                .announce("userOffline", &data, Recipients::All)
                .apply();
        }
    }
}

/// When the one stall of `stall_once` ends, once it has begun.
struct StallGate {
    started: Instant,
    stall: Option<(Duration, Duration)>,
    until: Mutex<Option<Instant>>,
}

impl StallGate {
    /// Waits out the one stall, starting it if it is due.
    async fn wait(&self) {
        let Some((after, length)) = self.stall else {
            return;
        };
        let until = {
            let mut until = self.until.lock();
            let now = Instant::now();
            match *until {
                Some(end) => end,
                None if now.duration_since(self.started) >= after => {
                    tracing::warn!(?length, "fault: stalling all event handling");
                    *until.insert(now + length)
                }
                None => return,
            }
        };
        tokio::time::sleep_until(until.into()).await;
    }
}

/// A TCP front for the gateway at `gateway`: every byte passes through,
/// except that clients' bytes wait out the one stall of `stall_once`, and
/// `crash_after` into its life the front stops listening and drops every
/// connection. Returns the address clients should use.
async fn front(
    gateway: SocketAddr,
    stall_once: Option<(Duration, Duration)>,
    crash_after: Option<Duration>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::new(gateway.ip(), 0)).await?;
    let addr = listener.local_addr()?;
    let gate = Arc::new(StallGate {
        started: Instant::now(),
        stall: stall_once,
        until: Mutex::new(None),
    });
    let (crash, crashed) = watch::channel(false);
    tokio::spawn(async move {
        match crash_after {
            Some(after) => {
                tokio::time::sleep(after).await;
                tracing::warn!("fault: the gateway crashes");
                let _ = crash.send(true);
            }
            // The front lives as long as the test's runtime.
            None => std::future::pending::<()>().await,
        }
    });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = until_crash(crashed.clone()) => return,
            };
            let Ok((client, _)) = accepted else { continue };
            let (gate, crashed) = (gate.clone(), crashed.clone());
            tokio::spawn(async move { relay(client, gateway, &gate, crashed).await });
        }
    });
    Ok(addr)
}

/// Resolves when the front crashes (never, if it never does).
async fn until_crash(mut crashed: watch::Receiver<bool>) {
    if crashed.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a crashing gateway answers a pending poll with.
const CRASHED_POLL: &[u8] =
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Relays one client connection to the gateway until either side ends it,
/// or the front crashes: then a polling request gets HTTP 500 and any other
/// connection just drops.
async fn relay(
    client: TcpStream,
    gateway: SocketAddr,
    gate: &StallGate,
    crashed: watch::Receiver<bool>,
) {
    let Ok(upstream) = TcpStream::connect(gateway).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut gateway_rx, mut gateway_tx) = upstream.into_split();
    let polling = AtomicBool::new(false);
    let inbound = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = true;
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Some(chunk) = buf.get(..n) else { break };
            if std::mem::take(&mut first) {
                polling.store(is_polling_request(chunk), Ordering::Relaxed);
            }
            gate.wait().await;
            if gateway_tx.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = gateway_tx.shutdown().await;
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut gateway_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    };
    let crash = tokio::select! {
        _ = async { tokio::join!(inbound, outbound) } => false,
        () = until_crash(crashed) => true,
    };
    if crash && polling.load(Ordering::Relaxed) {
        let _ = client_tx.write_all(CRASHED_POLL).await;
    }
}

/// Whether the first bytes of a connection are an HTTP long-polling request
/// (not a websocket handshake).
fn is_polling_request(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.contains("transport=polling") && !head.contains("upgrade: websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_frame_splits_into_its_name_and_data() {
        let frame = r#"42/chat,["newMessage",{"a":[1]}]"#;
        assert_eq!(split_event(frame), Some(("newMessage", r#"{"a":[1]}"#)));
        assert_eq!(split_event("43/chat,1[{}]"), None);
    }

    fn frame(text: &str) -> Frame {
        Arc::from(text)
    }

    #[test]
    fn reorder_holds_back_every_nth_message_of_a_sender_until_its_next() {
        let injector = Injector::new(Faults {
            reorder: true,
            ..Faults::default()
        });
        let alice = r#"{"username":"alice","message":"m"}"#;
        let bob = r#"{"username":"bob","message":"m"}"#;
        for i in 1..REORDER_EVERY {
            assert_eq!(
                injector.frames("newMessage", alice, frame("a")).len(),
                1,
                "{i}"
            );
        }
        assert!(injector
            .frames("newMessage", alice, frame("held"))
            .is_empty());
        // Another sender's messages pass; the held one waits for alice's next.
        assert_eq!(
            injector.frames("newMessage", bob, frame("b")),
            vec![frame("b")]
        );
        assert_eq!(
            injector.frames("newMessage", alice, frame("next")),
            vec![frame("next"), frame("held")]
        );
        assert_eq!(injector.frames("userOnline", alice, frame("u")).len(), 1);
    }

    #[test]
    fn typing_is_dropped_only_when_asked() {
        let quiet = Injector::new(Faults {
            drop_typing: true,
            ..Faults::default()
        });
        assert!(quiet.frames("userTyping", "{}", frame("t")).is_empty());
        assert_eq!(quiet.frames("newMessage", "{}", frame("m")).len(), 1);
        let plain = Injector::new(Faults::default());
        assert_eq!(plain.frames("userTyping", "{}", frame("t")).len(), 1);
    }

    #[test]
    fn chance_is_never_for_zero_and_always_for_one() {
        assert!((0..1000).all(|_| !chance(0.0)));
        assert!((0..1000).all(|_| chance(1.0)));
    }

    #[test]
    fn every_tenth_message_gets_a_wrong_name_only_when_asked() {
        let on = Injector::new(Faults {
            wrong_username: true,
            ..Faults::default()
        });
        let hits: Vec<bool> = (0..WRONG_USERNAME_EVERY * 2)
            .map(|_| on.wrong_username_now())
            .collect();
        assert_eq!(hits.iter().filter(|h| **h).count(), 2);
        assert!(hits[WRONG_USERNAME_EVERY as usize - 1]);
        let off = Injector::new(Faults::default());
        assert!((0..50).all(|_| !off.wrong_username_now()));
    }
}
