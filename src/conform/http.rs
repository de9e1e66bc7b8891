//! One-shot HTTP/1.1 requests for the raw polling cases (unknown sid, oversized
//! POST): unlike the client engine's keep-alive connection, the request is
//! written while the answer is read, so a server that refuses a large body
//! before reading it all is still heard.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{Stream, Tls};

/// The bound on one exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where raw requests go: `host:port`, over TLS when the target is secure.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `host:port`.
    pub authority: String,
    /// The TLS setup, for an `https://`/`wss://` target.
    pub tls: Option<Tls>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority)
    }
}

impl Peer {
    /// A TCP connection to the peer, with the TLS handshake done when it is secure.
    pub(crate) async fn connect(&self) -> Result<Stream, String> {
        let authority = &self.authority;
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::plain(tcp)),
            Some(tls) => {
                let host = match authority.rsplit_once(':') {
                    Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
                    None => authority.as_str(),
                };
                tls.connect(host, tcp)
                    .await
                    .map_err(|e| format!("{authority}: {e}"))
            }
        }
    }

    /// `ws://` or `wss://`.
    pub(crate) fn ws_scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }
}

/// A response read to the end of the connection.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body (chunked encoding removed).
    pub body: Vec<u8>,
}

/// Sends one request with `Connection: close` to `authority` (`host:port`) and
/// reads the answer.
pub(crate) async fn http_exchange(
    peer: &Peer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        exchange(peer, method, target, headers, body),
    )
    .await
    .map_err(|_| format!("no answer within {EXCHANGE_TIMEOUT:?}"))?
}

async fn exchange(
    peer: &Peer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let authority = &peer.authority;
    let stream = peer.connect().await?;
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: text/plain;charset=UTF-8\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let (mut reader, mut writer) = tokio::io::split(stream);
    // The server may stop reading an oversized body and close; its answer still counts.
    let write = async {
        if writer.write_all(&bytes).await.is_ok() {
            let _ = writer.flush().await;
        }
    };
    let read = async {
        let mut raw = Vec::new();
        let _ = reader.read_to_end(&mut raw).await;
        raw
    };
    let ((), raw) = tokio::join!(write, read);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if raw.is_empty() => {
            return Err("the connection closed without an answer".into())
        }
        Ok(httparse::Status::Partial) => return Err("incomplete HTTP answer".into()),
        Err(e) => return Err(format!("bad HTTP answer: {e}")),
    };
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let status = response.code.unwrap_or_default();
    let rest = &raw[len..];
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

/// Removes chunked transfer encoding; stops at the last complete chunk.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(rest) {
        let size = size as usize;
        if size == 0 || rest.len() < start + size {
            break;
        }
        body.extend_from_slice(&rest[start..start + size]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain =
            parse_response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (400, &b"no"[..]));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"abcde");
        assert!(parse_response(b"").is_err());
    }
}
