//! docs/protocol.md section 9, clusters: gateway nodes joined over a real
//! `redis-server` (`--cluster`), in the wire format of
//! `@socket.io/redis-adapter`. Broadcasts and rooms cross nodes in per-sender
//! order; strict snapshots hold every node's users; a dead node's users go
//! offline within the bound; a node that loses Redis disconnects its
//! sockets; seed presence stays per node; and one cluster holds an official
//! socket.io node and ours.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_gateway::{Profile, RunningGateway};
use chorus_test_support::chat_node::ChatNode;
use chorus_test_support::http::http;
use chorus_test_support::process::metric;
use chorus_test_support::redis::RedisServer;
use serde_json::{json, Value};

use crate::support::raw::{event_frame, joined_client, RawClient, Transport};
use crate::support::{config, gateway_process, start_with, tokens, SECRET, WAIT};

/// How many messages each sender sends in the ordering checks.
const MESSAGES: usize = 200;
/// The stated bound on a dead node's users going offline elsewhere: the
/// heartbeat key's TTL, one check period, and a second of slack.
const DEATH_BOUND: Duration = Duration::from_secs(5);

async fn node(profile: Profile, redis: &RedisServer) -> RunningGateway {
    let mut cfg = config(profile);
    cfg.cluster = Some(redis.url());
    cfg.rate_per_sec = 10_000.0;
    cfg.rate_burst = 10_000;
    start_with(cfg).await
}

/// A strict user joined as `name` on the node at `addr`; its client and `/chat` id.
async fn user(addr: SocketAddr, transport: Transport, name: &str) -> (RawClient, String) {
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid(name));
    joined_client(addr, transport, "", Some(&auth), name).await
}

/// A seed user joined as `name` (token in the query, as the tutorial's client sends it).
async fn seed_user(addr: SocketAddr, name: &str) -> (RawClient, String) {
    let query = format!("token={}", tokens::valid(name));
    joined_client(addr, Transport::Websocket, &query, None, name).await
}

/// A strict client connected to `/chat` (not joined); its `onlineUsers` snapshot.
async fn snapshot(addr: SocketAddr, name: &str) -> (RawClient, Value) {
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid(name));
    let mut client = RawClient::connect(addr, Transport::Websocket, "", &[]).await;
    let (_, online) = client.connect_chat_auth(Some(&auth)).await;
    (client, online)
}

/// The names in an `onlineUsers` or `roomUsers` list.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list of [id, name]")
        .iter()
        .map(|e| e[1].as_str().expect("a name").to_owned())
        .collect()
}

/// Waits for a `newMessage` whose text is `text`, returning the `newMessage` texts before it.
async fn until_message(client: &mut RawClient, text: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let msg = client.wait_event("newMessage").await;
        let got = msg.arg()["message"].as_str().expect("a text").to_owned();
        if got == text {
            return seen;
        }
        seen.push(got);
    }
}

async fn send(client: &mut RawClient, text: &str) {
    client
        .emit("sendMessage", &[&json!({ "message": text }).to_string()])
        .await;
}

/// Reads `newMessage`s until every one of `senders` has sent its `done`
/// marker, asserting that each sender's `count` messages arrived exactly
/// once and in order.
async fn assert_fifo(client: &mut RawClient, senders: &[&str], count: usize) {
    let mut next = vec![0usize; senders.len()];
    let mut done = vec![false; senders.len()];
    while !done.iter().all(|d| *d) {
        let arg = client.wait_event("newMessage").await.arg();
        let Some(at) = senders.iter().position(|s| arg["username"] == json!(s)) else {
            continue;
        };
        let text = arg["message"].as_str().expect("a text");
        // Earlier messages of the test (markers) are not part of the sequence.
        if !text.starts_with(&format!("{}-", senders[at])) {
            continue;
        }
        if text == format!("{}-done", senders[at]) {
            assert_eq!(next[at], count, "messages from {} lost", senders[at]);
            done[at] = true;
            continue;
        }
        assert_eq!(
            text,
            format!("{}-{}", senders[at], next[at]),
            "out of order or lost"
        );
        next[at] += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_broadcasts_rooms_and_snapshots_are_cluster_wide() {
    let redis = RedisServer::start();
    let a = node(Profile::Strict, &redis).await;
    let b = node(Profile::Strict, &redis).await;
    for transport in [Transport::Websocket, Transport::Polling] {
        let tag = format!("{transport:?}").to_lowercase();
        let carol_name = format!("carol-{tag}");
        let ann_name = format!("ann-{tag}");
        let bob_name = format!("bob-{tag}");
        let (mut carol, _) = user(b.addr(), transport, &carol_name).await;
        let (mut ann, ann_id) = user(a.addr(), transport, &ann_name).await;
        // carol (node B) hears of ann (node A): the broadcast crossed.
        loop {
            let online = carol.wait_event("userOnline").await.arg();
            if online["username"] == json!(ann_name) {
                assert_eq!(online["clientId"], json!(ann_id));
                break;
            }
        }
        // A newcomer on B sees ann and carol in its snapshot.
        let (_watcher, online) = snapshot(b.addr(), "watcher").await;
        let seen = names(&online);
        assert!(
            seen.contains(&ann_name) && seen.contains(&carol_name),
            "{online}"
        );

        // Rooms: ann joins r (node A), then a marker crosses (same sender, so after it).
        let room = format!("r-{tag}");
        ann.emit("joinRoom", &[&json!({ "room": room }).to_string()])
            .await;
        ann.wait_event("roomJoined").await;
        send(&mut ann, "marker").await;
        until_message(&mut carol, "marker").await;
        let (mut bob, bob_id) = user(b.addr(), transport, &bob_name).await;
        bob.emit("joinRoom", &[&json!({ "room": room }).to_string()])
            .await;
        let users = bob.wait_event("roomUsers").await.arg();
        assert_eq!(
            names(&users["users"]),
            vec![bob_name.clone(), ann_name.clone()],
            "{users}"
        );
        // ann (node A, a member) gets bob's roomJoined.
        let joined = ann.wait_event("roomJoined").await.arg();
        assert_eq!(
            joined,
            json!({"room": room, "username": bob_name, "clientId": bob_id})
        );
        // A room message reaches the member on the other node, not the non-member.
        ann.emit(
            "sendMessage",
            &[&json!({ "message": "in-room", "room": room }).to_string()],
        )
        .await;
        let msg = bob.wait_event("newMessage").await.arg();
        assert_eq!(
            (msg["message"].clone(), msg["room"].clone()),
            (json!("in-room"), json!(room))
        );
        send(&mut ann, "after-room").await;
        let before = until_message(&mut carol, "after-room").await;
        assert!(before.is_empty(), "carol is in no room but got {before:?}");
        // Room typing: to the other node's member, never back to the sender.
        bob.emit(
            "typing",
            &[&json!({ "isTyping": true, "room": room }).to_string()],
        )
        .await;
        let typing = ann.wait_event("userTyping").await.arg();
        assert_eq!(
            typing,
            json!({"username": bob_name, "isTyping": true, "room": room})
        );

        // Per-sender FIFO: ann (A) and bob (B) send at once; each receiver on
        // each node sees each sender's messages complete and in order.
        let ann_sends = async {
            for i in 0..MESSAGES {
                send(&mut ann, &format!("{ann_name}-{i}")).await;
            }
            send(&mut ann, &format!("{ann_name}-done")).await;
        };
        let bob_sends = async {
            for i in 0..MESSAGES {
                send(&mut bob, &format!("{bob_name}-{i}")).await;
            }
            send(&mut bob, &format!("{bob_name}-done")).await;
        };
        tokio::join!(ann_sends, bob_sends);
        let both = [ann_name.as_str(), bob_name.as_str()];
        for client in [&mut carol, &mut ann, &mut bob] {
            assert_fifo(client, &both, MESSAGES).await;
        }
    }
    assert!(metric(&a.metrics_text(), "chorus_gateway_cluster_dropped_total") == 0.0);
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_starts_later_syncs_the_users_of_the_others() {
    let redis = RedisServer::start();
    let a = node(Profile::Strict, &redis).await;
    let (mut ann, ann_id) = user(a.addr(), Transport::Websocket, "ann").await;
    ann.emit("joinRoom", &[r#"{"room":"lobby"}"#]).await;
    ann.wait_event("roomJoined").await;
    // Started after ann joined: it reads node A's presence from Redis.
    let b = node(Profile::Strict, &redis).await;
    let (_watcher, online) = snapshot(b.addr(), "watcher").await;
    assert_eq!(online, json!([[ann_id, "ann"]]));
    let (mut bob, _) = user(b.addr(), Transport::Websocket, "bob").await;
    bob.emit("joinRoom", &[r#"{"room":"lobby"}"#]).await;
    let users = bob.wait_event("roomUsers").await.arg();
    assert_eq!(names(&users["users"]), vec!["bob", "ann"], "{users}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_users_leave_their_rooms_and_go_offline_within_the_bound() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = gateway_process(&["--profile", "strict", "--cluster", &url]);
    let b = node(Profile::Strict, &redis).await;
    let (mut ann, ann_id) = user(a.addr, Transport::Websocket, "ann").await;
    ann.emit("joinRoom", &[r#"{"room":"lobby"}"#]).await;
    ann.wait_event("roomJoined").await;
    let (mut bob, _) = user(b.addr(), Transport::Websocket, "bob").await;
    send(&mut ann, "marker").await;
    until_message(&mut bob, "marker").await;
    bob.emit("joinRoom", &[r#"{"room":"lobby"}"#]).await;
    let users = bob.wait_event("roomUsers").await.arg();
    assert_eq!(names(&users["users"]), vec!["bob", "ann"], "{users}");

    let killed = Instant::now();
    a.signal("KILL");
    let left = bob.wait_event("roomLeft").await.arg();
    assert_eq!(
        left,
        json!({"room": "lobby", "username": "ann", "clientId": ann_id})
    );
    let offline = bob.next_msg().await;
    assert_eq!(
        offline.name().as_deref(),
        Some("userOffline"),
        "{}",
        offline.frame
    );
    assert_eq!(
        offline.arg(),
        json!({"username": "ann", "clientId": ann_id})
    );
    let took = killed.elapsed();
    eprintln!("ann's roomLeft and userOffline reached node B {took:?} after node A was killed");
    assert!(
        took <= DEATH_BOUND,
        "ann went offline {took:?} after node A died"
    );
    let (_watcher, online) = snapshot(b.addr(), "watcher").await;
    assert_eq!(names(&online), vec!["bob"]);
    drop(ann);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_redis_disconnects_its_sockets_is_unready_and_refuses_new_ones() {
    let redis = RedisServer::start();
    let port = redis.port;
    let a = node(Profile::Strict, &redis).await;
    let (mut ann, _) = user(a.addr(), Transport::Websocket, "ann").await;
    let (mut bob, _) = user(a.addr(), Transport::Polling, "bob").await;
    assert_eq!(
        metric(
            &a.metrics_text(),
            "chorus_gateway_cluster_disconnects_total"
        ),
        0.0
    );
    drop(redis);
    for client in [&mut ann, &mut bob] {
        loop {
            let msg = client.next_msg().await;
            if msg.frame == "41/chat," {
                break;
            }
        }
    }
    let text = a.metrics_text();
    assert_eq!(
        metric(&text, "chorus_gateway_cluster_disconnects_total"),
        2.0,
        "{text}"
    );
    // Until a link is up again, the node reports itself unready and a socket
    // is refused rather than served with a gap.
    let health = http(a.addr(), "GET", "/healthz", &[], b"").await;
    assert_eq!(
        health.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&health.body)
    );
    assert_eq!(health.body, b"cluster link down");
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid("carol"));
    let mut carol = RawClient::ws(a.addr()).await;
    let reply = carol.join_ns("/chat", Some(&auth)).await;
    assert!(reply.frame.starts_with("44/chat,"), "{}", reply.frame);
    assert!(
        reply.frame.contains("cluster unavailable"),
        "{}",
        reply.frame
    );
    // Redis back where it was: the node links again and serves new sockets.
    let _redis = RedisServer::start_on(port);
    let online = within_bound(async {
        loop {
            let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid("dave"));
            let mut dave = RawClient::ws(a.addr()).await;
            let reply = dave.join_ns("/chat", Some(&auth)).await;
            if reply.frame.starts_with("40/chat,") {
                break dave.next_msg().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        online.name().as_deref(),
        Some("onlineUsers"),
        "{}",
        online.frame
    );
    assert_eq!(online.arg(), json!([]), "ann and bob were disconnected");
    let health = http(a.addr(), "GET", "/healthz", &[], b"").await;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_cluster_channel_is_counted_and_dropped() {
    use std::io::{Read, Write};
    let redis = RedisServer::start();
    let a = node(Profile::Strict, &redis).await;
    let (mut ann, _) = user(a.addr(), Transport::Websocket, "ann").await;
    // Not msgpack; msgpack that is no broadcast; a binary EVENT (not carried).
    let garbage: [&[u8]; 3] = [
        b"\xc1\xc1",
        b"\x92\xa1u\xc0",
        b"\x93\xa1u\x83\xa4type\x05\xa4data\x90\xa3nsp\xa5/chat\x80",
    ];
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).expect("redis");
    for payload in garbage {
        let head = format!(
            "*3\r\n$7\r\nPUBLISH\r\n$16\r\nsocket.io#/chat#\r\n${}\r\n",
            payload.len()
        );
        let mut cmd = head.into_bytes();
        cmd.extend_from_slice(payload);
        cmd.extend_from_slice(b"\r\n");
        conn.write_all(&cmd).expect("publish");
        let mut reply = [0u8; 4];
        conn.read_exact(&mut reply).expect("a reply");
        assert_eq!(&reply, b":1\r\n", "one subscriber got it");
    }
    // The node goes on: a marker after the garbage arrives, nothing else did.
    send(&mut ann, "after").await;
    let before = until_message(&mut ann, "after").await;
    assert!(before.is_empty(), "{before:?}");
    within_bound(async {
        while metric(&a.metrics_text(), "chorus_gateway_cluster_dropped_total") < 3.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let text = a.metrics_text();
    assert_eq!(
        metric(&text, "chorus_gateway_cluster_disconnects_total"),
        0.0
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_publish_queue_overflows_disconnects_its_sockets() {
    let redis = RedisServer::start();
    let mut cfg = config(Profile::Strict);
    cfg.cluster = Some(redis.url());
    cfg.cluster_queue_size = 4;
    // Only the publish queue may end the link while Redis is stalled (a
    // heartbeat timing out first would be `redis_lost`).
    cfg.cluster_timeout_ms = 60_000;
    cfg.rate_per_sec = 10_000.0;
    cfg.rate_burst = 10_000;
    cfg.max_message_bytes = 512 * 1024;
    // ann reads nothing while sending: her own queue must not be what overflows.
    cfg.queue_bytes = 1 << 30;
    let a = start_with(cfg).await;
    let (mut ann, _) = user(a.addr(), Transport::Websocket, "ann").await;
    // A stalled Redis: the publisher's socket fills, then its queue.
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &redis.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig}");
    };
    stop("STOP");
    // Big messages fill the socket buffers in a few dozen sends.
    let big = "x".repeat(500 * 1024);
    let disconnects = || {
        metric(
            &a.metrics_text(),
            "chorus_gateway_cluster_disconnects_total",
        )
    };
    // Bounded by time rather than by count: on a loaded machine the node
    // takes ann's events more slowly, and the queue fills later.
    let frame = event_frame(
        "/chat",
        None,
        "sendMessage",
        &[&json!({ "message": big }).to_string()],
    );
    let sending = std::time::Instant::now();
    while sending.elapsed() < Duration::from_secs(30) {
        // Once the queue overflows the node may drop ann at any moment: a
        // send that no longer goes through ends the sending, not the test.
        if !ann.try_send(&frame, Duration::from_secs(2)).await {
            break;
        }
        // Read back her echo as she goes: a client that reads nothing stalls
        // its own connection, and then the node stops taking its events.
        let _ = ann.recv(Duration::from_millis(20)).await;
        if disconnects() > 0.0 {
            break;
        }
    }
    // The node may still be working through what ann sent.
    let overflowed = tokio::time::timeout(WAIT, async {
        while disconnects() == 0.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    stop("CONT");
    assert!(
        overflowed,
        "the publish queue never overflowed:\n{}",
        a.metrics_text()
    );
    // ann is out of `/chat`: once the node has linked again, a newcomer's
    // snapshot is empty.
    let online = within_bound(async {
        loop {
            let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid("dave"));
            let mut dave = RawClient::ws(a.addr()).await;
            let reply = dave.join_ns("/chat", Some(&auth)).await;
            if reply.frame.starts_with("40/chat,") {
                break dave.next_msg().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(online.arg(), json!([]), "ann is still in /chat");
    drop(ann);
    let text = a.metrics_text();
    assert!(
        text.contains(r#"chorus_gateway_cluster_disconnects_total{reason="publish_queue_full"} 1"#),
        "{text}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_presence_stays_per_node_while_broadcasts_cross() {
    let redis = RedisServer::start();
    let a = node(Profile::Seed, &redis).await;
    let b = node(Profile::Seed, &redis).await;
    let (mut carol, _) = seed_user(b.addr(), "carol").await;
    let (mut ann, _) = seed_user(a.addr(), "ann").await;
    loop {
        if carol.wait_event("userOnline").await.arg()["username"] == json!("ann") {
            break;
        }
    }
    send(&mut ann, "hello").await;
    until_message(&mut carol, "hello").await;
    // The tutorial's Map is per process: a newcomer on B does not see ann.
    let query = format!("token={}", tokens::valid("dave"));
    let mut dave = RawClient::connect(b.addr(), Transport::Websocket, &query, &[]).await;
    let (_, online) = dave.connect_chat().await;
    assert_eq!(names(&online), vec!["carol"], "{online}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_cluster_of_an_official_socket_io_node_and_ours_delivers_both_ways() {
    let redis = RedisServer::start();
    let ours = node(Profile::Seed, &redis).await;
    let official = ChatNode::start(SECRET, Some(&redis.url()));
    let official_addr: SocketAddr = official
        .url
        .strip_prefix("http://")
        .expect("a plaintext node")
        .parse()
        .expect("an address");
    let (mut ann, _) = seed_user(ours.addr(), "ann").await;
    let (mut bob, bob_id) = seed_user(official_addr, "bob").await;
    // bob's userOnline (published by the Node adapter) reaches ann on our node.
    let online = within_bound(async {
        loop {
            let online = ann.wait_event("userOnline").await.arg();
            if online["username"] == json!("bob") {
                return online;
            }
        }
    })
    .await;
    assert_eq!(online, json!({"username": "bob", "clientId": bob_id}));
    let ann_sends = async {
        for i in 0..MESSAGES {
            send(&mut ann, &format!("ann-{i}")).await;
        }
        send(&mut ann, "ann-done").await;
    };
    let bob_sends = async {
        for i in 0..MESSAGES {
            send(&mut bob, &format!("bob-{i}")).await;
        }
        send(&mut bob, "bob-done").await;
    };
    tokio::join!(ann_sends, bob_sends);
    // 0 lost, in order, both ways (and each sees its own through its own node).
    for client in [&mut ann, &mut bob] {
        assert_fifo(client, &["ann", "bob"], MESSAGES).await;
    }
    // Typing from the official node (socket.broadcast: except the sender) reaches ann.
    bob.emit("typing", &[r#"{"isTyping":true}"#]).await;
    let typing = ann.wait_event("userTyping").await.arg();
    assert_eq!(typing, json!({"username": "bob", "isTyping": true}));
    // The Node peer decoded our key order exactly: ann's message arrives as sent.
    send(&mut ann, "order").await;
    let frame = loop {
        let msg = bob.wait_event("newMessage").await;
        if msg.arg()["message"] == json!("order") {
            break msg.frame;
        }
    };
    assert!(
        frame.starts_with(
            r#"42/chat,["newMessage",{"username":"ann","message":"order","timestamp":""#
        ),
        "{frame}"
    );
    assert_eq!(
        metric(&ours.metrics_text(), "chorus_gateway_cluster_dropped_total"),
        0.0
    );
    ours.shutdown().await;
}

async fn within_bound<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("in time")
}
