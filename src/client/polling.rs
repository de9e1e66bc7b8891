//! The HTTP long-polling transport: GETs on one connection bring packets in,
//! POSTs on another carry packets out.

use std::sync::Arc;
use std::time::Instant;

use chorus_protocol::engineio::{self, OpenPacket};
use chorus_protocol::Version;

use super::config::{parse_open, Limits};
use super::error::{ClientError, Limit};
use super::http::{status_error, HttpConn};
use super::rx_time::RxTime;
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
    /// How the bodies are framed.
    pub version: Version,
}

/// Sends the handshake GET and parses the open packet it answers with, and
/// returns the records after it: none in v4; socket.io 2.x may add its
/// CONNECT to `/` (v3). The body is bounded by `max_open_packet`.
pub(crate) async fn handshake(
    conn: &mut HttpConn,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    version: Version,
) -> Result<(OpenPacket, Vec<String>), ClientError> {
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
        return Err(status_error(status, &body).named_version(version));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ClientError::Protocol("handshake body is not UTF-8".into()))?;
    if version == Version::V4 && looks_framed(text) {
        return Err(ClientError::Version {
            server: Version::V2,
        });
    }
    let mut records = engineio::payload_records(version, text);
    let first = records.next().unwrap_or(Ok(""))?;
    let engineio::Packet::Open(data) = engineio::Packet::decode_as(version, first)? else {
        return Err(ClientError::Protocol(format!(
            "expected an open packet, got {first:?}"
        )));
    };
    let open = parse_open(data, &limits, version)?;
    let early = records
        .map(|r| r.map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    if version == Version::V4 && !early.is_empty() {
        return Err(ClientError::Protocol(
            "packets after the open packet in the handshake".into(),
        ));
    }
    Ok((open, early))
}

/// Whether a handshake body starts as Engine.IO v3 frames it (`96:0{…`).
fn looks_framed(body: &str) -> bool {
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && body[digits..].starts_with(":0")
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

    /// One long-poll: when the read that completed the body was received,
    /// and the body (records joined by `\x1e`).
    pub async fn poll(&mut self) -> Result<(RxTime, Vec<u8>), ClientError> {
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
        let r = &self.request;
        let body = match r.version {
            Version::V4 => parts.concat(),
            Version::V2 => {
                // One `<length>:<packet>` record, the length in UTF-16 code units.
                let units: usize = parts.iter().map(|p| p.encode_utf16().count()).sum();
                let mut body =
                    String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 8);
                body.push_str(&units.to_string());
                body.push(':');
                parts.iter().for_each(|p| body.push_str(p));
                body
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v3_handshake_body_is_recognised() {
        assert!(looks_framed("96:0{\"sid\":\"x\"}2:40"));
        assert!(!looks_framed("0{\"sid\":\"x\"}"));
        assert!(!looks_framed("12"));
    }
}
