//! docs/protocol.md sections 4 (acks are never called) and 5 (malformed input is
//! not validated), profile `seed`.

use chorus_gateway::Profile;
use serde_json::json;

use crate::support::js::{self, JsClient};
use crate::support::raw::{RawClient, Transport};
use crate::support::{start, tokens, JOINED_TEXT};

fn token_query() -> String {
    format!("token={}", tokens::valid("u1"))
}

async fn observer(addr: std::net::SocketAddr) -> RawClient {
    let mut client = RawClient::ws(addr).await;
    client.connect_chat().await;
    client
}

#[tokio::test]
async fn seed_ack_id_on_join_is_ignored_and_joined_arrives_as_an_event() {
    let gw = start(Profile::Seed).await;
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &token_query(), &[]).await;
    let (sid, _) = client.connect_chat().await;
    client
        .emit_ack(7, "joinChat", &[r#"{"username":"alice"}"#])
        .await;
    assert_eq!(
        client.next_frame().await,
        format!(r#"42/chat,["userOnline",{{"username":"alice","clientId":"{sid}"}}]"#)
    );
    assert_eq!(
        client.next_frame().await,
        format!(r#"42/chat,["joined",{{"username":"alice","message":"{JOINED_TEXT}"}}]"#)
    );
    client
        .emit_ack(8, "sendMessage", &[r#"{"message":"hi"}"#])
        .await;
    client
        .emit_ack(9, "typing", &[r#"{"isTyping":true}"#])
        .await;
    assert_eq!(
        client.next_msg().await.name().as_deref(),
        Some("newMessage")
    );
    client.expect_quiet().await;
}

#[tokio::test]
async fn seed_js_client_waiting_for_an_ack_never_gets_one() {
    let gw = start(Profile::Seed).await;
    let mut plan = js::plan(
        gw.addr(),
        Some(&["websocket"]),
        json!([
            {"op": "emitWithAck", "event": "joinChat", "args": [{"username": "alice"}], "timeoutMs": 1000},
            {"op": "waitFor", "event": "joined"},
            {"op": "emitWithAck", "event": "sendMessage", "args": [{"message": "hi"}], "timeoutMs": 1000},
        ]),
    );
    plan["query"] = json!({"token": tokens::valid("u1")});
    let mut client = JsClient::spawn(&plan);
    let seen = client.collect_until("steps_done").await;
    let names: Vec<&str> = seen.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        names,
        [
            "connect",
            "onlineUsers",
            "userOnline",
            "joined",
            "ack_timeout",
            "newMessage",
            "ack_timeout",
            "steps_done"
        ]
    );
    client.finish().await;
}

/// Joins with the raw `args` of a `joinChat`, and checks the leak of section 5:
/// `userOnline` without `username`, `joined` without it, ignored messages, no
/// `userOffline`, and `["<sid>",null]` left in `onlineUsers`.
async fn assert_undefined_username_leaks(args: &[&str]) {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr()).await;
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &token_query(), &[]).await;
    let (sid, _) = client.connect_chat().await;
    client.emit("joinChat", args).await;
    let online = format!(r#"42/chat,["userOnline",{{"clientId":"{sid}"}}]"#);
    assert_eq!(client.next_frame().await, online, "{args:?}");
    assert_eq!(
        client.wait_event("joined").await.frame,
        format!(r#"42/chat,["joined",{{"message":"{JOINED_TEXT}"}}]"#),
        "{args:?}"
    );
    assert_eq!(watcher.next_frame().await, online, "{args:?}");
    client
        .emit("sendMessage", &[r#"{"message":"ignored"}"#])
        .await;
    client.emit("typing", &[r#"{"isTyping":true}"#]).await;
    client.expect_quiet().await;
    client.close().await;
    watcher.expect_quiet().await;
    let mut again = RawClient::ws(gw.addr()).await;
    let (_, list) = again.connect_chat().await;
    assert_eq!(
        list,
        json!([[sid, null]]),
        "{args:?}: the entry is never removed"
    );
}

#[tokio::test]
async fn seed_join_with_a_string_payload_leaks_an_undefined_user() {
    assert_undefined_username_leaks(&[r#""a-string""#]).await;
}

#[tokio::test]
async fn seed_join_with_an_empty_object_leaks_an_undefined_user() {
    assert_undefined_username_leaks(&["{}"]).await;
}

#[tokio::test]
async fn seed_join_with_two_arguments_leaks_an_undefined_user() {
    assert_undefined_username_leaks(&[r#"{"username":"alice"}"#, r#""extra""#]).await;
}

#[tokio::test]
async fn seed_join_with_an_empty_username_leaks_an_empty_name() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr()).await;
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &token_query(), &[]).await;
    let (sid, _) = client.connect_chat().await;
    client.emit("joinChat", &[r#"{"username":""}"#]).await;
    let online = format!(r#"42/chat,["userOnline",{{"username":"","clientId":"{sid}"}}]"#);
    assert_eq!(client.next_frame().await, online);
    assert_eq!(
        client.wait_event("joined").await.frame,
        format!(r#"42/chat,["joined",{{"username":"","message":"{JOINED_TEXT}"}}]"#)
    );
    assert_eq!(watcher.next_frame().await, online);
    client
        .emit("sendMessage", &[r#"{"message":"ignored"}"#])
        .await;
    client.close().await;
    watcher.expect_quiet().await;
    let mut late = RawClient::ws(gw.addr()).await;
    let (_, list) = late.connect_chat().await;
    assert_eq!(list, json!([[sid, ""]]));
}

fn internal_error(cause: &str) -> String {
    format!(
        r#"42/chat,["exception",{{"status":"error","message":"Internal server error","cause":{cause}}}]"#
    )
}

#[tokio::test]
async fn seed_null_or_missing_payloads_get_internal_server_error() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr()).await;
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &token_query(), &[]).await;
    client.connect_chat().await;
    client.emit("joinChat", &["null"]).await;
    assert_eq!(
        client.next_frame().await,
        internal_error(r#"{"pattern":"joinChat","data":null}"#)
    );
    client.emit("joinChat", &[]).await;
    assert_eq!(
        client.next_frame().await,
        internal_error(r#"{"pattern":"joinChat"}"#)
    );
    watcher.expect_quiet().await;

    client.emit("joinChat", &[r#"{"username":"alice"}"#]).await;
    client.wait_event("joined").await;
    watcher.wait_event("userOnline").await;
    for event in ["sendMessage", "typing"] {
        client.emit(event, &["null"]).await;
        assert_eq!(
            client.next_frame().await,
            internal_error(&format!(r#"{{"pattern":"{event}","data":null}}"#))
        );
    }
    watcher.expect_quiet().await;
    // The server keeps running.
    client.emit("sendMessage", &[r#"{"message":"fine"}"#]).await;
    assert_eq!(
        watcher.wait_event("newMessage").await.arg()["message"],
        json!("fine")
    );
}

#[tokio::test]
async fn seed_odd_values_are_broadcast_unchanged() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr()).await;
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &token_query(), &[]).await;
    let (sid, _) = client.connect_chat().await;
    let username = r#"{"first":"<b>al</b>","n":[1,2.5]}"#;
    client
        .emit("joinChat", &[&format!(r#"{{"username":{username}}}"#)])
        .await;
    assert_eq!(
        watcher.next_frame().await,
        format!(r#"42/chat,["userOnline",{{"username":{username},"clientId":"{sid}"}}]"#)
    );
    client.wait_event("joined").await;
    for message in [
        r#""<script>alert(1)</script>""#,
        "42",
        r#"{"deep":{"er":[true,null]}}"#,
    ] {
        client
            .emit("sendMessage", &[&format!(r#"{{"message":{message}}}"#)])
            .await;
        let msg = watcher.next_msg().await;
        let ts = msg.arg()["timestamp"]
            .as_str()
            .expect("a timestamp")
            .to_owned();
        assert_eq!(
            msg.frame,
            format!(
                r#"42/chat,["newMessage",{{"username":{username},"message":{message},"timestamp":"{ts}"}}]"#
            )
        );
    }
    for typing in [r#""yes""#, "7", "[1]"] {
        client
            .emit("typing", &[&format!(r#"{{"isTyping":{typing}}}"#)])
            .await;
        assert_eq!(
            watcher.next_frame().await,
            format!(r#"42/chat,["userTyping",{{"username":{username},"isTyping":{typing}}}]"#)
        );
    }
}

#[tokio::test]
async fn seed_missing_message_key_is_omitted_and_extra_fields_are_dropped() {
    let gw = start(Profile::Seed).await;
    let mut watcher = observer(gw.addr()).await;
    let mut client = RawClient::connect(gw.addr(), Transport::Websocket, &token_query(), &[]).await;
    let (sid, _) = client.connect_chat().await;
    client
        .emit("joinChat", &[r#"{"username":"alice","role":"admin"}"#])
        .await;
    assert_eq!(
        watcher.next_frame().await,
        format!(r#"42/chat,["userOnline",{{"username":"alice","clientId":"{sid}"}}]"#)
    );
    client.wait_event("joined").await;

    client
        .emit("sendMessage", &[r#"{"text":"no message key"}"#])
        .await;
    let msg = watcher.next_msg().await;
    let ts = msg.arg()["timestamp"]
        .as_str()
        .expect("a timestamp")
        .to_owned();
    assert_eq!(
        msg.frame,
        format!(r#"42/chat,["newMessage",{{"username":"alice","timestamp":"{ts}"}}]"#)
    );

    client
        .emit(
            "sendMessage",
            &[r#"{"message":"hi","to":"bob","username":"eve"}"#],
        )
        .await;
    let msg = watcher.next_msg().await;
    let ts = msg.arg()["timestamp"]
        .as_str()
        .expect("a timestamp")
        .to_owned();
    assert_eq!(
        msg.frame,
        format!(
            r#"42/chat,["newMessage",{{"username":"alice","message":"hi","timestamp":"{ts}"}}]"#
        )
    );

    client
        .emit("typing", &[r#"{"isTyping":false,"extra":1}"#])
        .await;
    assert_eq!(
        watcher.next_frame().await,
        r#"42/chat,["userTyping",{"username":"alice","isTyping":false}]"#
    );
}
