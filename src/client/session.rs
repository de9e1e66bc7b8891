//! A connected client: the handle that sends, and the reader task that
//! decodes what arrives and hands it to the [`Handler`].
//!
//! Writes go straight to the socket under a mutex, so `emit` returns the instant
//! its frame was written. The reader never waits for that mutex: the packets it
//! must send (pongs, acks for the server) go to a small queue that it flushes
//! itself when the writer is free, and that whoever holds the writer flushes
//! before releasing it, so a pong waits at most for the frame being written.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_protocol::engineio::{self, OpenPacket};
use chorus_protocol::socketio::{self, Event, PacketType};
use chorus_protocol::{DecodeError, Version};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::Limits;
use super::error::{ClientError, Limit, LimitExceeded};
use super::handler::{AckReply, CloseReason, Handler, Incoming};
use super::polling::{PollReader, PollWriter};
use super::rx_time::RxTime;
use super::websocket::{WsMessage, WsReader, WsWriter};

/// How long [`Client::disconnect`] waits for the server to close.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

/// The sending side of the transport.
#[derive(Debug)]
pub(crate) enum Writer {
    /// A websocket.
    Ws(WsWriter),
    /// HTTP POSTs.
    Polling(PollWriter),
    /// The session is over.
    Closed,
}

impl Writer {
    /// Sends one Engine.IO text packet made of `parts`.
    async fn send_text(&mut self, parts: &[&str]) -> Result<Instant, ClientError> {
        let sent = match self {
            Self::Ws(w) => w.send_text(parts).await,
            Self::Polling(p) => p.send_text(parts).await,
            Self::Closed => Err(ClientError::Closed),
        };
        self.close_if_stuck(sent)
    }

    async fn send_control(&mut self, control: &Control) -> Result<(), ClientError> {
        match (control, &mut *self) {
            (Control::Text(text), _) => self.send_text(&[text]).await.map(drop),
            (Control::WsPong(payload), Self::Ws(w)) => {
                let sent = w.send_pong(payload).await;
                self.close_if_stuck(sent).map(drop)
            }
            (Control::WsPong(_), _) => Ok(()),
        }
    }

    /// A server that did not take a frame or answer a POST within
    /// `io_timeout` leaves the transport half-written: nothing more is sent
    /// on it, so that later sends (the DISCONNECT, the close) fail at once
    /// instead of waiting out the timeout again.
    fn close_if_stuck<T>(&mut self, sent: Result<T, ClientError>) -> Result<T, ClientError> {
        if matches!(&sent, Err(ClientError::Limit(b)) if b.limit == Limit::IoTimeout) {
            *self = Self::Closed;
        }
        sent
    }

    /// Ends the session from our side: a websocket close frame, or the
    /// Engine.IO close packet over polling.
    async fn close(&mut self) -> Result<(), ClientError> {
        let result = match self {
            Self::Ws(w) => w.close().await,
            Self::Polling(p) => p.send_text(&["1"]).await.map(drop),
            Self::Closed => Ok(()),
        };
        *self = Self::Closed;
        result
    }
}

/// A packet the reader needs sent.
#[derive(Debug)]
pub(crate) enum Control {
    /// An Engine.IO text packet (a pong `3`, an ACK `43…`).
    Text(Cow<'static, str>),
    /// The answer to a websocket-level ping.
    WsPong(Box<[u8]>),
}

/// What the client handle and its reader task share.
#[derive(Debug)]
pub(crate) struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    control: Mutex<Vec<Control>>,
    closing: AtomicBool,
    next_ack: AtomicU64,
    nsp: Box<str>,
}

impl Shared {
    /// Shares `writer` for the namespace `nsp`, with `control` already queued.
    pub fn new(writer: Writer, nsp: &str, control: Vec<Control>) -> Self {
        Self {
            writer: tokio::sync::Mutex::new(writer),
            control: Mutex::new(control),
            closing: AtomicBool::new(false),
            next_ack: AtomicU64::new(0),
            nsp: nsp.into(),
        }
    }

    /// Sends one Engine.IO text packet made of `parts`, with any queued control packets.
    pub async fn send(&self, parts: &[&str]) -> Result<Instant, ClientError> {
        let result = {
            let mut writer = self.writer.lock().await;
            self.flush_control(&mut writer).await?;
            let at = writer.send_text(parts).await?;
            self.flush_control(&mut writer).await?;
            Ok(at)
        };
        self.flush_if_free().await?;
        result
    }

    /// Queues `control`; returns how many are queued now.
    fn push_control(&self, control: Control) -> usize {
        let mut queue = self.control.lock().expect("control queue");
        queue.push(control);
        queue.len()
    }

    fn has_control(&self) -> bool {
        !self.control.lock().expect("control queue").is_empty()
    }

    async fn flush_control(&self, writer: &mut Writer) -> Result<(), ClientError> {
        loop {
            let batch = std::mem::take(&mut *self.control.lock().expect("control queue"));
            if batch.is_empty() {
                return Ok(());
            }
            for control in &batch {
                writer.send_control(control).await?;
            }
        }
    }

    /// Flushes the queued control packets unless someone holds the writer (who
    /// then flushes them). Checked again after each release, so that a packet
    /// queued while the holder was finishing is not left behind.
    async fn flush_if_free(&self) -> Result<(), ClientError> {
        while self.has_control() {
            let Ok(mut writer) = self.writer.try_lock() else {
                return Ok(());
            };
            self.flush_control(&mut writer).await?;
        }
        Ok(())
    }
}

/// An emit that asked for an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentAck {
    /// The ack id; the answer arrives as [`Incoming::Ack`] with this id.
    pub id: u64,
    /// The instant the frame was handed to the socket.
    pub sent_at: Instant,
}

/// A client connected to one namespace. Dropping it aborts its reader task and
/// closes the connection without telling the server (use [`Client::disconnect`]).
#[derive(Debug)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sid: Box<str>,
    pub(crate) reader: JoinHandle<()>,
}

impl Client {
    /// The Socket.IO id the server gave this client's namespace socket.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Whether the session has ended (the handler got `on_closed`).
    pub fn is_closed(&self) -> bool {
        self.reader.is_finished()
    }

    /// Emits `event` with `args`, each already JSON. Returns the instant the
    /// frame was handed to the socket.
    pub async fn emit(&self, event: &str, args: &[&str]) -> Result<Instant, ClientError> {
        let text = socketio::encode_event(&self.shared.nsp, None, event, args);
        self.shared.send(&["4", &text]).await
    }

    /// Emits `event` with an ack id from this client's counter; the server's
    /// answer is delivered to the handler as [`Incoming::Ack`] with that id.
    pub async fn emit_with_ack(&self, event: &str, args: &[&str]) -> Result<SentAck, ClientError> {
        let id = self.shared.next_ack.fetch_add(1, Ordering::Relaxed);
        let text = socketio::encode_event(&self.shared.nsp, Some(id), event, args);
        let sent_at = self.shared.send(&["4", &text]).await?;
        Ok(SentAck { id, sent_at })
    }

    /// Sends one Socket.IO packet written out in full (e.g. `2/chat,["x",{bad`),
    /// for conformance tests that need what `emit` cannot produce.
    pub async fn send_raw(&self, packet: &str) -> Result<Instant, ClientError> {
        self.shared.send(&["4", packet]).await
    }

    /// Leaves the namespace (`41<nsp>,`), closes the transport and waits (up to
    /// 5 s) for the session to end; the handler then gets
    /// [`CloseReason::ClientDisconnect`].
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        self.shared.closing.store(true, Ordering::SeqCst);
        let text = socketio::encode(PacketType::Disconnect, &self.shared.nsp, None, None);
        let result = {
            let mut writer = self.shared.writer.lock().await;
            let sent = writer.send_text(&["4", &text]).await;
            let closed = writer.close().await;
            sent.and(closed)
        };
        if tokio::time::timeout(DISCONNECT_WAIT, &mut self.reader)
            .await
            .is_err()
        {
            return Err(ClientError::Timeout {
                phase: "disconnect",
                after: DISCONNECT_WAIT,
            });
        }
        result
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The receiving side of the transport.
#[derive(Debug)]
pub(crate) enum ReadSide {
    /// A websocket.
    Ws(WsReader),
    /// HTTP long-polling GETs.
    Polling(PollReader),
}

/// Binary packet waiting for its attachments.
#[derive(Debug)]
struct PendingBinary {
    header: String,
    expected: usize,
    attachments: Vec<Vec<u8>>,
    /// The bytes of `attachments` together.
    bytes: usize,
}

/// The reader task's state.
pub(crate) struct Session<H> {
    handler: H,
    shared: Arc<Shared>,
    /// Answered with the namespace sid (or the refusal) once, during connect.
    connect: Option<oneshot::Sender<Result<(String, Instant), ClientError>>>,
    binary: Option<PendingBinary>,
    ping_window: Duration,
    ping_deadline: tokio::time::Instant,
    limits: Limits,
    version: Version,
    /// The Engine.IO session id (socket.io 2.x names sockets after it).
    eio_sid: Box<str>,
    /// Engine.IO v3 only: the client pings, `pingInterval` after the open
    /// packet and after each pong, and then wants the pong within `pingTimeout`.
    ping_timeout: Duration,
    next_ping: tokio::time::Instant,
}

/// An instant so far ahead that it never comes (a timer that is off).
fn never() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

impl<H: Handler> Session<H> {
    /// A session for the connection that `open` describes, in `version`.
    pub fn new(
        handler: H,
        shared: Arc<Shared>,
        connect: oneshot::Sender<Result<(String, Instant), ClientError>>,
        open: &OpenPacket,
        limits: &Limits,
        version: Version,
    ) -> Self {
        // Both were checked against the limits when the open packet was read;
        // saturating all the same, so that no announced number can overflow.
        let ping_window =
            Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout));
        let mut session = Self {
            handler,
            shared,
            connect: Some(connect),
            binary: None,
            ping_window,
            ping_deadline: tokio::time::Instant::now(),
            limits: *limits,
            version,
            eio_sid: open.sid.as_str().into(),
            ping_timeout: Duration::from_millis(open.ping_timeout),
            next_ping: never(),
        };
        session.ping_deadline = session.next_ping_deadline();
        if version == Version::V2 {
            session.next_ping = session.ping_in_one_interval();
        }
        session
    }

    /// `pingInterval` from now (v3's next client ping).
    fn ping_in_one_interval(&self) -> tokio::time::Instant {
        let interval = self.ping_window.saturating_sub(self.ping_timeout);
        let now = tokio::time::Instant::now();
        now.checked_add(interval).unwrap_or_else(never)
    }

    /// v3: it is time to ping; the pong is then owed within `pingTimeout`.
    fn send_ping(&mut self) -> Result<(), CloseReason> {
        self.next_ping = never();
        let now = tokio::time::Instant::now();
        self.ping_deadline = now.checked_add(self.ping_timeout).unwrap_or_else(never);
        self.queue(Control::Text(Cow::Borrowed("2")))
    }

    /// When the next ping is due at the latest, counted from now.
    fn next_ping_deadline(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        now.checked_add(self.ping_window)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
    }

    /// Queues a packet for the server; too many unsent ones (a server that
    /// floods pings or acked events while not reading) end the session.
    fn queue(&self, control: Control) -> Result<(), CloseReason> {
        let queued = self.shared.push_control(control);
        LimitExceeded::check(
            Limit::PendingReplies,
            queued,
            self.limits.max_pending_replies,
        )
        .map_err(CloseReason::Limit)
    }

    /// Reads `early` (records that came with the open packet), then the
    /// transport until the session ends, then reports why.
    pub async fn run(mut self, read: ReadSide, early: Vec<String>) {
        let mut ended = None;
        for record in &early {
            if let Err(reason) = self.on_text(Instant::now(), record) {
                ended = Some((Instant::now(), reason));
                break;
            }
        }
        let (at, reason) = match (ended, read) {
            (Some(ended), _) => ended,
            (None, ReadSide::Ws(r)) => self.run_ws(r).await,
            (None, ReadSide::Polling(r)) => self.run_polling(r).await,
        };
        let reason = if self.shared.closing.load(Ordering::SeqCst) {
            CloseReason::ClientDisconnect
        } else {
            reason
        };
        // Drop our half of the transport; the server already ended the session.
        *self.shared.writer.lock().await = Writer::Closed;
        match self.connect.take() {
            Some(tx) => {
                let err = match reason {
                    CloseReason::ConnectRefused(data) => ClientError::ConnectRefused {
                        nsp: self.shared.nsp.to_string(),
                        data,
                    },
                    other => ClientError::Protocol(format!(
                        "the session ended before the namespace was joined: {other}"
                    )),
                };
                // connect() may have given up already; then nobody needs the answer.
                let _ = tx.send(Err(err));
            }
            None => self.handler.on_closed(at, reason),
        }
    }

    async fn run_ws(&mut self, mut reader: WsReader) -> (Instant, CloseReason) {
        let sleep = tokio::time::sleep_until(self.ping_deadline);
        let ping = tokio::time::sleep_until(self.next_ping);
        tokio::pin!(sleep, ping);
        loop {
            let deadline = self.ping_deadline;
            let next_ping = self.next_ping;
            let read = tokio::select! {
                // The read first: a frame already buffered is taken without
                // polling the two timers (they are checked when it blocks).
                biased;
                read = reader.next() => match read {
                    Ok(m) => Some(m),
                    Err(e) => return (Instant::now(), reason_of(e)),
                },
                () = &mut sleep => return (Instant::now(), CloseReason::PingTimeout),
                () = &mut ping => None,
            };
            // A close is dated by the frame that caused it, as before v3 pings.
            let (at, handled) = match read {
                None => (Instant::now(), self.send_ping()),
                Some((rx, message)) => {
                    self.handler.on_frame(rx);
                    (rx.at, self.on_ws_message(rx.at, message))
                }
            };
            if let Err(reason) = handled {
                return (at, reason);
            }
            if let Err(e) = self.shared.flush_if_free().await {
                return (Instant::now(), reason_of(e));
            }
            if deadline != self.ping_deadline {
                sleep.as_mut().reset(self.ping_deadline);
            }
            if next_ping != self.next_ping {
                ping.as_mut().reset(self.next_ping);
            }
        }
    }

    async fn run_polling(&mut self, reader: PollReader) -> (Instant, CloseReason) {
        let sleep = tokio::time::sleep_until(self.ping_deadline);
        let ping = tokio::time::sleep_until(self.next_ping);
        // A poll stays pending across a v3 ping (the pong may come on it), so
        // the pending poll owns the reader and hands it back when it is done.
        let poll = poll_owned(reader);
        tokio::pin!(sleep, ping, poll);
        loop {
            let deadline = self.ping_deadline;
            let (rx, body) = tokio::select! {
                (reader, read) = &mut poll => match read {
                    Ok(b) => {
                        poll.set(poll_owned(reader));
                        b
                    }
                    Err(e) => return (Instant::now(), reason_of(e)),
                },
                () = &mut sleep => return (Instant::now(), CloseReason::PingTimeout),
                () = &mut ping => {
                    let sent = match self.send_ping() {
                        Ok(()) => self.shared.flush_if_free().await.map_err(reason_of),
                        Err(reason) => Err(reason),
                    };
                    if let Err(reason) = sent {
                        return (Instant::now(), reason);
                    }
                    sleep.as_mut().reset(self.ping_deadline);
                    ping.as_mut().reset(self.next_ping);
                    continue;
                }
            };
            self.handler.on_frame(rx);
            let at = rx.at;
            let Ok(text) = std::str::from_utf8(&body) else {
                return (
                    at,
                    CloseReason::Transport("polling body is not UTF-8".into()),
                );
            };
            for record in engineio::payload_records(self.version, text) {
                let handled = match record {
                    Ok(record) => self.on_text(at, record),
                    Err(e) => Err(CloseReason::Transport(e.to_string())),
                };
                if let Err(reason) = handled {
                    return (at, reason);
                }
            }
            if let Err(e) = self.shared.flush_if_free().await {
                return (Instant::now(), reason_of(e));
            }
            if deadline != self.ping_deadline {
                sleep.as_mut().reset(self.ping_deadline);
            }
            ping.as_mut().reset(self.next_ping);
        }
    }

    /// One websocket message.
    fn on_ws_message(&mut self, at: Instant, message: WsMessage<'_>) -> Result<(), CloseReason> {
        match message {
            WsMessage::Text(text) => self.on_text(at, text),
            WsMessage::Binary(bytes) => match engineio::binary_frame_data(self.version, bytes) {
                Ok(data) => self.on_attachment(at, data),
                Err(e) => Err(CloseReason::Transport(e.to_string())),
            },
            WsMessage::Ping(payload) => self.queue(Control::WsPong(payload.into())),
            WsMessage::Close(code) => Err(CloseReason::ServerClosed { code }),
        }
    }

    /// One Engine.IO text packet: a websocket text frame or a polling record.
    fn on_text(&mut self, at: Instant, text: &str) -> Result<(), CloseReason> {
        let packet = engineio::Packet::decode_as(self.version, text)
            .map_err(|e| CloseReason::Transport(e.to_string()))?;
        self.on_packet(at, packet)
    }

    fn on_packet(&mut self, at: Instant, packet: engineio::Packet<'_>) -> Result<(), CloseReason> {
        if self.version == Version::V2 {
            // engine.io-client 3 counts any packet as a sign of life, and its
            // pings restart one interval after each pong.
            self.ping_deadline = self.next_ping_deadline();
            if matches!(packet, engineio::Packet::Pong(_)) {
                self.next_ping = self.ping_in_one_interval();
            }
        }
        match packet {
            engineio::Packet::Ping(data) => {
                self.ping_deadline = self.next_ping_deadline();
                let pong = if data.is_empty() {
                    Cow::Borrowed("3")
                } else {
                    Cow::Owned(format!("3{data}"))
                };
                self.queue(Control::Text(pong))
            }
            engineio::Packet::Message(text) => self.on_socketio(at, text),
            engineio::Packet::Binary(bytes) => self.on_attachment(at, &bytes),
            engineio::Packet::Close => Err(CloseReason::ServerClosed { code: None }),
            engineio::Packet::Open(_)
            | engineio::Packet::Pong(_)
            | engineio::Packet::Upgrade
            | engineio::Packet::Noop => Ok(()),
        }
    }

    fn on_socketio(&mut self, at: Instant, text: &str) -> Result<(), CloseReason> {
        if self.binary.is_some() {
            return Err(CloseReason::Transport(
                "a text packet arrived before the binary attachments".into(),
            ));
        }
        if let Some(announced) = announced_attachments(text) {
            if announced > self.limits.max_attachments as u128 {
                return Err(CloseReason::Limit(LimitExceeded::new(
                    Limit::Attachments,
                    announced,
                    self.limits.max_attachments as u64,
                )));
            }
        }
        let (packet, event) = socketio::Packet::decode_with_event(text)
            .map_err(|e| CloseReason::Transport(e.to_string()))?;
        if packet.nsp != &*self.shared.nsp {
            return Ok(());
        }
        let data = packet.data.unwrap_or_default();
        match packet.kind {
            PacketType::Connect => {
                if let Some(tx) = self.connect.take() {
                    let sid =
                        socketio::connect_sid(self.version, packet.nsp, &self.eio_sid, packet.data)
                            .map_err(|_| {
                                ClientError::Protocol(format!("CONNECT without a sid: {text}"))
                            });
                    let _ = tx.send(sid.map(|sid| (sid, at)));
                }
                Ok(())
            }
            PacketType::ConnectError => Err(CloseReason::ConnectRefused(
                socketio::connect_error_data(self.version, data).into_owned(),
            )),
            PacketType::Disconnect => Err(CloseReason::NamespaceDisconnect),
            PacketType::Event | PacketType::Ack => {
                self.deliver(at, packet.kind, packet.id, data, event)
            }
            PacketType::BinaryEvent | PacketType::BinaryAck if packet.attachments == 0 => {
                self.deliver(at, packet.kind, packet.id, data, event)
            }
            PacketType::BinaryEvent | PacketType::BinaryAck => {
                LimitExceeded::check(
                    Limit::BinaryHeaderSize,
                    text.len(),
                    self.limits.max_binary_header,
                )
                .map_err(CloseReason::Limit)?;
                // At most `max_attachments`, checked above.
                self.binary = Some(PendingBinary {
                    header: text.to_owned(),
                    expected: packet.attachments,
                    attachments: Vec::with_capacity(packet.attachments),
                    bytes: 0,
                });
                Ok(())
            }
        }
    }

    /// One binary attachment; the last one completes the pending packet.
    fn on_attachment(&mut self, at: Instant, bytes: &[u8]) -> Result<(), CloseReason> {
        let Some(pending) = self.binary.as_mut() else {
            return Err(CloseReason::Transport(
                "binary data without a binary packet".into(),
            ));
        };
        pending.bytes = pending.bytes.saturating_add(bytes.len());
        LimitExceeded::check(
            Limit::AttachmentBytes,
            pending.bytes,
            self.limits.max_attachment_bytes,
        )
        .map_err(CloseReason::Limit)?;
        pending.attachments.push(bytes.to_vec());
        if pending.attachments.len() < pending.expected {
            return Ok(());
        }
        let Some(pending) = self.binary.take() else {
            return Ok(());
        };
        let bad = |e: &dyn std::fmt::Display| CloseReason::Transport(e.to_string());
        let packet = socketio::Packet::decode(&pending.header).map_err(|e| bad(&e))?;
        let data = resolve_as_text(packet.data.unwrap_or_default(), &pending.attachments)
            .map_err(|e| bad(&e))?;
        self.deliver(at, packet.kind, packet.id, &data, None)
    }

    /// Hands an EVENT or ACK to the handler, and queues the ACK a server event asks for.
    fn deliver(
        &mut self,
        at: Instant,
        kind: PacketType,
        id: Option<u64>,
        data: &str,
        parsed: Option<Event<'_>>,
    ) -> Result<(), CloseReason> {
        let bad = |e: chorus_protocol::DecodeError| CloseReason::Transport(e.to_string());
        if matches!(kind, PacketType::Ack | PacketType::BinaryAck) {
            let id = id.ok_or_else(|| CloseReason::Transport("an ACK without an id".into()))?;
            if id >= self.shared.next_ack.load(Ordering::Relaxed) {
                // Never asked for: dropped, as socket.io-client does, so that
                // a server cannot make the handler keep answers to nothing.
                return Ok(());
            }
            let args = socketio::parse_args(data).map_err(bad)?;
            self.handler
                .on_message(at, Incoming::Ack { id, args: &args });
            return Ok(());
        }
        let event = match parsed {
            Some(event) => event,
            None => Event::parse(data).map_err(bad)?,
        };
        self.handler.on_message(
            at,
            Incoming::Event {
                name: &event.name,
                args: &event.args,
                ack_id: id,
            },
        );
        if let Some(id) = id {
            let reply = self.handler.ack_reply(&event.name, &event.args);
            let args = match &reply {
                AckReply::Empty => "[]",
                AckReply::Args(args) => args.as_str(),
                AckReply::Ignore => return Ok(()),
            };
            let mut text = String::from("4");
            socketio::encode_into(
                &mut text,
                PacketType::Ack,
                &self.shared.nsp,
                Some(id),
                0,
                Some(args),
            );
            self.queue(Control::Text(Cow::Owned(text)))?;
        }
        Ok(())
    }
}

/// One long-poll that owns its reader and gives it back with the answer.
async fn poll_owned(
    mut reader: PollReader,
) -> (PollReader, Result<(RxTime, Vec<u8>), ClientError>) {
    let read = reader.poll().await;
    (reader, read)
}

/// The JSON `data` of a binary packet with every placeholder
/// `{"_placeholder":true,"num":N}` replaced by attachment N written as an
/// array of byte values, as [`socketio::resolve_placeholders`] does, but
/// written as text: a `serde_json::Value` per byte would take 32 bytes of
/// memory for each byte a server sends; text takes at most 4.
fn resolve_as_text(data: &str, attachments: &[Vec<u8>]) -> Result<String, DecodeError> {
    let mut value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| DecodeError::Json(e.to_string()))?;
    // Each placeholder becomes a string no server can guess, found again in the text.
    let nonce: u64 = rand::random();
    mark_placeholders(&mut value, attachments.len(), nonce)?;
    let text = value.to_string();
    let marker = format!("\"\\u0001chorus-attachment-{nonce:016x}-");
    let bytes: usize = attachments.iter().map(Vec::len).sum();
    let mut out = String::with_capacity(text.len() + 4 * bytes);
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let end = after.find('"').ok_or(DecodeError::Attachments)?;
        let num: usize = after[..end].parse().map_err(|_| DecodeError::Attachments)?;
        let attachment = attachments.get(num).ok_or(DecodeError::Attachments)?;
        out.push('[');
        for (i, b) in attachment.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_byte(&mut out, *b);
        }
        out.push(']');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces each placeholder in `value` by the marker string of its number.
fn mark_placeholders(
    value: &mut serde_json::Value,
    count: usize,
    nonce: u64,
) -> Result<(), DecodeError> {
    socketio::replace_placeholders(value, &mut |num| {
        if num >= count {
            return Err(DecodeError::Attachments);
        }
        Ok(serde_json::Value::String(format!(
            "\u{1}chorus-attachment-{nonce:016x}-{num}"
        )))
    })
}

/// Appends the decimal text of a byte.
fn push_byte(out: &mut String, b: u8) {
    if b >= 100 {
        out.push(char::from(b'0' + b / 100));
    }
    if b >= 10 {
        out.push(char::from(b'0' + b / 10 % 10));
    }
    out.push(char::from(b'0' + b % 10));
}

/// The attachment count a binary packet (`5…-` or `6…-`) announces, however
/// large: `None` for other packets or no count.
fn announced_attachments(text: &str) -> Option<u128> {
    let rest = text.strip_prefix(['5', '6'])?;
    let digits = &rest[..rest.find(|c: char| !c.is_ascii_digit())?];
    if digits.is_empty() {
        return None;
    }
    Some(digits.parse().unwrap_or(u128::MAX))
}

/// The close reason for a transport error.
fn reason_of(error: ClientError) -> CloseReason {
    match error {
        ClientError::Limit(breach) => CloseReason::Limit(breach),
        ClientError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            CloseReason::ServerClosed { code: None }
        }
        ClientError::Io(e) => CloseReason::Io(e.to_string()),
        other => CloseReason::Transport(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_placeholders_as_text_like_the_codec() {
        let attachments = vec![vec![0, 9, 10, 99, 100, 255], vec![], vec![42]];
        let data = r#"["blob",{"a":{"_placeholder":true,"num":0},"b":[{"_placeholder":true,"num":2}],"c":{"_placeholder":true,"num":1}},"\u0001chorus-attachment-x-0"]"#;
        let text = resolve_as_text(data, &attachments).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(data).unwrap();
        socketio::resolve_placeholders(&mut expected, &attachments).unwrap();
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got, expected);
        assert!(text.contains("[0,9,10,99,100,255]"), "{text}");
        // A placeholder for a missing attachment, or without a number, is an error.
        for bad in [
            r#"[{"_placeholder":true,"num":3}]"#,
            r#"[{"_placeholder":true}]"#,
            r#"[{"_placeholder":true,"num":-1}]"#,
        ] {
            assert!(resolve_as_text(bad, &attachments).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_any_announced_attachment_count_without_overflow() {
        assert_eq!(announced_attachments("51-/chat,[]"), Some(1));
        assert_eq!(announced_attachments("6123-[]"), Some(123));
        assert_eq!(
            announced_attachments("451000000000000000-/chat,[]"),
            None,
            "an Engine.IO message prefix is not ours to strip"
        );
        assert_eq!(
            announced_attachments("51000000000000000-/chat,[\"onlineUsers\"]"),
            Some(1_000_000_000_000_000)
        );
        let forty_digits = format!("5{}-[]", "9".repeat(40));
        assert_eq!(announced_attachments(&forty_digits), Some(u128::MAX));
        assert_eq!(announced_attachments("42/chat,[]"), None);
        assert_eq!(announced_attachments("5-[]"), None);
        assert_eq!(announced_attachments("5"), None);
    }
}
