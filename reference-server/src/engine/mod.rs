//! The Engine.IO v4 server: handshake, HTTP long-polling, websocket, and the
//! upgrade from one to the other, on axum. Incoming packets of one connection
//! are handled in the order they arrived, on the task that read them.
//!
//! This layer knows nothing of what the messages mean: it hands them to the
//! layer above through a [`Handler`] (engineioxide's `EngineIoHandler` is the
//! model), which makes a [`ConnHandler`] for every connection.

mod conn;
pub mod http;
mod polling;
mod websocket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chorus_protocol::engineio::{OpenPacket, Packet};
use parking_lot::Mutex;

pub use conn::{message_frame, CloseReason, Conn, Frame, Full, Handshake};

use crate::config::GatewayConfig;
use crate::metrics::Metrics;

/// The layer above Engine.IO, for the whole gateway.
pub trait Handler: Send + Sync {
    /// A connection opened: its handler in the layer above.
    fn on_connect(&self) -> Box<dyn ConnHandler>;
}

/// The layer above Engine.IO, for one connection. Each call runs on the
/// task that read the packet, in the order the packets arrived.
pub trait ConnHandler: Send + Sync {
    /// A message packet (`4…`) arrived with this text.
    fn on_message(&self, conn: &Arc<Conn>, text: &str);
    /// A binary message arrived.
    fn on_binary(&self, conn: &Arc<Conn>, bytes: Vec<u8>);
    /// The connection closed (called once, before the transport is told).
    fn on_disconnect(&self, conn: &Arc<Conn>);
    /// The server ends the layer above's session on this connection, with
    /// the goodbye that layer sends (shutdown, an expired credential).
    fn on_server_disconnect(&self, conn: &Arc<Conn>);
    /// Whether the layer above has a session on this connection yet (the
    /// connect timeout closes connections that never get one).
    fn is_attached(&self) -> bool;
}

/// The shared state of one gateway.
pub struct Engine {
    /// The configuration it runs with.
    pub config: GatewayConfig,
    /// Its counters.
    pub metrics: Arc<Metrics>,
    /// The layer above.
    handler: Arc<dyn Handler>,
    /// The running transport tasks (HTTP connections, websockets).
    pub tasks: Arc<http::Tasks>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Conn>>>,
    shutting_down: AtomicBool,
    /// Bytes of polling POST bodies being read or handled, over all sessions.
    post_bytes: AtomicUsize,
}

impl Engine {
    /// A gateway with no connections yet, counting into `metrics`, that
    /// hands what arrives to `handler`.
    pub fn new(
        config: GatewayConfig,
        metrics: Arc<Metrics>,
        handler: Arc<dyn Handler>,
    ) -> Arc<Self> {
        Arc::new(Self {
            handler,
            config,
            metrics,
            tasks: Arc::default(),
            sessions: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            post_bytes: AtomicUsize::new(0),
        })
    }

    fn session(&self, sid: &str) -> Option<Arc<Conn>> {
        self.sessions.lock().get(sid).cloned()
    }

    fn forget(&self, sid: &str) {
        if self.sessions.lock().remove(sid).is_some() {
            self.metrics.connection(-1);
        }
    }

    /// Every open connection.
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Whether `max_connections` sessions are open.
    fn is_full(&self) -> bool {
        self.sessions.lock().len() >= self.config.max_connections
    }

    /// Whether the gateway is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Marks the gateway as shutting down: new handshakes are refused.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Opens a session, or `None` (counted) when `max_connections` are open.
    fn open(self: &Arc<Self>, handshake: Handshake) -> Option<Arc<Conn>> {
        let upper = self.handler.on_connect();
        let conn = Conn::new(self.clone(), new_sid(), handshake, upper);
        {
            let mut sessions = self.sessions.lock();
            if sessions.len() >= self.config.max_connections {
                drop(sessions);
                self.metrics.refused_connection();
                return None;
            }
            sessions.insert(conn.sid.clone(), conn.clone());
        }
        self.metrics.connection(1);
        tokio::spawn(conn.clone().heartbeat());
        Some(conn)
    }

    fn open_packet(&self, sid: &str, upgrades: &[&str]) -> String {
        OpenPacket {
            sid: sid.to_owned(),
            upgrades: upgrades.iter().map(|u| u.to_string()).collect(),
            ping_interval: self.config.ping_interval_ms,
            ping_timeout: self.config.ping_timeout_ms,
            max_payload: self.config.max_payload,
        }
        .encode()
    }
}

/// A 20-character id, like socket.io's `base64id`.
pub fn new_sid() -> Arc<str> {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

/// Handles one incoming text packet (a websocket text frame or one polling record).
pub(crate) fn on_text(conn: &Arc<Conn>, text: &str) {
    match Packet::decode(text) {
        Ok(Packet::Message(msg)) => conn.upper.on_message(conn, msg),
        Ok(Packet::Pong(_)) => conn.on_pong(),
        Ok(Packet::Close) => conn.close(CloseReason::ClientClose),
        Ok(Packet::Binary(bytes)) => conn.upper.on_binary(conn, bytes.into_owned()),
        // Upgrade packets only make sense on the probing websocket, handled there.
        Ok(Packet::Ping(_) | Packet::Noop | Packet::Upgrade) => {}
        Ok(Packet::Open(_)) | Err(_) => conn.close(CloseReason::ProtocolError),
    }
}

/// The `/socket.io/` endpoint: every Engine.IO request goes through here.
pub(crate) async fn endpoint(State(engine): State<Arc<Engine>>, req: Request) -> Response {
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if param("EIO") != Some("4") {
        return bad_request(5, "Unsupported protocol version");
    }
    let sid = param("sid").map(str::to_owned);
    let transport = param("transport").map(str::to_owned);
    match (req.method().clone(), transport.as_deref(), sid) {
        (_, Some("polling"), None) if engine.is_shutting_down() => bad_request(4, "Forbidden"),
        (Method::GET, Some("polling"), None) => match engine.open(handshake_of(&req, query)) {
            Some(conn) => text_response(engine.open_packet(&conn.sid, &["websocket"])),
            None => server_full(),
        },
        (method, Some("polling"), Some(sid)) => match engine.session(&sid) {
            None => bad_request(1, "Session ID unknown"),
            Some(conn) if method == Method::GET => polling::poll(conn).await,
            Some(conn) if method == Method::POST => polling::post(conn, req.into_body()).await,
            Some(_) => bad_request(2, "Bad handshake method"),
        },
        (Method::GET, Some("websocket"), sid) => {
            let existing = match sid {
                Some(sid) => match engine.session(&sid) {
                    Some(conn) if !conn.is_upgraded() => Some(conn),
                    _ => return bad_request(3, "Bad request"),
                },
                None if engine.is_shutting_down() => return bad_request(4, "Forbidden"),
                None if engine.is_full() => {
                    engine.metrics.refused_connection();
                    return server_full();
                }
                None => None,
            };
            let handshake = handshake_of(&req, query);
            let (mut parts, _) = req.into_parts();
            let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            websocket::accept(engine, &parts.headers, on_upgrade, existing, handshake)
        }
        (_, Some("polling" | "websocket"), _) => bad_request(2, "Bad handshake method"),
        _ => bad_request(0, "Transport unknown"),
    }
}

/// Keeps what the chat layer reads later: the `token` query entries and the
/// `Authorization` header; the rest of the request is dropped with it.
fn handshake_of(req: &Request, mut query: Vec<(String, String)>) -> Handshake {
    query.retain(|(k, _)| k == "token");
    query.shrink_to_fit();
    Handshake {
        query,
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

fn text_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

/// The refusal of a handshake while `max_connections` sessions are open:
/// HTTP 503 with an Engine.IO JSON error body.
fn server_full() -> Response {
    let body = serde_json::json!({ "code": 4, "message": "Too many connections" }).to_string();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Engine.IO's JSON error body for a refused request.
fn bad_request(code: u8, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_keeps_only_the_token_entries_and_the_authorization_header() {
        let target = format!(
            "/socket.io/?EIO=4&transport=polling&token=a&pad={}&token=b&x=y",
            "q".repeat(10_000)
        );
        let req = Request::builder()
            .uri(target.as_str())
            .header(header::AUTHORIZATION, "Bearer t")
            .header("x-junk", "j".repeat(10_000))
            .body(axum::body::Body::empty())
            .expect("a request");
        let query = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let handshake = handshake_of(&req, query);
        assert_eq!(
            handshake.query,
            [("token".into(), "a".into()), ("token".into(), "b".into())]
        );
        assert_eq!(handshake.authorization.as_deref(), Some("Bearer t"));
        assert!(handshake.query.capacity() <= 2);
    }
}
