//! The delivery interface of a namespace (socket.io's adapter): "queue this
//! encoded frame to these recipients". The chat layer calls it under its
//! namespace lock, so deliveries leave in one total order; an adapter queues
//! without waiting and reports receivers whose queues are full in the
//! [`Outcome`], which disconnects them once no lock is held.
//!
//! Recipients are a [`Recipients`] selector, never a list of connections, so
//! an adapter that spans several nodes can resolve it where the sockets live.
//! The adapter also owns room membership (as socket.io's does): who is in a
//! room is what decides where a room's frames go. [`LocalAdapter`], the
//! in-process one, is what ships.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::{IndexMap, IndexSet};
use parking_lot::Mutex;

use crate::engine::{CloseReason, Conn, Frame};

/// Who a frame goes to, among the namespace's sockets (by namespace socket id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients<'a> {
    /// Every socket in the namespace.
    All,
    /// Every socket in the namespace but this one (the sender).
    AllBut(&'a str),
    /// This socket alone.
    Socket(&'a str),
    /// Every member of the room.
    Room(&'a str),
    /// Every member of the room (first) but this socket (second).
    RoomBut(&'a str, &'a str),
}

/// Delivers frames to the sockets of one namespace.
pub trait Adapter: Send + Sync {
    /// The socket `sid`, carried by `conn`, entered the namespace.
    fn add(&self, sid: Arc<str>, conn: Arc<Conn>);
    /// The socket `sid` left the namespace (and with it every room).
    fn remove(&self, sid: &str);
    /// The socket `sid` (in the namespace) joins `room`; whether it was not
    /// a member before. Members are kept in the order they joined.
    fn join(&self, sid: &str, room: &str) -> bool;
    /// The socket `sid` leaves `room`; whether it was a member.
    fn leave(&self, sid: &str, room: &str) -> bool;
    /// Whether the socket `sid` is a member of `room`.
    fn is_member(&self, sid: &str, room: &str) -> bool;
    /// The rooms the socket `sid` is a member of, in the order it joined them.
    fn rooms_of(&self, sid: &str) -> Vec<Arc<str>>;
    /// The members of `room`, in the order they joined it.
    fn members(&self, room: &str) -> Vec<Arc<str>>;
    /// The ids of the sockets `to` selects, in namespace (or room) order.
    fn select(&self, to: Recipients<'_>) -> Vec<Arc<str>>;
    /// Queues `frame` (encoded once, shared) to every socket `to` selects,
    /// without waiting; a receiver whose queue is full goes into `out`.
    /// Returns how many sockets were selected.
    fn deliver(&self, frame: &Frame, to: Recipients<'_>, out: &mut Outcome) -> usize;

    /// [`Adapter::add`], returning the users other nodes have (socket id,
    /// raw JSON name), read atomically with the entry: a remote user is in
    /// this list or its later events reach the socket, never neither. An
    /// adapter that can no longer deliver everywhere refuses the socket.
    fn enter(&self, sid: Arc<str>, conn: Arc<Conn>) -> Result<Vec<RemoteUser>, Unavailable> {
        self.add(sid, conn);
        Ok(Vec::new())
    }

    /// [`Adapter::join`], returning the room's members on other nodes, read
    /// atomically with the join (as [`Adapter::enter`]).
    fn join_snapshot(&self, sid: &str, room: &str) -> Vec<RemoteUser> {
        self.join(sid, room);
        Vec::new()
    }
}

/// A user of another node: its socket id and its name as raw JSON.
pub type RemoteUser = (Arc<str>, Arc<str>);

/// The adapter cannot serve a new socket now (its cluster link is down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the cluster link is down")]
pub struct Unavailable;

/// The in-process adapter: the namespace's sockets on this gateway, in the
/// order they entered, and its rooms.
#[derive(Default)]
pub struct LocalAdapter {
    state: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    sockets: IndexMap<Arc<str>, Member>,
    /// Room name to its members' ids, in join order; a room with no member is removed.
    rooms: HashMap<Arc<str>, IndexSet<Arc<str>>>,
}

struct Member {
    conn: Arc<Conn>,
    /// The rooms it is in, in the order it joined them (few: the chat layer bounds them).
    rooms: Vec<Arc<str>>,
}

impl Local {
    /// Calls `f` with every socket `to` selects.
    fn each(&self, to: Recipients<'_>, mut f: impl FnMut(&Arc<str>, &Arc<Conn>)) {
        let mut room = |room: &str, except: Option<&str>| {
            for sid in self.rooms.get(room).into_iter().flatten() {
                if except != Some(&**sid) {
                    if let Some(member) = self.sockets.get(sid) {
                        f(sid, &member.conn);
                    }
                }
            }
        };
        match to {
            Recipients::Room(name) => room(name, None),
            Recipients::RoomBut(name, except) => room(name, Some(except)),
            Recipients::Socket(only) => {
                if let Some((_, sid, member)) = self.sockets.get_full(only) {
                    f(sid, &member.conn);
                }
            }
            Recipients::All | Recipients::AllBut(_) => {
                let except = match to {
                    Recipients::AllBut(except) => Some(except),
                    _ => None,
                };
                for (sid, member) in &self.sockets {
                    if except != Some(&**sid) {
                        f(sid, &member.conn);
                    }
                }
            }
        }
    }
}

impl Adapter for LocalAdapter {
    fn add(&self, sid: Arc<str>, conn: Arc<Conn>) {
        let member = Member {
            conn,
            rooms: Vec::new(),
        };
        self.state.lock().sockets.insert(sid, member);
    }

    fn remove(&self, sid: &str) {
        let mut state = self.state.lock();
        let Some(member) = state.sockets.swap_remove(sid) else {
            return;
        };
        for room in member.rooms {
            if let Some(members) = state.rooms.get_mut(&room) {
                members.shift_remove(sid);
                if members.is_empty() {
                    state.rooms.remove(&room);
                }
            }
        }
    }

    fn join(&self, sid: &str, room: &str) -> bool {
        let mut state = self.state.lock();
        let Local { sockets, rooms } = &mut *state;
        let Some((_, sid, member)) = sockets.get_full_mut(sid) else {
            return false;
        };
        if member.rooms.iter().any(|r| &**r == room) {
            return false;
        }
        let name: Arc<str> = match rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => room.into(),
        };
        member.rooms.push(name.clone());
        rooms.entry(name).or_default().insert(sid.clone());
        true
    }

    fn leave(&self, sid: &str, room: &str) -> bool {
        let mut state = self.state.lock();
        let Local { sockets, rooms } = &mut *state;
        let Some(member) = sockets.get_mut(sid) else {
            return false;
        };
        let Some(at) = member.rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        member.rooms.remove(at);
        if let Some(members) = rooms.get_mut(room) {
            members.shift_remove(sid);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
        true
    }

    fn is_member(&self, sid: &str, room: &str) -> bool {
        let state = self.state.lock();
        state
            .sockets
            .get(sid)
            .is_some_and(|m| m.rooms.iter().any(|r| &**r == room))
    }

    fn rooms_of(&self, sid: &str) -> Vec<Arc<str>> {
        let state = self.state.lock();
        state
            .sockets
            .get(sid)
            .map(|m| m.rooms.clone())
            .unwrap_or_default()
    }

    fn members(&self, room: &str) -> Vec<Arc<str>> {
        let state = self.state.lock();
        state
            .rooms
            .get(room)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn select(&self, to: Recipients<'_>) -> Vec<Arc<str>> {
        let state = self.state.lock();
        let mut ids = Vec::new();
        state.each(to, |sid, _| ids.push(sid.clone()));
        ids
    }

    fn deliver(&self, frame: &Frame, to: Recipients<'_>, out: &mut Outcome) -> usize {
        let state = self.state.lock();
        let mut receivers = 0;
        state.each(to, |_, conn| {
            out.send(conn, frame.clone());
            receivers += 1;
        });
        receivers
    }
}

impl LocalAdapter {
    /// Queues `frame` to the local sockets a cluster peer's broadcast
    /// selects, as socket.io's adapter does: members of any of `rooms`
    /// (every socket when empty) that are neither named in `except` nor
    /// members of a room named there (a socket is in the room of its id).
    pub(crate) fn deliver_where(
        &self,
        frame: &Frame,
        rooms: &[&str],
        except: &[&str],
        out: &mut Outcome,
    ) -> usize {
        let state = self.state.lock();
        let excluded = |sid: &Arc<str>, member: &Member| {
            except
                .iter()
                .any(|e| **e == **sid || member.rooms.iter().any(|r| **r == **e))
        };
        let mut receivers = 0;
        let mut send = |sid: &Arc<str>, member: &Member| {
            if !excluded(sid, member) {
                out.send(&member.conn, frame.clone());
                receivers += 1;
            }
        };
        match rooms {
            [] => state.sockets.iter().for_each(|(sid, m)| send(sid, m)),
            [room] => {
                for sid in state.rooms.get(*room).into_iter().flatten() {
                    if let Some(m) = state.sockets.get(sid) {
                        send(sid, m);
                    }
                }
            }
            many => {
                for (sid, m) in &state.sockets {
                    if m.rooms.iter().any(|r| many.contains(&&**r)) {
                        send(sid, m);
                    }
                }
            }
        }
        receivers
    }

    /// Every local socket's connection.
    pub(crate) fn conns(&self) -> Vec<Arc<Conn>> {
        let state = self.state.lock();
        state.sockets.values().map(|m| m.conn.clone()).collect()
    }
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
    pub fn send(&mut self, conn: &Arc<Conn>, frame: Frame) {
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
