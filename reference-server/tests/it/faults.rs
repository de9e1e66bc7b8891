//! Every injected fault (feature `faults`) really happens on the wire, seen
//! by raw clients. `cargo test --workspace` builds the gateway with the
//! feature: the root crate's dev-dependency enables it; without it this
//! module is not compiled (`main.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_gateway::{Faults, GatewayConfig, Profile, RunningGateway};
use serde_json::Value;

use crate::support::raw::{joined_client, Incoming, Msg, RawClient, Transport};
use crate::support::{config, tokens, within};

/// A seed gateway injecting `faults`.
async fn gateway(faults: Faults) -> RunningGateway {
    start_with(config(Profile::Seed), faults).await
}

/// A gateway with `cfg` injecting `faults`, bounded in time.
async fn start_with(cfg: GatewayConfig, faults: Faults) -> RunningGateway {
    within(chorus_gateway::faults::start(cfg, faults))
        .await
        .expect("the gateway starts")
}

/// A websocket client (with a valid token) that joined as `name`.
async fn joined(addr: SocketAddr, name: &str) -> RawClient {
    let query = format!("token={}", tokens::valid(name));
    joined_client(addr, Transport::Websocket, &query, None, name)
        .await
        .0
}

/// A websocket client (with a valid token) in `/chat` that never joined; returns its sid.
async fn unjoined(addr: SocketAddr) -> (RawClient, String) {
    let query = format!("token={}", tokens::valid("lurker"));
    let mut client = RawClient::connect(addr, Transport::Websocket, &query, &[]).await;
    let (sid, _) = client.connect_chat().await;
    (client, sid)
}

async fn say(client: &mut RawClient, text: &str) {
    let arg = serde_json::json!({ "message": text }).to_string();
    client.emit("sendMessage", &[&arg]).await;
}

/// Every event named `name` that arrives until nothing has come for `quiet`.
async fn collect(client: &mut RawClient, name: &str, quiet: Duration) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(msg) = client.try_next_msg(quiet).await {
        if msg.name().as_deref() == Some(name) {
            out.push(msg);
        }
    }
    out
}

fn texts(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| m.arg()["message"].as_str().expect("a message").to_owned())
        .collect()
}

/// Alice and Bob joined (Bob saw Alice's messages start from a clean slate).
async fn pair(gw: &RunningGateway) -> (RawClient, RawClient) {
    let alice = joined(gw.addr(), "alice").await;
    let bob = joined(gw.addr(), "bob").await;
    (alice, bob)
}

#[tokio::test]
async fn drop_fraction_loses_part_of_the_deliveries() {
    let gw = gateway(Faults {
        drop_fraction: 0.5,
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    for i in 0..100 {
        say(&mut alice, &format!("m{i}")).await;
    }
    let got = collect(&mut bob, "newMessage", Duration::from_millis(500)).await;
    assert!(
        (15..=85).contains(&got.len()),
        "{} of 100 arrived",
        got.len()
    );
}

#[tokio::test]
async fn duplicate_fraction_delivers_some_messages_twice() {
    let gw = gateway(Faults {
        duplicate_fraction: 0.5,
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    for i in 0..40 {
        say(&mut alice, &format!("m{i}")).await;
    }
    let got = texts(&collect(&mut bob, "newMessage", Duration::from_millis(500)).await);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for text in &got {
        *counts.entry(text).or_default() += 1;
    }
    assert_eq!(counts.len(), 40, "every message arrives");
    assert!(counts.values().all(|c| (1..=2).contains(c)), "{counts:?}");
    assert!((45..=75).contains(&got.len()), "{} deliveries", got.len());
}

#[tokio::test]
async fn reorder_swaps_the_fiftieth_message_with_the_next_one() {
    let gw = gateway(Faults {
        reorder: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    for i in 1..=51 {
        say(&mut alice, &format!("m{i}")).await;
    }
    let got = texts(&collect(&mut bob, "newMessage", Duration::from_millis(500)).await);
    let mut expected: Vec<String> = (1..=49).map(|i| format!("m{i}")).collect();
    expected.extend(["m51".to_owned(), "m50".to_owned()]);
    assert_eq!(got, expected);
}

#[tokio::test]
async fn delay_fraction_makes_some_messages_overtake_others() {
    let gw = gateway(Faults {
        delay_fraction: 0.5,
        delay: Duration::from_millis(300),
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    let sent: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for text in &sent {
        say(&mut alice, text).await;
    }
    let got = texts(&collect(&mut bob, "newMessage", Duration::from_millis(800)).await);
    let mut sorted = got.clone();
    sorted.sort_by_key(|t| t[1..].parse::<u32>().expect("a number"));
    assert_eq!(sorted, sent, "every message arrives, late or not");
    assert_ne!(got, sent, "some messages arrive after later ones");
}

#[tokio::test]
async fn delay_all_delays_every_delivery_and_keeps_the_order() {
    let delay = Duration::from_millis(200);
    let gw = gateway(Faults {
        delay_all: delay,
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    // Bob's own userOnline is delayed too: let it arrive first.
    alice.wait_event("userOnline").await;
    let sent_at = Instant::now();
    let sent: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for text in &sent {
        say(&mut alice, text).await;
    }
    let first = bob.wait_event("newMessage").await;
    assert!(sent_at.elapsed() >= delay, "{:?}", sent_at.elapsed());
    let mut got = texts(&[first]);
    got.extend(texts(
        &collect(&mut bob, "newMessage", Duration::from_millis(500)).await,
    ));
    assert_eq!(got, sent);
}

#[tokio::test]
async fn stall_once_holds_up_every_connection_once() {
    // 3 s for the setup before the stall starts, with room for a busy machine.
    let (after, length) = (Duration::from_secs(3), Duration::from_millis(700));
    let started = Instant::now();
    let gw = gateway(Faults {
        stall_once: Some((after, length)),
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    assert!(started.elapsed() < after, "the setup was too slow to test");
    tokio::time::sleep(after.saturating_sub(started.elapsed())).await;
    let sent_at = Instant::now();
    say(&mut alice, "during the stall").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    say(&mut bob, "from another connection").await;
    let got = collect(&mut bob, "newMessage", Duration::from_secs(2)).await;
    let waited = sent_at.elapsed();
    assert_eq!(texts(&got), ["during the stall", "from another connection"]);
    assert!(waited >= Duration::from_millis(650), "{waited:?}");
    // The stall happens once: later messages flow at once.
    let again = Instant::now();
    say(&mut alice, "after").await;
    bob.wait_event("newMessage").await;
    // Well under the 650 ms a second stall would take, with room for a busy machine.
    assert!(again.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn echo_typing_sends_user_typing_back_to_its_sender() {
    let gw = gateway(Faults {
        echo_typing: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, _bob) = pair(&gw).await;
    alice.emit("typing", &[r#"{"isTyping":true}"#]).await;
    let echo = alice.wait_event("userTyping").await;
    assert_eq!(echo.arg()["username"], "alice");
}

#[tokio::test]
async fn drop_typing_never_sends_user_typing() {
    let gw = gateway(Faults {
        drop_typing: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    alice.wait_event("userOnline").await;
    alice.emit("typing", &[r#"{"isTyping":true}"#]).await;
    say(&mut alice, "after typing").await;
    let next = bob.next_msg().await;
    assert_eq!(next.name().as_deref(), Some("newMessage"), "{}", next.frame);
}

#[tokio::test]
async fn skip_user_offline_keeps_quiet_when_a_user_leaves() {
    let gw = gateway(Faults {
        skip_user_offline: true,
        ..Faults::default()
    })
    .await;
    let (alice, mut bob) = pair(&gw).await;
    alice.close().await;
    bob.expect_quiet().await;
}

#[tokio::test]
async fn offline_for_unjoined_announces_a_socket_that_never_joined() {
    let gw = gateway(Faults {
        offline_for_unjoined: true,
        ..Faults::default()
    })
    .await;
    let mut bob = joined(gw.addr(), "bob").await;
    let (lurker, sid) = unjoined(gw.addr()).await;
    lurker.close().await;
    let offline = bob.wait_event("userOffline").await;
    assert_eq!(offline.arg()["username"], Value::Null);
    assert_eq!(offline.arg()["clientId"], sid.as_str());
}

#[tokio::test]
async fn wrong_joined_leaves_the_username_out() {
    let gw = gateway(Faults {
        wrong_joined: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, _) = unjoined(gw.addr()).await;
    alice.emit("joinChat", &[r#"{"username":"alice"}"#]).await;
    let joined = alice.wait_event("joined").await;
    assert!(joined.arg().get("username").is_none(), "{}", joined.frame);
    assert!(joined.arg().get("message").is_some());
}

#[tokio::test]
async fn joined_as_ack_answers_join_chat_with_an_ack_and_no_event() {
    let gw = gateway(Faults {
        joined_as_ack: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, _) = unjoined(gw.addr()).await;
    alice
        .emit_ack(7, "joinChat", &[r#"{"username":"alice"}"#])
        .await;
    assert_eq!(
        alice.wait_event("userOnline").await.arg()["username"],
        "alice"
    );
    let ack = alice.next_msg().await;
    assert_eq!(ack.id, Some(7), "{}", ack.frame);
    assert_eq!(ack.arg()["username"], "alice");
    alice.expect_quiet().await;
}

#[tokio::test]
async fn accept_any_token_admits_a_strict_socket_without_a_token() {
    let gw = start_with(
        config(Profile::Strict),
        Faults {
            accept_any_token: true,
            ..Faults::default()
        },
    )
    .await;
    let mut client = RawClient::ws(gw.addr()).await;
    let (_, online) = client.connect_chat().await;
    assert_eq!(online, serde_json::json!([]));
}

#[tokio::test]
async fn unjoined_messages_are_broadcast_with_a_null_username() {
    let gw = gateway(Faults {
        unjoined_messages: true,
        ..Faults::default()
    })
    .await;
    let mut bob = joined(gw.addr(), "bob").await;
    let (mut lurker, _) = unjoined(gw.addr()).await;
    say(&mut lurker, "who am I").await;
    let msg = bob.wait_event("newMessage").await;
    assert_eq!(msg.arg()["username"], Value::Null);
    assert_eq!(msg.arg()["message"], "who am I");
}

#[tokio::test]
async fn stall_socket_starves_one_receiver_that_stays_connected() {
    let gw = start_with(
        GatewayConfig {
            ping_interval_ms: 200,
            ping_timeout_ms: 200,
            ..config(Profile::Seed)
        },
        Faults {
            stall_socket: Some(2),
            ..Faults::default()
        },
    )
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    say(&mut alice, "hello").await;
    assert_eq!(
        alice.wait_event("newMessage").await.arg()["message"],
        "hello"
    );
    // Bob (the second socket) sees pings, and nothing else, for a second.
    let mut pings = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while let Some(incoming) = bob
        .recv(until.saturating_duration_since(Instant::now()))
        .await
    {
        match incoming {
            Incoming::Packet(p) if p == "2" => pings += 1,
            other => panic!("the stalled receiver got {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings");
}

#[tokio::test]
async fn crash_after_drops_every_connection_without_goodbye_and_stops_listening() {
    let gw = gateway(Faults {
        crash_after: Some(Duration::from_millis(500)),
        ..Faults::default()
    })
    .await;
    let mut ws = joined(gw.addr(), "alice").await;
    let mut polling = RawClient::polling(gw.addr()).await;
    polling.connect_chat().await;
    let ws_end = ws.expect_closed_within(Duration::from_secs(3)).await;
    assert!(matches!(ws_end, Incoming::Ended(_)), "{ws_end:?}");
    // A poll pending at the crash gets HTTP 500; one made after it finds nobody listening.
    let poll_end = polling.expect_closed_within(Duration::from_secs(3)).await;
    assert!(
        matches!(&poll_end, Incoming::Ended(why) if why.contains("HTTP 500") || why.contains("could not connect")),
        "{poll_end:?}"
    );
    let refused = within(tokio::net::TcpStream::connect(gw.addr())).await;
    assert!(refused.is_err(), "the gateway still listens");
}

#[tokio::test]
async fn bad_timestamp_sends_epoch_millis() {
    let gw = gateway(Faults {
        bad_timestamp: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, _bob) = pair(&gw).await;
    say(&mut alice, "when").await;
    let msg = alice.wait_event("newMessage").await;
    let stamp = msg.arg()["timestamp"].as_u64();
    assert!(
        stamp.is_some_and(|ms| ms > 1_600_000_000_000),
        "{}",
        msg.frame
    );
}

#[tokio::test]
async fn snapshot_missing_newest_leaves_the_last_joiner_out_of_online_users() {
    let gw = gateway(Faults {
        snapshot_missing_newest: true,
        ..Faults::default()
    })
    .await;
    let (_alice, _bob) = pair(&gw).await;
    let mut carol = RawClient::ws(gw.addr()).await;
    let (_, online) = carol.connect_chat().await;
    let names: Vec<&Value> = online
        .as_array()
        .expect("a list")
        .iter()
        .map(|entry| &entry[1])
        .collect();
    assert_eq!(names, [&Value::from("alice")]);
}

#[tokio::test]
async fn wrong_username_gives_every_tenth_message_another_users_name() {
    let gw = gateway(Faults {
        wrong_username: true,
        ..Faults::default()
    })
    .await;
    let (mut alice, mut bob) = pair(&gw).await;
    for i in 1..=10 {
        say(&mut alice, &format!("m{i}")).await;
    }
    let got = collect(&mut bob, "newMessage", Duration::from_millis(500)).await;
    let names: Vec<Value> = got.iter().map(|m| m.arg()["username"].clone()).collect();
    let mut expected = vec![Value::from("alice"); 9];
    expected.push(Value::from("bob"));
    assert_eq!(names, expected);
}
