//! A real gateway (`chorus_gateway::start`) on 127.0.0.1, driven over real
//! sockets, and the raw HTTP/1.1 exchanges the gateway target needs.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use jsonwebtoken::{EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The secret the fuzzed gateways verify tokens with.
pub const SECRET: &str = "chorus-fuzz-gateway-secret";

/// Bound on every single network step; generous, so a slow machine is no crash.
pub const STEP: Duration = Duration::from_secs(10);

/// Starts a gateway of `profile` on a free loopback port.
pub async fn start(profile: Profile) -> RunningGateway {
    let config = GatewayConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        profile,
        jwt_secret: SECRET.into(),
        // Restarts between inputs need not wait the production drain bound.
        shutdown_drain_ms: 500,
        ..GatewayConfig::default()
    };
    chorus_gateway::start(config)
        .await
        .expect("the gateway starts")
}

/// Signs `claims` (any bytes: they become the payload segment as is) with
/// HS256 and the gateway's secret.
pub fn sign_raw(claims: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let message = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("HMAC signing cannot fail");
    format!("{message}.{sig}")
}

/// A valid token for `sub`, expiring in an hour.
pub fn valid_token(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({ "sub": sub, "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token encodes")
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request on a new connection (`Connection: close`); the status
/// and body, or `None` when the gateway closed or did not answer within `wait`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    wait: Duration,
) -> Option<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.ok()?;
        stream.write_all(body).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let end = crate::find(&response, b"\r\n\r\n")?;
        let status = std::str::from_utf8(response.get(9..12)?)
            .ok()?
            .parse()
            .ok()?;
        let mut body = response.split_off(end + 4);
        if response
            .windows(26)
            .any(|w| w.eq_ignore_ascii_case(b"transfer-encoding: chunked"))
        {
            body = dechunk(&body);
        }
        Some((status, body))
    };
    tokio::time::timeout(wait, exchange).await.ok().flatten()
}

/// The data of a chunked body (what a well-formed server sends; best effort).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = crate::find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        let start = line_end + 2;
        if size == 0 || raw.len() < start + size {
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// Opens a polling session and returns its Engine.IO sid; `None` when the
/// gateway refused or did not answer.
pub async fn polling_handshake(addr: SocketAddr, query: &str) -> Option<String> {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/socket.io/?EIO=4&transport=polling{query}"),
        b"",
        STEP,
    )
    .await?;
    if status != 200 || !body.starts_with(b"0{") {
        return None;
    }
    let open: serde_json::Value = serde_json::from_slice(&body[1..]).ok()?;
    Some(open.get("sid")?.as_str()?.to_owned())
}

/// Panics unless the gateway answers a new client's handshake: the invariant
/// every gateway input must keep.
pub async fn assert_alive(addr: SocketAddr) {
    let sid = polling_handshake(addr, "").await;
    let Some(sid) = sid else {
        panic!("the gateway at {addr} no longer answers a new client's handshake");
    };
    close_polling(addr, &sid).await;
}

/// Ends a polling session with a close packet (best effort).
pub async fn close_polling(addr: SocketAddr, sid: &str) {
    let target = format!(
        "/socket.io/?EIO=4&transport=polling&sid={}",
        encode_query(sid)
    );
    let _ = http(addr, "POST", &target, b"1", STEP).await;
}
