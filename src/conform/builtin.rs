//! The cases whose steps cannot be said in the case files: raw Engine.IO
//! exchanges (open packet text, heartbeat with a missing pong, the polling
//! upgrade sequence, an oversized POST, an EVENT before any CONNECT) and the
//! embedded gateway's graceful shutdown. Each yields the same evidence as the
//! generic runner.

use std::time::Duration;

use chorus_protocol::engineio::{self, split_payload, OpenPacket};
use chorus_protocol::socketio::{self, PacketType};
use chorus_protocol::Version;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::case::{Category, ProfileName};
use super::http::{http_exchange, Peer};
use super::tokens::TokenKind;
use super::{Target, Verdict};
use crate::client::{Client, ClientConfig, CloseReason, Handler, Incoming, Stream};

/// The longest heartbeat (pingInterval + pingTimeout) a case waits for; a
/// target with a longer one gets those cases skipped.
const HEARTBEAT_BUDGET: Duration = Duration::from_secs(10);
/// How long any single raw read waits.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

type WsStream = WebSocketStream<Stream>;

/// A case written in Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinCase {
    /// §1.1 the open packet over websocket.
    OpenWebsocket,
    /// §1.1 the open packet over polling.
    OpenPolling,
    /// §1.2 the server pings and a pong keeps the session.
    ServerPings,
    /// §1.2 a missing pong closes the connection.
    MissingPong,
    /// §1.6 a POST over maxPayload gets HTTP 413.
    OversizedPost,
    /// Engine.IO upgrade: `2probe`, `3probe`, noop on the pending poll, `5`.
    UpgradeSequence,
    /// §1.5 an EVENT before any CONNECT closes the connection.
    EventBeforeConnect,
    /// §7.6 graceful shutdown sends `41/chat,` to every socket.
    ShutdownDisconnects,
    /// Engine.IO v3 (socket.io 2.x): the open packet over polling, framed.
    V3OpenPolling,
    /// Engine.IO v3 (socket.io 2.x): the client pings, the server answers.
    V3ClientPings,
}

impl BuiltinCase {
    /// Every built-in case, in run order.
    pub const ALL: [BuiltinCase; 8] = [
        Self::OpenWebsocket,
        Self::OpenPolling,
        Self::ServerPings,
        Self::MissingPong,
        Self::OversizedPost,
        Self::UpgradeSequence,
        Self::EventBeforeConnect,
        Self::ShutdownDisconnects,
    ];

    /// The cases only a socket.io 2.x target (Engine.IO v3) runs.
    pub const V3: [BuiltinCase; 2] = [Self::V3OpenPolling, Self::V3ClientPings];

    /// The stable dotted name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenWebsocket => "engineio.open.websocket-fields",
            Self::OpenPolling => "engineio.open.polling-fields",
            Self::ServerPings => "engineio.heartbeat.server-pings",
            Self::MissingPong => "engineio.heartbeat.missing-pong-closes",
            Self::OversizedPost => "engineio.limits.polling-post-over-max-payload-413",
            Self::UpgradeSequence => "engineio.upgrade.probe-noop-upgrade",
            Self::EventBeforeConnect => "socketio.malformed.event-before-connect-closes",
            Self::ShutdownDisconnects => "strict.lifecycle.shutdown-disconnects-namespace",
            Self::V3OpenPolling => "engineio3.open.polling-fields",
            Self::V3ClientPings => "engineio3.heartbeat.client-pings",
        }
    }

    /// The profiles it applies to.
    pub fn profiles(self) -> &'static [ProfileName] {
        match self {
            Self::ShutdownDisconnects => &[ProfileName::Strict],
            _ => &[ProfileName::Seed, ProfileName::Strict],
        }
    }

    /// Its category.
    pub fn category(self) -> Category {
        match self {
            Self::EventBeforeConnect => Category::Socketio,
            Self::ShutdownDisconnects => Category::Lifecycle,
            _ => Category::Engineio,
        }
    }

    /// The docs/protocol.md statement it checks.
    pub fn statement(self) -> &'static str {
        match self {
            Self::OpenWebsocket => "§1.1 Open packet: 0{\"sid\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000} over websocket, keys in that order",
            Self::OpenPolling => "§1.1 Open packet over polling: \"upgrades\":[\"websocket\"], keys in that order",
            Self::ServerPings => "§1.2 the server sends 2 every pingInterval",
            Self::MissingPong => "§1.2 the client answers 3 within pingTimeout, or the server closes the connection",
            Self::OversizedPost => "§1.6 over 1,000,000 bytes on polling: the POST gets HTTP 413",
            Self::UpgradeSequence => "Engine.IO v4 upgrade: 2probe → 3probe, the pending poll is released with 6, then 5; the session continues on the websocket",
            Self::EventBeforeConnect => "§1.5 an EVENT before CONNECT closes the whole Engine.IO connection (close without status, 1005)",
            Self::ShutdownDisconnects => "§7.6 on shutdown the server sends 41/chat, to every socket",
            Self::V3OpenPolling => "Engine.IO v3 open packet over polling: <length>:0{\"sid\",\"upgrades\":[\"websocket\"],\"pingInterval\",\"pingTimeout\"}, keys in that order, no maxPayload, the length in UTF-16 code units",
            Self::V3ClientPings => "Engine.IO v3 heartbeat: the client sends 2 and the server answers 3",
        }
    }

    /// Runs the case.
    pub async fn run(self, target: &Target) -> Verdict {
        let result = match self {
            Self::OpenWebsocket => open_websocket(target).await,
            Self::OpenPolling => open_polling(target).await,
            Self::ServerPings => return server_pings(target).await,
            Self::MissingPong => return missing_pong(target).await,
            Self::OversizedPost => oversized_post(target).await,
            Self::UpgradeSequence => upgrade_sequence(target).await,
            Self::EventBeforeConnect => event_before_connect(target).await,
            Self::ShutdownDisconnects => return shutdown_disconnects(target).await,
            Self::V3OpenPolling => v3_open_polling(target).await,
            Self::V3ClientPings => v3_client_pings(target).await,
        };
        match result {
            Ok(()) => Verdict::Pass,
            Err(evidence) => Verdict::Fail(evidence),
        }
    }
}

/// What a raw websocket read brought.
#[derive(Debug, PartialEq)]
enum WsRead {
    Text(String),
    /// A close frame and its code (`None`: no status, seen as 1005).
    Close(Option<u16>),
    /// The stream ended without a close frame.
    Eof,
    /// Nothing within the wait.
    Timeout,
}

impl std::fmt::Display for WsRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => write!(f, "text frame {t:?}"),
            Self::Close(Some(code)) => write!(f, "close frame with code {code}"),
            Self::Close(None) => f.write_str("close frame without status (1005)"),
            Self::Eof => f.write_str("end of stream without close frame"),
            Self::Timeout => f.write_str("nothing"),
        }
    }
}

fn endpoint(transport: &str, sid: Option<&str>, token: Option<&str>) -> String {
    let mut target = format!("/socket.io/?EIO=4&transport={transport}");
    if let Some(sid) = sid {
        target.push_str("&sid=");
        target.push_str(sid);
    }
    if let Some(token) = token {
        target.push_str("&token=");
        target.push_str(token);
    }
    target
}

async fn ws_connect(peer: &Peer, target: &str) -> Result<WsStream, String> {
    let url = format!("{}://{peer}{target}", peer.ws_scheme());
    let connect = async {
        let stream = peer.connect().await?;
        tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(READ_TIMEOUT, connect).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("websocket handshake to {url} failed: {e}")),
        Err(_) => Err(format!("websocket handshake to {url} timed out")),
    }
}

async fn ws_read(ws: &mut WsStream, wait: Duration) -> WsRead {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return WsRead::Timeout,
            Ok(None | Some(Err(_))) => return WsRead::Eof,
            Ok(Some(Ok(Message::Text(t)))) => return WsRead::Text(t.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return WsRead::Close(frame.map(|f| u16::from(f.code)))
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn ws_send(ws: &mut WsStream, text: &str) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("cannot send {text:?}: {e}"))
}

/// Opens a raw websocket session and returns it with the open packet.
async fn ws_open(
    authority: &Peer,
    token: Option<&str>,
) -> Result<(WsStream, String, OpenPacket), String> {
    let mut ws = ws_connect(authority, &endpoint("websocket", None, token)).await?;
    match ws_read(&mut ws, READ_TIMEOUT).await {
        WsRead::Text(text) => {
            let open = parse_open(&text)?;
            Ok((ws, text, open))
        }
        other => Err(format!("expected: the open packet\ngot: {other}")),
    }
}

fn parse_open(text: &str) -> Result<OpenPacket, String> {
    match engineio::Packet::decode(text) {
        Ok(engineio::Packet::Open(data)) => OpenPacket::parse(data)
            .map_err(|e| format!("expected: an open packet\ngot: {text:?} ({e})")),
        _ => Err(format!("expected: an open packet\ngot: {text:?}")),
    }
}

/// The open packet docs/protocol.md §1.1 requires, for the session id received.
fn protocol_open(sid: &str, upgrades: &[&str]) -> String {
    OpenPacket {
        sid: sid.to_owned(),
        upgrades: upgrades.iter().map(|u| (*u).to_owned()).collect(),
        ping_interval: 25_000,
        ping_timeout: 20_000,
        max_payload: 1_000_000,
    }
    .encode()
}

async fn open_websocket(target: &Target) -> Result<(), String> {
    let (_ws, text, open) = ws_open(&target.authority, None).await?;
    let expected = protocol_open(&open.sid, &[]);
    if text == expected && !open.sid.is_empty() {
        Ok(())
    } else {
        Err(format!("expected: {expected}\ngot: {text}"))
    }
}

/// The polling handshake: the open packet's text and the session id.
async fn polling_handshake(
    authority: &Peer,
    token: Option<&str>,
) -> Result<(String, OpenPacket), String> {
    let response = http_exchange(
        authority,
        "GET",
        &endpoint("polling", None, token),
        &[],
        b"",
    )
    .await?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    if response.status != 200 {
        return Err(format!(
            "expected: HTTP 200 with the open packet\ngot: HTTP {} {body:?}",
            response.status
        ));
    }
    let open = parse_open(&body)?;
    Ok((body, open))
}

async fn open_polling(target: &Target) -> Result<(), String> {
    let (text, open) = polling_handshake(&target.authority, None).await?;
    let expected = protocol_open(&open.sid, &["websocket"]);
    if text == expected && !open.sid.is_empty() {
        Ok(())
    } else {
        Err(format!("expected: {expected}\ngot: {text}"))
    }
}

async fn v3_open_polling(target: &Target) -> Result<(), String> {
    let response = http_exchange(
        &target.authority,
        "GET",
        "/socket.io/?EIO=3&transport=polling&b64=1",
        &[],
        b"",
    )
    .await?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    let first = engineio::payload_records(Version::V2, &body).next();
    let Some(Ok(record)) = first.filter(|_| response.status == 200) else {
        return Err(format!(
            "expected: HTTP 200 with a body framed <length>:<packet>\ngot: HTTP {} {body:?}",
            response.status
        ));
    };
    let open = match engineio::Packet::decode(record) {
        Ok(engineio::Packet::Open(data)) => OpenPacket::parse_as(Version::V2, data)
            .map_err(|e| format!("expected: a v3 open packet\ngot: {record:?} ({e})"))?,
        _ => return Err(format!("expected: a v3 open packet\ngot: {record:?}")),
    };
    let expected = format!(
        "0{{\"sid\":{},\"upgrades\":[\"websocket\"],\"pingInterval\":{},\"pingTimeout\":{}}}",
        serde_json::Value::from(open.sid.as_str()),
        open.ping_interval,
        open.ping_timeout
    );
    if record == expected && !open.sid.is_empty() {
        Ok(())
    } else {
        Err(format!("expected: {expected}\ngot: {record}"))
    }
}

async fn v3_client_pings(target: &Target) -> Result<(), String> {
    let mut ws = ws_connect(&target.authority, "/socket.io/?EIO=3&transport=websocket").await?;
    match ws_read(&mut ws, READ_TIMEOUT).await {
        WsRead::Text(text) if text.starts_with('0') => {}
        other => return Err(format!("expected: the open packet\ngot: {other}")),
    }
    ws_send(&mut ws, "2").await?;
    loop {
        match ws_read(&mut ws, READ_TIMEOUT).await {
            WsRead::Text(t) if t == "3" => return Ok(()),
            // socket.io 2.x connects every client to `/` by itself.
            WsRead::Text(t) if t.starts_with('4') => continue,
            other => {
                return Err(format!(
                    "expected: 3 in answer to the client's 2\ngot: {other}"
                ))
            }
        }
    }
}

/// Opens the heartbeat session, or says why the case is skipped.
async fn heartbeat_session(target: &Target) -> Result<(WsStream, OpenPacket), Verdict> {
    let (ws, _, open) = ws_open(&target.heartbeat_authority, None)
        .await
        .map_err(Verdict::Fail)?;
    let window = Duration::from_millis(open.ping_interval + open.ping_timeout);
    if window > HEARTBEAT_BUDGET {
        return Err(Verdict::Skip(format!(
            "pingInterval {} ms + pingTimeout {} ms exceed the {HEARTBEAT_BUDGET:?} case budget",
            open.ping_interval, open.ping_timeout
        )));
    }
    Ok((ws, open))
}

async fn server_pings(target: &Target) -> Verdict {
    let (mut ws, open) = match heartbeat_session(target).await {
        Ok(session) => session,
        Err(verdict) => return verdict,
    };
    let wait = Duration::from_millis(open.ping_interval) + Duration::from_secs(1);
    // Two pings in a row, each answered: the pong keeps the session alive.
    for n in 1..=2 {
        match ws_read(&mut ws, wait).await {
            WsRead::Text(t) if t == "2" => {
                if let Err(e) = ws_send(&mut ws, "3").await {
                    return Verdict::Fail(e);
                }
            }
            other => {
                return Verdict::Fail(format!(
                    "expected: ping {n} (\"2\") within pingInterval {} ms + 1 s\ngot: {other}",
                    open.ping_interval
                ))
            }
        }
    }
    Verdict::Pass
}

async fn missing_pong(target: &Target) -> Verdict {
    let (mut ws, open) = match heartbeat_session(target).await {
        Ok(session) => session,
        Err(verdict) => return verdict,
    };
    let limit =
        Duration::from_millis(open.ping_interval + open.ping_timeout) + Duration::from_secs(1);
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws_read(&mut ws, left).await {
            WsRead::Text(t) => seen.push(t),
            WsRead::Close(_) | WsRead::Eof => return Verdict::Pass,
            WsRead::Timeout => {
                return Verdict::Fail(format!(
                    "expected: the connection closed within pingInterval + pingTimeout + 1 s ({limit:?}) without pongs\ngot: still open; frames received: {seen:?}"
                ))
            }
        }
    }
}

async fn oversized_post(target: &Target) -> Result<(), String> {
    let (_, open) = polling_handshake(&target.authority, None).await?;
    // One message packet one byte over the limit.
    let body = format!(
        "4{}",
        "x".repeat(usize::try_from(open.max_payload).unwrap_or(1_000_000))
    );
    let target_path = endpoint("polling", Some(&open.sid), None);
    let response = http_exchange(
        &target.authority,
        "POST",
        &target_path,
        &[],
        body.as_bytes(),
    )
    .await?;
    if response.status == 413 {
        Ok(())
    } else {
        Err(format!(
            "expected: HTTP 413 for a {}-byte POST (maxPayload {})\ngot: HTTP {}",
            body.len(),
            open.max_payload,
            response.status
        ))
    }
}

async fn upgrade_sequence(target: &Target) -> Result<(), String> {
    let token = target
        .mint
        .mint(TokenKind::Valid, "upgrade")
        .map_err(|e| e.to_string())?;
    let token = token.as_deref();
    let (_, open) = polling_handshake(&target.authority, token).await?;
    if open.upgrades != ["websocket"] {
        return Err(format!(
            "expected: upgrades [\"websocket\"] over polling\ngot: {:?}",
            open.upgrades
        ));
    }
    let poll_path = endpoint("polling", Some(&open.sid), token);
    let pending = http_exchange(&target.authority, "GET", &poll_path, &[], b"");
    let probe = async {
        let mut ws = ws_connect(
            &target.authority,
            &endpoint("websocket", Some(&open.sid), token),
        )
        .await?;
        ws_send(&mut ws, "2probe").await?;
        match ws_read(&mut ws, READ_TIMEOUT).await {
            WsRead::Text(t) if t == "3probe" => Ok(ws),
            other => Err(format!(
                "expected: 3probe in answer to 2probe\ngot: {other}"
            )),
        }
    };
    let (polled, probed) = tokio::join!(pending, probe);
    let mut ws = probed?;
    let polled = polled?;
    let body = String::from_utf8_lossy(&polled.body).into_owned();
    let records: Vec<&str> = split_payload(&body).collect();
    if polled.status != 200 || !records.contains(&"6") {
        return Err(format!(
            "expected: the pending poll released with a noop (6) during the upgrade\ngot: HTTP {} {body:?}",
            polled.status
        ));
    }
    ws_send(&mut ws, "5").await?;
    let connect =
        engineio::Packet::Message(&socketio::encode(PacketType::Connect, "/chat", None, None))
            .encode();
    ws_send(&mut ws, &connect).await?;
    loop {
        match ws_read(&mut ws, READ_TIMEOUT).await {
            WsRead::Text(t) if t == "2" => ws_send(&mut ws, "3").await?,
            WsRead::Text(t) if t.starts_with("40/chat,{\"sid\":") => return Ok(()),
            other => {
                return Err(format!(
                    "expected: 40/chat,{{\"sid\":…}} over the upgraded websocket after 5 and 40/chat,\ngot: {other}"
                ))
            }
        }
    }
}

async fn event_before_connect(target: &Target) -> Result<(), String> {
    let (mut ws, _, _) = ws_open(&target.authority, None).await?;
    let event = engineio::Packet::Message(&socketio::encode_event(
        "/chat",
        None,
        "joinChat",
        &[r#"{"username":"early"}"#],
    ))
    .encode();
    ws_send(&mut ws, &event).await?;
    loop {
        match ws_read(&mut ws, READ_TIMEOUT).await {
            WsRead::Text(t) if t == "2" => continue,
            WsRead::Close(None) | WsRead::Eof => return Ok(()),
            other => {
                return Err(format!(
                    "expected: after {event}, a close without status (1005)\ngot: {other}"
                ))
            }
        }
    }
}

/// Forwards the end of the session to the case.
struct CloseWatch(Option<tokio::sync::oneshot::Sender<CloseReason>>);

impl Handler for CloseWatch {
    fn on_message(&mut self, _: std::time::Instant, _: Incoming<'_>) {}

    fn on_closed(&mut self, _: std::time::Instant, reason: CloseReason) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(reason);
        }
    }
}

async fn shutdown_disconnects(target: &Target) -> Verdict {
    let Some(secret) = target.embedded_secret.as_deref() else {
        return Verdict::Skip(
            "needs a gateway this run starts and stops (run without --target)".into(),
        );
    };
    let config = chorus_gateway::GatewayConfig {
        addr: "127.0.0.1:0".parse().expect("a loopback address"),
        profile: chorus_gateway::Profile::Strict,
        jwt_secret: secret.to_owned(),
        shutdown_drain_ms: 500,
        ..chorus_gateway::GatewayConfig::default()
    };
    let gateway = match chorus_gateway::start(config).await {
        Ok(g) => g,
        Err(e) => return Verdict::Fail(format!("cannot start a gateway to shut down: {e}")),
    };
    let token = match target.mint.mint(TokenKind::Valid, "shutdown") {
        Ok(Some(t)) => t,
        other => return Verdict::Fail(format!("cannot mint a token: {other:?}")),
    };
    let config = ClientConfig::new(format!("http://{}", gateway.addr()))
        .namespace("/chat")
        .auth(serde_json::json!({ "token": token }).to_string());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let client = match Client::connect(&config, CloseWatch(Some(tx))).await {
        Ok((client, _)) => client,
        Err(e) => return Verdict::Fail(format!("connect: {e}")),
    };
    gateway.shutdown().await;
    let reason = tokio::time::timeout(READ_TIMEOUT, rx).await;
    drop(client);
    match reason {
        Ok(Ok(CloseReason::NamespaceDisconnect)) => Verdict::Pass,
        Ok(Ok(other)) => Verdict::Fail(format!(
            "expected: 41/chat, (namespace disconnect) on shutdown\ngot: {other}"
        )),
        _ => Verdict::Fail(
            "expected: 41/chat, (namespace disconnect) on shutdown\ngot: the session did not end"
                .into(),
        ),
    }
}
