//! Raw Engine.IO clients for packet-level tests: one over websocket frames
//! (tokio-tungstenite) and one over HTTP/1.1 long-polling on a plain
//! `TcpStream`, behind the same API. Packets are built and parsed with the
//! `chorus_protocol` codec.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_protocol::engineio::{self, join_payload, split_payload, OpenPacket};
use chorus_protocol::socketio::{self, Event, PacketType};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use chorus_test_support::http::{http, try_http, HttpResponse};
use chorus_test_support::{within, WAIT};

use super::QUIET;

/// The websocket stream of a raw client.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which Engine.IO transport a raw client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Websocket from the first request (`transport=websocket`).
    Websocket,
    /// HTTP long-polling only.
    Polling,
}

/// One thing a raw client read from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An Engine.IO text packet (a websocket text frame or one polling record).
    Packet(String),
    /// A websocket close frame; `None` is a close without status (seen as 1005).
    CloseFrame(Option<CloseFrame>),
    /// The connection ended: websocket EOF without a close frame, or for
    /// polling a close packet or a refused poll (the reason says which).
    Ended(String),
}

/// A Socket.IO packet received in an Engine.IO message packet.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The whole Engine.IO frame as it travelled, e.g. `42/chat,["joined",{…}]`.
    pub frame: String,
    /// The Socket.IO packet type.
    pub kind: PacketType,
    /// The namespace.
    pub nsp: String,
    /// The ack id, if any.
    pub id: Option<u64>,
    /// The raw JSON data, if any.
    pub data: Option<String>,
}

impl Msg {
    fn parse(frame: String) -> Self {
        let packet = socketio::Packet::decode(&frame[1..])
            .unwrap_or_else(|e| panic!("the server sent an invalid packet {frame:?}: {e}"));
        let (kind, nsp, id) = (packet.kind, packet.nsp.to_owned(), packet.id);
        let data = packet.data.map(str::to_owned);
        Msg {
            frame,
            kind,
            nsp,
            id,
            data,
        }
    }

    /// The event name, for an EVENT packet.
    pub fn name(&self) -> Option<String> {
        (self.kind == PacketType::Event).then(|| {
            Event::parse(self.data.as_deref().expect("an event has data"))
                .expect("a valid event")
                .name
                .into_owned()
        })
    }

    /// The arguments of an EVENT (after the name) or an ACK, as JSON values.
    pub fn args(&self) -> Vec<Value> {
        let data = self.data.as_deref().expect("the packet has data");
        let raw = match self.kind {
            PacketType::Event => Event::parse(data).expect("a valid event").args,
            PacketType::Ack => socketio::parse_args(data).expect("valid ack arguments"),
            other => panic!("{other:?} has no arguments: {}", self.frame),
        };
        raw.into_iter()
            .map(|r| serde_json::from_str(r.get()).expect("valid JSON"))
            .collect()
    }

    /// The first argument of an EVENT or ACK.
    pub fn arg(&self) -> Value {
        self.args()
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no argument in {}", self.frame))
    }
}

/// The Engine.IO text frame of an EVENT in `nsp`, args already JSON.
pub fn event_frame(nsp: &str, id: Option<u64>, name: &str, args: &[&str]) -> String {
    engineio::Packet::Message(&socketio::encode_event(nsp, id, name, args)).encode()
}

/// The Engine.IO text frame of a CONNECT to `nsp`, with optional auth JSON.
pub fn connect_frame(nsp: &str, auth: Option<&str>) -> String {
    engineio::Packet::Message(&socketio::encode(PacketType::Connect, nsp, None, auth)).encode()
}

/// The URL path and query of the Engine.IO endpoint for `transport`.
pub fn endpoint(transport: Transport, query: &str, sid: Option<&str>) -> String {
    let name = match transport {
        Transport::Websocket => "websocket",
        Transport::Polling => "polling",
    };
    let mut target = format!("/socket.io/?EIO=4&transport={name}");
    if let Some(sid) = sid {
        target.push_str("&sid=");
        target.push_str(sid);
    }
    if !query.is_empty() {
        target.push('&');
        target.push_str(query);
    }
    target
}

/// The long-polling half of a raw client: a background task keeps one GET
/// pending (as a real client does), answers pings if asked, and forwards
/// every record.
struct Polling {
    addr: SocketAddr,
    sid: String,
    rx: mpsc::UnboundedReceiver<Incoming>,
    poller: JoinHandle<()>,
}

impl Drop for Polling {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Polling {
    fn spawn(addr: SocketAddr, sid: String, auto_pong: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let target = endpoint(Transport::Polling, "", Some(&sid));
        let poller = tokio::spawn(async move {
            loop {
                let response = match try_http(addr, "GET", &target, &[], b"").await {
                    Ok(response) => response,
                    Err(err) => {
                        let _ = tx.send(Incoming::Ended(format!("poll could not connect: {err}")));
                        return;
                    }
                };
                if response.status != 200 {
                    let _ = tx.send(Incoming::Ended(format!(
                        "poll got HTTP {}",
                        response.status
                    )));
                    return;
                }
                let body = response.text();
                for record in split_payload(&body) {
                    if record == "2" && auto_pong {
                        post(addr, &target, "3").await;
                    }
                    let closing = record == "1";
                    let _ = tx.send(Incoming::Packet(record.to_owned()));
                    if closing {
                        let _ = tx.send(Incoming::Ended("close packet".into()));
                        return;
                    }
                }
            }
        });
        Polling {
            addr,
            sid,
            rx,
            poller,
        }
    }
}

async fn post(addr: SocketAddr, target: &str, body: &str) -> HttpResponse {
    http(addr, "POST", target, &[], body.as_bytes()).await
}

enum Inner {
    Ws(Box<WsStream>),
    Polling(Polling),
}

/// What the polling → websocket upgrade looked like from the client.
#[derive(Debug)]
pub struct UpgradeTrace {
    /// The server's answer to `2probe` on the new websocket.
    pub probe_reply: String,
    /// The packets the pending poll returned during the upgrade.
    pub poll_packets: Vec<String>,
}

/// A raw Engine.IO client over websocket or long-polling.
pub struct RawClient {
    /// The decoded open packet.
    pub open: OpenPacket,
    /// The open packet exactly as received, e.g. `0{"sid":…}`.
    pub open_text: String,
    inner: Inner,
    auto_pong: bool,
}

impl RawClient {
    /// A websocket client with no query and no extra header.
    pub async fn ws(addr: SocketAddr) -> Self {
        Self::connect(addr, Transport::Websocket, "", &[]).await
    }

    /// A polling client with no query and no extra header.
    pub async fn polling(addr: SocketAddr) -> Self {
        Self::connect(addr, Transport::Polling, "", &[]).await
    }

    /// Opens an Engine.IO session; `query` is appended to the handshake URL
    /// (e.g. `token=…`), `headers` are sent with the handshake request.
    pub async fn connect(
        addr: SocketAddr,
        transport: Transport,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        Self::connect_with(addr, transport, query, headers, true).await
    }

    /// Like [`RawClient::connect`], choosing whether pings are answered.
    pub async fn connect_with(
        addr: SocketAddr,
        transport: Transport,
        query: &str,
        headers: &[(&str, &str)],
        auto_pong: bool,
    ) -> Self {
        let target = endpoint(transport, query, None);
        let (open_text, inner) = match transport {
            Transport::Websocket => {
                let mut ws = ws_connect(addr, &target, headers).await;
                let first = within(ws.next())
                    .await
                    .expect("an open packet")
                    .expect("a websocket frame");
                let Message::Text(text) = first else {
                    panic!("expected the open packet, got {first:?}");
                };
                (text.to_string(), Inner::Ws(Box::new(ws)))
            }
            Transport::Polling => {
                let response = within(http(addr, "GET", &target, headers, b"")).await;
                assert_eq!(response.status, 200, "handshake: {}", response.text());
                let text = response.text();
                let open = open_packet(&text);
                (
                    text,
                    Inner::Polling(Polling::spawn(addr, open.sid, auto_pong)),
                )
            }
        };
        RawClient {
            open: open_packet(&open_text),
            open_text,
            inner,
            auto_pong,
        }
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.open.sid
    }

    /// Sends one raw Engine.IO text packet.
    pub async fn send(&mut self, packet: &str) {
        self.send_all(&[packet]).await;
    }

    /// Like [`RawClient::send`] over websocket, but gives up after `limit` or
    /// on an error (a server that stopped reading, or closed): whether it was
    /// sent. Over polling it is [`RawClient::send`].
    pub async fn try_send(&mut self, packet: &str, limit: Duration) -> bool {
        match &mut self.inner {
            Inner::Ws(ws) => matches!(
                tokio::time::timeout(limit, ws.send(Message::text(packet))).await,
                Ok(Ok(()))
            ),
            Inner::Polling(_) => {
                self.send(packet).await;
                true
            }
        }
    }

    /// Sends packets; over polling they share one POST body.
    pub async fn send_all(&mut self, packets: &[&str]) {
        match &mut self.inner {
            Inner::Ws(ws) => {
                for packet in packets {
                    within(ws.send(Message::text(*packet)))
                        .await
                        .expect("send a websocket frame");
                }
            }
            Inner::Polling(p) => {
                let target = endpoint(Transport::Polling, "", Some(&p.sid));
                let response = within(post(p.addr, &target, &join_payload(packets))).await;
                assert_eq!(response.status, 200, "POST refused: {}", response.text());
            }
        }
    }

    /// Emits `name` with `args` (already JSON) in `/chat`.
    pub async fn emit(&mut self, name: &str, args: &[&str]) {
        self.send(&event_frame("/chat", None, name, args)).await;
    }

    /// Emits `name` with `args` in `/chat`, asking for ack `id`.
    pub async fn emit_ack(&mut self, id: u64, name: &str, args: &[&str]) {
        self.send(&event_frame("/chat", Some(id), name, args)).await;
    }

    /// Reads the next thing from the server, or `None` after `limit`.
    /// Pings are answered when auto-pong is on (and still returned).
    pub async fn recv(&mut self, limit: Duration) -> Option<Incoming> {
        let incoming = match &mut self.inner {
            Inner::Ws(ws) => {
                let deadline = tokio::time::Instant::now() + limit;
                loop {
                    let next = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
                    break match next {
                        Some(Ok(Message::Text(t))) => Incoming::Packet(t.to_string()),
                        Some(Ok(Message::Close(frame))) => Incoming::CloseFrame(frame),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(other)) => panic!("unexpected websocket frame {other:?}"),
                        Some(Err(e)) => Incoming::Ended(format!("websocket error: {e}")),
                        None => Incoming::Ended("websocket EOF".into()),
                    };
                }
            }
            Inner::Polling(p) => tokio::time::timeout(limit, p.rx.recv())
                .await
                .ok()?
                .unwrap_or_else(|| Incoming::Ended("poller stopped".into())),
        };
        if incoming == Incoming::Packet("2".into()) && self.auto_pong {
            if let Inner::Ws(_) = self.inner {
                self.send("3").await;
            }
        }
        Some(incoming)
    }

    /// The next Socket.IO packet, skipping pings and noops; fails on closure or timeout.
    pub async fn next_msg(&mut self) -> Msg {
        self.try_next_msg(WAIT)
            .await
            .unwrap_or_else(|| panic!("no Socket.IO packet within {WAIT:?}"))
    }

    /// The next Socket.IO packet within `limit`, or `None`; fails on closure.
    pub async fn try_next_msg(&mut self, limit: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Incoming::Packet(p) if p.starts_with('4') => return Some(Msg::parse(p)),
                Incoming::Packet(p) if p == "2" || p == "6" => continue,
                other => panic!("expected a Socket.IO packet, got {other:?}"),
            }
        }
    }

    /// The next Socket.IO packet's frame text (e.g. `42/chat,[…]`).
    pub async fn next_frame(&mut self) -> String {
        self.next_msg().await.frame
    }

    /// Skips packets until an EVENT named `name` arrives, and returns it.
    pub async fn wait_event(&mut self, name: &str) -> Msg {
        within(async {
            loop {
                let msg = self.next_msg().await;
                if msg.name().as_deref() == Some(name) {
                    return msg;
                }
            }
        })
        .await
    }

    /// Skips packets until one whose frame is exactly `frame`, and returns it.
    pub async fn wait_for_frame(&mut self, frame: &str) -> String {
        within(async {
            loop {
                let msg = self.next_msg().await;
                if msg.frame == frame {
                    return msg.frame;
                }
            }
        })
        .await
    }

    /// Asserts that no Socket.IO packet arrives for [`QUIET`].
    pub async fn expect_quiet(&mut self) {
        if let Some(msg) = self.try_next_msg(QUIET).await {
            panic!("expected nothing, got {}", msg.frame);
        }
    }

    /// Reads until the connection is closed, skipping any packet, and returns
    /// how it ended (a close frame or [`Incoming::Ended`]).
    pub async fn expect_closed(&mut self) -> Incoming {
        self.expect_closed_within(WAIT).await
    }

    /// Like [`RawClient::expect_closed`] with a custom bound.
    pub async fn expect_closed_within(&mut self, limit: Duration) -> Incoming {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                None => panic!("the connection is still open after {limit:?}"),
                Some(Incoming::Packet(_)) => continue,
                Some(end) => return end,
            }
        }
    }

    /// Sends a CONNECT to `nsp` and returns the server's answer.
    pub async fn join_ns(&mut self, nsp: &str, auth: Option<&str>) -> Msg {
        self.send(&connect_frame(nsp, auth)).await;
        self.next_msg().await
    }

    /// Connects to `/chat` (seed handshake), checks `40/chat,{"sid":…}` then
    /// `onlineUsers`, and returns the namespace sid and the online list.
    pub async fn connect_chat(&mut self) -> (String, Value) {
        self.connect_chat_auth(None).await
    }

    /// Like [`RawClient::connect_chat`], with an `auth` payload.
    pub async fn connect_chat_auth(&mut self, auth: Option<&str>) -> (String, Value) {
        let reply = self.join_ns("/chat", auth).await;
        let sid = connect_sid(&reply);
        let online = self.next_msg().await;
        assert_eq!(
            online.name().as_deref(),
            Some("onlineUsers"),
            "{}",
            online.frame
        );
        (sid, online.arg())
    }

    /// Upgrades a polling session to websocket (`2probe`, `3probe`, `5`).
    pub async fn upgrade(&mut self, addr: SocketAddr) -> UpgradeTrace {
        let Inner::Polling(p) = &mut self.inner else {
            panic!("only a polling session upgrades");
        };
        let target = endpoint(Transport::Websocket, "", Some(&p.sid));
        let mut ws = ws_connect(addr, &target, &[]).await;
        within(ws.send(Message::text("2probe")))
            .await
            .expect("send the probe");
        let reply = within(ws.next())
            .await
            .expect("a probe reply")
            .expect("a websocket frame");
        let Message::Text(probe_reply) = reply else {
            panic!("expected 3probe, got {reply:?}");
        };
        // The pending poll must be released (with a noop) before the switch.
        let mut poll_packets = Vec::new();
        while let Some(Incoming::Packet(packet)) =
            tokio::time::timeout(WAIT, p.rx.recv()).await.ok().flatten()
        {
            let noop = packet == "6";
            poll_packets.push(packet);
            if noop {
                break;
            }
        }
        within(ws.send(Message::text("5")))
            .await
            .expect("send the upgrade");
        self.inner = Inner::Ws(Box::new(ws));
        UpgradeTrace {
            probe_reply: probe_reply.to_string(),
            poll_packets,
        }
    }

    /// Closes the client: a websocket close frame, or an Engine.IO close packet over polling.
    pub async fn close(mut self) {
        match &mut self.inner {
            Inner::Ws(ws) => {
                let _ = within(ws.close()).await;
            }
            Inner::Polling(_) => self.send("1").await,
        }
    }
}

/// The `sid` of a `40/chat,{"sid":…}` answer, checking its exact shape.
pub fn connect_sid(reply: &Msg) -> String {
    assert_eq!(reply.kind, PacketType::Connect, "{}", reply.frame);
    let data: Value = serde_json::from_str(reply.data.as_deref().expect("connect data"))
        .expect("connect data is JSON");
    let sid = data["sid"].as_str().expect("a sid").to_owned();
    let prefix = if reply.nsp == "/" {
        "40".to_owned()
    } else {
        format!("40{},", reply.nsp)
    };
    assert_eq!(
        reply.frame,
        format!("{prefix}{{\"sid\":\"{sid}\"}}"),
        "the CONNECT answer holds only the sid"
    );
    sid
}

fn open_packet(text: &str) -> OpenPacket {
    let engineio::Packet::Open(data) =
        engineio::Packet::decode(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    else {
        panic!("expected an open packet, got {text:?}");
    };
    OpenPacket::parse(data).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Opens a websocket to `target` on `addr` with extra handshake headers.
pub async fn ws_connect(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> WsStream {
    let mut request = format!("ws://{addr}{target}")
        .into_client_request()
        .expect("a websocket request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    within(tokio_tungstenite::connect_async(request))
        .await
        .expect("the websocket handshake succeeds")
        .0
}

/// A client in `/chat` that joined as `name`, connecting with `query` (e.g.
/// `token=…`) and, when given, an `auth` payload; returns it and its sid.
pub async fn joined_client(
    addr: SocketAddr,
    transport: Transport,
    query: &str,
    auth: Option<&str>,
    name: &str,
) -> (RawClient, String) {
    let mut client = RawClient::connect(addr, transport, query, &[]).await;
    let (sid, _) = client.connect_chat_auth(auth).await;
    let username = serde_json::to_string(name).expect("a string serializes");
    client
        .emit("joinChat", &[&format!(r#"{{"username":{username}}}"#)])
        .await;
    client.wait_event("joined").await;
    (client, sid)
}

/// Asserts that `ts` is `Date.prototype.toISOString()` output (UTC, milliseconds,
/// `Z`) within a minute of now.
pub fn assert_iso_timestamp(ts: &str) {
    let b = ts.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "not an ISO-8601 UTC millisecond timestamp: {ts:?}"
    );
    let days = days_from_civil(
        ts[0..4].parse().expect("year"),
        ts[5..7].parse().expect("month"),
        ts[8..10].parse().expect("day"),
    );
    let secs = days * 86_400
        + ts[11..13].parse::<i64>().expect("hour") * 3600
        + ts[14..16].parse::<i64>().expect("minute") * 60
        + ts[17..19].parse::<i64>().expect("second");
    let skew = (secs - chorus_test_support::tokens::now()).abs();
    assert!(skew < 60, "timestamp {ts} is {skew} s away from now");
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
