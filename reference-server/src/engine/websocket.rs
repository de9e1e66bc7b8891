//! The websocket transport: a fresh websocket connection, or the upgrade of a
//! polling connection (`2probe` → `3probe`, then `5`).
//!
//! The task that reads frames handles each packet before reading the next, so
//! a sender's events are processed in order; a separate writer task drains the
//! connection's queue, batching whatever is ready into one flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::{on_text, CloseReason, Conn, Engine, Frame, Handshake};

/// Frames written before one flush, at most.
const WRITE_BATCH: usize = 64;
/// Read buffer per websocket: small, so idle connections stay cheap.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes buffered before a write reaches the socket (a flush writes sooner).
const WRITE_BUFFER: usize = 16 * 1024;
/// How long a closed connection's last frames may take to write.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Completes the HTTP upgrade and runs the connection on it.
pub(super) fn accept(
    engine: Arc<Engine>,
    upgrade: WebSocketUpgrade,
    existing: Option<Arc<Conn>>,
    handshake: Handshake,
) -> Response {
    let max = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            // Shutdown waits for this task: the socket's last frames get written.
            let _task = engine.tasks.enter();
            match existing {
                Some(conn) => upgrade_polling(conn, socket).await,
                None => {
                    // Refused when the limit was reached since the request was checked.
                    let Some(conn) = engine.open(handshake) else {
                        return;
                    };
                    let open = engine.open_packet(&conn.sid, &[]);
                    let (mut sink, stream) = socket.split();
                    if sink.send(Message::Text(open.into())).await.is_err() {
                        conn.close(CloseReason::TransportError);
                        return;
                    }
                    run(conn, sink, stream).await;
                }
            }
        })
}

/// The probe phase of an upgrade: answer `2probe`, release the pending poll
/// with a noop, and switch over when the client sends `5`.
async fn upgrade_polling(conn: Arc<Conn>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = conn.closed() => return,
        };
        let Some(Ok(Message::Text(text))) = msg else {
            // The probe failed; the polling transport carries on.
            return;
        };
        match text.as_str() {
            "2probe" => {
                if sink.send(Message::Text("3probe".into())).await.is_err() {
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
                run(conn, sink, stream).await;
                return;
            }
            _ => {
                conn.close(CloseReason::ProtocolError);
                return;
            }
        }
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Reads and handles frames until the connection closes, with the writer alongside.
async fn run(conn: Arc<Conn>, sink: Sink, mut stream: SplitStream<WebSocket>) {
    let writer = tokio::spawn(write_loop(conn.clone(), sink));
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = conn.closed() => break,
        };
        match msg {
            Some(Ok(Message::Text(text))) => on_text(&conn, text.as_str()),
            Some(Ok(Message::Binary(bytes))) => conn.upper.on_binary(&conn, bytes.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => conn.close(CloseReason::ClientClose),
            Some(Err(err)) => {
                if is_too_large(err) {
                    conn.engine.metrics.oversized("websocket");
                    conn.close(CloseReason::TooLarge);
                } else {
                    conn.close(CloseReason::TransportError);
                }
            }
        }
        if conn.close_reason().is_some() {
            break;
        }
    }
    let _ = writer.await;
}

/// Whether a read error means the peer sent a message over the size limit.
fn is_too_large(err: axum::Error) -> bool {
    matches!(
        err.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Drains the connection's queue into the socket until it closes, then
/// writes what was still queued and the close frame: 1009 for an oversized
/// message, no status otherwise (as engine.io does, which also flushes its
/// write buffer before closing). A write blocked on a peer that does not read
/// gets [`CLOSE_WAIT`] after the close, and so does the final flush, so a
/// stuck socket never keeps this task (and its socket) alive.
async fn write_loop(conn: Arc<Conn>, mut sink: Sink) {
    let mut rx = conn.rx.lock().await;
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            _ = conn.closed() => break,
        };
        let Some(frame) = frame else { break };
        let mut batch = vec![frame];
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            written = write_batch(&conn, &mut sink, batch) => written,
            () = give_up(&conn) => false,
        };
        if !written {
            conn.close(CloseReason::TransportError);
            return;
        }
    }
    let reason = conn.close_reason();
    let close = match reason {
        Some(CloseReason::TooLarge) => Some(CloseFrame {
            code: 1009,
            reason: "".into(),
        }),
        _ => None,
    };
    let goodbye = async {
        // A slow consumer's queue is what it could not take: it is dropped.
        if reason.is_some_and(CloseReason::flushes_queue) {
            let mut rest = Vec::new();
            while let Ok(frame) = rx.try_recv() {
                rest.push(frame);
            }
            if !rest.is_empty() && !write_batch(&conn, &mut sink, rest).await {
                return;
            }
        }
        let _ = sink.send(Message::Close(close)).await;
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, goodbye).await;
}

/// Writes `frames` with one flush; whether the socket took them.
async fn write_batch(conn: &Conn, sink: &mut Sink, frames: Vec<Frame>) -> bool {
    for frame in frames {
        conn.dequeued(&frame);
        if sink.feed(Message::Text((&*frame).into())).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}

/// Resolves [`CLOSE_WAIT`] after the connection closes.
async fn give_up(conn: &Conn) {
    conn.closed().await;
    tokio::time::sleep(CLOSE_WAIT).await;
}
