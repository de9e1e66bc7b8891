//! Injected faults (cargo feature `faults`): a test fixture that makes the
//! gateway misbehave on purpose, so tests can show that `chorus` notices.
//! Never part of a release build.
//!
//! The hooks sit at a few depths only: the broadcast path ([`Injector::frames`]
//! and [`Injector::deliver`]) serves drop, duplicate, delay, reorder and the
//! stalled socket for every event; the transports' readers await
//! [`Injector::stall_gate`]; the chat rules consult the plain switches of
//! [`Faults`] where an event's content is built.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::engine::{CloseReason, Conn, Engine, Frame};

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
}

/// The faults of one running gateway, with the state they need.
pub(crate) struct Injector {
    /// The switches.
    pub(crate) faults: Faults,
    started: Instant,
    /// When the one stall ends, once it has begun.
    stall_until: Mutex<Option<Instant>>,
    /// Held-back `newMessage` frames and message counts, by sender name.
    reorder: Mutex<ReorderState>,
    /// `/chat` sockets connected so far.
    chat_sockets: AtomicUsize,
    /// The Engine.IO sid of the stalled receiver, once chosen.
    stalled: Mutex<Option<Arc<str>>>,
    /// `newMessage` broadcasts so far.
    messages: AtomicU64,
    /// Per-receiver delay lines of `delay_all`, by Engine.IO sid.
    delay_lines: Mutex<HashMap<Arc<str>, DelayLine>>,
    crashed: AtomicBool,
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
    pub(crate) fn new(faults: Faults) -> Self {
        Self {
            faults,
            started: Instant::now(),
            stall_until: Mutex::new(None),
            reorder: Mutex::new(ReorderState::default()),
            chat_sockets: AtomicUsize::new(0),
            stalled: Mutex::new(None),
            messages: AtomicU64::new(0),
            delay_lines: Mutex::new(HashMap::new()),
            crashed: AtomicBool::new(false),
        }
    }

    /// Waits out the one stall of `stall_once`, starting it if it is due.
    pub(crate) async fn stall_gate(&self) {
        let Some((after, length)) = self.faults.stall_once else {
            return;
        };
        let until = {
            let mut until = self.stall_until.lock();
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

    /// The frames a broadcast of `name` sends to each receiver, in order:
    /// none (typing dropped, or a message held back), the frame, or the
    /// frame followed by a held-back one of the same sender.
    pub(crate) fn frames(&self, name: &str, data: &str, frame: Frame) -> Vec<Frame> {
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

    /// The copies of one broadcast frame to queue to `conn` now; copies to
    /// drop or deliver late are taken care of here and not returned.
    pub(crate) fn deliver(&self, conn: &Arc<Conn>, frame: &Frame) -> Vec<Frame> {
        let f = &self.faults;
        if self.is_stalled(conn) || chance(f.drop_fraction) {
            return Vec::new();
        }
        let copies = if chance(f.duplicate_fraction) { 2 } else { 1 };
        let mut now = Vec::with_capacity(copies);
        for _ in 0..copies {
            if chance(f.delay_fraction) {
                send_later(conn.clone(), frame.clone(), f.delay);
            } else if !f.delay_all.is_zero() {
                self.delay_line(conn, frame.clone());
            } else {
                now.push(frame.clone());
            }
        }
        now
    }

    /// Counts a `/chat` socket entering; remembers it if it is the one to stall.
    pub(crate) fn chat_socket_connected(&self, conn: &Conn) {
        let n = self.chat_sockets.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.stall_socket == Some(n) {
            tracing::warn!(sid = %conn.sid, "fault: this receiver gets no more broadcasts");
            *self.stalled.lock() = Some(conn.sid.clone());
        }
    }

    fn is_stalled(&self, conn: &Conn) -> bool {
        self.stalled.lock().as_deref() == Some(&*conn.sid)
    }

    /// Whether this `newMessage` (counted here) is one to send under another user's name.
    pub(crate) fn wrong_username_now(&self) -> bool {
        let n = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
        self.faults.wrong_username && n.is_multiple_of(WRONG_USERNAME_EVERY)
    }

    /// Whether the gateway has crashed: transports then end without a goodbye.
    pub(crate) fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    /// Schedules the crash of `crash_after`: `server` stops listening, then
    /// every connection is dropped.
    pub(crate) fn arm_crash(engine: &Arc<Engine>, server: AbortHandle) {
        let Some(after) = engine.chat.faults.faults.crash_after else {
            return;
        };
        let engine = Arc::downgrade(engine);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            tracing::warn!("fault: the gateway crashes");
            engine.chat.faults.crashed.store(true, Ordering::Release);
            server.abort();
            for conn in engine.connections() {
                conn.close(CloseReason::TransportError);
            }
        });
    }

    /// Queues `frame` on `conn`'s delay line, which keeps its order.
    fn delay_line(&self, conn: &Arc<Conn>, frame: Frame) {
        let due = Instant::now() + self.faults.delay_all;
        let mut lines = self.delay_lines.lock();
        let line = lines.entry(conn.sid.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(drain_delay_line(Arc::downgrade(conn), rx));
            tx
        });
        let _ = line.send((due, frame));
    }
}

/// True with probability `p`.
fn chance(p: f64) -> bool {
    p > 0.0 && rand::random::<f64>() < p
}

/// Queues `frame` on `conn` once `delay` has passed.
fn send_later(conn: Arc<Conn>, frame: Frame, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        queue(&conn, frame);
    });
}

/// Sends each frame of a delay line when it is due, until its receiver is gone.
async fn drain_delay_line(conn: Weak<Conn>, mut rx: mpsc::UnboundedReceiver<(Instant, Frame)>) {
    while let Some((due, frame)) = rx.recv().await {
        tokio::time::sleep_until(due.into()).await;
        let Some(conn) = conn.upgrade() else { return };
        if conn.close_reason().is_some() {
            return;
        }
        queue(&conn, frame);
    }
}

/// Queues a late frame; a full queue disconnects the receiver, as on time.
fn queue(conn: &Arc<Conn>, frame: Frame) {
    if conn.send(frame).is_err() {
        conn.engine.metrics.slow_consumer();
        conn.close(CloseReason::SlowConsumer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
