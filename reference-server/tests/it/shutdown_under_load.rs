//! Graceful shutdown of the real `chorus-gateway` binary while clients are
//! sending (strict profile, every message asks for an ack): SIGTERM, then
//! every client receives `41/chat,`; every message whose ack reached its
//! sender before the signal was sent reaches every joined client before that
//! client's `41/chat,`; the process exits 0 within the drain bound.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::engineio::split_payload;
use chorus_protocol::socketio::{self, PacketType};
use chorus_test_support::http::http;
use chorus_test_support::process::metric;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Barrier};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::support::raw::{endpoint, event_frame, ws_connect, Transport, WsStream};
use crate::support::{gateway_process, tokens, within, within_for, WAIT};

/// Clients on each transport.
const PER_TRANSPORT: usize = 4;

/// The gateway's `--shutdown-drain-ms`.
const DRAIN_MS: u64 = 5_000;

/// A minimal client of either transport whose sends may fail: after the
/// gateway's `41/chat,` an event in flight closes the session (as socket.io
/// does), and a client that has not read the `41/chat,` yet must not fail.
enum Wire {
    Ws(Box<WsStream>),
    Polling {
        addr: SocketAddr,
        target: String,
        records: mpsc::UnboundedReceiver<String>,
        poller: JoinHandle<()>,
    },
}

impl Drop for Wire {
    fn drop(&mut self) {
        if let Wire::Polling { poller, .. } = self {
            poller.abort();
        }
    }
}

impl Wire {
    async fn open(addr: SocketAddr, transport: Transport, query: &str) -> Self {
        match transport {
            Transport::Websocket => {
                let mut ws = ws_connect(addr, &endpoint(transport, query, None), &[]).await;
                let open = within(ws.next()).await.expect("an open packet");
                assert!(matches!(open, Ok(Message::Text(t)) if t.starts_with('0')));
                Wire::Ws(Box::new(ws))
            }
            Transport::Polling => {
                let response = within(http(
                    addr,
                    "GET",
                    &endpoint(transport, query, None),
                    &[],
                    b"",
                ))
                .await;
                let text = response.text();
                let open: Value = serde_json::from_str(&text[1..]).expect("an open packet");
                let sid = open["sid"].as_str().expect("a sid");
                let target = endpoint(transport, "", Some(sid));
                let (tx, records) = mpsc::unbounded_channel();
                let poll = target.clone();
                let poller = tokio::spawn(async move {
                    loop {
                        let Some((200, body)) = request(addr, "GET", &poll, b"").await else {
                            return;
                        };
                        for record in split_payload(&body) {
                            if tx.send(record.to_owned()).is_err() || record == "1" {
                                return;
                            }
                        }
                    }
                });
                Wire::Polling {
                    addr,
                    target,
                    records,
                    poller,
                }
            }
        }
    }

    /// Sends one packet; whether the gateway took it.
    async fn send(&mut self, packet: &str) -> bool {
        match self {
            Wire::Ws(ws) => within(ws.send(Message::text(packet))).await.is_ok(),
            Wire::Polling { addr, target, .. } => {
                let posted = within(request(*addr, "POST", target, packet.as_bytes())).await;
                matches!(posted, Some((200, _)))
            }
        }
    }

    /// The next Engine.IO packet within `limit`; `Err` once the transport ended.
    async fn recv(&mut self, limit: Duration) -> Option<Result<String, String>> {
        match self {
            Wire::Ws(ws) => match tokio::time::timeout(limit, ws.next()).await.ok()? {
                Some(Ok(Message::Text(text))) => Some(Ok(text.to_string())),
                other => Some(Err(format!("{other:?}"))),
            },
            Wire::Polling { records, .. } => {
                let record = tokio::time::timeout(limit, records.recv()).await.ok()?;
                Some(record.ok_or_else(|| "the poll ended".to_owned()))
            }
        }
    }

    /// The next Socket.IO packet (pings answered); panics on closure or after [`WAIT`].
    async fn next_msg(&mut self) -> (PacketType, Option<u64>, Value) {
        within(async {
            loop {
                match self.recv(WAIT).await {
                    Some(Ok(p)) if p == "2" => {
                        self.send("3").await;
                    }
                    Some(Ok(p)) if p.starts_with('4') => return parse(&p),
                    Some(Ok(_)) => {}
                    other => panic!("expected a Socket.IO packet, got {other:?}"),
                }
            }
        })
        .await
    }
}

/// One HTTP/1.1 request on a fresh connection: the status and body, or `None`
/// when the connection failed or ended without a whole answer (a gateway
/// that is closing may reset a connection it had not read yet).
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.ok()?;
    tcp.write_all(body).await.ok()?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.ok()?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = response.parse(&raw).ok()? else {
        return None;
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())?;
    let body = raw.get(len..len + length)?;
    Some((response.code?, String::from_utf8(body.to_vec()).ok()?))
}

/// A Socket.IO packet's type, ack id and data (JSON; `null` when absent).
fn parse(frame: &str) -> (PacketType, Option<u64>, Value) {
    let packet = socketio::Packet::decode(&frame[1..]).expect("a Socket.IO packet");
    let data = packet
        .data
        .map(|d| serde_json::from_str(d).expect("JSON data"))
        .unwrap_or(Value::Null);
    (packet.kind, packet.id, data)
}

/// What one client saw until its `41/chat,`.
struct Seen {
    name: String,
    /// Its own messages acked before the signal was sent.
    acked_before_signal: Vec<String>,
    /// Every `newMessage` text received before `41/chat,`.
    received: HashSet<String>,
    /// How many of its messages were acked in all.
    acked: usize,
}

/// Joins as `name`, then sends acked messages (a few in flight at a time,
/// until its sends fail) and reads everything until `41/chat,`.
async fn client(
    addr: SocketAddr,
    transport: Transport,
    name: String,
    signalled: watch::Receiver<Option<Instant>>,
    everyone_joined: Arc<Barrier>,
) -> Seen {
    let query = format!("token={}", tokens::valid(&name));
    let mut wire = Wire::open(addr, transport, &query).await;
    assert!(wire.send("40/chat,").await);
    assert_eq!(wire.next_msg().await.0, PacketType::Connect);
    let join = event_frame(
        "/chat",
        None,
        "joinChat",
        &[&format!(r#"{{"username":"{name}"}}"#)],
    );
    assert!(wire.send(&join).await);
    loop {
        let (kind, _, data) = wire.next_msg().await;
        if kind == PacketType::Event && data[0] == "joined" {
            break;
        }
    }
    // Every message is sent after every client joined: all must receive it.
    everyone_joined.wait().await;
    let mut seen = Seen {
        name: name.clone(),
        acked_before_signal: Vec::new(),
        received: HashSet::new(),
        acked: 0,
    };
    let mut next_id = 0u64;
    let mut in_flight = 0;
    let mut sending = true;
    within_for(Duration::from_secs(20), async {
        loop {
            // Keep sending until a send fails: the gateway must cope with
            // events racing its shutdown.
            while sending && in_flight < 16 {
                let text = serde_json::to_string(&format!("{name}-{next_id}")).expect("JSON");
                let frame = event_frame(
                    "/chat",
                    Some(next_id),
                    "sendMessage",
                    &[&format!(r#"{{"message":{text}}}"#)],
                );
                sending = wire.send(&frame).await;
                next_id += 1;
                in_flight += 1;
            }
            let (kind, id, data) = match wire.recv(Duration::from_millis(20)).await {
                None => continue,
                Some(Ok(p)) if p == "2" => {
                    wire.send("3").await;
                    continue;
                }
                Some(Ok(p)) if p == "41/chat," => return,
                Some(Ok(p)) if p.starts_with('4') => parse(&p),
                Some(Ok(_)) => continue,
                Some(Err(end)) => panic!("{name}: the transport ended before 41/chat,: {end}"),
            };
            match kind {
                PacketType::Ack => {
                    let id = id.expect("an ack id");
                    assert_eq!(data[0]["ok"], true, "{name}: ack {id}: {data}");
                    in_flight -= 1;
                    seen.acked += 1;
                    if signalled.borrow().is_none() {
                        seen.acked_before_signal.push(format!("{name}-{id}"));
                    }
                }
                PacketType::Event if data[0] == "newMessage" => {
                    let text = data[1]["message"].as_str().expect("a message text");
                    seen.received.insert(text.to_owned());
                }
                _ => {}
            }
        }
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_delivers_every_acked_message_then_41_and_exits_zero() {
    let drain = DRAIN_MS.to_string();
    let gw = gateway_process(&[
        "--profile",
        "strict",
        "--rate-per-sec",
        "100000",
        "--rate-burst",
        "100000",
        "--shutdown-drain-ms",
        &drain,
    ]);
    let addr = gw.addr;
    let (signal_tx, signalled) = watch::channel(None);
    let mut clients = Vec::new();
    let everyone_joined = Arc::new(Barrier::new(2 * PER_TRANSPORT));
    for i in 0..2 * PER_TRANSPORT {
        let transport = if i % 2 == 0 {
            Transport::Websocket
        } else {
            Transport::Polling
        };
        clients.push(tokio::spawn(client(
            addr,
            transport,
            format!("c{i}"),
            signalled.clone(),
            everyone_joined.clone(),
        )));
    }
    // Let the load run until every client is joined and messages flow.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = gw.metrics().await;
        let joined = metric(&text, "chorus_gateway_joined_users");
        let sent = metric(
            &text,
            "chorus_gateway_events_received_total{event=\"sendMessage\"}",
        );
        if joined == (2 * PER_TRANSPORT) as f64 && sent >= 1000.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no load within 10 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The instant is published before the signal: an ack read after it may
    // have been sent before the signal, never the other way round.
    signal_tx.send_replace(Some(Instant::now()));
    let signalled_at = Instant::now();
    gw.signal("TERM");
    let exit = tokio::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_millis(DRAIN_MS) + Duration::from_secs(10));
        (status, signalled_at.elapsed())
    });
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.expect("every client gets 41/chat,"));
    }
    let (status, took) = exit.await.expect("waiter");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // The drain time plus the fixed waits of shutdown (6 s), plus slack.
    assert!(
        took < Duration::from_millis(DRAIN_MS) + Duration::from_secs(8),
        "exit took {took:?}"
    );
    let acked: usize = seen.iter().map(|s| s.acked_before_signal.len()).sum();
    assert!(
        acked >= 100,
        "only {acked} messages acked before the signal"
    );
    for sender in &seen {
        for text in &sender.acked_before_signal {
            for receiver in &seen {
                assert!(
                    receiver.received.contains(text),
                    "{} acked {text} before the signal, but {} did not receive it before 41/chat,",
                    sender.name,
                    receiver.name
                );
            }
        }
    }
    let total: usize = seen.iter().map(|s| s.acked).sum();
    eprintln!(
        "{} clients: {acked} messages acked before SIGTERM, {total} in all; exit 0 after {took:?}",
        seen.len()
    );
}
