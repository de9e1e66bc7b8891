//! The websocket transport: a fresh websocket connection, or the upgrade of a
//! polling connection (`2probe` → `3probe`, then `5`).
//!
//! The gateway completes the upgrade and speaks RFC 6455 itself on the raw
//! stream (a plain TCP socket is split into its two halves, so neither side
//! takes a lock): the task that reads frames handles each packet before
//! reading the next, so a sender's events are processed in order; a separate
//! writer task drains the connection's queue and writes whatever is ready as
//! one coalesced buffer, one write per batch. Server frames are unmasked, so
//! a frame is its few header bytes plus the shared encoded packet: a large
//! packet is written straight from the shared frame (vectored with what
//! precedes it), never copied into a per-connection buffer.
//!
//! Buffers are bounded and given back: the write buffer is dropped when the
//! connection goes idle if it grew past [`KEEP_WRITE`], and the read buffer
//! when it is empty, so an idle connection holds no buffer the size of the
//! largest frame it once sent or received. Both capacities are reported in
//! the `chorus_gateway_ws_{read,write}_buffer_bytes` gauges.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::http::Tracked;
use super::{on_text, CloseReason, Conn, Engine, Frame, Handshake};
use crate::metrics::Metrics;

/// Frames coalesced into one write, at most.
const WRITE_BATCH: usize = 64;
/// Bytes coalesced into one write before it goes out (a batch stops there).
const WRITE_BUFFER: usize = 16 * 1024;
/// A packet this large is written from the shared frame, not copied.
const DIRECT: usize = 4 * 1024;
/// Write-buffer capacity an idle connection may keep (past it, it is freed).
const KEEP_WRITE: usize = 1024;
/// Batch slots an idle connection may keep (past it, the batch's room is
/// freed: 64 kept slots are 1 KiB on every idle socket).
const KEEP_BATCH: usize = 4;
/// Bytes read at once.
const READ_BUFFER: usize = 4 * 1024;
/// Pong replies waiting for the writer; more pings than this are not answered.
const CONTROL_QUEUE: usize = 4;
/// How long a closed connection's last frames may take to write.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The GUID of RFC 6455's `Sec-WebSocket-Accept`.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Completes the HTTP upgrade (answering 101) and runs the connection on it.
pub(super) fn accept(
    engine: Arc<Engine>,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    existing: Option<Arc<Conn>>,
    handshake: Handshake,
) -> Response {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return (StatusCode::BAD_REQUEST, "Not a websocket upgrade").into_response();
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return (StatusCode::BAD_REQUEST, "Unsupported websocket version").into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "No Sec-WebSocket-Key").into_response();
    };
    let Some(on_upgrade) = on_upgrade else {
        return (StatusCode::UPGRADE_REQUIRED, "Connection not upgradable").into_response();
    };
    let accept = accept_key(key.as_bytes());
    tokio::spawn(serve_upgraded(engine, on_upgrade, existing, handshake));
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The task of one upgraded websocket: it waits for the upgrade, then reads
/// (and spawns the writer) until the connection closes.
async fn serve_upgraded(
    engine: Arc<Engine>,
    on_upgrade: OnUpgrade,
    existing: Option<Arc<Conn>>,
    handshake: Handshake,
) {
    // Shutdown waits for this task: the socket's last frames get written.
    let _task = engine.tasks.enter();
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let max = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    let (read, write, leftover) = take_stream(upgraded);
    let reader = Reader::new(read, leftover, max, engine.metrics.clone());
    match existing {
        Some(conn) => upgrade_polling(conn, reader, write).await,
        None => {
            // Refused when the limit was reached since the request was checked.
            let Some(conn) = engine.open(handshake) else {
                return;
            };
            let mut write = write;
            // The open packet is a temporary: not kept for the socket's life.
            if write_text(&mut write, &engine.open_packet(&conn.sid, &[]))
                .await
                .is_err()
            {
                conn.close(CloseReason::TransportError);
                return;
            }
            run(conn, reader, write).await;
        }
    }
}

/// RFC 6455's `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The read side of an upgraded stream.
enum ReadSide {
    /// A plain TCP socket's own read half: readiness first, so an idle
    /// connection holds no read buffer.
    Tcp(OwnedReadHalf),
    /// Anything else (TLS): read through a split, with a buffer while waiting.
    Other(tokio::io::ReadHalf<Box<dyn Stream>>),
}

/// The write side of an upgraded stream.
type WriteSide = Box<dyn AsyncWrite + Send + Unpin>;

/// A stream a websocket can run on.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Takes the raw stream back from hyper: its two halves and the bytes hyper
/// had already read past the upgrade request.
fn take_stream(upgraded: Upgraded) -> (ReadSide, WriteSide, Vec<u8>) {
    let upgraded = match upgraded.downcast::<TokioIo<Tracked<TcpStream>>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_inner().into_split();
            let write: WriteSide = Box::new(write);
            return (ReadSide::Tcp(read), write, parts.read_buf.to_vec());
        }
        Err(upgraded) => upgraded,
    };
    let (stream, leftover): (Box<dyn Stream>, Vec<u8>) =
        match upgraded.downcast::<TokioIo<Tracked<tokio_rustls::server::TlsStream<TcpStream>>>>() {
            Ok(parts) => (
                Box::new(parts.io.into_inner().into_inner()),
                parts.read_buf.to_vec(),
            ),
            Err(upgraded) => (Box::new(TokioIo::new(upgraded)), Vec::new()),
        };
    let (read, write) = tokio::io::split(stream);
    (ReadSide::Other(read), Box::new(write), leftover)
}

/// What made reading a websocket fail.
#[derive(Debug)]
enum ReadError {
    /// A message over `max_payload`.
    TooLarge,
    /// A frame RFC 6455 does not allow from a client, or text that is not UTF-8.
    Protocol,
    /// The socket failed or closed.
    Io,
}

/// One message or control frame from the client.
enum Incoming<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    Close,
}

/// Reads client frames (masked, possibly fragmented) into whole messages.
struct Reader {
    side: ReadSide,
    /// Bytes read and not yet handled, from `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// A fragmented message being put together, and its opcode.
    message: Vec<u8>,
    message_op: Option<u8>,
    /// The fragmented message was returned: clear it at the next call.
    message_done: bool,
    max: usize,
    /// The capacity last reported to the read-buffer gauge.
    reported: usize,
    metrics: Arc<Metrics>,
}

/// A parsed frame header: what it is, its payload's place in the buffer.
struct Head {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    start: usize,
    len: usize,
}

impl Reader {
    fn new(side: ReadSide, leftover: Vec<u8>, max: usize, metrics: Arc<Metrics>) -> Self {
        let mut reader = Self {
            side,
            buf: leftover,
            pos: 0,
            message: Vec::new(),
            message_op: None,
            message_done: false,
            max,
            reported: 0,
            metrics,
        };
        reader.report();
        reader
    }

    /// Brings the gauge up to date with the buffers' capacity.
    fn report(&mut self) {
        let now = self.buf.capacity() + self.message.capacity();
        if now != self.reported {
            self.metrics
                .ws_read_buffer(now as i64 - self.reported as i64);
            self.reported = now;
        }
    }

    /// Parses the frame header at `pos`, if it is all there.
    fn head(&self) -> Result<Option<Head>, ReadError> {
        let all = self.buf.get(self.pos..).unwrap_or_default();
        let [b0, b1, ref tail @ ..] = *all else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved bits (no extension was agreed), or an unmasked client frame.
            return Err(ReadError::Protocol);
        }
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        let (len, tail) = match (b1 & 0x7F, tail) {
            (126, [x, y, tail @ ..]) => (u64::from(u16::from_be_bytes([*x, *y])), tail),
            (127, [a, b, c, d, e, f, g, h, tail @ ..]) => {
                (u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]), tail)
            }
            (126 | 127, _) => return Ok(None),
            (n, tail) => (u64::from(n), tail),
        };
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG if fin && len <= 125 => {}
            _ => return Err(ReadError::Protocol),
        }
        let len = usize::try_from(len).map_err(|_| ReadError::TooLarge)?;
        if len > self.max || self.message.len().saturating_add(len) > self.max {
            return Err(ReadError::TooLarge);
        }
        let [m0, m1, m2, m3, ref payload @ ..] = *tail else {
            return Ok(None);
        };
        Ok(Some(Head {
            fin,
            opcode,
            mask: [m0, m1, m2, m3],
            start: self.buf.len() - payload.len(),
            len,
        }))
    }

    /// Reads more bytes; room for a whole frame of `need` bytes is made first.
    async fn fill(&mut self, need: usize) -> Result<(), ReadError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > READ_BUFFER {
            // A large frame was handled: its room is given back.
            self.buf = Vec::new();
        }
        if matches!(self.side, ReadSide::Tcp(_)) && self.buf.is_empty() && self.buf.capacity() > 0 {
            // Nothing pending: hold no buffer until there is something to read.
            self.buf = Vec::new();
            self.report();
        }
        if let ReadSide::Tcp(tcp) = &self.side {
            tcp.readable().await.map_err(|_| ReadError::Io)?;
        }
        let want = need.max(self.buf.len() + READ_BUFFER) - self.buf.len();
        self.buf.reserve(want);
        self.report();
        let read = match &mut self.side {
            ReadSide::Tcp(tcp) => match tcp.try_read_buf(&mut self.buf) {
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(ReadError::Io),
            },
            ReadSide::Other(other) => other
                .read_buf(&mut self.buf)
                .await
                .map_err(|_| ReadError::Io)?,
        };
        if read == 0 {
            return Err(ReadError::Io);
        }
        Ok(())
    }

    /// The next message or control frame. Cancel-safe: what was read stays
    /// in the buffer.
    async fn next(&mut self) -> Result<Incoming<'_>, ReadError> {
        if self.message_done {
            self.message_done = false;
            self.message.clear();
            if self.message.capacity() > READ_BUFFER {
                self.message = Vec::new();
            }
            self.report();
        }
        loop {
            let Some(head) = self.head()? else {
                self.fill(0).await?;
                continue;
            };
            let end = head.start + head.len;
            if self.buf.len() < end {
                self.fill(end - self.pos).await?;
                continue;
            }
            self.pos = end;
            let payload = self
                .buf
                .get_mut(head.start..end)
                .ok_or(ReadError::Protocol)?;
            for (b, m) in payload.iter_mut().zip(head.mask.iter().cycle()) {
                *b ^= m;
            }
            let range = head.start..end;
            match head.opcode {
                OP_PING => return Ok(Incoming::Ping(self.buf.get(range).unwrap_or_default())),
                OP_PONG => return Ok(Incoming::Pong),
                OP_CLOSE => return Ok(Incoming::Close),
                OP_CONTINUATION => {
                    let Some(op) = self.message_op else {
                        return Err(ReadError::Protocol);
                    };
                    self.message
                        .extend_from_slice(self.buf.get(range).unwrap_or_default());
                    self.report();
                    if !head.fin {
                        continue;
                    }
                    self.message_op = None;
                    // Cleared (and its room given back) at the next call.
                    self.message_done = true;
                    return Self::message(op, &self.message);
                }
                OP_TEXT | OP_BINARY if self.message_op.is_some() => {
                    return Err(ReadError::Protocol);
                }
                op if !head.fin => {
                    self.message_op = Some(op);
                    self.message
                        .extend_from_slice(self.buf.get(range).unwrap_or_default());
                    self.report();
                }
                op => return Self::message(op, self.buf.get(range).unwrap_or_default()),
            }
        }
    }

    fn message(op: u8, payload: &[u8]) -> Result<Incoming<'_>, ReadError> {
        if op == OP_TEXT {
            std::str::from_utf8(payload)
                .map(Incoming::Text)
                .map_err(|_| ReadError::Protocol)
        } else {
            Ok(Incoming::Binary(payload))
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.metrics.ws_read_buffer(-(self.reported as i64));
    }
}

/// Appends a final, unmasked frame header for a payload of `len` bytes.
fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Writes one text frame (the open packet, `3probe`) outside the writer task.
async fn write_text(write: &mut WriteSide, text: &str) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(text.len() + 10);
    push_header(&mut out, OP_TEXT, text.len());
    out.extend_from_slice(text.as_bytes());
    write.write_all(&out).await
}

/// The probe phase of an upgrade: answer `2probe`, release the pending poll
/// with a noop, and switch over when the client sends `5`.
async fn upgrade_polling(conn: Arc<Conn>, mut reader: Reader, mut write: WriteSide) {
    loop {
        let msg = tokio::select! {
            msg = reader.next() => msg,
            _ = conn.closed() => return,
        };
        let Ok(Incoming::Text(text)) = msg else {
            // The probe failed; the polling transport carries on.
            return;
        };
        match text {
            "2probe" => {
                if write_text(&mut write, "3probe").await.is_err() {
                    return;
                }
                // A noop makes a waiting GET return so the client can finish the upgrade.
                if conn.send(Arc::from("6")).is_err() {
                    conn.engine.metrics.slow_consumer();
                    conn.close(CloseReason::SlowConsumer);
                    return;
                }
            }
            "5" => {
                conn.upgraded.store(true, Ordering::Release);
                run(conn, reader, write).await;
                return;
            }
            _ => {
                conn.close(CloseReason::ProtocolError);
                return;
            }
        }
    }
}

/// Pongs owed to the client's pings, from the reader to the writer: at most
/// [`CONTROL_QUEUE`], and no memory until a ping comes (a tokio channel would
/// keep a block of slots on every idle socket).
#[derive(Default)]
struct Pongs {
    queue: parking_lot::Mutex<std::collections::VecDeque<Vec<u8>>>,
    ready: Notify,
}

impl Pongs {
    /// Queues a pong, unless [`CONTROL_QUEUE`] are waiting already.
    fn push(&self, payload: &[u8]) {
        let mut queue = self.queue.lock();
        if queue.len() < CONTROL_QUEUE {
            queue.push_back(payload.to_vec());
            drop(queue);
            self.ready.notify_one();
        }
    }

    fn pop(&self) -> Option<Vec<u8>> {
        self.queue.lock().pop_front()
    }
}

/// Reads and handles frames until the connection closes, with the writer alongside.
async fn run(conn: Arc<Conn>, mut reader: Reader, write: WriteSide) {
    let pongs = Arc::new(Pongs::default());
    let writer = tokio::spawn(write_loop(conn.clone(), write, pongs.clone()));
    // One wait for the close for the connection's life, not one per frame.
    let closed = conn.closed();
    tokio::pin!(closed);
    loop {
        let msg = tokio::select! {
            msg = reader.next() => msg,
            _ = &mut closed => break,
        };
        match msg {
            Ok(Incoming::Text(text)) => on_text(&conn, text),
            Ok(Incoming::Binary(bytes)) => conn.upper.on_binary(&conn, bytes.to_vec()),
            Ok(Incoming::Ping(payload)) => {
                // A client flooding pings gets some of them answered.
                pongs.push(payload);
            }
            Ok(Incoming::Pong) => {}
            Ok(Incoming::Close) | Err(ReadError::Io) => conn.close(CloseReason::ClientClose),
            Err(ReadError::TooLarge) => {
                conn.engine.metrics.oversized("websocket");
                conn.close(CloseReason::TooLarge);
            }
            Err(ReadError::Protocol) => conn.close(CloseReason::TransportError),
        }
        if conn.close_reason().is_some() {
            break;
        }
    }
    drop(reader);
    let _ = writer.await;
}

/// The connection's write buffer: frames coalesced for one write, its
/// capacity reported in the write-buffer gauge.
struct WriteBuf {
    out: Vec<u8>,
    reported: usize,
    metrics: Arc<Metrics>,
}

impl WriteBuf {
    fn report(&mut self) {
        let now = self.out.capacity();
        if now != self.reported {
            self.metrics
                .ws_write_buffer(now as i64 - self.reported as i64);
            self.reported = now;
        }
    }

    /// Empties the buffer after a write; an idle connection keeps at most
    /// [`KEEP_WRITE`] of room.
    fn reset(&mut self, idle: bool) {
        self.out.clear();
        if idle && self.out.capacity() > KEEP_WRITE {
            self.out = Vec::new();
        }
        self.report();
    }
}

impl Drop for WriteBuf {
    fn drop(&mut self) {
        self.metrics.ws_write_buffer(-(self.reported as i64));
    }
}

/// Writes `frames` (and `pong`, if any) with one write: small packets are
/// coalesced into `buf`, a large one goes out from the shared frame, vectored
/// with what precedes it. Whether the socket took them.
async fn write_frames(
    conn: &Conn,
    write: &mut WriteSide,
    buf: &mut WriteBuf,
    frames: &mut Vec<Frame>,
    pong: Option<Vec<u8>>,
) -> bool {
    if let Some(pong) = pong {
        push_header(&mut buf.out, OP_PONG, pong.len());
        buf.out.extend_from_slice(&pong);
    }
    for frame in frames.drain(..) {
        conn.dequeued(&frame);
        push_header(&mut buf.out, OP_TEXT, frame.len());
        if frame.len() >= DIRECT {
            buf.report();
            let mut both = bytes::Buf::chain(&buf.out[..], frame.as_bytes());
            if write.write_all_buf(&mut both).await.is_err() {
                return false;
            }
            buf.out.clear();
        } else {
            buf.out.extend_from_slice(frame.as_bytes());
        }
    }
    buf.report();
    if !buf.out.is_empty() && write.write_all(&buf.out).await.is_err() {
        return false;
    }
    true
}

/// Drains the connection's queue into the socket until it closes, then
/// writes what was still queued and the close frame: 1009 for an oversized
/// message, no status otherwise (as engine.io does, which also flushes its
/// write buffer before closing). A write blocked on a peer that does not read
/// gets [`CLOSE_WAIT`] after the close, and so does the final flush, so a
/// stuck socket never keeps this task (and its socket) alive.
async fn write_loop(conn: Arc<Conn>, mut write: WriteSide, pongs: Arc<Pongs>) {
    let _rx = conn.rx.lock().await;
    let mut buf = WriteBuf {
        out: Vec::new(),
        reported: 0,
        metrics: conn.engine.metrics.clone(),
    };
    let mut frames = Vec::new();
    // One wait for the close for the connection's life, not one per batch.
    let closed = conn.closed();
    tokio::pin!(closed);
    let mut is_closed = false;
    while !is_closed {
        // A pong left over from an earlier wake goes first (one wake can
        // stand for several pings).
        let (frame, pong) = match pongs.pop() {
            Some(pong) => (None, Some(pong)),
            None => tokio::select! {
                frame = conn.recv() => (Some(frame), None),
                _ = pongs.ready.notified() => match pongs.pop() {
                    Some(pong) => (None, Some(pong)),
                    None => continue,
                },
                _ = &mut closed => break,
            },
        };
        let mut bytes = 0;
        if let Some(frame) = frame {
            bytes += frame.len();
            frames.push(frame);
        }
        conn.recv_batch(&mut frames, &mut bytes, WRITE_BATCH, WRITE_BUFFER);
        let written = {
            let writing = write_frames(&conn, &mut write, &mut buf, &mut frames, pong);
            tokio::pin!(writing);
            tokio::select! {
                written = &mut writing => written,
                _ = &mut closed => {
                    // Closed while a write is blocked: it gets CLOSE_WAIT more.
                    is_closed = true;
                    tokio::time::timeout(CLOSE_WAIT, &mut writing).await.unwrap_or(false)
                }
            }
        };
        if !written {
            conn.close(CloseReason::TransportError);
            return;
        }
        let idle = conn.settle_queue();
        buf.reset(idle);
        if idle && frames.capacity() > KEEP_BATCH {
            frames = Vec::new();
        }
    }
    let reason = conn.close_reason();
    let goodbye = async {
        // A slow consumer's queue is what it could not take: it is dropped.
        if reason.is_some_and(CloseReason::flushes_queue) {
            while let Some(frame) = conn.try_recv() {
                frames.push(frame);
            }
            if !write_frames(&conn, &mut write, &mut buf, &mut frames, None).await {
                return;
            }
        }
        buf.out.clear();
        match reason {
            Some(CloseReason::TooLarge) => {
                push_header(&mut buf.out, OP_CLOSE, 2);
                buf.out.extend_from_slice(&1009u16.to_be_bytes());
            }
            _ => push_header(&mut buf.out, OP_CLOSE, 0),
        }
        if write.write_all(&buf.out).await.is_ok() {
            let _ = write.shutdown().await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, goodbye).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Measured in the test (debug) build on 2026-12-01: 1,160 and 992 bytes.
    const TASK_BOUND: usize = 1_536;
    const WRITER_BOUND: usize = 1_280;

    fn returned_size_3<A, B, C, R>(_: impl FnOnce(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    fn returned_size_4<A, B, C, D, R>(_: impl FnOnce(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every idle websocket keeps these futures (its reading task, with `run`
    /// inside, and its writer task) for its whole life; the bounds make a
    /// change that bloats them fail here rather than in a memory benchmark.
    #[test]
    fn the_per_connection_futures_stay_small() {
        let task = returned_size_4(serve_upgraded);
        let run = returned_size_3(run);
        let writer = returned_size_3(write_loop);
        let reader = std::mem::size_of::<Reader>();
        println!("serve_upgraded {task} B, run {run} B, write_loop {writer} B, Reader {reader} B");
        assert!(task > 0 && run > 0 && writer > 0, "sizes were measured");
        assert!(task <= TASK_BOUND, "serve_upgraded future: {task} B");
        assert!(writer <= WRITER_BOUND, "write_loop future: {writer} B");
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn headers_carry_the_length_in_one_two_or_eight_bytes() {
        for (len, header) in [
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            push_header(&mut out, OP_TEXT, len);
            assert_eq!(out, header, "{len}");
        }
    }
}
