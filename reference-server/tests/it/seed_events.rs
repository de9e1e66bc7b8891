//! docs/protocol.md section 2 (events for an authenticated client), profile `seed`,
//! over websocket and polling, with raw frames compared byte for byte.

use chorus_gateway::Profile;
use serde_json::json;

use crate::support;
use crate::support::raw::{assert_iso_timestamp, joined_client, RawClient, Transport};
use crate::support::{start, tokens, JOINED_TEXT};

const TRANSPORTS: [Transport; 2] = [Transport::Websocket, Transport::Polling];

fn token_query() -> String {
    format!("token={}", tokens::valid("u1"))
}

/// A `/chat` socket that never joins (and has no token).
async fn observer(addr: std::net::SocketAddr, transport: Transport) -> RawClient {
    let mut client = RawClient::connect(addr, transport, "", &[]).await;
    client.connect_chat().await;
    client
}

#[tokio::test]
async fn seed_join_broadcasts_user_online_to_all_then_joined_to_the_sender_alone() {
    for transport in TRANSPORTS {
        let gw = start(Profile::Seed).await;
        let mut watcher = observer(gw.addr(), transport).await;
        let mut alice = RawClient::connect(gw.addr(), transport, &token_query(), &[]).await;
        let (sid, _) = alice.connect_chat().await;
        alice.emit("joinChat", &[r#"{"username":"alice"}"#]).await;
        let online = format!(r#"42/chat,["userOnline",{{"username":"alice","clientId":"{sid}"}}]"#);
        // The sender's own userOnline comes first, then (maybe later) `joined`.
        assert_eq!(alice.next_frame().await, online, "{transport:?}");
        assert_eq!(
            alice.wait_event("joined").await.frame,
            format!(r#"42/chat,["joined",{{"username":"alice","message":"{JOINED_TEXT}"}}]"#),
            "{transport:?}: joined is a plain event, not {{event, data}}"
        );
        assert_eq!(watcher.next_frame().await, online, "{transport:?}");
        watcher.expect_quiet().await;
    }
}

#[tokio::test]
async fn seed_send_message_reaches_everyone_including_the_sender_with_an_iso_timestamp() {
    for transport in TRANSPORTS {
        let gw = start(Profile::Seed).await;
        let mut watcher = observer(gw.addr(), transport).await;
        let (mut alice, _) =
            joined_client(gw.addr(), transport, &token_query(), None, "alice").await;
        watcher.wait_event("userOnline").await;
        alice.emit("sendMessage", &[r#"{"message":"hi"}"#]).await;
        for client in [&mut alice, &mut watcher] {
            let msg = client.next_msg().await;
            let ts = msg.arg()["timestamp"]
                .as_str()
                .expect("a timestamp")
                .to_owned();
            assert_iso_timestamp(&ts);
            assert_eq!(
                msg.frame,
                format!(
                    r#"42/chat,["newMessage",{{"username":"alice","message":"hi","timestamp":"{ts}"}}]"#
                ),
                "{transport:?}"
            );
        }
    }
}

#[tokio::test]
async fn seed_typing_reaches_everyone_but_the_sender() {
    for transport in TRANSPORTS {
        let gw = start(Profile::Seed).await;
        let mut watcher = observer(gw.addr(), transport).await;
        let (mut alice, _) =
            joined_client(gw.addr(), transport, &token_query(), None, "alice").await;
        watcher.wait_event("userOnline").await;
        alice.emit("typing", &[r#"{"isTyping":true}"#]).await;
        assert_eq!(
            watcher.next_frame().await,
            r#"42/chat,["userTyping",{"username":"alice","isTyping":true}]"#,
            "{transport:?}"
        );
        alice.expect_quiet().await;
    }
}

#[tokio::test]
async fn seed_disconnect_of_a_joined_client_broadcasts_user_offline() {
    for transport in TRANSPORTS {
        let gw = start(Profile::Seed).await;
        let mut watcher = observer(gw.addr(), transport).await;
        let (alice, sid) = joined_client(gw.addr(), transport, &token_query(), None, "alice").await;
        watcher.wait_event("userOnline").await;
        alice.close().await;
        assert_eq!(
            watcher.next_frame().await,
            format!(r#"42/chat,["userOffline",{{"username":"alice","clientId":"{sid}"}}]"#),
            "{transport:?}"
        );
        watcher.expect_quiet().await;
    }
}

#[tokio::test]
async fn seed_namespace_disconnect_packet_also_broadcasts_user_offline() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr(), Transport::Websocket).await;
    let (mut alice, sid) = joined_client(
        gw.addr(),
        Transport::Websocket,
        &token_query(),
        None,
        "alice",
    )
    .await;
    watcher.wait_event("userOnline").await;
    alice.send("41/chat,").await;
    assert_eq!(
        watcher.next_frame().await,
        format!(r#"42/chat,["userOffline",{{"username":"alice","clientId":"{sid}"}}]"#)
    );
}

#[tokio::test]
async fn seed_messages_and_typing_before_join_are_silently_ignored() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr(), Transport::Websocket).await;
    let mut early = RawClient::connect(gw.addr(), Transport::Polling, &token_query(), &[]).await;
    early.connect_chat().await;
    early
        .emit("sendMessage", &[r#"{"message":"too early"}"#])
        .await;
    early.emit("typing", &[r#"{"isTyping":true}"#]).await;
    early.expect_quiet().await;
    watcher.expect_quiet().await;
}

#[tokio::test]
async fn seed_disconnect_without_join_broadcasts_nothing() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr(), Transport::Websocket).await;
    let passer_by = observer(gw.addr(), Transport::Websocket).await;
    passer_by.close().await;
    watcher.expect_quiet().await;
}

#[tokio::test]
async fn seed_second_join_renames_and_disconnect_sends_one_offline_with_the_latest_name() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr(), Transport::Websocket).await;
    let (mut client, sid) = joined_client(
        gw.addr(),
        Transport::Websocket,
        &token_query(),
        None,
        "alice",
    )
    .await;
    watcher.wait_event("userOnline").await;
    client.emit("joinChat", &[r#"{"username":"bob"}"#]).await;
    let online = format!(r#"42/chat,["userOnline",{{"username":"bob","clientId":"{sid}"}}]"#);
    assert_eq!(client.next_frame().await, online);
    assert_eq!(
        client.wait_event("joined").await.frame,
        format!(r#"42/chat,["joined",{{"username":"bob","message":"{JOINED_TEXT}"}}]"#)
    );
    assert_eq!(watcher.next_frame().await, online);

    let mut late = RawClient::ws(gw.addr()).await;
    let (_, list) = late.connect_chat().await;
    assert_eq!(list, json!([[sid, "bob"]]), "the Map entry is overwritten");

    client.close().await;
    for c in [&mut watcher, &mut late] {
        assert_eq!(
            c.next_frame().await,
            format!(r#"42/chat,["userOffline",{{"username":"bob","clientId":"{sid}"}}]"#)
        );
        c.expect_quiet().await;
    }
}

#[tokio::test]
async fn seed_one_token_may_join_on_many_sockets_under_any_names() {
    let gw = start(Profile::Seed).await;
    let query = token_query();
    let (_a, sid_a) = joined_client(gw.addr(), Transport::Websocket, &query, None, "x").await;
    let (_b, sid_b) = joined_client(gw.addr(), Transport::Polling, &query, None, "y").await;
    let (_c, sid_c) = joined_client(gw.addr(), Transport::Websocket, &query, None, "x").await;
    let mut late = RawClient::ws(gw.addr()).await;
    let (_, list) = late.connect_chat().await;
    assert_eq!(list, json!([[sid_a, "x"], [sid_b, "y"], [sid_c, "x"]]));
}

#[tokio::test]
async fn seed_unknown_events_are_ignored_without_error_or_ack() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr(), Transport::Websocket).await;
    let (mut alice, _) = joined_client(
        gw.addr(),
        Transport::Websocket,
        &token_query(),
        None,
        "alice",
    )
    .await;
    watcher.wait_event("userOnline").await;
    alice.emit("shout", &[r#"{"message":"x"}"#]).await;
    alice.emit_ack(3, "shout", &["1"]).await;
    alice.emit("joinRoom", &[r#"{"room":"a"}"#]).await;
    alice.expect_quiet().await;
    watcher.expect_quiet().await;
    // The socket still works.
    alice.emit("typing", &[r#"{"isTyping":false}"#]).await;
    assert_eq!(
        watcher.wait_event("userTyping").await.arg()["isTyping"],
        json!(false)
    );
}

#[tokio::test]
async fn seed_broadcasts_leave_in_the_order_the_sender_sent() {
    for transport in TRANSPORTS {
        let gw = start(Profile::Seed).await;
        let mut watcher = observer(gw.addr(), Transport::Websocket).await;
        let (mut alice, _) =
            joined_client(gw.addr(), transport, &token_query(), None, "alice").await;
        watcher.wait_event("userOnline").await;
        let frames: Vec<String> = (0..100)
            .map(|i| {
                if i % 10 == 9 {
                    support::raw::event_frame(
                        "/chat",
                        None,
                        "typing",
                        &[&format!(r#"{{"isTyping":{}}}"#, i % 20 == 9)],
                    )
                } else {
                    support::raw::event_frame(
                        "/chat",
                        None,
                        "sendMessage",
                        &[&format!(r#"{{"message":"m{i}"}}"#)],
                    )
                }
            })
            .collect();
        let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
        alice.send_all(&refs).await;
        for i in 0..100 {
            let msg = watcher.next_msg().await;
            if i % 10 == 9 {
                assert_eq!(
                    msg.name().as_deref(),
                    Some("userTyping"),
                    "{transport:?} #{i}"
                );
                assert_eq!(msg.arg()["isTyping"], json!(i % 20 == 9));
            } else {
                assert_eq!(
                    msg.arg()["message"],
                    json!(format!("m{i}")),
                    "{transport:?} #{i}"
                );
            }
        }
    }
}
