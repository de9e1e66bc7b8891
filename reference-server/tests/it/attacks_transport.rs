//! Transport attacks against the real `chorus-gateway` binary (strict profile
//! unless said otherwise; short limits through its flags so each test ends in
//! seconds): connection floods on both transports, slow and silent HTTP
//! connections, half-sent bodies, sessions that never CONNECT, overlapping
//! polling requests, oversized packets and heads, slow consumers, and the
//! session limit.
//!
//! For each, the gateway stays up and answers new clients, its resident set
//! stays under [`RSS_BOUND`], a well-behaved pair beside the attacker (a
//! websocket sender, a polling receiver) loses nothing, `/metrics` counts what
//! happened, and SIGTERM afterwards exits 0. Everything runs on 127.0.0.1, in
//! bounded counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_test_support::http::{http, try_http};
use chorus_test_support::process::{metric, GatewayProcess};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::raw::{
    endpoint, event_frame, joined_client, ws_connect, Incoming, RawClient, Transport,
};
use crate::support::{gateway_process, tokens, within, within_for, WAIT};

/// The resident set the gateway (a debug build) must stay under during and
/// after every attack here.
const RSS_BOUND: u64 = 256 * 1024 * 1024;

/// Starts the binary in `profile` with a rate limit out of the way and `extra` flags.
fn gateway(profile: &str, extra: &[&str]) -> GatewayProcess {
    let mut args = vec![
        "--profile",
        profile,
        "--rate-per-sec",
        "100000",
        "--rate-burst",
        "100000",
    ];
    args.extend_from_slice(extra);
    gateway_process(&args)
}

/// Two well-behaved clients beside the attackers: `alice` sends over
/// websocket, `bob` receives over polling.
struct Pair {
    sender: RawClient,
    receiver: RawClient,
    sent: usize,
}

impl Pair {
    async fn join(addr: SocketAddr) -> Self {
        let (sender, _) = joined_client(
            addr,
            Transport::Websocket,
            &format!("token={}", tokens::valid("alice")),
            None,
            "alice",
        )
        .await;
        let (receiver, _) = joined_client(
            addr,
            Transport::Polling,
            &format!("token={}", tokens::valid("bob")),
            None,
            "bob",
        )
        .await;
        Self {
            sender,
            receiver,
            sent: 0,
        }
    }

    /// Alice sends `rounds` × `per_round` messages of `len` characters, a
    /// round at a time; both clients receive every one, in order.
    async fn exchange(&mut self, rounds: usize, per_round: usize, len: usize) {
        let pad = "p".repeat(len);
        for _ in 0..rounds {
            let first = self.sent;
            for i in first..first + per_round {
                self.sender
                    .emit("sendMessage", &[&format!(r#"{{"message":"{i}:{pad}"}}"#)])
                    .await;
            }
            self.sent += per_round;
            for client in [&mut self.sender, &mut self.receiver] {
                for i in first..first + per_round {
                    let expected = format!("{i}:{pad}");
                    loop {
                        let msg = client.next_msg().await;
                        if msg.name().as_deref() != Some("newMessage") {
                            continue;
                        }
                        let arg = msg.arg();
                        if arg["username"] != "alice" {
                            continue;
                        }
                        assert_eq!(arg["message"], expected.as_str(), "message {i}");
                        break;
                    }
                }
            }
        }
    }
}

/// Fails unless `check` holds on `/metrics` within [`WAIT`]; returns the text.
async fn metrics_until(gw: &GatewayProcess, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = gw.metrics().await;
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The end of every attack: the gateway is healthy, answers a new client,
/// stays under the RSS bound, and exits 0 on SIGTERM. Returns the RSS seen.
async fn still_serving_then_terminate(mut gw: GatewayProcess) -> u64 {
    assert!(gw.is_running(), "the gateway died");
    assert!(gw.healthy().await, "the gateway answers /healthz");
    let mut fresh = RawClient::ws(gw.addr).await;
    fresh
        .connect_chat_auth(Some(&format!(r#"{{"token":"{}"}}"#, tokens::valid("new"))))
        .await;
    let rss = gw.rss_bytes();
    assert!(rss < RSS_BOUND, "RSS {rss} bytes over {RSS_BOUND}");
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .expect("waiter");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    rss
}

/// Opens a polling session with a bare handshake and returns its sid.
async fn polling_handshake(addr: SocketAddr) -> String {
    let response = within(http(
        addr,
        "GET",
        &endpoint(Transport::Polling, "", None),
        &[],
        b"",
    ))
    .await;
    assert_eq!(response.status, 200, "handshake: {}", response.text());
    let text = response.text();
    let open: serde_json::Value = serde_json::from_str(&text[1..]).expect("an open packet");
    open["sid"].as_str().expect("a sid").to_owned()
}

/// Whether a polling GET on `sid` is refused as an unknown session.
async fn session_is_gone(addr: SocketAddr, sid: &str) -> bool {
    let target = endpoint(Transport::Polling, "", Some(sid));
    let response = within(http(addr, "GET", &target, &[], b"")).await;
    response.status == 400 && response.text().contains("Session ID unknown")
}

/// How many attacking connects are in flight at once.
const CONNECTING: usize = 16;

/// Connects to `addr` holding one of `connecting`'s permits for the connect only.
async fn connect_one(addr: SocketAddr, connecting: &Semaphore) -> TcpStream {
    let _permit = connecting.acquire().await.expect("semaphore open");
    within(TcpStream::connect(addr)).await.expect("connect")
}

/// Reads from `stream` until the server closes it; how long that took.
async fn wait_for_close(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    within_for(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_on_both_transports_leaves_nothing_behind() {
    const PER_TRANSPORT: usize = 1000;
    let gw = gateway("strict", &[]);
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    let flood =
        futures_util::stream::iter(0..2 * PER_TRANSPORT).for_each_concurrent(100, |i| async move {
            if i % 2 == 0 {
                let mut ws = ws_connect(addr, &endpoint(Transport::Websocket, "", None), &[]).await;
                let open = within(ws.next()).await.expect("an open packet");
                assert!(matches!(open, Ok(Message::Text(t)) if t.starts_with('0')));
                let _ = within(ws.close(None)).await;
            } else {
                let sid = polling_handshake(addr).await;
                let target = endpoint(Transport::Polling, "", Some(&sid));
                let closed = within(http(addr, "POST", &target, &[], b"1")).await;
                assert_eq!(closed.status, 200, "{}", closed.text());
            }
        });
    let ((), ()) = tokio::join!(flood, pair.exchange(20, 5, 16));
    let text = metrics_until(&gw, "every flood session closed", |t| {
        metric(t, "chorus_gateway_connections") == 2.0
    })
    .await;
    // The pair, the flood and nothing else.
    assert_eq!(
        metric(&text, "chorus_gateway_sessions_opened_total"),
        (2 + 2 * PER_TRANSPORT) as f64
    );
    assert_eq!(metric(&text, "chorus_gateway_sockets"), 2.0);
    pair.exchange(1, 5, 16).await;
    let rss = still_serving_then_terminate(gw).await;
    eprintln!("flood of {}: RSS after {rss} bytes", 2 * PER_TRANSPORT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_http_connections_are_cut_by_the_header_and_idle_timeouts() {
    const SLOW: usize = 200;
    const SILENT: usize = 200;
    let gw = gateway(
        "strict",
        &["--header-timeout-ms", "1000", "--idle-timeout-ms", "500"],
    );
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    // Connects go a few at a time: a burst of hundreds can overflow a small
    // accept queue (somaxconn 128 on some kernels), and the kernel's SYN-ACK
    // retries would then delay the accept by seconds the gateway never saw.
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let slow = futures_util::stream::iter(0..SLOW).map(|i| {
        let connecting = connecting.clone();
        async move {
            let mut tcp = connect_one(addr, &connecting).await;
            let head =
                format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {addr}\r\n");
            tcp.write_all(head.as_bytes())
                .await
                .expect("write the start");
            let start = Instant::now();
            // One header line every 200 ms, never the blank line that ends the head.
            within_for(Duration::from_secs(30), async {
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    read = tcp.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if tcp.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .await;
            start.elapsed()
        }
    });
    let silent = futures_util::stream::iter(0..SILENT).map(|_| {
        let connecting = connecting.clone();
        async move {
            let mut tcp = connect_one(addr, &connecting).await;
            wait_for_close(&mut tcp, Duration::from_secs(30)).await
        }
    });
    let attack = async {
        let (slow, silent): (Vec<Duration>, Vec<Duration>) = tokio::join!(
            slow.buffer_unordered(SLOW).collect(),
            silent.buffer_unordered(SILENT).collect()
        );
        (slow, silent)
    };
    let ((slow, silent), ()) = tokio::join!(attack, pair.exchange(10, 5, 16));
    let slowest = slow.iter().max().copied().unwrap_or_default();
    let quietest = silent.iter().max().copied().unwrap_or_default();
    // The limits are 1 s and 0.5 s; the defaults (10 s, 60 s) would hold
    // them far longer. The margin is for a busy machine, not for the gateway.
    assert!(
        slowest < Duration::from_secs(8),
        "slow headers held {slowest:?}"
    );
    assert!(
        quietest < Duration::from_secs(8),
        "silent connection held {quietest:?}"
    );
    let text = metrics_until(&gw, "every attacking connection closed", |t| {
        metric(t, "chorus_gateway_http_connections") <= 2.0
    })
    .await;
    let header = metric(&text, "chorus_gateway_timeouts_total{kind=\"header\"}");
    let idle = metric(&text, "chorus_gateway_timeouts_total{kind=\"idle\"}");
    assert!(header >= SLOW as f64, "header timeouts {header}");
    assert!(idle >= SILENT as f64, "idle timeouts {idle}");
    pair.exchange(1, 5, 16).await;
    still_serving_then_terminate(gw).await;
}

/// Sends, on its own connection for each session of `sids` at once, the head
/// of a 1,000,000-byte polling POST and half its body, then waits (at most
/// 10 s) for what the gateway answers: one answer text per session, empty when
/// nothing came (a refused body may be answered before it is all written, so
/// write errors are not failures here).
async fn half_sent_posts(addr: SocketAddr, sids: &[String]) -> Vec<String> {
    let half = vec![b'x'; 500_000];
    futures_util::stream::iter(sids.iter().cloned())
        .map(|sid| {
            let half = &half;
            async move {
                let mut tcp = TcpStream::connect(addr).await.expect("connect");
                let head = format!(
                    "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n",
                    endpoint(Transport::Polling, "", Some(&sid))
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(half).await;
                let mut answer = Vec::new();
                let _ = within_for(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
                String::from_utf8_lossy(&answer).into_owned()
            }
        })
        .buffer_unordered(sids.len().max(1))
        .collect()
        .await
}

/// The gateway's highest RSS over the next second, sampled every 50 ms.
async fn peak_rss_for_a_second(gw: &GatewayProcess) -> u64 {
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(gw.rss_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_polling_bodies_get_408_and_hold_nothing() {
    const ATTACKERS: usize = 100;
    let gw = gateway("strict", &["--body-timeout-ms", "1000"]);
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    let mut sids = Vec::new();
    for _ in 0..ATTACKERS {
        sids.push(polling_handshake(addr).await);
    }
    let attack = half_sent_posts(addr, &sids);
    let peak = peak_rss_for_a_second(&gw);
    let (answers, peak, ()) = tokio::join!(attack, peak, pair.exchange(10, 5, 16));
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    for sid in &sids {
        assert!(session_is_gone(addr, sid).await, "session {sid} is closed");
    }
    let text = metrics_until(&gw, "every attacking session closed", |t| {
        metric(t, "chorus_gateway_connections") == 2.0
    })
    .await;
    assert_eq!(
        metric(&text, "chorus_gateway_timeouts_total{kind=\"body\"}"),
        ATTACKERS as f64
    );
    assert!(peak < RSS_BOUND, "RSS peak {peak} bytes");
    pair.exchange(1, 5, 16).await;
    let rss = still_serving_then_terminate(gw).await;
    eprintln!("{ATTACKERS} half-sent 1 MB POSTs: RSS peak {peak} bytes, after {rss} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_never_connect_a_namespace_are_closed_at_the_connect_timeout() {
    const PER_TRANSPORT: usize = 100;
    let gw = gateway("strict", &["--connect-timeout-ms", "500"]);
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    // A session on the root namespace only has connected a namespace: it stays.
    let mut rooted = RawClient::ws(addr).await;
    rooted.join_ns("/", None).await;
    let idlers = futures_util::stream::iter(0..2 * PER_TRANSPORT)
        .map(|i| async move {
            let transport = if i % 2 == 0 {
                Transport::Websocket
            } else {
                Transport::Polling
            };
            let mut client = RawClient::connect(addr, transport, "", &[]).await;
            client.expect_closed_within(Duration::from_secs(5)).await
        })
        .buffer_unordered(2 * PER_TRANSPORT)
        .collect::<Vec<Incoming>>();
    let (ends, ()) = tokio::join!(idlers, pair.exchange(10, 5, 16));
    for end in &ends {
        assert!(
            matches!(end, Incoming::CloseFrame(None))
                || matches!(end, Incoming::Ended(why) if why == "close packet"),
            "closed by the server: {end:?}"
        );
    }
    let text = metrics_until(&gw, "the idle sessions closed", |t| {
        metric(t, "chorus_gateway_connections") == 3.0
    })
    .await;
    assert_eq!(
        metric(&text, "chorus_gateway_timeouts_total{kind=\"connect\"}"),
        (2 * PER_TRANSPORT) as f64
    );
    assert!(
        rooted
            .try_next_msg(Duration::from_millis(300))
            .await
            .is_none(),
        "the root-namespace session is left alone"
    );
    pair.exchange(1, 5, 16).await;
    still_serving_then_terminate(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_polling_requests_close_only_their_own_session() {
    let gw = gateway("strict", &[]);
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;

    // Two GETs at once, as socket.io: the second gets 400 and the session closes.
    let sid = polling_handshake(addr).await;
    let target = endpoint(Transport::Polling, "", Some(&sid));
    let first = tokio::spawn({
        let target = target.clone();
        async move { within(http(addr, "GET", &target, &[], b"")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = within(http(addr, "GET", &target, &[], b"")).await;
    assert_eq!(second.status, 400, "{}", second.text());
    let first = first.await.expect("the first poll");
    assert_eq!((first.status, first.text().as_str()), (200, "1"));
    assert!(session_is_gone(addr, &sid).await);

    // A POST while another one is still being read: the same.
    let sid = polling_handshake(addr).await;
    let target = endpoint(Transport::Polling, "", Some(&sid));
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n3"
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = within(http(addr, "POST", &target, &[], b"3")).await;
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(session_is_gone(addr, &sid).await);
    drop(stalled);

    let text = gw.metrics().await;
    for reason in ["overlapping_get", "overlapping_post"] {
        let name = format!("chorus_gateway_refused_requests_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &name), 1.0, "{name}");
    }
    pair.exchange(5, 5, 16).await;
    still_serving_then_terminate(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packets_and_heads_are_refused_and_the_polling_session_stays_open() {
    for profile in ["seed", "strict"] {
        let gw = gateway(profile, &["--max-payload", "100000"]);
        let addr = gw.addr;
        let mut pair = Pair::join(addr).await;
        let big = |len: usize| {
            let empty = event_frame("/chat", None, "sendMessage", &[r#"{"message":""}"#]);
            let text = "x".repeat(len - empty.len());
            event_frame(
                "/chat",
                None,
                "sendMessage",
                &[&format!(r#"{{"message":"{text}"}}"#)],
            )
        };

        // Websocket: close 1009.
        let query = format!("token={}", tokens::valid("big"));
        let (mut ws, _) = joined_client(addr, Transport::Websocket, &query, None, "big").await;
        ws.send(&big(100_001)).await;
        match ws.expect_closed().await {
            Incoming::CloseFrame(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
            other => panic!("{profile}: expected close code 1009, got {other:?}"),
        }

        // Polling: HTTP 413, and (as socket.io) the session stays open.
        let (mut polling, _) = joined_client(addr, Transport::Polling, &query, None, "big2").await;
        let target = endpoint(Transport::Polling, "", Some(polling.sid()));
        let refused = within(http(addr, "POST", &target, &[], big(100_001).as_bytes())).await;
        assert_eq!(refused.status, 413, "{profile}");
        polling
            .emit("sendMessage", &[r#"{"message":"still here"}"#])
            .await;
        loop {
            let msg = polling.next_msg().await;
            if msg.name().as_deref() == Some("newMessage") && msg.arg()["username"] == "big2" {
                assert_eq!(msg.arg()["message"], "still here");
                break;
            }
        }

        // Heads over --max-header-bytes (16 KiB): HTTP 431, whatever they carry.
        let long = "a".repeat(20_000);
        let header = within(http(addr, "GET", "/healthz", &[("X-Long", &long)], b"")).await;
        assert_eq!(header.status, 431, "{profile}: a 20 KB header");
        let query = format!("pad={}", "q".repeat(300_000));
        let handshake = within(try_http(
            addr,
            "GET",
            &endpoint(Transport::Polling, &query, None),
            &[],
            b"",
        ))
        .await
        .expect("connect");
        assert_eq!(handshake.status, 431, "{profile}: a 300 KB query");

        let text = gw.metrics().await;
        for transport in ["websocket", "polling"] {
            let name =
                format!("chorus_gateway_oversized_packets_total{{transport=\"{transport}\"}}");
            assert_eq!(metric(&text, &name), 1.0, "{profile}: {name}");
        }
        pair.exchange(5, 5, 16).await;
        still_serving_then_terminate(gw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_are_disconnected_at_the_queue_byte_bound() {
    const MESSAGE: usize = 50_000;
    let gw = gateway(
        "strict",
        &["--queue-bytes", "262144", "--max-message-bytes", "60000"],
    );
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;

    // A websocket consumer that joins and then never reads again.
    let query = format!("token={}", tokens::valid("sloth"));
    let mut deaf_ws = ws_connect(addr, &endpoint(Transport::Websocket, &query, None), &[]).await;
    within(deaf_ws.next())
        .await
        .expect("an open packet")
        .expect("a frame");
    for frame in [
        "40/chat,".to_owned(),
        event_frame("/chat", None, "joinChat", &[r#"{"username":"sloth"}"#]),
    ] {
        within(deaf_ws.send(Message::text(frame)))
            .await
            .expect("send");
    }
    // A polling consumer that joins through POSTs and never polls.
    let sid = {
        let response = within(http(
            addr,
            "GET",
            &endpoint(Transport::Polling, &query, None),
            &[],
            b"",
        ))
        .await;
        let open: serde_json::Value =
            serde_json::from_str(&response.text()[1..]).expect("an open packet");
        open["sid"].as_str().expect("a sid").to_owned()
    };
    let target = endpoint(Transport::Polling, "", Some(&sid));
    let join = format!(
        "40/chat,\u{1e}{}",
        event_frame("/chat", None, "joinChat", &[r#"{"username":"mute"}"#])
    );
    let posted = within(http(addr, "POST", &target, &[], join.as_bytes())).await;
    assert_eq!(posted.status, 200);
    metrics_until(&gw, "both consumers joined", |t| {
        metric(t, "chorus_gateway_joined_users") == 4.0
    })
    .await;

    // 300 messages of 50 KB: 15 MB for each receiver, 4 at a time (under the
    // 256 KiB bound for a receiver that reads).
    let peak = std::sync::atomic::AtomicU64::new(0);
    let watch = async {
        for _ in 0..40 {
            peak.fetch_max(gw.rss_bytes(), std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(pair.exchange(75, 4, MESSAGE), watch);
    let peak = peak.into_inner();
    let text = metrics_until(&gw, "both slow consumers disconnected", |t| {
        metric(t, "chorus_gateway_connections") == 2.0
    })
    .await;
    assert_eq!(
        metric(&text, "chorus_gateway_slow_consumer_disconnects_total"),
        2.0
    );
    assert_eq!(metric(&text, "chorus_gateway_joined_users"), 2.0);
    assert!(peak < RSS_BOUND, "RSS peak {peak} bytes");
    drop(deaf_ws);
    let rss = still_serving_then_terminate(gw).await;
    eprintln!("slow consumers, 15 MB broadcast each: RSS peak {peak} bytes, after {rss} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_max_connections_get_503_and_are_counted() {
    const MAX: usize = 20;
    let gw = gateway("strict", &["--max-connections", "20"]);
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    let mut held = Vec::new();
    for _ in 2..MAX {
        held.push(RawClient::ws(addr).await);
    }
    let refused = within(http(
        addr,
        "GET",
        &endpoint(Transport::Polling, "", None),
        &[],
        b"",
    ))
    .await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.text(),
        r#"{"code":4,"message":"Too many connections"}"#
    );
    let request = format!("ws://{addr}{}", endpoint(Transport::Websocket, "", None));
    match within(tokio_tungstenite::connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    let text = gw.metrics().await;
    assert_eq!(
        metric(&text, "chorus_gateway_refused_connections_total"),
        2.0
    );
    assert_eq!(metric(&text, "chorus_gateway_connections"), MAX as f64);
    pair.exchange(5, 5, 16).await;
    // A freed slot takes a new session.
    held.pop().expect("a held session").close().await;
    metrics_until(&gw, "a slot freed", |t| {
        metric(t, "chorus_gateway_connections") == (MAX - 1) as f64
    })
    .await;
    still_serving_then_terminate(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_and_long_polling_connections_outlive_the_header_timeout() {
    let gw = gateway(
        "strict",
        &["--header-timeout-ms", "300", "--idle-timeout-ms", "2000"],
    );
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    // A kept-alive connection waits between requests under the idle limit, not the header one.
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut buf = [0u8; 1024];
    for _ in 0..2 {
        tcp.write_all(healthz.as_bytes()).await.expect("write");
        let n = within(tcp.read(&mut buf)).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let silent = wait_for_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(
        silent >= Duration::from_millis(500) && silent < Duration::from_secs(5),
        "closed {silent:?} after the last of 2 s of idling"
    );
    // A long poll in flight is no idle connection: it waits as long as it must.
    let quiet = Duration::from_millis(2500);
    let before = Instant::now();
    let msg = pair.receiver.try_next_msg(quiet).await;
    assert!(
        msg.is_none(),
        "nothing was sent: {:?}",
        msg.map(|m| m.frame)
    );
    assert!(before.elapsed() >= quiet);
    pair.exchange(2, 5, 16).await;
    let text = gw.metrics().await;
    assert_eq!(
        metric(&text, "chorus_gateway_timeouts_total{kind=\"header\"}"),
        0.0
    );
    assert!(metric(&text, "chorus_gateway_timeouts_total{kind=\"idle\"}") >= 1.0);
    still_serving_then_terminate(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_bodies_in_flight_share_one_bounded_buffer() {
    const ATTACKERS: usize = 60;
    let gw = gateway(
        "strict",
        &[
            "--post-buffer-bytes",
            "10000000",
            "--body-timeout-ms",
            "1500",
        ],
    );
    let addr = gw.addr;
    let mut pair = Pair::join(addr).await;
    let mut sids = Vec::new();
    for _ in 0..ATTACKERS {
        sids.push(polling_handshake(addr).await);
    }
    let attack = half_sent_posts(addr, &sids);
    let peak = peak_rss_for_a_second(&gw);
    let (answers, peak, ()) = tokio::join!(attack, peak, pair.exchange(10, 5, 16));
    for answer in &answers {
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 408")
                || answer.starts_with("HTTP/1.1 503"),
            "{answer:?}"
        );
    }
    let text = gw.metrics().await;
    let timed_out = metric(&text, "chorus_gateway_timeouts_total{kind=\"body\"}");
    let refused = metric(
        &text,
        "chorus_gateway_refused_requests_total{reason=\"post_buffer_full\"}",
    );
    assert_eq!(timed_out + refused, ATTACKERS as f64, "{text}");
    // 10 MB hold 20 of the 500 KB halves at most.
    assert!(timed_out <= 20.0, "{timed_out} bodies were held");
    assert!(peak < RSS_BOUND, "RSS peak {peak} bytes");
    // A refused POST leaves its session open, a timed-out one closes it.
    metrics_until(
        &gw,
        "the timed-out sessions closed, the refused ones open",
        |t| metric(t, "chorus_gateway_connections") == 2.0 + refused,
    )
    .await;
    // The budget was given back.
    let (mut poster, _) = joined_client(
        addr,
        Transport::Polling,
        &format!("token={}", tokens::valid("poster")),
        None,
        "poster",
    )
    .await;
    poster.emit("sendMessage", &[r#"{"message":"fits"}"#]).await;
    pair.exchange(1, 5, 16).await;
    let rss = still_serving_then_terminate(gw).await;
    eprintln!(
        "{ATTACKERS} half-sent POSTs, 10 MB buffer: {refused} refused, {timed_out} held; RSS peak {peak} bytes, after {rss}"
    );
}
