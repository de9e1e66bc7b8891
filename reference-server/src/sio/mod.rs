//! The Socket.IO v5 server layer, on the shared codec: namespace CONNECT and
//! DISCONNECT, event routing, binary reassembly, and the protocol errors that
//! close the whole Engine.IO connection (as socket.io 4.8 does).
//!
//! A namespace's rules are reached only through the [`Namespace`] trait, and
//! its frames leave only through an [`adapter::Adapter`].

use std::sync::Arc;

use chorus_protocol::socketio::{self, Event, PacketType};
use chorus_protocol::DecodeError;

pub mod adapter;
pub mod cluster;

use crate::engine::{CloseReason, Conn, ConnHandler, Handler};
use adapter::Outcome;
use parking_lot::Mutex;

/// The `/chat` namespace.
pub const CHAT: &str = "/chat";

/// The rules of one namespace, as the Socket.IO layer calls them: CONNECT,
/// events, and the socket leaving. Each call returns what is left to do once
/// no lock is held ([`Outcome::apply`]).
pub trait Namespace: Send + Sync {
    /// One socket of the namespace, kept by its Engine.IO connection.
    type Socket: Send;
    /// State an Engine.IO connection keeps across namespace reconnects.
    type ConnState: Send;

    /// Fresh per-connection state, made at the connection's first event.
    fn conn_state(&self) -> Self::ConnState;
    /// A socket asks to enter, with the CONNECT packet's `auth` data.
    fn connect(
        &self,
        conn: &Arc<Conn>,
        auth: Option<&str>,
    ) -> Result<(Self::Socket, Outcome), Refused>;
    /// An event (with its ack id, if the client wants one) on a socket.
    fn event(
        &self,
        conn: &Arc<Conn>,
        socket: &mut Self::Socket,
        state: &mut Self::ConnState,
        event: &Event<'_>,
        ack: Option<u64>,
    ) -> Outcome;
    /// The socket left (DISCONNECT, server disconnect, or its connection closed).
    fn disconnect(&self, socket: Self::Socket);
}

/// A refused namespace CONNECT: the CONNECT_ERROR payload and the metric label.
pub struct Refused {
    /// Label for the refused-handshakes metric.
    pub reason: &'static str,
    /// JSON data of the `44/<nsp>,…` packet.
    pub payload: String,
}

/// Socket.IO state of one Engine.IO connection.
struct SioConn<N: Namespace> {
    /// The root-namespace socket id, once connected to `/`.
    root: Option<Arc<str>>,
    /// The `/chat` socket, once connected.
    chat: Option<N::Socket>,
    /// A binary packet waiting for its attachments.
    pending: Option<PendingBinary>,
    /// Namespace CONNECTs this connection has made (bounded by `max_connects_per_conn`).
    connects: u32,
    /// The connection's own rate-limit buckets (strict profile), created at the
    /// first event and kept across namespace reconnects.
    rate: Option<N::ConnState>,
}

impl<N: Namespace> Default for SioConn<N> {
    fn default() -> Self {
        Self {
            root: None,
            chat: None,
            pending: None,
            connects: 0,
            rate: None,
        }
    }
}

struct PendingBinary {
    header: String,
    expected: usize,
    /// Bytes held so far, header included; at most `max_payload`.
    bytes: usize,
    attachments: Vec<Vec<u8>>,
}

/// Closes the connection for a protocol error, counting which limit it broke.
fn refuse(conn: &Arc<Conn>, err: &DecodeError) {
    tracing::debug!(sid = %conn.sid, %err, "malformed socket.io packet");
    match err {
        DecodeError::TooManyAttachments(_) => conn.engine.metrics.abuse("too_many_attachments"),
        DecodeError::TooDeep(_) => conn.engine.metrics.abuse("json_depth"),
        _ => {}
    }
    conn.close(CloseReason::ProtocolError);
}

/// The largest number of bytes a pending binary packet may hold.
fn max_pending_bytes(conn: &Conn) -> usize {
    usize::try_from(conn.engine.config.max_payload).unwrap_or(usize::MAX)
}

impl<N: Namespace> SioSocket<N> {
    /// Handles one Socket.IO packet (the text of an Engine.IO message).
    fn message(&self, conn: &Arc<Conn>, text: &str) {
        let (packet, event) = match socketio::Packet::decode_with_event(text) {
            Ok(decoded) => decoded,
            Err(err) => return refuse(conn, &err),
        };
        let mut sio = self.state.lock();
        // socket.io-parser: a text packet while attachments are awaited is an error.
        if sio.pending.is_some() {
            drop(sio);
            tracing::debug!(sid = %conn.sid, "text packet while binary attachments were awaited");
            return conn.close(CloseReason::ProtocolError);
        }
        if packet.kind.is_binary() && packet.attachments > 0 {
            // The count is at most `MAX_ATTACHMENTS` (the codec refuses more).
            sio.pending = Some(PendingBinary {
                header: text.to_owned(),
                expected: packet.attachments,
                bytes: text.len(),
                attachments: Vec::with_capacity(packet.attachments),
            });
            return;
        }
        drop(sio);
        self.dispatch(conn, &packet, event);
    }

    /// Handles a binary frame: an attachment of the pending binary packet.
    fn binary(&self, conn: &Arc<Conn>, bytes: Vec<u8>) {
        let complete = {
            let mut sio = self.state.lock();
            let Some(pending) = sio.pending.as_mut() else {
                drop(sio);
                return conn.close(CloseReason::ProtocolError);
            };
            pending.bytes = pending.bytes.saturating_add(bytes.len());
            if pending.bytes > max_pending_bytes(conn) {
                sio.pending = None;
                drop(sio);
                tracing::debug!(sid = %conn.sid, "pending binary attachments over max_payload");
                conn.engine.metrics.abuse("attachment_bytes");
                return conn.close(CloseReason::ProtocolError);
            }
            pending.attachments.push(bytes);
            if pending.attachments.len() < pending.expected {
                return;
            }
            match sio.pending.take() {
                Some(complete) => complete,
                None => return,
            }
        };
        let packet = match socketio::Packet::decode(&complete.header) {
            Ok(packet) => packet,
            Err(err) => return refuse(conn, &err),
        };
        let Some(data) = packet.data else {
            return self.dispatch(conn, &packet, None);
        };
        // The codec bounded the depth, so this parse cannot hit serde_json's recursion limit.
        let mut value: serde_json::Value = match serde_json::from_str(data) {
            Ok(value) => value,
            Err(err) => return refuse(conn, &DecodeError::Json(err.to_string())),
        };
        if let Err(err) = socketio::resolve_placeholders(&mut value, &complete.attachments) {
            return refuse(conn, &err);
        }
        let resolved = value.to_string();
        let kind = match packet.kind {
            PacketType::BinaryAck => PacketType::Ack,
            _ => PacketType::Event,
        };
        self.dispatch(
            conn,
            &socketio::Packet {
                kind,
                attachments: 0,
                data: Some(&resolved),
                ..packet
            },
            None,
        );
    }

    /// Routes one packet; `event` is its parsed data when the decoder already has it.
    fn dispatch(&self, conn: &Arc<Conn>, packet: &socketio::Packet<'_>, event: Option<Event<'_>>) {
        let chat = &self.chat;
        match packet.kind {
            PacketType::Connect => self.connect(conn, packet.nsp, packet.data),
            PacketType::Disconnect => {
                let socket = {
                    let mut sio = self.state.lock();
                    match packet.nsp {
                        CHAT => sio.chat.take(),
                        "/" => {
                            sio.root = None;
                            None
                        }
                        _ => None,
                    }
                };
                if let Some(socket) = socket {
                    chat.disconnect(socket);
                }
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let mut guard = self.state.lock();
                let sio = &mut *guard;
                match (packet.nsp, sio.chat.as_mut()) {
                    (CHAT, Some(socket)) => {
                        let event = match event {
                            Some(event) => event,
                            None => match Event::parse(packet.data.unwrap_or_default()) {
                                Ok(event) => event,
                                Err(err) => {
                                    drop(guard);
                                    return refuse(conn, &err);
                                }
                            },
                        };
                        let rate = sio.rate.get_or_insert_with(|| chat.conn_state());
                        let outcome = chat.event(conn, socket, rate, &event, packet.id);
                        drop(guard);
                        outcome.apply();
                    }
                    // The root namespace accepts CONNECT and drops every event.
                    ("/", _) if sio.root.is_some() => {}
                    _ => {
                        drop(guard);
                        conn.close(CloseReason::ProtocolError);
                    }
                }
            }
            // The server never asks for acks; answers to nothing are ignored.
            PacketType::Ack | PacketType::BinaryAck | PacketType::ConnectError => {}
        }
    }

    fn connect(&self, conn: &Arc<Conn>, nsp: &str, auth: Option<&str>) {
        let mut sio = self.state.lock();
        // Every CONNECT queues a reply (for `/chat` an O(users) `onlineUsers`
        // snapshot): cycling CONNECT/DISCONNECT on one connection is bounded.
        sio.connects = sio.connects.saturating_add(1);
        if sio.connects > conn.engine.config.max_connects_per_conn {
            drop(sio);
            tracing::debug!(sid = %conn.sid, "too many namespace CONNECTs on one connection");
            conn.engine.metrics.abuse("connect_cycles");
            return conn.close(CloseReason::ProtocolError);
        }
        match nsp {
            CHAT if sio.chat.is_some() => {
                drop(sio);
                conn.close(CloseReason::ProtocolError);
            }
            CHAT => {
                // The chat layer queues `40/chat,{sid}` and `onlineUsers` itself, under its
                // lock, so no broadcast can slip between the snapshot and the socket's entry.
                match self.chat.connect(conn, auth) {
                    Ok((socket, outcome)) => {
                        sio.chat = Some(socket);
                        drop(sio);
                        outcome.apply();
                    }
                    Err(refusal) => {
                        drop(sio);
                        conn.engine.metrics.refused_handshake(refusal.reason);
                        conn.send_message(&socketio::encode(
                            PacketType::ConnectError,
                            CHAT,
                            None,
                            Some(&refusal.payload),
                        ));
                    }
                }
            }
            "/" if sio.root.is_some() => {
                drop(sio);
                conn.close(CloseReason::ProtocolError);
            }
            "/" => {
                let sid = crate::engine::new_sid();
                let data = serde_json::json!({ "sid": &*sid }).to_string();
                sio.root = Some(sid);
                drop(sio);
                conn.send_message(&socketio::encode(
                    PacketType::Connect,
                    "/",
                    None,
                    Some(&data),
                ));
            }
            other => {
                drop(sio);
                conn.engine.metrics.refused_handshake("invalid_namespace");
                conn.send_message(&socketio::encode(
                    PacketType::ConnectError,
                    other,
                    None,
                    Some(r#"{"message":"Invalid namespace"}"#),
                ));
            }
        }
    }

    /// The server ends the `/chat` socket of a connection: `41/chat,` to the
    /// client, then the chat layer's disconnect (used on token expiry and shutdown).
    fn end_chat(&self, conn: &Arc<Conn>) {
        let socket = self.state.lock().chat.take();
        if let Some(socket) = socket {
            conn.send_message(&socketio::encode(PacketType::Disconnect, CHAT, None, None));
            self.chat.disconnect(socket);
        }
    }

    /// The Engine.IO connection closed: every namespace socket on it disconnects.
    fn closed(&self) {
        let socket = {
            let mut sio = self.state.lock();
            sio.root = None;
            sio.pending = None;
            sio.chat.take()
        };
        if let Some(socket) = socket {
            self.chat.disconnect(socket);
        }
    }

    /// Whether any namespace (`/` or `/chat`) is connected on this Engine.IO
    /// connection (the engine's connect timeout asks).
    fn attached(&self) -> bool {
        let sio = self.state.lock();
        sio.root.is_some() || sio.chat.is_some()
    }
}

/// The Socket.IO server: the Engine.IO layer's [`Handler`], serving `/` and
/// the `/chat` namespace's rules.
pub struct Sio<N> {
    chat: Arc<N>,
}

impl<N> Sio<N> {
    /// A server whose `/chat` namespace follows `chat`.
    pub fn new(chat: Arc<N>) -> Self {
        Self { chat }
    }
}

impl<N: Namespace + 'static> Handler for Sio<N> {
    fn on_connect(&self) -> Box<dyn ConnHandler> {
        Box::new(SioSocket {
            chat: self.chat.clone(),
            state: Mutex::new(SioConn::default()),
        })
    }
}

/// The Socket.IO side of one Engine.IO connection.
struct SioSocket<N: Namespace> {
    chat: Arc<N>,
    /// Namespace sockets and binary reassembly, locked per incoming packet.
    state: Mutex<SioConn<N>>,
}

impl<N: Namespace> ConnHandler for SioSocket<N> {
    fn on_message(&self, conn: &Arc<Conn>, text: &str) {
        self.message(conn, text);
    }

    fn on_binary(&self, conn: &Arc<Conn>, bytes: Vec<u8>) {
        self.binary(conn, bytes);
    }

    fn on_disconnect(&self, _conn: &Arc<Conn>) {
        self.closed();
    }

    fn on_server_disconnect(&self, conn: &Arc<Conn>) {
        self.end_chat(conn);
    }

    fn is_attached(&self) -> bool {
        self.attached()
    }
}
