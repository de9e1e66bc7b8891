//! The delivery interface of a namespace (socket.io's adapter): "queue this
//! encoded frame to these recipients". The chat layer calls it under its
//! namespace lock, so deliveries leave in one total order; an adapter queues
//! without waiting and reports receivers whose queues are full in the
//! [`Outcome`], which disconnects them once no lock is held.
//!
//! Recipients are a [`Recipients`] selector, never a list of connections, so
//! an adapter that spans several nodes (or adds rooms) can resolve it where
//! the sockets live. [`LocalAdapter`], the in-process one, is what ships.

use std::sync::Arc;

use indexmap::IndexMap;
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
}

impl Recipients<'_> {
    /// Whether the socket `sid` is among the recipients.
    pub fn includes(&self, sid: &str) -> bool {
        match self {
            Self::All => true,
            Self::AllBut(except) => *except != sid,
            Self::Socket(only) => *only == sid,
        }
    }
}

/// Delivers frames to the sockets of one namespace.
pub trait Adapter: Send + Sync {
    /// The socket `sid`, carried by `conn`, entered the namespace.
    fn add(&self, sid: Arc<str>, conn: Arc<Conn>);
    /// The socket `sid` left the namespace.
    fn remove(&self, sid: &str);
    /// Queues `frame` (encoded once, shared) to every socket `to` selects,
    /// without waiting; a receiver whose queue is full goes into `out`.
    /// Returns how many sockets were selected.
    fn deliver(&self, frame: &Frame, to: Recipients<'_>, out: &mut Outcome) -> usize;
}

/// The in-process adapter: the namespace's sockets on this gateway, in the
/// order they entered.
#[derive(Default)]
pub struct LocalAdapter {
    sockets: Mutex<IndexMap<Arc<str>, Arc<Conn>>>,
}

impl Adapter for LocalAdapter {
    fn add(&self, sid: Arc<str>, conn: Arc<Conn>) {
        self.sockets.lock().insert(sid, conn);
    }

    fn remove(&self, sid: &str) {
        self.sockets.lock().swap_remove(sid);
    }

    fn deliver(&self, frame: &Frame, to: Recipients<'_>, out: &mut Outcome) -> usize {
        let sockets = self.sockets.lock();
        if let Recipients::Socket(sid) = to {
            return match sockets.get(sid) {
                Some(conn) => {
                    out.send(conn, frame.clone());
                    1
                }
                None => 0,
            };
        }
        let mut receivers = 0;
        for (sid, conn) in sockets.iter() {
            if to.includes(sid) {
                out.send(conn, frame.clone());
                receivers += 1;
            }
        }
        receivers
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
