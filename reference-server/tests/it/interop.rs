//! Independent clients against the gateway: the official JavaScript
//! socket.io-client 4.8.3 over websocket, polling and polling-then-upgrade,
//! the tutorial's own browser example, and the `rust_socketio` crate.

use std::time::Duration;

use chorus_gateway::Profile;
use futures_util::FutureExt;
use rust_socketio::asynchronous::ClientBuilder;
use rust_socketio::{Payload, TransportType};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::js::{self, args, wait_line, JsClient};
use crate::support::raw::{assert_iso_timestamp, RawClient};
use crate::support::{start, tokens, within_for, JOINED_TEXT, NO_TOKEN};

/// Runs the full chat exchange of section 2 with the JS client on `transports`
/// and checks what it and a raw observer saw.
async fn js_chat_roundtrip(profile: Profile, transports: Option<&[&str]>) {
    let gw = start(profile).await;
    let token = tokens::valid("u1");
    let mut watcher = RawClient::ws(gw.addr()).await;
    watcher
        .connect_chat_auth(Some(&format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let mut plan = js::plan(
        gw.addr(),
        transports,
        json!([
            {"op": "emit", "event": "joinChat", "args": [{"username": "alice"}]},
            {"op": "waitFor", "event": "joined"},
            {"op": "emit", "event": "sendMessage", "args": [{"message": "hello from js"}]},
            {"op": "waitFor", "event": "newMessage"},
            {"op": "emit", "event": "typing", "args": [{"isTyping": true}]},
            {"op": "sleep", "ms": 200},
            {"op": "disconnect"},
        ]),
    );
    match profile {
        Profile::Seed => plan["query"] = json!({"token": token}),
        Profile::Strict => plan["auth"] = json!({"token": token}),
    }
    let mut client = JsClient::spawn(&plan);
    let mut seen = client.collect_until("connect").await;
    let sid = seen[seen.len() - 1]["id"]
        .as_str()
        .expect("a socket id")
        .to_owned();
    seen.extend(client.collect_until("steps_done").await);
    let events: Vec<(&str, &Value)> = seen
        .iter()
        .filter(|l| l.get("args").is_some())
        .map(|l| (l["event"].as_str().unwrap_or_default(), l))
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["onlineUsers", "userOnline", "joined", "newMessage"],
        "{transports:?}: {seen:?}"
    );
    assert_eq!(
        args(events[1].1),
        &vec![json!({"username": "alice", "clientId": sid})]
    );
    assert_eq!(
        args(events[2].1),
        &vec![json!({"username": "alice", "message": JOINED_TEXT})]
    );
    let message = &args(events[3].1)[0];
    assert_eq!(message["message"], json!("hello from js"));
    assert_iso_timestamp(message["timestamp"].as_str().expect("a timestamp"));
    if transports.is_none() {
        let upgraded = seen
            .iter()
            .any(|l| l["event"] == "upgrade" && l["transport"] == "websocket");
        assert!(
            upgraded,
            "the default transport upgrades to websocket: {seen:?}"
        );
    }

    assert_eq!(
        watcher.next_frame().await,
        format!(r#"42/chat,["userOnline",{{"username":"alice","clientId":"{sid}"}}]"#)
    );
    assert_eq!(
        watcher.next_msg().await.arg()["message"],
        json!("hello from js")
    );
    assert_eq!(
        watcher.next_frame().await,
        r#"42/chat,["userTyping",{"username":"alice","isTyping":true}]"#
    );
    assert_eq!(
        watcher.next_frame().await,
        format!(r#"42/chat,["userOffline",{{"username":"alice","clientId":"{sid}"}}]"#)
    );
    client.finish().await;
}

#[tokio::test]
async fn js_client_chats_over_websocket_with_seed() {
    js_chat_roundtrip(Profile::Seed, Some(&["websocket"])).await;
}

#[tokio::test]
async fn js_client_chats_over_polling_with_seed() {
    js_chat_roundtrip(Profile::Seed, Some(&["polling"])).await;
}

#[tokio::test]
async fn js_client_chats_over_polling_then_upgrade_with_seed() {
    js_chat_roundtrip(Profile::Seed, None).await;
}

#[tokio::test]
async fn js_client_chats_over_websocket_with_strict() {
    js_chat_roundtrip(Profile::Strict, Some(&["websocket"])).await;
}

#[tokio::test]
async fn js_client_chats_over_polling_then_upgrade_with_strict() {
    js_chat_roundtrip(Profile::Strict, None).await;
}

#[tokio::test]
async fn js_client_bearer_extra_header_is_a_token_source_in_seed() {
    let gw = start(Profile::Seed).await;
    for transport in ["polling", "websocket"] {
        let mut plan = js::plan(
            gw.addr(),
            Some(&[transport]),
            json!([
                {"op": "emit", "event": "joinChat", "args": [{"username": "bearer"}]},
                {"op": "waitFor", "event": "joined"},
            ]),
        );
        plan["extraHeaders"] = json!({"Authorization": format!("Bearer {}", tokens::valid("u1"))});
        let mut client = JsClient::spawn(&plan);
        let seen = client.collect_until("steps_done").await;
        assert!(
            seen.iter().any(|l| l["event"] == "joined"),
            "{transport}: {seen:?}"
        );
        client.finish().await;
    }
}

#[tokio::test]
async fn js_client_without_token_gets_connect_error_in_strict() {
    let gw = start(Profile::Strict).await;
    let plan = js::plan(gw.addr(), Some(&["websocket"]), json!([]));
    let mut client = JsClient::spawn(&plan);
    let refused = client.wait_for("connect_error").await;
    assert_eq!(refused["message"], json!(NO_TOKEN));
    assert_eq!(refused["data"], json!({"code": "NO_TOKEN"}));
    client.finish().await;
}

#[tokio::test]
async fn js_client_acks_in_strict() {
    let gw = start(Profile::Strict).await;
    let mut plan = js::plan(
        gw.addr(),
        None,
        json!([
            {"op": "emitWithAck", "event": "joinChat", "args": [{"username": "alice"}]},
            {"op": "emitWithAck", "event": "sendMessage", "args": [{"message": "hi"}]},
            {"op": "emitWithAck", "event": "typing", "args": [{"isTyping": false}]},
        ]),
    );
    plan["auth"] = json!({"token": tokens::valid("u1")});
    let mut client = JsClient::spawn(&plan);
    let seen = client.collect_until("steps_done").await;
    let acks: Vec<&Value> = seen.iter().filter(|l| l["event"] == "ack").collect();
    assert_eq!(acks.len(), 3, "{seen:?}");
    assert_eq!(
        args(acks[0]),
        &vec![json!({"username": "alice", "message": JOINED_TEXT})]
    );
    let ack = &args(acks[1])[0];
    assert_eq!(ack["ok"], json!(true));
    let broadcast = seen
        .iter()
        .find(|l| l["event"] == "newMessage")
        .expect("the broadcast");
    assert_eq!(ack["timestamp"], args(broadcast)[0]["timestamp"]);
    assert_eq!(args(acks[2]), &vec![json!({"ok": true})]);
    client.finish().await;
}

/// Waits for a `console.log(label, object)` line and returns it with the rest of
/// the object when Node printed it over several lines.
async fn wait_logged(example: &mut JsClient, label: &str) -> String {
    let mut text = wait_line(example, label).await;
    if text.ends_with('{') {
        loop {
            let line = example.next_line_within(js::JS_WAIT).await;
            text.push_str(&line);
            if line == "}" {
                break;
            }
        }
    }
    text
}

#[tokio::test]
async fn tutorial_example_works_unchanged_against_seed() {
    let gw = start(Profile::Seed).await;
    let mut watcher = RawClient::ws(gw.addr()).await;
    watcher.connect_chat().await;
    let env = [
        ("CHAT_URL", format!("http://{}/chat", gw.addr())),
        ("CHAT_TOKEN", tokens::valid("u1")),
    ];
    let mut example = JsClient::spawn_script("tutorial-example.mjs", &[], &env);
    wait_line(&mut example, "WebSocket连接成功").await;
    let online = wait_logged(&mut example, "用户上线:").await;
    assert!(online.contains("username: 'testuser'"), "{online}");
    let message = wait_logged(&mut example, "收到新消息:").await;
    assert!(message.contains("username: 'testuser'"), "{message}");
    assert!(message.contains("message: 'Hello, World!'"), "{message}");

    assert_eq!(
        watcher.next_msg().await.arg()["username"],
        json!("testuser")
    );
    let msg = watcher.next_msg().await;
    assert_eq!(msg.arg()["message"], json!("Hello, World!"));
    assert_eq!(
        watcher.next_frame().await,
        r#"42/chat,["userTyping",{"username":"testuser","isTyping":true}]"#
    );
    // The example never exits on its own: dropping it kills it.
    drop(example);
}

/// A `rust_socketio` client on `/chat` whose every event lands in the returned channel.
async fn rust_client(
    builder: ClientBuilder,
) -> (
    rust_socketio::asynchronous::Client,
    mpsc::UnboundedReceiver<(String, Vec<Value>)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = builder
        .namespace("/chat")
        .reconnect(false)
        .on_any(move |event, payload, _| {
            let tx = tx.clone();
            async move {
                let args = match payload {
                    Payload::Text(values) => values,
                    other => vec![json!(format!("{other:?}"))],
                };
                let _ = tx.send((String::from(event), args));
            }
            .boxed()
        })
        .connect()
        .await
        .expect("rust_socketio connects");
    (client, rx)
}

async fn next_named(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<Value>)>,
    name: &str,
) -> Vec<Value> {
    within_for(Duration::from_secs(10), async {
        loop {
            let (event, args) = rx.recv().await.expect("the client is running");
            if event == name {
                return args;
            }
        }
    })
    .await
}

#[tokio::test]
async fn rust_socketio_client_joins_and_chats_with_seed_and_strict() {
    for (profile, transport) in [
        (Profile::Seed, TransportType::Websocket),
        (Profile::Seed, TransportType::Polling),
        (Profile::Strict, TransportType::Any),
    ] {
        let gw = start(profile).await;
        let token = tokens::valid("u1");
        let builder =
            ClientBuilder::new(format!("http://{}/", gw.addr())).transport_type(transport);
        let builder = match profile {
            Profile::Seed => builder.opening_header("Authorization", format!("Bearer {token}")),
            Profile::Strict => builder.auth(json!({"token": token})),
        };
        let (client, mut rx) = rust_client(builder).await;
        assert_eq!(next_named(&mut rx, "onlineUsers").await, vec![json!([])]);
        client
            .emit("joinChat", json!({"username": "rusty"}))
            .await
            .expect("emit joinChat");
        let online = next_named(&mut rx, "userOnline").await;
        assert_eq!(online[0]["username"], json!("rusty"), "{profile:?}");
        assert_eq!(
            next_named(&mut rx, "joined").await,
            vec![json!({"username": "rusty", "message": JOINED_TEXT})]
        );
        client
            .emit("sendMessage", json!({"message": "from rust"}))
            .await
            .expect("emit sendMessage");
        let message = next_named(&mut rx, "newMessage").await;
        assert_eq!(message[0]["message"], json!("from rust"), "{profile:?}");
        client.disconnect().await.expect("disconnect");
    }
}
