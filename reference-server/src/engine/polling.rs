//! HTTP long-polling: `GET` waits for queued packets, `POST` delivers the
//! client's packets, both bodies joined by `\x1e`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_protocol::engineio::{split_payload, RECORD_SEPARATOR};

use super::{bad_request, on_text, text_response, CloseReason, Conn};

/// Most bytes one poll response carries before the rest waits for the next poll.
const MAX_POLL_BODY: usize = 1 << 20;

/// A `GET`: waits until something is queued (or the connection closes) and
/// returns every queued packet that fits in one body.
pub(super) async fn poll(conn: Arc<Conn>) -> Response {
    if conn.upgraded.load(Ordering::Acquire) {
        return bad_request(3, "Bad request");
    }
    // Two polls at once break the protocol; socket.io closes the session.
    let Ok(mut rx) = conn.rx.try_lock() else {
        conn.close(CloseReason::ProtocolError);
        return bad_request(3, "Bad request");
    };
    let first = tokio::select! {
        frame = rx.recv() => frame,
        _ = conn.closed() => None,
    };
    let Some(first) = first else {
        // A crashing gateway sends no close packet: the poll just fails.
        #[cfg(feature = "faults")]
        if conn.engine.chat.faults.crashed() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        return text_response("1".to_owned());
    };
    let mut body = String::from(&*first);
    while body.len() < MAX_POLL_BODY {
        match rx.try_recv() {
            Ok(frame) => {
                body.push(RECORD_SEPARATOR);
                body.push_str(&frame);
            }
            Err(_) => break,
        }
    }
    text_response(body)
}

/// A `POST`: hands each packet of the body to the connection, in order.
pub(super) async fn post(conn: Arc<Conn>, body: Body) -> Response {
    let limit = usize::try_from(conn.engine.config.max_payload).unwrap_or(usize::MAX);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            conn.close(CloseReason::TooLarge);
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        conn.close(CloseReason::ProtocolError);
        return bad_request(3, "Bad request");
    };
    let _order = conn.post_lock.lock().await;
    #[cfg(feature = "faults")]
    conn.engine.chat.faults.stall_gate().await;
    for record in split_payload(text) {
        if conn.close_reason().is_some() {
            break;
        }
        on_text(&conn, record);
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}
