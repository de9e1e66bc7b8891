//! The cluster adapter (`--cluster redis://HOST:PORT`): the namespace's
//! sockets on this node, joined to other nodes over Redis in the wire format
//! of `@socket.io/redis-adapter` 8 (docs/protocol.md section 9), so one
//! cluster may hold socket.io nodes and ours.
//!
//! A broadcast is delivered locally and queued (bounded, in the order the
//! chat layer decided it, under its lock) to one publisher connection, which
//! PUBLISHes `[uid, {type: 2, data, nsp}, {rooms, except, flags}]` as
//! MessagePack on `socket.io#/chat#` (or `socket.io#/chat#<room>#`). A
//! subscriber connection PSUBSCRIBEs `socket.io#/chat#*` and delivers other
//! nodes' broadcasts to the local sockets they select, in the order received.
//!
//! Strict profile: each node keeps its users and room members in Redis
//! hashes (`chorus:presence:<uid>`, `chorus:rooms:<uid>`), written before the
//! broadcast that announces them, and a heartbeat key `chorus:node:<uid>`
//! (TTL [`HEARTBEAT_TTL`], refreshed every [`HEARTBEAT`]). A node reads the
//! hashes at start and then follows the presence broadcasts, so snapshots
//! hold every node's users; a peer whose key has expired is dead, and its
//! users leave (`roomLeft`, `userOffline`) at every other node. The seed
//! profile keeps presence per node, as the tutorial's code does.
//!
//! When the link fails (subscription lost, publish queue full, Redis gone)
//! the node disconnects every local socket, counts it, refuses new ones
//! until a new link (with a new uid) is up, and never leaves a socket
//! connected across a gap.

pub mod msgpack;
pub mod resp;

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};

use crate::engine::{Conn, Frame};
use crate::metrics::Metrics;
use crate::sio::adapter::{Adapter, LocalAdapter, Outcome, Recipients, RemoteUser, Unavailable};
use crate::sio::CHAT;
use msgpack::{Encoder, Mp};
use resp::{Client, Reply, RespError};

/// How often a node refreshes its heartbeat key and checks its peers'.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a heartbeat key lives without a refresh.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
/// How long a failed link waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Largest reply on the control connection (a peer's presence hash: about
/// 60 bytes a user, so some hundred thousand users a node).
const MAX_SYNC_REPLY_BYTES: usize = 64 << 20;
/// Remote users (and room memberships) a node remembers, in all.
const MAX_REMOTE_ENTRIES: usize = 1_000_000;
/// The channel prefix of `/chat` (`@socket.io/redis-adapter`'s default key).
const CHANNEL: &str = "socket.io#/chat#";
/// Publishes written to the socket in one batch, at most this many bytes.
const BATCH_BYTES: usize = 1 << 20;

fn node_key(uid: &str) -> String {
    format!("chorus:node:{uid}")
}
fn presence_key(uid: &str) -> String {
    format!("chorus:presence:{uid}")
}
fn rooms_key(uid: &str) -> String {
    format!("chorus:rooms:{uid}")
}
const NODES: &str = "chorus:nodes";

/// What the cluster link is configured with.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `HOST:PORT` of the Redis.
    pub addr: String,
    /// Whether presence is cluster-wide (strict) or per node (seed).
    pub presence: bool,
    /// Broadcasts waiting to be published, at most.
    pub queue_size: usize,
    /// Largest message accepted from Redis, in bytes.
    pub max_bytes: usize,
    /// How long connecting or one request to Redis may take.
    pub timeout: Duration,
}

/// One broadcast waiting to be published.
struct Outgoing {
    frame: Frame,
    room: Option<Arc<str>>,
    except: Option<Arc<str>>,
}

/// Users and room members of one other node, as its broadcasts told.
#[derive(Default)]
struct Peer {
    /// Socket id to raw JSON name, in join order.
    users: IndexMap<Arc<str>, Arc<str>>,
    /// Room to its members on that node (socket id to name), in join order.
    rooms: IndexMap<Arc<str>, IndexMap<Arc<str>, Arc<str>>>,
}

impl Peer {
    /// Users plus room memberships: what [`MAX_REMOTE_ENTRIES`] bounds.
    fn entries(&self) -> usize {
        self.users.len() + self.rooms.values().map(IndexMap::len).sum::<usize>()
    }
}

#[derive(Default)]
struct Shared {
    up: bool,
    uid: Arc<str>,
    tx: Option<mpsc::Sender<Outgoing>>,
    peers: IndexMap<Arc<str>, Peer>,
    /// [`Peer::entries`] over every peer.
    entries: usize,
}

/// The adapter of a node in a cluster.
pub struct ClusterAdapter {
    local: LocalAdapter,
    config: ClusterConfig,
    metrics: Arc<Metrics>,
    /// The link state, remote presence and the publish queue; taken under
    /// the chat lock (never the other way round), before the local adapter's.
    shared: Mutex<Shared>,
    overflow: Notify,
    up: watch::Sender<bool>,
    stop: watch::Sender<bool>,
}

impl ClusterAdapter {
    /// An adapter not yet linked; [`ClusterAdapter::spawn`] starts the link.
    pub fn new(config: ClusterConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            local: LocalAdapter::default(),
            config,
            metrics,
            shared: Mutex::new(Shared::default()),
            overflow: Notify::new(),
            up: watch::channel(false).0,
            stop: watch::channel(false).0,
        })
    }

    /// Starts the link task (it retries until [`ClusterAdapter::stop`]).
    pub fn spawn(self: &Arc<Self>) {
        tokio::spawn(self.clone().run());
    }

    /// Waits at most `wait` for the link to be up; whether it is.
    pub async fn wait_up(&self, wait: Duration) -> bool {
        let mut up = self.up.subscribe();
        let up = tokio::time::timeout(wait, up.wait_for(|u| *u)).await;
        matches!(up, Ok(Ok(_)))
    }

    /// Whether the link is up, as it changes: `/healthz` answers 503 while
    /// it is down, so a load balancer stops sending users to this node.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Ends the link task.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    async fn run(self: Arc<Self>) {
        let mut stopped = self.stop.subscribe();
        let mut old: Option<Arc<str>> = None;
        loop {
            let uid: Arc<str> = format!("{:012x}", rand::random::<u64>() >> 16).into();
            let reason = tokio::select! {
                r = self.session(&uid, old.take()) => r,
                _ = stopped.wait_for(|s| *s) => return,
            };
            self.fail(reason);
            old = Some(uid);
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    }

    /// The link failed: no more publishing, forget the peers, disconnect
    /// every local socket (each counted with `reason`).
    fn fail(&self, reason: &'static str) {
        let was_up = {
            let mut shared = self.shared.lock();
            shared.tx = None;
            shared.peers.clear();
            shared.entries = 0;
            std::mem::replace(&mut shared.up, false)
        };
        self.up.send_replace(false);
        let conns = self.local.conns();
        if was_up {
            tracing::warn!(
                reason,
                sockets = conns.len(),
                "cluster link lost: disconnecting this node's sockets"
            );
        } else {
            tracing::debug!(reason, "cluster link not up");
        }
        for conn in conns {
            self.metrics.cluster_disconnect(reason);
            conn.server_disconnect();
        }
    }

    /// One link, from connecting to its failure; returns the reason it ended.
    async fn session(&self, uid: &Arc<str>, old: Option<Arc<str>>) -> &'static str {
        match self.link(uid, old).await {
            Ok(reason) | Err(reason) => reason,
        }
    }

    /// A connection whose replies are at most `max_bytes` each.
    async fn client(&self, max_bytes: usize) -> Result<Client, &'static str> {
        let stream = resp::connect(&self.config.addr, self.config.timeout)
            .await
            .map_err(|_| "redis_lost")?;
        Ok(Client::new(stream, max_bytes, self.config.timeout))
    }

    async fn link(
        &self,
        uid: &Arc<str>,
        old: Option<Arc<str>>,
    ) -> Result<&'static str, &'static str> {
        let lost = |_: RespError| "redis_lost";
        // Its replies include a peer's whole presence hash (HGETALL).
        let mut control = self.client(MAX_SYNC_REPLY_BYTES).await?;
        if let Some(old) = old {
            forget(&mut control, &old).await.map_err(lost)?;
        }
        let ttl = HEARTBEAT_TTL.as_millis().to_string();
        control
            .call(&[
                b"SET",
                node_key(uid).as_bytes(),
                b"1",
                b"PX",
                ttl.as_bytes(),
            ])
            .await
            .map_err(lost)?;
        control
            .call(&[b"SADD", NODES.as_bytes(), uid.as_bytes()])
            .await
            .map_err(lost)?;
        let mut sub = self.client(self.config.max_bytes).await?;
        let pattern = format!("{CHANNEL}*");
        sub.call(&[b"PSUBSCRIBE", pattern.as_bytes()])
            .await
            .map_err(|_| "subscription_lost")?;
        let (reader, _sub_writer) = sub.into_parts();
        // A reply read in a `select!` branch could be cut in half: the reader has its own task.
        let (push_tx, mut pushes) = mpsc::channel(1024);
        // Subscribed first, then read: what the peers publish meanwhile waits in the socket.
        let peers = if self.config.presence {
            sync(&mut control, uid).await.map_err(lost)?
        } else {
            IndexMap::new()
        };
        let publisher = self.client(self.config.max_bytes).await?;
        let (tx, rx) = mpsc::channel(self.config.queue_size.max(1));
        let (replies, writer) = publisher.into_parts();
        let mut tasks = Tasks(vec![
            tokio::spawn(publish(rx, writer, uid.clone(), self.config.presence)),
            tokio::spawn(drain(replies)),
            tokio::spawn(subscription(reader, push_tx)),
        ]);
        {
            let mut shared = self.shared.lock();
            shared.entries = peers.values().map(Peer::entries).sum();
            shared.peers = peers;
            shared.uid = uid.clone();
            shared.tx = Some(tx);
            shared.up = true;
        }
        self.up.send_replace(true);
        tracing::info!(%uid, redis = %self.config.addr, "joined the cluster");
        let mut beat = tokio::time::interval(HEARTBEAT);
        let [publisher, drainer, _] = tasks.0.as_mut_slice() else {
            return Err("publish_failed");
        };
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => self.on_push(push, uid),
                    None => return Ok("subscription_lost"),
                },
                // A stalled Redis holds the heartbeat up to the timeout:
                // an overflow meanwhile must still end the link at once.
                _ = beat.tick() => tokio::select! {
                    beat = self.heartbeat(&mut control, uid) => beat?,
                    _ = self.overflow.notified() => return Ok("publish_queue_full"),
                },
                _ = self.overflow.notified() => return Ok("publish_queue_full"),
                _ = &mut *publisher => return Ok("publish_failed"),
                _ = &mut *drainer => return Ok("publish_failed"),
            }
        }
    }

    /// Refreshes this node's key (gone means the peers think it dead) and
    /// retires the peers whose keys have expired.
    async fn heartbeat(&self, control: &mut Client, uid: &str) -> Result<(), &'static str> {
        let ttl = HEARTBEAT_TTL.as_millis().to_string();
        match control
            .call(&[b"PEXPIRE", node_key(uid).as_bytes(), ttl.as_bytes()])
            .await
        {
            Ok(Reply::Int(1)) => {}
            Ok(_) => return Err("heartbeat_lost"),
            Err(_) => return Err("redis_lost"),
        }
        let peers: Vec<Arc<str>> = self.shared.lock().peers.keys().cloned().collect();
        for peer in peers {
            let alive = control
                .call(&[b"EXISTS", node_key(&peer).as_bytes()])
                .await
                .map_err(|_| "redis_lost")?;
            if alive == Reply::Int(0) {
                self.peer_died(&peer);
                forget(control, &peer).await.map_err(|_| "redis_lost")?;
            }
        }
        Ok(())
    }

    /// A peer's key expired: each of its users leaves its rooms and goes
    /// offline at this node, as if it had disconnected.
    fn peer_died(&self, peer: &str) {
        let mut out = Outcome::default();
        {
            let mut shared = self.shared.lock();
            let Some(gone) = shared.peers.shift_remove(peer) else {
                return;
            };
            shared.entries = shared.entries.saturating_sub(gone.entries());
            tracing::warn!(
                peer,
                users = gone.users.len(),
                "cluster node is gone: its users leave"
            );
            for (sid, name) in &gone.users {
                let client = chorus_protocol::json::string(sid);
                for (room, members) in &gone.rooms {
                    if members.contains_key(sid) {
                        let data = format!(
                            r#"{{"room":{},"username":{name},"clientId":{client}}}"#,
                            chorus_protocol::json::string(room)
                        );
                        let frame = event_frame("roomLeft", &data);
                        self.local.deliver_where(&frame, &[room], &[], &mut out);
                    }
                }
                let data = format!(r#"{{"username":{name},"clientId":{client}}}"#);
                let frame = event_frame("userOffline", &data);
                self.local.deliver_where(&frame, &[], &[], &mut out);
            }
        }
        out.apply();
    }

    /// A message from the subscription: another node's broadcast.
    fn on_push(&self, push: Reply, uid: &str) {
        let items = push.into_array();
        let [kind, _pattern, channel, payload] = items.as_slice() else {
            return;
        };
        if *kind != Reply::Bulk(Some(b"pmessage".to_vec())) {
            return;
        }
        let (Reply::Bulk(Some(channel)), Reply::Bulk(Some(payload))) = (channel, payload) else {
            return self.metrics.cluster_dropped();
        };
        if !channel.starts_with(CHANNEL.as_bytes()) {
            return;
        }
        match decode_broadcast(payload) {
            Ok(Some(b)) if b.uid != uid => self.deliver_remote(&b),
            Ok(_) => {}
            Err(why) => {
                tracing::debug!(why, "dropping a cluster message");
                self.metrics.cluster_dropped();
            }
        }
    }

    fn deliver_remote(&self, b: &Broadcast) {
        let frame: Frame = Arc::from(format!("42{CHAT},{}", b.data_json));
        let rooms: Vec<&str> = b.rooms.iter().map(String::as_str).collect();
        let except: Vec<&str> = b.except.iter().map(String::as_str).collect();
        let mut out = Outcome::default();
        {
            let mut shared = self.shared.lock();
            if self.config.presence {
                if let Some(presence) = &b.presence {
                    learn(&mut shared, &b.uid, presence);
                }
            }
            self.local.deliver_where(&frame, &rooms, &except, &mut out);
        }
        out.apply();
    }
}

/// `42/chat,["<name>",<data>]` (the Socket.IO layer does not call up into the chat rules).
fn event_frame(name: &str, data: &str) -> Frame {
    Arc::from(format!("42{CHAT},[\"{name}\",{data}]"))
}

/// Aborts the link's tasks when the link ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Deletes a dead (or this node's previous) uid's keys.
async fn forget(control: &mut Client, uid: &str) -> Result<(), RespError> {
    control
        .call(&[
            b"DEL",
            node_key(uid).as_bytes(),
            presence_key(uid).as_bytes(),
            rooms_key(uid).as_bytes(),
        ])
        .await?;
    control
        .call(&[b"SREM", NODES.as_bytes(), uid.as_bytes()])
        .await?;
    Ok(())
}

/// Reads every live peer's users and room members (deleting the dead ones' keys).
async fn sync(control: &mut Client, uid: &str) -> Result<IndexMap<Arc<str>, Peer>, RespError> {
    let mut peers = IndexMap::new();
    let mut entries = 0usize;
    let members = control.call(&[b"SMEMBERS", NODES.as_bytes()]).await?;
    for peer in members.into_array() {
        let Some(peer) = peer.into_bulk().and_then(|b| String::from_utf8(b).ok()) else {
            continue;
        };
        if peer == uid {
            continue;
        }
        if control
            .call(&[b"EXISTS", node_key(&peer).as_bytes()])
            .await?
            == Reply::Int(0)
        {
            forget(control, &peer).await?;
            continue;
        }
        let mut p = Peer::default();
        let users = control
            .call(&[b"HGETALL", presence_key(&peer).as_bytes()])
            .await?;
        for (sid, name) in pairs(users) {
            p.users.insert(sid.into(), name.into());
        }
        let rooms = control
            .call(&[b"HGETALL", rooms_key(&peer).as_bytes()])
            .await?;
        for (field, name) in pairs(rooms) {
            if let Some((sid, room)) = field.split_once(' ') {
                p.rooms
                    .entry(room.into())
                    .or_default()
                    .insert(sid.into(), name.into());
            }
        }
        entries += p.entries();
        if entries > MAX_REMOTE_ENTRIES {
            break;
        }
        peers.insert(Arc::from(peer), p);
    }
    Ok(peers)
}

/// The field/value pairs of an HGETALL reply (UTF-8 ones).
fn pairs(reply: Reply) -> Vec<(String, String)> {
    let items = reply.into_array();
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let k = k.into_bulk().and_then(|b| String::from_utf8(b).ok());
        let v = v.into_bulk().and_then(|b| String::from_utf8(b).ok());
        if let (Some(k), Some(v)) = (k, v) {
            out.push((k, v));
        }
    }
    out
}

/// A presence event another node broadcast.
#[derive(Debug, PartialEq)]
enum Presence {
    Online {
        sid: String,
        name: String,
    },
    Offline {
        sid: String,
    },
    Joined {
        sid: String,
        name: String,
        room: String,
    },
    Left {
        sid: String,
        room: String,
    },
}

/// Another node's broadcast, decoded.
#[derive(Debug)]
struct Broadcast {
    uid: String,
    /// The packet's `data` (`[event, …args]`) as JSON text.
    data_json: String,
    rooms: Vec<String>,
    except: Vec<String>,
    presence: Option<Presence>,
}

/// `[uid, {type, data, nsp}, {rooms, except, flags}]`; `None` for another
/// namespace's packet.
fn decode_broadcast(bytes: &[u8]) -> Result<Option<Broadcast>, &'static str> {
    let value = msgpack::decode(bytes).map_err(|_| "not msgpack")?;
    let [uid, packet, opts] = value.items() else {
        return Err("not [uid, packet, opts]");
    };
    let uid = uid.as_str().ok_or("uid is not a string")?.to_owned();
    if packet.get("nsp").and_then(Mp::as_str) != Some(CHAT) {
        return Ok(None);
    }
    if packet.get("type") != Some(&Mp::Int(2)) {
        return Err("not an EVENT packet");
    }
    let data = packet.get("data").ok_or("no data")?;
    let mut data_json = String::new();
    msgpack::to_json(data, &mut data_json).map_err(|_| "data has no JSON form")?;
    if !data_json.starts_with("[\"") {
        return Err("data is not [event, …]");
    }
    let strings = |key: &str| -> Vec<String> {
        opts.get(key)
            .map(|v| {
                v.items()
                    .iter()
                    .filter_map(Mp::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let presence = presence_of(data.items());
    Ok(Some(Broadcast {
        uid,
        data_json,
        rooms: strings("rooms"),
        except: strings("except"),
        presence,
    }))
}

fn presence_of(data: &[Mp]) -> Option<Presence> {
    let [name, payload, ..] = data else {
        return None;
    };
    let field = |k: &str| payload.get(k).and_then(Mp::as_str).map(str::to_owned);
    let username = || {
        let mut out = String::new();
        match payload.get("username") {
            Some(v) => msgpack::to_json(v, &mut out).ok().map(|_| out),
            None => Some("null".to_owned()),
        }
    };
    let sid = field("clientId")?;
    Some(match name.as_str()? {
        "userOnline" => Presence::Online {
            sid,
            name: username()?,
        },
        "userOffline" => Presence::Offline { sid },
        "roomJoined" => Presence::Joined {
            sid,
            name: username()?,
            room: field("room")?,
        },
        "roomLeft" => Presence::Left {
            sid,
            room: field("room")?,
        },
        _ => return None,
    })
}

/// Updates what this node knows of `peer`'s users.
fn learn(shared: &mut Shared, peer: &str, presence: &Presence) {
    let full = shared.entries >= MAX_REMOTE_ENTRIES;
    if !shared.peers.contains_key(peer) {
        if full {
            return;
        }
        shared.peers.insert(peer.into(), Peer::default());
    }
    let Some(p) = shared.peers.get_mut(peer) else {
        return;
    };
    let mut delta: isize = 0;
    match presence {
        Presence::Online { sid, name } => {
            if let Some(old) = p.users.get_mut(sid.as_str()) {
                *old = name.as_str().into();
            } else if !full {
                p.users.insert(sid.as_str().into(), name.as_str().into());
                delta += 1;
            }
        }
        Presence::Offline { sid } => {
            if p.users.shift_remove(sid.as_str()).is_some() {
                delta -= 1;
            }
        }
        Presence::Joined { sid, name, room } => {
            if !full {
                let members = p.rooms.entry(room.as_str().into()).or_default();
                if members
                    .insert(sid.as_str().into(), name.as_str().into())
                    .is_none()
                {
                    delta += 1;
                }
            }
        }
        Presence::Left { sid, room } => {
            if let Some(members) = p.rooms.get_mut(room.as_str()) {
                if members.shift_remove(sid.as_str()).is_some() {
                    delta -= 1;
                }
                if members.is_empty() {
                    p.rooms.shift_remove(room.as_str());
                }
            }
        }
    }
    shared.entries = shared.entries.saturating_add_signed(delta);
}

/// Writes the queued broadcasts to Redis in order, batching what has queued up.
async fn publish(
    mut rx: mpsc::Receiver<Outgoing>,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    uid: Arc<str>,
    presence: bool,
) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        buf.clear();
        encode_publish(&mut buf, &first, &uid, presence);
        while buf.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => encode_publish(&mut buf, &next, &uid, presence),
                Err(_) => break,
            }
        }
        if resp::write_all(&mut writer, &buf).await.is_err() {
            return;
        }
    }
}

/// Hands the subscription's messages over in order; ends (closing `tx`)
/// when the subscription fails.
async fn subscription(
    mut reader: resp::Reader<tokio::net::tcp::OwnedReadHalf>,
    tx: mpsc::Sender<Reply>,
) {
    loop {
        match reader.read().await {
            Ok(push) => {
                if tx.send(push).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cluster subscription lost");
                return;
            }
        }
    }
}

/// Reads (and drops) the publisher connection's replies; ends when it closes.
async fn drain(mut replies: resp::Reader<tokio::net::tcp::OwnedReadHalf>) {
    loop {
        match replies.read().await {
            Ok(_) => {}
            Err(RespError::Server(e)) => tracing::warn!(error = %e, "redis refused a publish"),
            Err(_) => return,
        }
    }
}

/// Appends the commands of one broadcast: the presence hash write (strict;
/// before the PUBLISH, so a node that syncs meanwhile misses neither), then
/// the PUBLISH.
fn encode_publish(buf: &mut Vec<u8>, o: &Outgoing, uid: &str, presence: bool) {
    let Some(data_text) = o.frame.strip_prefix("42/chat,") else {
        return;
    };
    let Ok(data) = serde_json::from_str::<Value>(data_text) else {
        return;
    };
    if presence {
        presence_command(buf, &data, uid);
    }
    let mut e = Encoder::default();
    e.array(3);
    e.str(uid);
    e.map(3);
    e.str("type");
    e.int(2);
    e.str("data");
    e.json(&data);
    e.str("nsp");
    e.str(CHAT);
    e.map(3);
    e.str("rooms");
    e.array(usize::from(o.room.is_some()));
    if let Some(room) = &o.room {
        e.str(room);
    }
    e.str("except");
    e.array(usize::from(o.except.is_some()));
    if let Some(except) = &o.except {
        e.str(except);
    }
    e.str("flags");
    e.map(0);
    let channel = match &o.room {
        Some(room) => format!("{CHANNEL}{room}#"),
        None => CHANNEL.to_owned(),
    };
    resp::command(buf, &[b"PUBLISH", channel.as_bytes(), &e.out]);
}

fn presence_command(buf: &mut Vec<u8>, data: &Value, uid: &str) {
    let (Some(name), Some(p)) = (data.get(0).and_then(Value::as_str), data.get(1)) else {
        return;
    };
    let Some(sid) = p.get("clientId").and_then(Value::as_str) else {
        return;
    };
    let username = p
        .get("username")
        .map(Value::to_string)
        .unwrap_or_else(|| "null".into());
    let room = p.get("room").and_then(Value::as_str);
    match (name, room) {
        ("userOnline", _) => resp::command(
            buf,
            &[
                b"HSET",
                presence_key(uid).as_bytes(),
                sid.as_bytes(),
                username.as_bytes(),
            ],
        ),
        ("userOffline", _) => resp::command(
            buf,
            &[b"HDEL", presence_key(uid).as_bytes(), sid.as_bytes()],
        ),
        ("roomJoined", Some(room)) => resp::command(
            buf,
            &[
                b"HSET",
                rooms_key(uid).as_bytes(),
                format!("{sid} {room}").as_bytes(),
                username.as_bytes(),
            ],
        ),
        ("roomLeft", Some(room)) => resp::command(
            buf,
            &[
                b"HDEL",
                rooms_key(uid).as_bytes(),
                format!("{sid} {room}").as_bytes(),
            ],
        ),
        _ => {}
    }
}

impl Adapter for ClusterAdapter {
    fn add(&self, sid: Arc<str>, conn: Arc<Conn>) {
        self.local.add(sid, conn);
    }

    fn remove(&self, sid: &str) {
        self.local.remove(sid);
    }

    fn join(&self, sid: &str, room: &str) -> bool {
        self.local.join(sid, room)
    }

    fn leave(&self, sid: &str, room: &str) -> bool {
        self.local.leave(sid, room)
    }

    fn is_member(&self, sid: &str, room: &str) -> bool {
        self.local.is_member(sid, room)
    }

    fn rooms_of(&self, sid: &str) -> Vec<Arc<str>> {
        self.local.rooms_of(sid)
    }

    fn members(&self, room: &str) -> Vec<Arc<str>> {
        self.local.members(room)
    }

    fn select(&self, to: Recipients<'_>) -> Vec<Arc<str>> {
        self.local.select(to)
    }

    fn deliver(&self, frame: &Frame, to: Recipients<'_>, out: &mut Outcome) -> usize {
        let (room, except) = match to {
            Recipients::Socket(_) => return self.local.deliver(frame, to, out),
            Recipients::All => (None, None),
            Recipients::AllBut(sid) => (None, Some(sid)),
            Recipients::Room(room) => (Some(room), None),
            Recipients::RoomBut(room, sid) => (Some(room), Some(sid)),
        };
        {
            let mut shared = self.shared.lock();
            if let Some(tx) = &shared.tx {
                let outgoing = Outgoing {
                    frame: frame.clone(),
                    room: room.map(Arc::from),
                    except: except.map(Arc::from),
                };
                if tx.try_send(outgoing).is_err() {
                    // Fallen behind: stop publishing at once (no later frame
                    // may leave after a lost one) and let the link task end it.
                    shared.tx = None;
                    self.overflow.notify_one();
                }
            }
        }
        self.local.deliver(frame, to, out)
    }

    fn enter(&self, sid: Arc<str>, conn: Arc<Conn>) -> Result<Vec<RemoteUser>, Unavailable> {
        let shared = self.shared.lock();
        if !shared.up || shared.tx.is_none() {
            return Err(Unavailable);
        }
        self.local.add(sid, conn);
        if !self.config.presence {
            return Ok(Vec::new());
        }
        Ok(shared
            .peers
            .values()
            .flat_map(|p| p.users.iter().map(|(s, n)| (s.clone(), n.clone())))
            .collect())
    }

    fn join_snapshot(&self, sid: &str, room: &str) -> Vec<RemoteUser> {
        let shared = self.shared.lock();
        self.local.join(sid, room);
        if !self.config.presence {
            return Vec::new();
        }
        shared
            .peers
            .values()
            .filter_map(|p| p.rooms.get(room))
            .flat_map(|m| m.iter().map(|(s, n)| (s.clone(), n.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_round_trip_in_the_adapter_wire_format() {
        let frame: Frame =
            Arc::from(r#"42/chat,["roomJoined",{"room":"r1","username":"ann","clientId":"abc"}]"#);
        let o = Outgoing {
            frame,
            room: Some("r1".into()),
            except: Some("abc".into()),
        };
        let mut buf = Vec::new();
        encode_publish(&mut buf, &o, "node1", true);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("*4\r\n$4\r\nHSET\r\n"), "{text}");
        assert!(text.contains("socket.io#/chat#r1#"), "{text}");
        // The PUBLISH's last argument is the msgpack payload.
        let mut reader = resp::Reader::new(&buf[..], 1 << 16);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let hset = rt.block_on(reader.read()).expect("the HSET");
        assert_eq!(hset.into_array().len(), 4);
        let reply = rt.block_on(reader.read()).expect("the PUBLISH");
        let payload = reply
            .into_array()
            .pop()
            .and_then(Reply::into_bulk)
            .expect("payload");
        let b = decode_broadcast(&payload)
            .expect("decodes")
            .expect("a /chat packet");
        assert_eq!(b.uid, "node1");
        assert_eq!(
            b.data_json,
            r#"["roomJoined",{"room":"r1","username":"ann","clientId":"abc"}]"#
        );
        assert_eq!(
            (b.rooms, b.except),
            (vec!["r1".to_owned()], vec!["abc".to_owned()])
        );
        assert_eq!(
            b.presence,
            Some(Presence::Joined {
                sid: "abc".into(),
                name: "\"ann\"".into(),
                room: "r1".into()
            })
        );
        assert!(decode_broadcast(b"\x93").is_err());
        assert!(decode_broadcast(&[0x93, 0xa1, b'u', 0xc0, 0xc0])
            .expect("other nsp")
            .is_none());
    }
}
