//! The Socket.IO v5 server layer, on the shared codec: namespace CONNECT and
//! DISCONNECT, event routing, binary reassembly, and the protocol errors that
//! close the whole Engine.IO connection (as socket.io 4.8 does).

use std::sync::Arc;

use chorus_protocol::socketio::{self, Event, PacketType};

use crate::chat::ChatSocket;
use crate::engine::{CloseReason, Conn};

/// The `/chat` namespace.
pub const CHAT: &str = "/chat";

/// Socket.IO state of one Engine.IO connection.
#[derive(Default)]
pub struct SioConn {
    /// The root-namespace socket id, once connected to `/`.
    root: Option<Arc<str>>,
    /// The `/chat` socket, once connected.
    chat: Option<ChatSocket>,
    /// A binary packet waiting for its attachments.
    pending: Option<PendingBinary>,
}

struct PendingBinary {
    header: String,
    expected: usize,
    attachments: Vec<Vec<u8>>,
}

/// Handles one Socket.IO packet (the text of an Engine.IO message).
pub fn on_message(conn: &Arc<Conn>, text: &str) {
    let (packet, event) = match socketio::Packet::decode_with_event(text) {
        Ok(decoded) => decoded,
        Err(err) => {
            tracing::debug!(sid = %conn.sid, %err, "malformed socket.io packet");
            return conn.close(CloseReason::ProtocolError);
        }
    };
    if packet.kind.is_binary() {
        if packet.attachments == 0 {
            return dispatch(conn, &packet, event);
        }
        let mut sio = conn.sio.lock().expect("sio lock");
        sio.pending = Some(PendingBinary {
            header: text.to_owned(),
            expected: packet.attachments,
            attachments: Vec::with_capacity(packet.attachments),
        });
        return;
    }
    dispatch(conn, &packet, event);
}

/// Handles a binary frame: an attachment of the pending binary packet.
pub fn on_binary(conn: &Arc<Conn>, bytes: Vec<u8>) {
    let complete = {
        let mut sio = conn.sio.lock().expect("sio lock");
        let Some(pending) = sio.pending.as_mut() else {
            drop(sio);
            return conn.close(CloseReason::ProtocolError);
        };
        pending.attachments.push(bytes);
        if pending.attachments.len() < pending.expected {
            return;
        }
        sio.pending.take().expect("pending binary packet")
    };
    let packet = socketio::Packet::decode(&complete.header).expect("decoded before");
    let Some(data) = packet.data else {
        return dispatch(conn, &packet, None);
    };
    let mut value: serde_json::Value = serde_json::from_str(data).expect("validated JSON");
    if socketio::resolve_placeholders(&mut value, &complete.attachments).is_err() {
        return conn.close(CloseReason::ProtocolError);
    }
    let resolved = value.to_string();
    let kind = match packet.kind {
        PacketType::BinaryAck => PacketType::Ack,
        _ => PacketType::Event,
    };
    dispatch(
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
fn dispatch(conn: &Arc<Conn>, packet: &socketio::Packet<'_>, event: Option<Event<'_>>) {
    let chat = &conn.engine.chat;
    match packet.kind {
        PacketType::Connect => connect(conn, packet.nsp, packet.data),
        PacketType::Disconnect => {
            let socket = {
                let mut sio = conn.sio.lock().expect("sio lock");
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
            let mut sio = conn.sio.lock().expect("sio lock");
            match packet.nsp {
                CHAT if sio.chat.is_some() => {
                    let event = match event {
                        Some(event) => event,
                        None => match Event::parse(packet.data.unwrap_or_default()) {
                            Ok(event) => event,
                            Err(_) => {
                                drop(sio);
                                return conn.close(CloseReason::ProtocolError);
                            }
                        },
                    };
                    let socket = sio.chat.as_mut().expect("chat socket");
                    let outcome = chat.event(conn, socket, &event, packet.id);
                    drop(sio);
                    outcome.apply();
                }
                // The root namespace accepts CONNECT and drops every event.
                "/" if sio.root.is_some() => {}
                _ => {
                    drop(sio);
                    conn.close(CloseReason::ProtocolError);
                }
            }
        }
        // The server never asks for acks; answers to nothing are ignored.
        PacketType::Ack | PacketType::BinaryAck | PacketType::ConnectError => {}
    }
}

fn connect(conn: &Arc<Conn>, nsp: &str, auth: Option<&str>) {
    let mut sio = conn.sio.lock().expect("sio lock");
    match nsp {
        CHAT if sio.chat.is_some() => {
            drop(sio);
            conn.close(CloseReason::ProtocolError);
        }
        CHAT => {
            // The chat layer queues `40/chat,{sid}` and `onlineUsers` itself, under its
            // lock, so no broadcast can slip between the snapshot and the socket's entry.
            match conn.engine.chat.connect(conn, auth) {
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
pub fn server_disconnect(conn: &Arc<Conn>) {
    let socket = conn.sio.lock().expect("sio lock").chat.take();
    if let Some(socket) = socket {
        conn.send_message(&socketio::encode(PacketType::Disconnect, CHAT, None, None));
        conn.engine.chat.disconnect(socket);
    }
}

/// The Engine.IO connection closed: every namespace socket on it disconnects.
pub fn on_close(conn: &Arc<Conn>) {
    let socket = {
        let mut sio = conn.sio.lock().expect("sio lock");
        sio.root = None;
        sio.pending = None;
        sio.chat.take()
    };
    if let Some(socket) = socket {
        conn.engine.chat.disconnect(socket);
    }
}

/// Whether any namespace (`/` or `/chat`) is connected on this Engine.IO
/// connection (the engine's connect timeout asks).
pub fn has_namespace(conn: &Conn) -> bool {
    let sio = conn.sio.lock();
    sio.root.is_some() || sio.chat.is_some()
}
