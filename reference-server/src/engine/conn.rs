//! One Engine.IO connection (session): its outgoing queue, heartbeat and close.
//!
//! Whatever the transport (polling, websocket, or polling upgraded to
//! websocket), a connection has exactly one outgoing queue of encoded text
//! packets. Broadcasts put a shared `Arc<str>` into each receiver's queue
//! without waiting; the transport that currently owns the queue's receiving
//! end writes it out. The queue is bounded in packets (`queue_size`) and in
//! bytes (`queue_bytes`, a shared frame counting once per receiver). A full
//! queue means the receiver cannot keep up: the caller gets [`Full`] and
//! disconnects it, so nobody stays connected with a gap in what it received.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use super::{ConnHandler, Engine};

/// An encoded Engine.IO text packet, shared by every receiver of a broadcast.
pub type Frame = Arc<str>;

/// Wraps a Socket.IO packet as an Engine.IO message frame (`4…`).
pub fn message_frame(sio_packet: &str) -> Frame {
    let mut out = String::with_capacity(sio_packet.len() + 1);
    out.push('4');
    out.push_str(sio_packet);
    Arc::from(out)
}

/// The receiver's queue is full: it must be disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client broke the protocol (malformed packet, event before CONNECT, …).
    ProtocolError,
    /// An incoming packet exceeded `max_payload`.
    TooLarge,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client sent an Engine.IO close packet or closed the transport.
    ClientClose,
    /// Reading or writing the transport failed.
    TransportError,
    /// The outgoing queue overflowed.
    SlowConsumer,
    /// The server is shutting down.
    ServerShutdown,
    /// No namespace was connected within the connect timeout.
    ConnectTimeout,
}

impl CloseReason {
    /// The reason as a short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProtocolError => "protocol error",
            Self::TooLarge => "payload too large",
            Self::PingTimeout => "ping timeout",
            Self::ClientClose => "client close",
            Self::TransportError => "transport error",
            Self::SlowConsumer => "slow consumer",
            Self::ServerShutdown => "server shutdown",
            Self::ConnectTimeout => "connect timeout",
        }
    }

    /// Whether what is already queued still goes out before the transport
    /// closes (as engine.io flushes its write buffer): not for a receiver that
    /// could not keep up, nor for a broken transport.
    pub fn flushes_queue(self) -> bool {
        !matches!(self, Self::SlowConsumer | Self::TransportError)
    }
}

/// How long a closed session with frames still queued stays reachable, so
/// that a polling client's next GET can fetch them.
const LINGER: Duration = Duration::from_secs(1);

/// Queue slots an idle connection may keep (past it, the queue's room is
/// freed: after a burst it could hold thousands of slots on every socket).
const KEEP_QUEUE: usize = 4;

/// What the handshake request carried that the chat layer needs later, and
/// nothing more: a session keeps this for its whole life.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The query's `token` parameters, in order (duplicates kept); no other
    /// parameter is kept.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, if any (bounded by the header size limit).
    pub authorization: Option<String>,
}

/// One Engine.IO connection.
pub struct Conn {
    /// The Engine.IO session id.
    pub sid: Arc<str>,
    /// Data from the handshake request.
    pub handshake: Handshake,
    /// The gateway this connection belongs to.
    pub engine: Arc<Engine>,
    /// The layer above's handler for this connection.
    pub(super) upper: Box<dyn ConnHandler>,
    /// The outgoing queue. Its bounds are the two counts below, plain
    /// atomics checked before the lock. A short lock (a push, or taking a
    /// batch) rather than a tokio channel: the channel kept ~1.1 KiB (its
    /// cache-padded state and a block of 32 slots) on every idle socket,
    /// this keeps at most [`KEEP_QUEUE`] slots (bench/RESULTS.md section 6).
    queue: parking_lot::Mutex<VecDeque<Frame>>,
    /// The task taking frames out, woken when a frame lands in an empty queue.
    taker: AtomicWaker,
    /// Frames waiting in the queue.
    queued: AtomicUsize,
    /// Bytes of the frames waiting in the queue.
    queued_bytes: AtomicUsize,
    /// Held by whichever transport takes frames out of the queue (one at a
    /// time: [`Conn::recv`] and the other taking methods are called under it).
    pub(super) rx: tokio::sync::Mutex<()>,
    /// Serializes incoming polling POSTs so packets are handled in order.
    pub(super) post_lock: tokio::sync::Mutex<()>,
    pub(super) upgraded: AtomicBool,
    pong: Notify,
    /// Wakes [`Conn::closed`]'s waiters once `announced` is set (a `Notify`
    /// in the `Conn`, not a watch channel: that allocated ~380 B per socket).
    closed: Notify,
    /// Set once the close has been handled (after `on_disconnect`).
    announced: AtomicBool,
    close_once: OnceLock<CloseReason>,
}

impl Conn {
    pub(super) fn new(
        engine: Arc<Engine>,
        sid: Arc<str>,
        handshake: Handshake,
        upper: Box<dyn ConnHandler>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sid,
            handshake,
            engine,
            upper,
            queue: parking_lot::Mutex::new(VecDeque::new()),
            taker: AtomicWaker::new(),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            rx: tokio::sync::Mutex::new(()),
            post_lock: tokio::sync::Mutex::new(()),
            upgraded: AtomicBool::new(false),
            pong: Notify::new(),
            closed: Notify::new(),
            announced: AtomicBool::new(false),
            close_once: OnceLock::new(),
        })
    }

    /// Queues an encoded packet without waiting; [`Full`] when the queue
    /// holds `queue_size` packets or this one would take it over `queue_bytes`
    /// (a single frame larger than `queue_bytes` still fits an empty queue).
    pub fn send(&self, frame: Frame) -> Result<(), Full> {
        let len = frame.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let count = self.queued.fetch_add(1, Ordering::AcqRel);
        let config = &self.engine.config;
        if count >= config.queue_size.max(1)
            || (before > 0 && before.saturating_add(len) > config.queue_bytes)
        {
            self.undo(len);
            return Err(Full);
        }
        let was_empty = {
            let mut queue = self.queue.lock();
            queue.push_back(frame);
            queue.len() == 1
        };
        // A taker that found the queue empty is waiting (or will look again):
        // frames into a queue that was not empty need no wake.
        if was_empty {
            self.taker.wake();
        }
        Ok(())
    }

    /// Waits for the next queued frame (cancel-safe). Called by the transport
    /// holding [`Conn::rx`].
    pub(super) async fn recv(&self) -> Frame {
        poll_fn(|cx| {
            if let Some(frame) = self.queue.lock().pop_front() {
                return Poll::Ready(frame);
            }
            self.taker.register(cx.waker());
            // Looked at again after registering: a frame pushed in between woke nobody.
            match self.queue.lock().pop_front() {
                Some(frame) => Poll::Ready(frame),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The next queued frame, if any (under [`Conn::rx`]).
    pub(super) fn try_recv(&self) -> Option<Frame> {
        self.queue.lock().pop_front()
    }

    /// Moves queued frames into `frames` with one lock, while it holds fewer
    /// than `max_frames` and `bytes` (which counts them) is under `max_bytes`
    /// (under [`Conn::rx`]).
    pub(super) fn recv_batch(
        &self,
        frames: &mut Vec<Frame>,
        bytes: &mut usize,
        max_frames: usize,
        max_bytes: usize,
    ) {
        let mut queue = self.queue.lock();
        while frames.len() < max_frames && *bytes < max_bytes {
            let Some(frame) = queue.pop_front() else {
                break;
            };
            *bytes += frame.len();
            frames.push(frame);
        }
    }

    /// Whether the queue is empty now; if so, room past [`KEEP_QUEUE`]
    /// slots is given back (an idle socket keeps no burst-sized queue).
    pub(super) fn settle_queue(&self) -> bool {
        let mut queue = self.queue.lock();
        let empty = queue.is_empty();
        if empty && queue.capacity() > KEEP_QUEUE {
            *queue = VecDeque::new();
        }
        empty
    }

    /// Takes one frame of `len` bytes back out of the counts.
    fn undo(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// A transport took `frame` out of the queue.
    pub(super) fn dequeued(&self, frame: &Frame) {
        self.undo(frame.len());
    }

    /// Bytes waiting in the outgoing queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Queues a Socket.IO packet (wrapped as an Engine.IO message); a full
    /// queue disconnects this connection (it is not called under the chat lock).
    pub fn send_message(self: &Arc<Self>, sio_packet: &str) {
        if self.send(message_frame(sio_packet)).is_err() {
            self.engine.metrics.slow_consumer();
            self.close(CloseReason::SlowConsumer);
        }
    }

    /// Whether nothing is waiting in the outgoing queue.
    pub fn queue_is_empty(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// A pong arrived.
    pub(super) fn on_pong(&self) {
        self.pong.notify_one();
    }

    /// The reason this connection closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_once.get().copied()
    }

    /// Resolves when the connection closes, with the reason.
    pub async fn closed(&self) -> CloseReason {
        // Created before the check: `notify_waiters` reaches it from here on.
        let notified = self.closed.notified();
        if !self.announced.load(Ordering::Acquire) {
            notified.await;
        }
        self.close_reason().unwrap_or(CloseReason::TransportError)
    }

    /// Closes the connection once: every namespace socket on it disconnects,
    /// the transport is told to close, and the session is forgotten: at once,
    /// or, when frames it should still flush are queued, once they are taken
    /// (at most `LINGER` later; a polling client needs one more GET).
    pub fn close(self: &Arc<Self>, reason: CloseReason) {
        if self.close_once.set(reason).is_err() {
            return;
        }
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "engine.io connection closed");
        if reason == CloseReason::ProtocolError {
            self.engine.metrics.protocol_error();
        }
        self.upper.on_disconnect(self);
        self.announced.store(true, Ordering::Release);
        self.closed.notify_waiters();
        if !reason.flushes_queue() || self.queue_is_empty() {
            self.engine.forget(&self.sid);
            return;
        }
        let conn = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + LINGER;
            while !conn.queue_is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            conn.engine.forget(&conn.sid);
        });
    }

    /// Sends `2` every ping interval and closes the connection when no `3`
    /// comes back within the ping timeout; also closes the session if no
    /// namespace is connected once the connect timeout has passed (socket.io's
    /// `connectTimeout`). One timer task per connection, not two: a task and
    /// its timer entry cost memory on every idle socket.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        use tokio::time::{sleep_until, Instant};
        let config = &self.engine.config;
        let interval = Duration::from_millis(config.ping_interval_ms);
        let timeout = Duration::from_millis(config.ping_timeout_ms);
        let start = Instant::now();
        let mut connect_by = Some(start + Duration::from_millis(config.connect_timeout_ms));
        let mut next_ping = start + interval;
        // Set while a ping waits for its pong.
        let mut pong_by: Option<Instant> = None;
        let closed = self.closed();
        tokio::pin!(closed);
        loop {
            let timer = pong_by.unwrap_or(next_ping);
            let wake = connect_by.map_or(timer, |c| c.min(timer));
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = self.pong.notified(), if pong_by.is_some() => {
                    pong_by = None;
                    next_ping = Instant::now() + interval;
                    continue;
                }
                _ = &mut closed => return,
            }
            let now = Instant::now();
            if connect_by.is_some_and(|c| now >= c) {
                connect_by = None;
                if self.close_reason().is_none() && !self.upper.is_attached() {
                    self.engine.metrics.timeout("connect");
                    self.close(CloseReason::ConnectTimeout);
                    return;
                }
            }
            match pong_by {
                Some(by) if now >= by => {
                    self.close(CloseReason::PingTimeout);
                    return;
                }
                Some(_) => {}
                None if now >= next_ping => {
                    if self.send(Arc::from("2")).is_err() {
                        self.engine.metrics.slow_consumer();
                        self.close(CloseReason::SlowConsumer);
                        return;
                    }
                    pong_by = Some(now + timeout);
                }
                None => {}
            }
        }
    }

    /// The server ends the layer above's session on this connection (see
    /// [`ConnHandler::on_server_disconnect`]); the connection stays open.
    pub fn server_disconnect(self: &Arc<Self>) {
        self.upper.on_server_disconnect(self);
    }

    /// Whether the connection has been upgraded to websocket.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned_size<A, R>(_: impl FnOnce(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every connection keeps a `Conn` and its heartbeat task for its whole
    /// life: a change that bloats either fails here.
    #[test]
    fn the_per_connection_state_stays_small() {
        let conn = std::mem::size_of::<Conn>();
        let heartbeat = returned_size(Conn::heartbeat);
        println!("Conn {conn} B, heartbeat future {heartbeat} B");
        assert!(conn > 0 && heartbeat > 0, "sizes were measured");
        // Measured in the test (debug) build on 2026-12-01: 328 and 416 bytes
        // (256 and 504 with a tokio channel and a watch channel, which also
        // kept ~1.1 KiB and ~380 B on the heap: see the tests below).
        assert!(conn <= 384, "Conn: {conn} B");
        assert!(heartbeat <= 512, "heartbeat future: {heartbeat} B");
    }

    /// A layer above that does nothing.
    struct Nothing;

    impl ConnHandler for Nothing {
        fn on_message(&self, _: &Arc<Conn>, _: &str) {}
        fn on_binary(&self, _: &Arc<Conn>, _: Vec<u8>) {}
        fn on_disconnect(&self, _: &Arc<Conn>) {}
        fn on_server_disconnect(&self, _: &Arc<Conn>) {}
        fn is_attached(&self) -> bool {
            true
        }
    }

    impl super::super::Handler for Nothing {
        fn on_connect(&self) -> Box<dyn ConnHandler> {
            Box::new(Nothing)
        }
    }

    fn conn() -> Arc<Conn> {
        let engine = Engine::new(
            crate::config::GatewayConfig::default(),
            Arc::default(),
            Arc::new(Nothing),
        );
        Conn::new(
            engine,
            super::super::new_sid(),
            Handshake::default(),
            Box::new(Nothing),
        )
    }

    /// The queue keeps no room while empty, gives back a burst's room once it
    /// is drained, and hands frames out in the order they were queued.
    #[tokio::test]
    async fn a_drained_queue_keeps_no_burst_sized_room() {
        let conn = conn();
        assert_eq!(conn.queue.lock().capacity(), 0, "a new queue holds no room");
        let burst = 1_000;
        for i in 0..burst {
            assert_eq!(conn.send(Arc::from(i.to_string())), Ok(()));
        }
        assert!(conn.queue.lock().capacity() >= burst);
        assert!(!conn.settle_queue(), "not empty yet");
        let _rx = conn.rx.lock().await;
        let (mut frames, mut bytes) = (Vec::new(), 0);
        conn.recv_batch(&mut frames, &mut bytes, 64, usize::MAX);
        assert_eq!(frames.len(), 64, "a batch stops at its frame count");
        while let Some(frame) = conn.try_recv() {
            frames.push(frame);
        }
        let order: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
        let sent: Vec<String> = (0..burst).map(|i| i.to_string()).collect();
        assert_eq!(order, sent, "first in, first out");
        assert!(conn.settle_queue());
        assert!(
            conn.queue.lock().capacity() <= KEEP_QUEUE,
            "the burst's room is given back"
        );
    }

    /// A taker waiting on an empty queue is woken by the next frame, and a
    /// close reaches waiters created before and after it.
    #[tokio::test]
    async fn a_waiting_taker_gets_the_next_frame_and_the_close() {
        let conn = conn();
        let taker = tokio::spawn({
            let conn = conn.clone();
            async move {
                let _rx = conn.rx.lock().await;
                let frame = conn.recv().await;
                (frame, conn.closed().await)
            }
        });
        let before = tokio::spawn({
            let conn = conn.clone();
            async move { conn.closed().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(conn.send(Arc::from("first")), Ok(()));
        conn.close(CloseReason::ClientClose);
        let limit = Duration::from_secs(5);
        let (frame, reason) = tokio::time::timeout(limit, taker).await.unwrap().unwrap();
        assert_eq!(&*frame, "first");
        assert_eq!(reason, CloseReason::ClientClose);
        let before = tokio::time::timeout(limit, before).await.unwrap().unwrap();
        assert_eq!(before, CloseReason::ClientClose);
        assert_eq!(
            conn.closed().await,
            CloseReason::ClientClose,
            "after the close"
        );
    }
}
