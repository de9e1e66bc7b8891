//! HTTP long-polling: `GET` waits for queued packets, `POST` delivers the
//! client's packets, both bodies joined by `\x1e`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_protocol::engineio::{split_payload, RECORD_SEPARATOR};
use futures_util::StreamExt as _;

use super::{bad_request, on_text, text_response, CloseReason, Conn, Engine};

/// Most bytes one poll response carries before the rest waits for the next poll.
const MAX_POLL_BODY: usize = 1 << 20;

/// A `GET`: waits until something is queued (or the connection closes) and
/// returns every queued packet that fits in one body.
pub(super) async fn poll(conn: Arc<Conn>) -> Response {
    if conn.upgraded.load(Ordering::Acquire) {
        return bad_request(3, "Bad request");
    }
    // Two polls at once break the protocol; socket.io closes the session.
    let Ok(_rx) = conn.rx.try_lock() else {
        conn.engine.metrics.refused_request("overlapping_get");
        conn.close(CloseReason::ProtocolError);
        return bad_request(3, "Bad request");
    };
    // Frames queued before a close still go out (engine.io flushes them too).
    let first = tokio::select! {
        biased;
        frame = conn.recv() => Some(frame),
        _ = conn.closed() => None,
    };
    // A receiver that could not keep up, or a broken (crashed) gateway, sends nothing more.
    let first = first.filter(|_| conn.close_reason().is_none_or(CloseReason::flushes_queue));
    let Some(first) = first else {
        return text_response("1".to_owned());
    };
    conn.dequeued(&first);
    let mut body = String::from(&*first);
    while body.len() < MAX_POLL_BODY {
        match conn.try_recv() {
            Some(frame) => {
                conn.dequeued(&frame);
                body.push(RECORD_SEPARATOR);
                body.push_str(&frame);
            }
            None => break,
        }
    }
    conn.settle_queue();
    text_response(body)
}

/// A `POST`: hands each packet of the body to the connection, in order.
///
/// As in engine.io: a second POST while one is being read closes the session
/// (HTTP 400); a body over `max_payload` gets HTTP 413 and the session stays
/// open; a body that does not arrive within the body timeout gets HTTP 408 and
/// the session closes (Node drops such a request's socket).
pub(super) async fn post(conn: Arc<Conn>, body: Body) -> Response {
    let Ok(_order) = conn.post_lock.try_lock() else {
        conn.engine.metrics.refused_request("overlapping_post");
        conn.close(CloseReason::ProtocolError);
        return bad_request(3, "Bad request");
    };
    let limit = usize::try_from(conn.engine.config.max_payload).unwrap_or(usize::MAX);
    let timeout = Duration::from_millis(conn.engine.config.body_timeout_ms);
    // Held until the body is dropped, at the end of this request.
    let mut budget = PostBudget::new(&conn.engine);
    let bytes = match tokio::time::timeout(timeout, read_body(body, limit, &mut budget)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::Busy)) => {
            conn.engine.metrics.refused_request("post_buffer_full");
            return closing(StatusCode::SERVICE_UNAVAILABLE);
        }
        Ok(Err(BodyError::TooLarge)) => {
            conn.engine.metrics.oversized("polling");
            return closing(StatusCode::PAYLOAD_TOO_LARGE);
        }
        Ok(Err(BodyError::Transport)) => {
            conn.close(CloseReason::TransportError);
            return closing(StatusCode::BAD_REQUEST);
        }
        Err(_) => {
            conn.engine.metrics.timeout("body");
            conn.close(CloseReason::TransportError);
            return closing(StatusCode::REQUEST_TIMEOUT);
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        conn.close(CloseReason::ProtocolError);
        return bad_request(3, "Bad request");
    };
    for record in split_payload(text) {
        if conn.close_reason().is_some() {
            break;
        }
        on_text(&conn, record);
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}

/// An empty response with `status` that also closes the HTTP connection, so
/// the rest of an unread body is never waited for.
fn closing(status: StatusCode) -> Response {
    (status, [(header::CONNECTION, "close")]).into_response()
}

/// Why a POST body could not be read.
enum BodyError {
    /// It is longer than the limit (announced or seen).
    TooLarge,
    /// The connection failed while reading it.
    Transport,
    /// The POST bodies being read over all sessions hold `post_buffer_bytes`.
    Busy,
}

/// The share of `post_buffer_bytes` one POST body holds while it is read and
/// handled; given back on drop.
struct PostBudget<'a> {
    engine: &'a Engine,
    held: usize,
}

impl<'a> PostBudget<'a> {
    fn new(engine: &'a Engine) -> Self {
        Self { engine, held: 0 }
    }

    /// Takes `n` more bytes of the gateway-wide budget, or refuses.
    fn grow(&mut self, n: usize) -> Result<(), BodyError> {
        let cap = self.engine.config.post_buffer_bytes;
        let before = self.engine.post_bytes.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > cap {
            self.engine.post_bytes.fetch_sub(n, Ordering::AcqRel);
            return Err(BodyError::Busy);
        }
        self.held += n;
        Ok(())
    }
}

impl Drop for PostBudget<'_> {
    fn drop(&mut self) {
        self.engine
            .post_bytes
            .fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Reads a body of at most `limit` bytes, refusing at once a longer one
/// announced by its `Content-Length`, each chunk taken from `budget`.
async fn read_body(
    body: Body,
    limit: usize,
    budget: &mut PostBudget<'_>,
) -> Result<Vec<u8>, BodyError> {
    let announced = body.size_hint().lower();
    if usize::try_from(announced).map_or(true, |n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut stream = body.into_data_stream();
    // Grown as bytes arrive: an announced length alone reserves nothing.
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Transport)?;
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        budget.grow(chunk.len())?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
