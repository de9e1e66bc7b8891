//! docs/protocol.md section 1 (Engine.IO and connection), profile `seed`, checked
//! with raw websocket frames and raw HTTP long-polling.

use std::time::{Duration, Instant};

use chorus_gateway::Profile;
use chorus_test_support::http::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support;
use crate::support::raw::{connect_frame, endpoint, event_frame, Incoming, RawClient, Transport};
use crate::support::{config, start, start_with, tokens, within, WAIT};

const TRANSPORTS: [Transport; 2] = [Transport::Websocket, Transport::Polling];

#[tokio::test]
async fn seed_open_packet_over_polling_offers_websocket_with_default_fields_in_order() {
    let gw = start(Profile::Seed).await;
    let client = RawClient::polling(gw.addr()).await;
    assert_eq!(
        client.open_text,
        format!(
            r#"0{{"sid":"{}","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#,
            client.sid()
        )
    );
}

#[tokio::test]
async fn seed_open_packet_over_websocket_has_no_upgrades() {
    let gw = start(Profile::Seed).await;
    let client = RawClient::ws(gw.addr()).await;
    assert_eq!(
        client.open_text,
        format!(
            r#"0{{"sid":"{}","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#,
            client.sid()
        )
    );
}

#[tokio::test]
async fn seed_server_pings_every_interval_and_a_ponging_client_stays_connected() {
    let mut cfg = config(Profile::Seed);
    (cfg.ping_interval_ms, cfg.ping_timeout_ms) = (200, 300);
    let gw = start_with(cfg).await;
    for transport in TRANSPORTS {
        let mut client = RawClient::connect(gw.addr(), transport, "", &[]).await;
        assert_eq!(
            (client.open.ping_interval, client.open.ping_timeout),
            (200, 300)
        );
        let started = Instant::now();
        let mut pings = 0;
        while pings < 4 {
            match client.recv(WAIT).await {
                Some(Incoming::Packet(p)) if p == "2" => pings += 1,
                other => panic!("{transport:?}: expected a ping, got {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        // Four pings 200 ms apart, answered each time, well past interval + timeout.
        assert!(
            elapsed >= Duration::from_millis(700),
            "{transport:?}: pings came too fast: {elapsed:?}"
        );
        let (sid, online) = client.connect_chat().await;
        assert_eq!((sid.len(), online), (20, serde_json::json!([])));
    }
}

#[tokio::test]
async fn seed_client_that_does_not_pong_is_closed_after_ping_timeout() {
    let mut cfg = config(Profile::Seed);
    (cfg.ping_interval_ms, cfg.ping_timeout_ms) = (200, 300);
    let gw = start_with(cfg).await;
    for transport in TRANSPORTS {
        let started = Instant::now();
        let mut client = RawClient::connect_with(gw.addr(), transport, "", &[], false).await;
        let first = client.recv(WAIT).await;
        assert_eq!(first, Some(Incoming::Packet("2".into())), "{transport:?}");
        let end = client.expect_closed_within(Duration::from_secs(3)).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(450),
            "{transport:?}: closed before pingInterval + pingTimeout: {elapsed:?} ({end:?})"
        );
    }
}

#[tokio::test]
async fn seed_connect_to_chat_answers_sid_then_empty_online_users() {
    let gw = start(Profile::Seed).await;
    for transport in TRANSPORTS {
        let mut client = RawClient::connect(gw.addr(), transport, "", &[]).await;
        let reply = client.join_ns("/chat", None).await;
        let sid = support::raw::connect_sid(&reply);
        assert_eq!(sid.len(), 20, "the namespace sid has 20 characters");
        assert_ne!(
            sid,
            client.sid(),
            "the namespace sid is not the Engine.IO sid"
        );
        assert_eq!(client.next_frame().await, r#"42/chat,["onlineUsers",[]]"#);
    }
}

#[tokio::test]
async fn seed_connect_with_auth_payload_is_answered_like_a_plain_connect() {
    let gw = start(Profile::Seed).await;
    let mut client = RawClient::ws(gw.addr()).await;
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid("u1"));
    let (_, online) = client.connect_chat_auth(Some(&auth)).await;
    assert_eq!(online, serde_json::json!([]));
}

#[tokio::test]
async fn seed_online_users_lists_joined_sockets_in_join_order() {
    let gw = start(Profile::Seed).await;
    let query = format!("token={}", tokens::valid("u1"));
    let mut names = Vec::new();
    for (name, transport) in [("alice", Transport::Websocket), ("bob", Transport::Polling)] {
        let mut client = RawClient::connect(gw.addr(), transport, &query, &[]).await;
        let (sid, _) = client.connect_chat().await;
        client
            .emit("joinChat", &[&format!(r#"{{"username":"{name}"}}"#)])
            .await;
        client.wait_event("joined").await;
        names.push((sid, name, client));
    }
    for transport in TRANSPORTS {
        let mut late = RawClient::connect(gw.addr(), transport, "", &[]).await;
        late.join_ns("/chat", None).await;
        assert_eq!(
            late.next_frame().await,
            format!(
                r#"42/chat,["onlineUsers",[["{}","alice"],["{}","bob"]]]"#,
                names[0].0, names[1].0
            )
        );
    }
}

#[tokio::test]
async fn seed_root_namespace_accepts_connect_and_drops_events() {
    let gw = start(Profile::Seed).await;
    let query = format!("token={}", tokens::valid("u1"));
    for transport in TRANSPORTS {
        let mut client = RawClient::connect(gw.addr(), transport, &query, &[]).await;
        let reply = client.join_ns("/", None).await;
        support::raw::connect_sid(&reply);
        client
            .send(&event_frame(
                "/",
                None,
                "joinChat",
                &[r#"{"username":"ghost"}"#],
            ))
            .await;
        client
            .send(&event_frame(
                "/",
                None,
                "sendMessage",
                &[r#"{"message":"hi"}"#],
            ))
            .await;
        client.expect_quiet().await;
        // Still connected, and nobody joined.
        let (_, online) = client.connect_chat().await;
        assert_eq!(online, serde_json::json!([]), "{transport:?}");
    }
}

#[tokio::test]
async fn seed_unknown_namespace_gets_invalid_namespace() {
    let gw = start(Profile::Seed).await;
    for transport in TRANSPORTS {
        let mut client = RawClient::connect(gw.addr(), transport, "", &[]).await;
        let reply = client.join_ns("/nope", None).await;
        assert_eq!(reply.frame, r#"44/nope,{"message":"Invalid namespace"}"#);
        // The connection survives the refusal.
        client.connect_chat().await;
    }
}

/// Connects a client to `/` and `/chat` (joined as "victim" with a valid
/// token, unless `join` is false), sends `bad`, and checks that the whole
/// connection is closed without status and that the joined user goes offline.
async fn assert_closes_connection(setup: &[&str], bad: &str) {
    let gw = start(Profile::Seed).await;
    let mut observer = RawClient::ws(gw.addr()).await;
    observer.connect_chat().await;
    let query = format!("token={}", tokens::valid("u1"));
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &query, &[]).await;
    let mut chat_sid = None;
    for frame in setup {
        client.send(frame).await;
        let reply = client.next_msg().await;
        if reply.nsp == "/chat" {
            chat_sid = Some(support::raw::connect_sid(&reply));
            client.wait_event("onlineUsers").await;
            client.emit("joinChat", &[r#"{"username":"victim"}"#]).await;
            client.wait_event("joined").await;
            observer.wait_event("userOnline").await;
        }
    }
    client.send(bad).await;
    let end = client.expect_closed().await;
    assert_eq!(
        end,
        Incoming::CloseFrame(None),
        "{bad:?} closes the websocket without status (1005)"
    );
    if let Some(sid) = chat_sid {
        assert_eq!(
            observer.next_frame().await,
            format!(r#"42/chat,["userOffline",{{"username":"victim","clientId":"{sid}"}}]"#),
            "closing the connection disconnects its /chat socket"
        );
    }
    observer.expect_quiet().await;
}

#[tokio::test]
async fn seed_event_before_connect_closes_the_connection() {
    assert_closes_connection(&[], &event_frame("/chat", None, "joinChat", &["{}"])).await;
}

#[tokio::test]
async fn seed_event_for_a_namespace_not_connected_closes_the_connection() {
    assert_closes_connection(
        &[&connect_frame("/", None)],
        &event_frame("/chat", None, "sendMessage", &[r#"{"message":"x"}"#]),
    )
    .await;
}

#[tokio::test]
async fn seed_malformed_json_closes_the_connection_and_its_sockets() {
    assert_closes_connection(
        &[&connect_frame("/", None), &connect_frame("/chat", None)],
        r#"42/chat,["joinChat",{bad"#,
    )
    .await;
}

#[tokio::test]
async fn seed_unknown_packet_type_closes_the_connection() {
    assert_closes_connection(&[&connect_frame("/chat", None)], "49/chat,[]").await;
}

#[tokio::test]
async fn seed_second_connect_to_chat_closes_the_connection() {
    assert_closes_connection(
        &[&connect_frame("/chat", None)],
        &connect_frame("/chat", None),
    )
    .await;
}

#[tokio::test]
async fn seed_malformed_json_over_polling_closes_the_session() {
    let gw = start(Profile::Seed).await;
    let mut client = RawClient::polling(gw.addr()).await;
    client.connect_chat().await;
    client.send(r#"42/chat,["joinChat",{bad"#).await;
    client.expect_closed().await;
    let target = endpoint(Transport::Polling, "", Some(client.sid()));
    let after = within(http(gw.addr(), "GET", &target, &[], b"")).await;
    assert_eq!(after.status, 400, "the session is gone: {}", after.text());
}

/// A `sendMessage` frame of exactly `len` bytes, and the length of its message.
fn send_message_frame(len: usize) -> (String, usize) {
    let empty = event_frame("/chat", None, "sendMessage", &[r#"{"message":""}"#]);
    let text = "x".repeat(len - empty.len());
    let frame = event_frame(
        "/chat",
        None,
        "sendMessage",
        &[&format!(r#"{{"message":"{text}"}}"#)],
    );
    assert_eq!(frame.len(), len);
    (frame, text.len())
}

#[tokio::test]
async fn seed_websocket_frame_of_max_payload_is_accepted_and_broadcast_unlimited() {
    let gw = start(Profile::Seed).await;
    let query = format!("token={}", tokens::valid("u1"));
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &query, &[]).await;
    client.connect_chat().await;
    client.emit("joinChat", &[r#"{"username":"big"}"#]).await;
    client.wait_event("joined").await;
    let (frame, message_len) = send_message_frame(1_000_000);
    client.send(&frame).await;
    let echoed = client.wait_event("newMessage").await;
    assert!(
        echoed.frame.len() > 1_000_000,
        "outgoing frames are not limited: {} bytes",
        echoed.frame.len()
    );
    assert_eq!(
        echoed.arg()["message"].as_str().map(str::len),
        Some(message_len)
    );
}

#[tokio::test]
async fn seed_websocket_frame_over_max_payload_closes_with_1009() {
    let gw = start(Profile::Seed).await;
    let mut client = RawClient::ws(gw.addr()).await;
    client.connect_chat().await;
    client.send(&send_message_frame(1_000_001).0).await;
    match client.expect_closed().await {
        Incoming::CloseFrame(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close code 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn seed_polling_post_over_max_payload_gets_413() {
    let gw = start(Profile::Seed).await;
    let client = RawClient::polling(gw.addr()).await;
    let target = endpoint(Transport::Polling, "", Some(client.sid()));
    let (body, _) = send_message_frame(1_000_001);
    let response = within(http(gw.addr(), "POST", &target, &[], body.as_bytes())).await;
    assert_eq!(response.status, 413);
}

#[tokio::test]
async fn seed_polling_upgrades_to_websocket_with_probe_then_upgrade() {
    let gw = start(Profile::Seed).await;
    let query = format!("token={}", tokens::valid("u1"));
    let mut client = RawClient::connect(gw.addr(), Transport::Polling, &query, &[]).await;
    assert_eq!(client.open.upgrades, ["websocket"]);
    let (sid, _) = client.connect_chat().await;
    let trace = client.upgrade(gw.addr()).await;
    assert_eq!(trace.probe_reply, "3probe");
    assert_eq!(
        trace.poll_packets.last().map(String::as_str),
        Some("6"),
        "the pending poll is released with a noop"
    );
    // After `5`, the same namespace socket lives on over the websocket.
    client
        .emit("joinChat", &[r#"{"username":"upgraded"}"#])
        .await;
    assert_eq!(
        client.next_frame().await,
        format!(r#"42/chat,["userOnline",{{"username":"upgraded","clientId":"{sid}"}}]"#)
    );
    client.wait_event("joined").await;
}

#[tokio::test]
async fn seed_healthz_and_metrics_answer_over_http() {
    let gw = start(Profile::Seed).await;
    let health = within(http(gw.addr(), "GET", "/healthz", &[], b"")).await;
    assert_eq!(health.status, 200);
    let mut client = RawClient::ws(gw.addr()).await;
    client.connect_chat().await;
    let metrics = within(http(gw.addr(), "GET", "/metrics", &[], b"")).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(text.contains("chorus_gateway_sockets 1"), "{text}");
    assert!(gw.metrics_text().contains("chorus_gateway_sockets 1"));
}
