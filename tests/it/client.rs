//! The client engine against a real socket.io 4.8 server (`tests/js/echo-server.mjs`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus::client::{
    AckReply, Client, ClientConfig, ClientError, CloseReason, Handler, Incoming, Limit,
    LimitExceeded, Limits, Transport,
};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::harness::SERIAL;
use crate::support::hostile::{Hostile, Mode};

const TRANSPORTS: [Transport; 3] = [
    Transport::Websocket,
    Transport::Polling,
    Transport::PollingUpgrade,
];
const WAIT: Duration = Duration::from_secs(5);

/// A running echo server, killed on drop.
struct EchoServer {
    child: Child,
    url: String,
}

impl EchoServer {
    /// Starts the server; `ping` sets its pingInterval and pingTimeout (ms).
    fn start(ping: Option<u64>) -> Self {
        let dir = chorus_test_support::npm::ensure_node_modules();
        let mut cmd = Command::new("node");
        cmd.arg("echo-server.mjs")
            .current_dir(dir)
            .stdout(Stdio::piped());
        if let Some(ms) = ping {
            cmd.env("PING_INTERVAL", ms.to_string())
                .env("PING_TIMEOUT", ms.to_string());
        }
        let mut child = cmd.spawn().expect("start node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the port");
        let port: u16 = line.trim().parse().expect("the server prints its port");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn config(&self, transport: Transport) -> ClientConfig {
        ClientConfig::new(&self.url)
            .namespace("/chat")
            .transport(transport)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the recording handler saw, owned.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Event {
        name: String,
        args: Vec<Value>,
        ack_id: Option<u64>,
    },
    Ack {
        id: u64,
        args: Vec<Value>,
    },
    Closed(CloseReason),
}

/// Forwards everything to a channel; answers the server's "question" with `["answer", <arg>]`.
struct Recorder(mpsc::UnboundedSender<(Instant, Got)>);

fn owned(args: &[&RawValue]) -> Vec<Value> {
    args.iter()
        .map(|a| serde_json::from_str(a.get()).unwrap())
        .collect()
}

impl Handler for Recorder {
    fn on_message(&mut self, at: Instant, message: Incoming<'_>) {
        let got = match message {
            Incoming::Event { name, args, ack_id } => Got::Event {
                name: name.to_owned(),
                args: owned(args),
                ack_id,
            },
            Incoming::Ack { id, args } => Got::Ack {
                id,
                args: owned(args),
            },
        };
        let _ = self.0.send((at, got));
    }

    fn ack_reply(&mut self, name: &str, args: &[&RawValue]) -> AckReply {
        match name {
            "question" => AckReply::Args(format!("[\"answer\",{}]", args[0].get())),
            _ => AckReply::Empty,
        }
    }

    fn on_closed(&mut self, at: Instant, reason: CloseReason) {
        let _ = self.0.send((at, Got::Closed(reason)));
    }
}

type Inbox = mpsc::UnboundedReceiver<(Instant, Got)>;

async fn connect(config: &ClientConfig) -> (Client, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (client, timings) = Client::connect(config, Recorder(tx))
        .await
        .expect("connect");
    assert!(timings.total() > Duration::ZERO && timings.total() < WAIT);
    assert!(
        timings.tls.is_none(),
        "a plaintext connect has no TLS phase"
    );
    (client, rx)
}

/// The next event called `name`, skipping others.
async fn event(rx: &mut Inbox, name: &str) -> (Vec<Value>, Option<u64>) {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some((
                _,
                Got::Event {
                    name: n,
                    args,
                    ack_id,
                },
            ))) if n == name => return (args, ack_id),
            Ok(Some((_, Got::Closed(r)))) => panic!("closed ({r}) while waiting for {name}"),
            Ok(Some(_)) => {}
            other => panic!("no {name}: {other:?}"),
        }
    }
}

/// The next ACK or close, skipping events.
async fn ack_or_close(rx: &mut Inbox) -> Got {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some((_, Got::Event { .. }))) => {}
            Ok(Some((_, got))) => return got,
            other => panic!("nothing arrived: {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_transport_connects_emits_and_gets_acks() {
    let server = EchoServer::start(None);
    for transport in TRANSPORTS {
        let config = server
            .config(transport)
            .auth(r#"{"token":"t1"}"#)
            .query("who", "alice & bob")
            .header("X-Test", "hdr");
        let (client, mut rx) = connect(&config).await;
        let (welcome, _) = event(&mut rx, "welcome").await;
        assert_eq!(
            welcome[0],
            json!({"sid": client.sid(), "auth": {"token": "t1"}, "query": "alice & bob", "header": "hdr"}),
            "{transport:?}"
        );

        let sent = client.emit("echo", &[r#"{"m":"hi"}"#, "2"]).await.unwrap();
        let (at, got) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            Got::Event {
                name: "echo".into(),
                args: vec![json!({"m": "hi"}), json!(2)],
                ack_id: None
            }
        );
        assert!(at > sent, "received after sent");

        let first = client.emit_with_ack("echo", &["[1,2]"]).await.unwrap();
        let second = client.emit_with_ack("transport", &[]).await.unwrap();
        assert_ne!(first.id, second.id);
        assert_eq!(
            ack_or_close(&mut rx).await,
            Got::Ack {
                id: first.id,
                args: vec![json!([1, 2])]
            }
        );
        let expected = if transport == Transport::Polling {
            "polling"
        } else {
            "websocket"
        };
        assert_eq!(
            ack_or_close(&mut rx).await,
            Got::Ack {
                id: second.id,
                args: vec![json!(expected)]
            },
            "{transport:?}"
        );

        client.disconnect().await.unwrap();
        assert_eq!(
            ack_or_close(&mut rx).await,
            Got::Closed(CloseReason::ClientDisconnect)
        );
    }
}

#[tokio::test]
async fn namespace_refusals_carry_the_server_payload() {
    let server = EchoServer::start(None);
    for transport in TRANSPORTS {
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = Client::connect(&server.config(transport).namespace("/nope"), Recorder(tx))
            .await
            .unwrap_err();
        match err {
            ClientError::ConnectRefused { nsp, data } => {
                assert_eq!(nsp, "/nope");
                assert_eq!(data, r#"{"message":"Invalid namespace"}"#);
            }
            other => panic!("{transport:?}: {other}"),
        }
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = Client::connect(
            &server.config(transport).auth(r#"{"token":"bad"}"#),
            Recorder(tx),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, ClientError::ConnectRefused { data, .. }
                if data == r#"{"message":"refused","data":{"code":"BAD_TOKEN"}}"#),
            "{err}"
        );
    }
}

#[tokio::test]
async fn server_acks_are_answered_and_binary_is_resolved() {
    let server = EchoServer::start(None);
    for transport in TRANSPORTS {
        let (client, mut rx) = connect(&server.config(transport)).await;
        client.emit("askMe", &[r#"{"q":1}"#]).await.unwrap();
        let (question, ack_id) = event(&mut rx, "question").await;
        assert_eq!((question, ack_id.is_some()), (vec![json!({"q": 1})], true));
        let (answered, _) = event(&mut rx, "answered").await;
        assert_eq!(answered, vec![json!(["answer", {"q": 1}])], "{transport:?}");

        client.emit("binary", &[]).await.unwrap();
        let (blob, _) = event(&mut rx, "blob").await;
        assert_eq!(
            blob,
            vec![json!({"name": "b", "data": [1, 2, 3]}), json!([9])],
            "{transport:?}"
        );
    }
}

#[tokio::test]
async fn pings_are_answered_and_large_frames_pass() {
    let server = EchoServer::start(Some(200));
    let mut clients = Vec::new();
    for transport in TRANSPORTS {
        clients.push((transport, connect(&server.config(transport)).await));
    }
    // Ten ping rounds: a client that failed to answer would be closed by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (transport, (client, rx)) in &mut clients {
        while let Ok((_, got)) = rx.try_recv() {
            assert!(!matches!(got, Got::Closed(_)), "{transport:?}: {got:?}");
        }
        client.emit("big", &["1000000"]).await.unwrap();
        let (big, _) = event(rx, "bigData").await;
        assert_eq!(
            big[0].as_str().map(str::len),
            Some(1_000_000),
            "{transport:?}"
        );
        let sent = client.emit_with_ack("echo", &["true"]).await.unwrap();
        assert_eq!(
            ack_or_close(rx).await,
            Got::Ack {
                id: sent.id,
                args: vec![json!(true)]
            }
        );
    }
}

#[tokio::test]
async fn close_reasons_are_reported() {
    let server = EchoServer::start(None);
    for transport in TRANSPORTS {
        let (client, mut rx) = connect(&server.config(transport)).await;
        client.emit("kickMe", &[]).await.unwrap();
        assert_eq!(
            ack_or_close(&mut rx).await,
            Got::Closed(CloseReason::NamespaceDisconnect),
            "{transport:?}"
        );
        assert!(matches!(
            client.emit("echo", &[]).await,
            Err(ClientError::Closed)
        ));

        let (client, mut rx) = connect(&server.config(transport)).await;
        client.emit("closeMe", &[]).await.unwrap();
        assert!(
            matches!(
                ack_or_close(&mut rx).await,
                Got::Closed(CloseReason::ServerClosed { .. })
            ),
            "{transport:?}"
        );
        assert!(client.is_closed());
    }
}

#[tokio::test]
async fn the_reference_gateway_speaks_every_transport() {
    let gateway = chorus_test_support::gateway::start(chorus_test_support::gateway::config(
        chorus_gateway::Profile::Seed,
        "s3cret",
    ))
    .await;
    for transport in TRANSPORTS {
        let config = ClientConfig::new(format!("http://{}", gateway.addr()))
            .namespace("/chat")
            .transport(transport);
        let (client, mut rx) = connect(&config).await;
        let (online, _) = event(&mut rx, "onlineUsers").await;
        assert_eq!(online, vec![json!([])], "{transport:?}");
        client
            .emit("joinChat", &[r#"{"username":"mallory"}"#])
            .await
            .unwrap();
        let (exception, _) = event(&mut rx, "exception").await;
        assert_eq!(exception[0]["message"], "未提供认证令牌", "{transport:?}");
        client.disconnect().await.unwrap();
        assert_eq!(
            ack_or_close(&mut rx).await,
            Got::Closed(CloseReason::ClientDisconnect)
        );
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn refused_tcp_connect_names_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = Client::connect(
        &ClientConfig::new(format!("ws://127.0.0.1:{port}")),
        Recorder(tx),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_stops_pinging_is_a_ping_timeout() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let open = r#"0{"sid":"s","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000000}"#;
        ws.send(Message::text(open)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("40"));
        ws.send(Message::text(r#"40{"sid":"n"}"#)).await.unwrap();
        // Never ping; keep the connection open until the client leaves.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let (client, mut rx) = connect(&ClientConfig::new(url)).await;
    assert_eq!(client.sid(), "n");
    let start = Instant::now();
    assert_eq!(
        ack_or_close(&mut rx).await,
        Got::Closed(CloseReason::PingTimeout)
    );
    // Noticed after the 200 ms of pingInterval + pingTimeout, not after
    // some other timeout: 3 s leaves a busy machine room.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

/// A handler that keeps nothing, as a load driver's would, but counts the messages.
struct Idle(Arc<AtomicUsize>);

impl Handler for Idle {
    fn on_message(&mut self, _: Instant, _: Incoming<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn on_closed(&mut self, _: Instant, _: CloseReason) {}
}

#[tokio::test]
async fn idle_clients_stay_small_even_after_a_large_frame() {
    const N: usize = 1000;
    const BIG: usize = 256 * 1024;
    let _measuring = SERIAL.lock().await;
    let server = EchoServer::start(None);
    let config = server.config(Transport::Websocket);
    let received = Arc::new(AtomicUsize::new(0));
    // Warm up the allocator and the runtime.
    let warm = Client::connect(&config, Idle(received.clone()))
        .await
        .unwrap()
        .0;
    let before = rss();
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(
            Client::connect(&config, Idle(received.clone()))
                .await
                .unwrap()
                .0,
        );
    }
    let per_client = (rss() - before) / N;
    eprintln!("resident memory per idle websocket client: {per_client} bytes");
    assert!(per_client < 20 * 1024, "{per_client} bytes per idle client");

    // Every client gets one large frame, one after the other; a buffer kept
    // at the frame's size would add BIG bytes per client.
    let start = received.load(Ordering::Relaxed);
    for (i, client) in clients.iter().enumerate() {
        client.emit("big", &[&BIG.to_string()]).await.unwrap();
        while received.load(Ordering::Relaxed) < start + i + 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let per_client = (rss() - before) / N;
    eprintln!("after a {BIG}-byte frame each: {per_client} bytes per client");
    assert!(
        per_client < 40 * 1024,
        "{per_client} bytes per client after a large frame"
    );
    drop((warm, clients));
}

// ---- bounds against hostile servers (support/hostile.rs) -------------

/// A client config for a hostile server's `/chat`, with `limits`.
fn hostile_config(server: &Hostile, transport: Transport, limits: Limits) -> ClientConfig {
    ClientConfig::new(server.url())
        .namespace("/chat")
        .transport(transport)
        .limits(limits)
}

/// The breach a session ended with, waiting at most `WAIT`.
async fn closed_by_limit(rx: &mut Inbox) -> LimitExceeded {
    match ack_or_close(rx).await {
        Got::Closed(CloseReason::Limit(breach)) => breach,
        other => panic!("expected a limit breach, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_attachment_count_closes_the_session_by_name() {
    let _memory = SERIAL.lock().await;
    let server = Hostile::start(Mode::AttachmentBomb).await;
    let config = hostile_config(&server, Transport::Websocket, Limits::default());
    let (_client, mut rx) = connect(&config).await;
    event(&mut rx, "onlineUsers").await;
    let breach = closed_by_limit(&mut rx).await;
    // `451000000000000000-`: Engine.IO message, binary event, 10^15 attachments.
    assert_eq!(
        breach,
        LimitExceeded::new(Limit::Attachments, 1_000_000_000_000_000u64, 10u64)
    );
}

#[tokio::test]
async fn attachments_are_bounded_in_bytes_together() {
    let _memory = SERIAL.lock().await;
    let server = Hostile::start(Mode::AttachmentFlood).await;
    // Ten attachments of 2 MiB against an 8 MiB bound: the fifth goes over.
    let limits = Limits {
        max_attachment_bytes: 8 << 20,
        ..Limits::default()
    };
    let (_client, mut rx) = connect(&hostile_config(&server, Transport::Websocket, limits)).await;
    event(&mut rx, "onlineUsers").await;
    let breach = closed_by_limit(&mut rx).await;
    assert_eq!(
        breach,
        LimitExceeded::new(Limit::AttachmentBytes, 10u64 << 20, 8u64 << 20)
    );
}

#[tokio::test]
async fn a_response_head_that_never_ends_is_refused_by_name() {
    let _memory = SERIAL.lock().await;
    let server = Hostile::start(Mode::EndlessHeader).await;
    for transport in TRANSPORTS {
        let (tx, _rx) = mpsc::unbounded_channel();
        let config = hostile_config(&server, transport, Limits::default());
        let err = Client::connect(&config, Recorder(tx)).await.unwrap_err();
        match err {
            ClientError::Limit(b) => assert_eq!(b.limit, Limit::HttpHeadSize, "{transport:?}"),
            other => panic!("{transport:?}: expected a limit breach, got {other}"),
        }
    }
}

#[tokio::test]
async fn absurd_ping_settings_and_huge_open_packets_refuse_the_connect() {
    let _memory = SERIAL.lock().await;
    for (mode, limit) in [
        (Mode::AbsurdPing, Limit::PingInterval),
        (Mode::HugeOpen, Limit::OpenPacketSize),
    ] {
        let server = Hostile::start(mode).await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let config = hostile_config(&server, Transport::Websocket, Limits::default());
        let err = Client::connect(&config, Recorder(tx)).await.unwrap_err();
        assert_eq!(err.reason(), limit.metric_name(), "{mode:?}: {err}");
    }
}

#[tokio::test]
async fn polling_bodies_are_bounded_however_they_are_announced() {
    let _memory = SERIAL.lock().await;
    for mode in [
        Mode::ChunkSizeBomb,
        Mode::HugeContentLength,
        Mode::EndlessBody,
    ] {
        let server = Hostile::start(mode).await;
        let limits = Limits {
            max_http_body: 1 << 20,
            ..Limits::default()
        };
        let (_client, mut rx) = connect(&hostile_config(&server, Transport::Polling, limits)).await;
        event(&mut rx, "onlineUsers").await;
        let breach = closed_by_limit(&mut rx).await;
        assert_eq!(breach.limit, Limit::HttpBodySize, "{mode:?}");
        assert_eq!(breach.max, 1 << 20, "{mode:?}");
        let announced = match mode {
            Mode::ChunkSizeBomb => u128::from(u64::MAX),
            Mode::HugeContentLength => 1_000_000_000_000,
            // 64 KiB chunks: the 17th takes the body over 1 MiB.
            _ => 17 << 16,
        };
        assert_eq!(breach.actual, announced, "{mode:?}");
    }
}

#[tokio::test]
async fn a_post_the_server_never_answers_times_out() {
    let _memory = SERIAL.lock().await;
    let server = Hostile::start(Mode::PostNeverAnswered).await;
    let limits = Limits {
        io_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (client, mut rx) = connect(&hostile_config(&server, Transport::Polling, limits)).await;
    event(&mut rx, "onlineUsers").await;
    let start = Instant::now();
    let err = tokio::time::timeout(WAIT, client.emit("joinChat", &["{}"]))
        .await
        .expect("the emit is bounded by io_timeout")
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Limit(b) if b.limit == Limit::IoTimeout),
        "{err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn a_server_that_floods_pings_without_reading_is_cut_off() {
    let _memory = SERIAL.lock().await;
    let server = Hostile::start(Mode::PingFloodNoRead).await;
    let limits = Limits {
        max_pending_replies: 64,
        io_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (client, mut rx) = connect(&hostile_config(&server, Transport::Websocket, limits)).await;
    let client = Arc::new(client);
    // A message larger than the socket buffers holds the writer while the
    // server does not read; the pongs the flood asks for queue up meanwhile.
    let big = format!("\"{}\"", "x".repeat(32 << 20));
    let sender = {
        let client = client.clone();
        tokio::spawn(async move { client.emit("big", &[&big]).await })
    };
    let breach = closed_by_limit(&mut rx).await;
    assert_eq!(breach.limit, Limit::PendingReplies, "{breach}");
    let sent = tokio::time::timeout(WAIT, sender)
        .await
        .expect("bounded")
        .unwrap();
    assert!(
        matches!(&sent, Err(ClientError::Limit(b)) if b.limit == Limit::IoTimeout),
        "{sent:?}"
    );
}
