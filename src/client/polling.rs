//! The HTTP long-polling transport: GETs on one connection bring packets in,
//! POSTs on another carry packets out.

use std::sync::Arc;
use std::time::Instant;

use chorus_protocol::engineio::{self, OpenPacket};

use super::config::{parse_open, Limits};
use super::error::{ClientError, Limit};
use super::http::{status_error, HttpConn};
use super::websocket::io_timeout;

/// What every request of one polling session carries.
#[derive(Debug)]
pub(crate) struct PollRequest {
    /// The `Host` header.
    pub host: String,
    /// The request target, with the session id.
    pub target: String,
    /// The configured extra headers.
    pub headers: Vec<(String, String)>,
}

/// Sends the handshake GET and parses the open packet it answers with. The
/// body may hold only the open packet: it is bounded by `max_open_packet`.
pub(crate) async fn handshake(
    conn: &mut HttpConn,
    host: &str,
    target: &str,
    headers: &[(String, String)],
) -> Result<OpenPacket, ClientError> {
    let limits = *conn.limits();
    conn.set_limits(Limits {
        max_http_body: limits.max_open_packet.min(limits.max_http_body),
        ..limits
    });
    let answer = conn.request("GET", target, host, headers, &[]).await;
    conn.set_limits(limits);
    let (_, status, body) =
        answer.map_err(|e| e.into_open_packet_breach(&[Limit::HttpBodySize]))?;
    if status != 200 {
        return Err(status_error(status, &body));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ClientError::Protocol("handshake body is not UTF-8".into()))?;
    let mut records = engineio::split_payload(text);
    let first = records.next().unwrap_or_default();
    let engineio::Packet::Open(data) = engineio::Packet::decode(first)? else {
        return Err(ClientError::Protocol(format!(
            "expected an open packet, got {first:?}"
        )));
    };
    if records.next().is_some() {
        return Err(ClientError::Protocol(
            "packets after the open packet in the handshake".into(),
        ));
    }
    parse_open(data, &limits)
}

/// The GET side: long-polls for the server's packets.
#[derive(Debug)]
pub(crate) struct PollReader {
    conn: HttpConn,
    request: Arc<PollRequest>,
}

impl PollReader {
    /// Wraps the connection that did the handshake.
    pub fn new(conn: HttpConn, request: Arc<PollRequest>) -> Self {
        Self { conn, request }
    }

    /// One long-poll: the instant the body was read, and the body (records joined by `\x1e`).
    pub async fn poll(&mut self) -> Result<(Instant, Vec<u8>), ClientError> {
        let r = &self.request;
        let (at, status, body) = self
            .conn
            .request("GET", &r.target, &r.host, &r.headers, &[])
            .await?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        Ok((at, body))
    }
}

/// The POST side: one request at a time, as Engine.IO requires.
#[derive(Debug)]
pub(crate) struct PollWriter {
    conn: HttpConn,
    request: Arc<PollRequest>,
}

impl PollWriter {
    /// Uses `conn` (a connection of its own) for POSTs.
    pub fn new(conn: HttpConn, request: Arc<PollRequest>) -> Self {
        Self { conn, request }
    }

    /// POSTs one text packet made of `parts`. Returns the instant the request
    /// was handed to the socket, once the server has answered it.
    pub async fn send_text(&mut self, parts: &[&str]) -> Result<Instant, ClientError> {
        let body = parts.concat();
        let r = &self.request;
        let after = self.conn.limits().io_timeout;
        let conn = &mut self.conn;
        let exchange = async {
            conn.send_request("POST", &r.target, &r.host, &r.headers, body.as_bytes())
                .await?;
            let at = Instant::now();
            let head = conn.read_head().await?;
            let body = conn.read_body(&head).await?;
            Ok::<_, ClientError>((at, head, body))
        };
        let (at, head, body) = tokio::time::timeout(after, exchange)
            .await
            .map_err(|_| io_timeout(after))??;
        if head.status != 200 {
            return Err(status_error(head.status, &body));
        }
        Ok(at)
    }
}
