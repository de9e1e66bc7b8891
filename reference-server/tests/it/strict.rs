//! docs/protocol.md section 7, the `strict` profile: handshake authentication,
//! validated input, acks, rate limit, no silent loss, graceful shutdown.

use std::time::Duration;

use chorus_gateway::Profile;
use futures_util::SinkExt;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support;
use crate::support::raw::{
    assert_iso_timestamp, endpoint, event_frame, joined_client, RawClient, Transport,
};
use crate::support::{
    config, start, start_with, tokens, within, within_for, INVALID_TOKEN, JOINED_TEXT, NO_TOKEN,
};

const TRANSPORTS: [Transport; 2] = [Transport::Websocket, Transport::Polling];

fn auth(token: &str) -> String {
    format!(r#"{{"token":"{token}"}}"#)
}

fn refusal(message: &str, code: &str) -> String {
    format!(r#"44/chat,{{"message":"{message}","data":{{"code":"{code}"}}}}"#)
}

/// The answer to a `/chat` CONNECT with the given auth payload, query and headers.
async fn handshake(
    addr: std::net::SocketAddr,
    auth: Option<&str>,
    query: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut client = RawClient::connect(addr, Transport::Websocket, query, headers).await;
    client.join_ns("/chat", auth).await.frame
}

#[tokio::test]
async fn strict_connect_without_token_is_refused_with_no_token() {
    let gw = start(Profile::Strict).await;
    for transport in TRANSPORTS {
        let mut client = RawClient::connect(gw.addr(), transport, "", &[]).await;
        assert_eq!(
            client.join_ns("/chat", None).await.frame,
            refusal(NO_TOKEN, "NO_TOKEN"),
            "{transport:?}"
        );
        assert_eq!(
            client.join_ns("/chat", Some("{}")).await.frame,
            refusal(NO_TOKEN, "NO_TOKEN"),
            "{transport:?}"
        );
    }
}

#[tokio::test]
async fn strict_invalid_or_disallowed_tokens_are_refused_with_invalid_token() {
    let gw = start(Profile::Strict).await;
    let refused = [
        ("garbage", tokens::garbage()),
        ("expired", tokens::expired()),
        ("wrong secret", tokens::wrong_secret()),
        ("alg none", tokens::alg_none()),
        ("no exp", tokens::without_exp()),
        ("HS384 not configured", tokens::valid_alg(Algorithm::HS384)),
        ("HS512 not configured", tokens::valid_alg(Algorithm::HS512)),
    ];
    for (what, token) in refused {
        assert_eq!(
            handshake(gw.addr(), Some(&auth(&token)), "", &[]).await,
            refusal(INVALID_TOKEN, "INVALID_TOKEN"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn strict_token_sources_are_auth_then_query_then_bearer_header() {
    let gw = start(Profile::Strict).await;
    let valid = tokens::valid("u1");
    let bad = tokens::wrong_secret();
    let (good_query, bad_query) = (format!("token={valid}"), format!("token={bad}"));
    let (good_header, bad_header) = (format!("Bearer {valid}"), format!("Bearer {bad}"));
    let invalid = refusal(INVALID_TOKEN, "INVALID_TOKEN");
    let addr = gw.addr();

    let frame = handshake(
        addr,
        Some(&auth(&valid)),
        &bad_query,
        &[("Authorization", &bad_header)],
    )
    .await;
    assert!(frame.starts_with("40/chat,"), "auth wins: {frame}");
    let frame = handshake(addr, Some(&auth(&bad)), &good_query, &[]).await;
    assert_eq!(
        frame, invalid,
        "a bad auth token is not rescued by the query"
    );
    let frame = handshake(addr, None, &good_query, &[("Authorization", &bad_header)]).await;
    assert!(frame.starts_with("40/chat,"), "then the query: {frame}");
    let frame = handshake(addr, None, &bad_query, &[("Authorization", &good_header)]).await;
    assert_eq!(
        frame, invalid,
        "a bad query token is not rescued by the header"
    );
    let frame = handshake(addr, None, "", &[("Authorization", &good_header)]).await;
    assert!(frame.starts_with("40/chat,"), "then the header: {frame}");
    let frame = handshake(addr, None, "", &[("Authorization", &bad_header)]).await;
    assert_eq!(frame, invalid);
}

#[tokio::test]
async fn strict_refused_socket_never_receives_anything_from_chat() {
    let gw = start(Profile::Strict).await;
    let mut refused = RawClient::ws(gw.addr()).await;
    refused.join_ns("/chat", None).await;
    let (mut alice, _) = joined_client(
        gw.addr(),
        Transport::Websocket,
        "",
        Some(&auth(&tokens::valid("u1"))),
        "alice",
    )
    .await;
    alice.emit("sendMessage", &[r#"{"message":"hi"}"#]).await;
    alice.emit("typing", &[r#"{"isTyping":true}"#]).await;
    alice.wait_event("newMessage").await;
    refused.expect_quiet().await;
    // And nothing of it was stored: only alice is online.
    let mut list = RawClient::ws(gw.addr()).await;
    let (_, users) = list
        .connect_chat_auth(Some(&auth(&tokens::valid("u2"))))
        .await;
    assert_eq!(users.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn strict_configured_algorithms_are_the_only_ones_accepted() {
    let mut cfg = config(Profile::Strict);
    cfg.jwt_algorithms = vec!["HS384".into()];
    let gw = start_with(cfg).await;
    let ok = handshake(
        gw.addr(),
        Some(&auth(&tokens::valid_alg(Algorithm::HS384))),
        "",
        &[],
    )
    .await;
    assert!(ok.starts_with("40/chat,"), "{ok}");
    let refused = handshake(
        gw.addr(),
        Some(&auth(&tokens::valid_alg(Algorithm::HS256))),
        "",
        &[],
    )
    .await;
    assert_eq!(refused, refusal(INVALID_TOKEN, "INVALID_TOKEN"));
}

#[tokio::test]
async fn strict_exp_is_checked_with_the_configured_leeway() {
    let mut cfg = config(Profile::Strict);
    cfg.jwt_leeway_s = 30;
    let gw = start_with(cfg).await;
    let within_leeway = tokens::expiring_in("u1", -10);
    let ok = handshake(gw.addr(), Some(&auth(&within_leeway)), "", &[]).await;
    assert!(ok.starts_with("40/chat,"), "{ok}");
    let beyond = tokens::expiring_in("u1", -60);
    let refused = handshake(gw.addr(), Some(&auth(&beyond)), "", &[]).await;
    assert_eq!(refused, refusal(INVALID_TOKEN, "INVALID_TOKEN"));
}

#[tokio::test]
async fn strict_expiry_during_session_disconnects_and_broadcasts_user_offline() {
    let mut cfg = config(Profile::Strict);
    cfg.jwt_leeway_s = 0;
    let gw = start_with(cfg).await;
    let (mut watcher, _) = joined_client(
        gw.addr(),
        Transport::Websocket,
        "",
        Some(&auth(&tokens::valid("w"))),
        "watcher",
    )
    .await;
    for transport in TRANSPORTS {
        let short = auth(&tokens::expiring_in("u1", 2));
        let (mut alice, sid) = joined_client(gw.addr(), transport, "", Some(&short), "alice").await;
        watcher.wait_event("userOnline").await;
        let disconnect = within_for(Duration::from_secs(6), alice.wait_for_frame("41/chat,")).await;
        assert_eq!(disconnect, "41/chat,", "{transport:?}");
        assert_eq!(
            within_for(Duration::from_secs(6), watcher.next_frame()).await,
            format!(r#"42/chat,["userOffline",{{"username":"alice","clientId":"{sid}"}}]"#),
            "{transport:?}"
        );
    }
}

/// A strict client that joined as `name` with a fresh valid token in `auth`.
async fn strict_user(
    addr: std::net::SocketAddr,
    transport: Transport,
    name: &str,
) -> (RawClient, String) {
    joined_client(addr, transport, "", Some(&auth(&tokens::valid(name))), name).await
}

/// Sends `event` with raw `args`, asserts the sender gets an exception with
/// `cause` `{"pattern":event}` and a non-empty message, and returns the message.
async fn assert_refused(client: &mut RawClient, event: &str, args: &[&str]) -> String {
    client.emit(event, args).await;
    let msg = client.next_msg().await;
    assert_eq!(
        msg.name().as_deref(),
        Some("exception"),
        "{event} {args:?}: {}",
        msg.frame
    );
    let payload = msg.arg();
    let message = payload["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "{}", msg.frame);
    assert_eq!(
        msg.frame,
        format!(
            r#"42/chat,["exception",{{"status":"error","message":{},"cause":{{"pattern":"{event}"}}}}]"#,
            Value::String(message.clone())
        ),
        "{event} {args:?}"
    );
    message
}

#[tokio::test]
async fn strict_invalid_join_payloads_are_refused_and_leave_no_state() {
    let gw = start(Profile::Strict).await;
    let (mut watcher, _) = strict_user(gw.addr(), Transport::Websocket, "watcher").await;
    let mut client = RawClient::ws(gw.addr()).await;
    client
        .connect_chat_auth(Some(&auth(&tokens::valid("u1"))))
        .await;
    let long = "x".repeat(33);
    let bad: Vec<Vec<String>> = vec![
        vec![r#""a-string""#.into()],
        vec!["{}".into()],
        vec!["null".into()],
        vec![],
        vec![r#"{"username":""}"#.into()],
        vec![r#"{"username":"   "}"#.into()],
        vec![format!(r#"{{"username":"{long}"}}"#)],
        vec![r#"{"username":"a\u0007b"}"#.into()],
        vec![r#"{"username":"a\nb"}"#.into()],
        vec![r#"{"username":42}"#.into()],
        vec![r#"{"username":{"x":1}}"#.into()],
    ];
    for args in &bad {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&mut client, "joinChat", &refs).await;
    }
    watcher.expect_quiet().await;
    // Not joined: its messages are ignored, and no user was stored.
    client.emit("sendMessage", &[r#"{"message":"hi"}"#]).await;
    watcher.expect_quiet().await;
    let mut late = RawClient::ws(gw.addr()).await;
    let (_, users) = late
        .connect_chat_auth(Some(&auth(&tokens::valid("u2"))))
        .await;
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    // The limits themselves are allowed: 32 characters (after trimming).
    let name = "y".repeat(32);
    client
        .emit("joinChat", &[&format!(r#"{{"username":"  {name}  "}}"#)])
        .await;
    assert_eq!(
        client.next_msg().await.name().as_deref(),
        Some("userOnline")
    );
}

#[tokio::test]
async fn strict_invalid_messages_and_typing_are_refused_and_nothing_is_broadcast() {
    let gw = start(Profile::Strict).await;
    let (mut watcher, _) = strict_user(gw.addr(), Transport::Websocket, "watcher").await;
    let (mut alice, _) = strict_user(gw.addr(), Transport::Polling, "alice").await;
    watcher.wait_event("userOnline").await;
    let too_long = "é".repeat(2049); // 4,098 bytes
    let bad_messages = [
        r#"{"message":""}"#.to_owned(),
        r#"{"message":42}"#.to_owned(),
        r#"{"text":"hi"}"#.to_owned(),
        "null".to_owned(),
        r#""hi""#.to_owned(),
        format!(r#"{{"message":"{too_long}"}}"#),
    ];
    for args in &bad_messages {
        assert_refused(&mut alice, "sendMessage", &[args]).await;
    }
    for args in [r#"{"isTyping":"yes"}"#, r#"{"isTyping":1}"#, "{}", "null"] {
        assert_refused(&mut alice, "typing", &[args]).await;
    }
    watcher.expect_quiet().await;
    // Exactly 4,096 bytes is allowed.
    let max = "é".repeat(2048);
    alice
        .emit("sendMessage", &[&format!(r#"{{"message":"{max}"}}"#)])
        .await;
    assert_eq!(
        watcher.wait_event("newMessage").await.arg()["message"],
        json!(max)
    );
}

#[tokio::test]
async fn strict_events_match_section_2() {
    let gw = start(Profile::Strict).await;
    let (mut watcher, _) = strict_user(gw.addr(), Transport::Websocket, "watcher").await;
    let mut alice = RawClient::polling(gw.addr()).await;
    let (sid, users) = alice
        .connect_chat_auth(Some(&auth(&tokens::valid("alice"))))
        .await;
    assert_eq!(users.as_array().map(Vec::len), Some(1));
    alice.emit("joinChat", &[r#"{"username":"alice"}"#]).await;
    let online = format!(r#"42/chat,["userOnline",{{"username":"alice","clientId":"{sid}"}}]"#);
    assert_eq!(alice.next_frame().await, online);
    assert_eq!(
        alice.wait_event("joined").await.frame,
        format!(r#"42/chat,["joined",{{"username":"alice","message":"{JOINED_TEXT}"}}]"#)
    );
    assert_eq!(watcher.next_frame().await, online);
    alice.emit("sendMessage", &[r#"{"message":"hi"}"#]).await;
    for c in [&mut alice, &mut watcher] {
        let msg = c.next_msg().await;
        let ts = msg.arg()["timestamp"]
            .as_str()
            .expect("a timestamp")
            .to_owned();
        assert_iso_timestamp(&ts);
        assert_eq!(
            msg.frame,
            format!(
                r#"42/chat,["newMessage",{{"username":"alice","message":"hi","timestamp":"{ts}"}}]"#
            )
        );
    }
    alice.emit("typing", &[r#"{"isTyping":true}"#]).await;
    assert_eq!(
        watcher.next_frame().await,
        r#"42/chat,["userTyping",{"username":"alice","isTyping":true}]"#
    );
    alice.expect_quiet().await;
    alice.close().await;
    assert_eq!(
        watcher.next_frame().await,
        format!(r#"42/chat,["userOffline",{{"username":"alice","clientId":"{sid}"}}]"#)
    );
}

#[tokio::test]
async fn strict_acks_carry_joined_the_broadcast_timestamp_ok_and_exceptions() {
    let gw = start(Profile::Strict).await;
    for transport in TRANSPORTS {
        let mut alice = RawClient::connect(gw.addr(), transport, "", &[]).await;
        alice
            .connect_chat_auth(Some(&auth(&tokens::valid("a"))))
            .await;
        alice
            .emit_ack(1, "joinChat", &[r#"{"username":"alice"}"#])
            .await;
        let joined = format!(r#"{{"username":"alice","message":"{JOINED_TEXT}"}}"#);
        let mut frames = Vec::new();
        while frames.len() < 3 {
            frames.push(alice.next_frame().await);
        }
        assert!(
            frames.contains(&format!("43/chat,1[{joined}]")),
            "{transport:?}: {frames:?}"
        );
        assert!(
            frames.contains(&format!(r#"42/chat,["joined",{joined}]"#)),
            "{frames:?}"
        );

        alice
            .emit_ack(2, "sendMessage", &[r#"{"message":"hi"}"#])
            .await;
        let (mut ack, mut broadcast) = (None, None);
        while ack.is_none() || broadcast.is_none() {
            let msg = alice.next_msg().await;
            match msg.kind {
                chorus_protocol::socketio::PacketType::Ack => ack = Some(msg),
                _ => broadcast = Some(msg),
            }
        }
        let (ack, broadcast) = (ack.expect("an ack"), broadcast.expect("a broadcast"));
        let ts = broadcast.arg()["timestamp"].clone();
        assert_eq!(ack.id, Some(2));
        assert_eq!(
            ack.frame,
            format!(r#"43/chat,2[{{"ok":true,"timestamp":{ts}}}]"#)
        );

        alice.emit_ack(3, "typing", &[r#"{"isTyping":true}"#]).await;
        assert_eq!(alice.next_frame().await, r#"43/chat,3[{"ok":true}]"#);

        alice.emit_ack(4, "typing", &[r#"{"isTyping":"no"}"#]).await;
        let refused = within(async {
            loop {
                let msg = alice.next_msg().await;
                if msg.id == Some(4) {
                    return msg;
                }
            }
        })
        .await;
        let payload = refused.arg();
        assert_eq!(payload["status"], json!("error"), "{}", refused.frame);
        assert_eq!(
            payload["cause"],
            json!({"pattern": "typing"}),
            "{}",
            refused.frame
        );
    }
}

#[tokio::test]
async fn strict_rate_limit_refuses_events_over_the_bucket() {
    let mut cfg = config(Profile::Strict);
    // The join takes one token of the four (section 7.4); the refill is too slow
    // to add another while the test runs, however slow the machine.
    (cfg.rate_per_sec, cfg.rate_burst) = (0.01, 4);
    let gw = start_with(cfg).await;
    let (mut watcher, _) = strict_user(gw.addr(), Transport::Websocket, "watcher").await;
    let (mut alice, _) = strict_user(gw.addr(), Transport::Websocket, "alice").await;
    watcher.wait_event("userOnline").await;
    let frames: Vec<String> = (0..6)
        .map(|i| {
            event_frame(
                "/chat",
                None,
                "sendMessage",
                &[&format!(r#"{{"message":"m{i}"}}"#)],
            )
        })
        .collect();
    let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
    alice.send_all(&refs).await;
    let mut limited = 0;
    let mut echoed = 0;
    for _ in 0..6 {
        let msg = alice.next_msg().await;
        match msg.name().as_deref() {
            Some("newMessage") => echoed += 1,
            Some("exception") => {
                assert_eq!(msg.arg()["message"], json!("rate limited"), "{}", msg.frame);
                assert_eq!(msg.arg()["status"], json!("error"));
                limited += 1;
            }
            _ => panic!("unexpected {}", msg.frame),
        }
    }
    assert_eq!((echoed, limited), (3, 3));
    for i in 0..3 {
        assert_eq!(
            watcher.next_msg().await.arg()["message"],
            json!(format!("m{i}"))
        );
    }
    watcher.expect_quiet().await;
    assert!(gw
        .metrics_text()
        .contains(r#"chorus_gateway_refused_events_total{reason="rate_limited"} 3"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_slow_consumer_is_disconnected_and_counted_never_left_with_a_gap() {
    let mut cfg = config(Profile::Strict);
    (cfg.rate_per_sec, cfg.rate_burst, cfg.queue_size) = (1e6, 1_000_000, 64);
    let gw = start_with(cfg).await;
    // The slow consumer reads nothing after joining, on a tiny receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
    let stream = socket.connect(gw.addr()).await.expect("connect");
    let target = endpoint(Transport::Websocket, "", None);
    let (mut slow, _) = within(tokio_tungstenite::client_async(
        format!("ws://{}{target}", gw.addr()),
        stream,
    ))
    .await
    .expect("websocket handshake");
    let token = tokens::valid("slow");
    slow.send(Message::text(support::raw::connect_frame(
        "/chat",
        Some(&auth(&token)),
    )))
    .await
    .expect("send CONNECT");

    let (mut sender, _) = strict_user(gw.addr(), Transport::Polling, "sender").await;
    let text = "z".repeat(4000);
    let mut sent = 0;
    within_for(Duration::from_secs(90), async {
        while !gw
            .metrics_text()
            .contains("chorus_gateway_slow_consumer_disconnects_total 1")
        {
            // Batches smaller than the queue, each read back by the sender
            // before the next, so that only the slow consumer can overflow.
            let frames: Vec<String> = (sent..sent + 20)
                .map(|i| {
                    event_frame(
                        "/chat",
                        None,
                        "sendMessage",
                        &[&format!(r#"{{"message":"{i} {text}"}}"#)],
                    )
                })
                .collect();
            let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
            sender.send_all(&refs).await;
            for _ in 0..20 {
                sender.wait_event("newMessage").await;
            }
            sent += 20;
            assert!(
                sent <= 20_000,
                "20,000 messages did not overflow the slow consumer"
            );
        }
    })
    .await;

    // What the slow consumer did get is a gap-free prefix, then the end.
    let mut received = 0;
    within_for(Duration::from_secs(30), async {
        use futures_util::StreamExt;
        let prefix = r#"42/chat,["newMessage",{"username":"sender","message":""#;
        while let Some(Ok(frame)) = slow.next().await {
            let Message::Text(t) = frame else { continue };
            let Some(rest) = t.strip_prefix(prefix) else {
                continue;
            };
            let n: usize = rest
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a message number");
            assert_eq!(n, received, "a gap in what the slow consumer received");
            received += 1;
        }
    })
    .await;
    assert!(received < sent, "it was cut off: {received} of {sent}");
}

#[tokio::test]
async fn strict_graceful_shutdown_sends_disconnect_to_every_socket_and_stops_accepting() {
    let gw = start(Profile::Strict).await;
    let addr = gw.addr();
    let mut clients = Vec::new();
    for transport in TRANSPORTS {
        let (client, _) = strict_user(addr, transport, "u").await;
        clients.push(client);
    }
    let shutdown = tokio::spawn(gw.shutdown());
    for client in &mut clients {
        assert_eq!(client.wait_for_frame("41/chat,").await, "41/chat,");
        client.expect_closed().await;
    }
    within_for(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown completes");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
