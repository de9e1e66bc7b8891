//! docs/protocol.md section 8, rooms in the `strict` profile: joining and
//! leaving, room-scoped messages and typing, isolation, limits, and the seed
//! profile, which has no rooms.

use chorus_gateway::Profile;
use chorus_protocol::socketio::PacketType;
use serde_json::{json, Value};

use crate::support::raw::{joined_client, Msg, RawClient, Transport};
use crate::support::{config, start, start_with, tokens};

const TRANSPORTS: [Transport; 2] = [Transport::Websocket, Transport::Polling];

/// A strict-profile client that has joined the chat as `name`; its `/chat` id.
async fn user(addr: std::net::SocketAddr, transport: Transport, name: &str) -> (RawClient, String) {
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid(name));
    joined_client(addr, transport, "", Some(&auth), name).await
}

/// Users joined in order; each has seen the `userOnline` of the last one (the
/// last one saw its own before `joined`), so nothing of the joins is left to read.
async fn users(
    addr: std::net::SocketAddr,
    transport: Transport,
    names: &[&str],
) -> Vec<(RawClient, String)> {
    let mut all = Vec::new();
    for name in names {
        all.push(user(addr, transport, name).await);
    }
    let last = names.last().expect("at least one user");
    let others = all.len() - 1;
    for (client, _) in &mut all[..others] {
        loop {
            let msg = client.wait_event("userOnline").await;
            if msg.arg()["username"] == json!(last) {
                break;
            }
        }
    }
    all
}

fn room(name: &str) -> String {
    format!(r#"{{"room":"{name}"}}"#)
}

/// The event `name` with its first argument, asserting that the next packet is it.
async fn next_event(client: &mut RawClient, name: &str) -> Value {
    let msg = client.next_msg().await;
    assert_eq!(msg.name().as_deref(), Some(name), "{}", msg.frame);
    msg.arg()
}

/// The ack `id`, asserting that the next packet is it.
async fn next_ack(client: &mut RawClient, id: u64) -> Value {
    let msg: Msg = client.next_msg().await;
    assert_eq!(
        (msg.kind, msg.id),
        (PacketType::Ack, Some(id)),
        "{}",
        msg.frame
    );
    msg.arg()
}

#[tokio::test]
async fn joining_a_room_sends_the_members_then_announces_the_joiner_to_members_only() {
    let gw = start(Profile::Strict).await;
    for transport in TRANSPORTS {
        let mut u = users(gw.addr(), transport, &["ann", "bob", "cat"]).await;
        let (mut cat, cat_id) = u.pop().unwrap();
        let (mut bob, bob_id) = u.pop().unwrap();
        let (mut ann, ann_id) = u.pop().unwrap();

        ann.emit_ack(1, "joinRoom", &[&room("lobby")]).await;
        assert_eq!(
            next_event(&mut ann, "roomUsers").await,
            json!({"room": "lobby", "users": [[ann_id, "ann"]]})
        );
        assert_eq!(
            next_event(&mut ann, "roomJoined").await,
            json!({"room": "lobby", "username": "ann", "clientId": ann_id})
        );
        assert_eq!(
            next_ack(&mut ann, 1).await,
            json!({"ok": true, "room": "lobby"})
        );

        bob.emit("joinRoom", &[&room("lobby")]).await;
        assert_eq!(
            next_event(&mut bob, "roomUsers").await,
            json!({"room": "lobby", "users": [[ann_id, "ann"], [bob_id, "bob"]]}),
            "{transport:?}: members in the order they joined, the joiner included"
        );
        let joined = json!({"room": "lobby", "username": "bob", "clientId": bob_id});
        assert_eq!(next_event(&mut bob, "roomJoined").await, joined);
        assert_eq!(next_event(&mut ann, "roomJoined").await, joined);

        // A second join of the same room changes nothing and sends nothing.
        bob.emit_ack(2, "joinRoom", &[&room("lobby")]).await;
        assert_eq!(
            next_ack(&mut bob, 2).await,
            json!({"ok": true, "room": "lobby"})
        );
        ann.expect_quiet().await;
        // cat never joined the room: it hears nothing of it.
        cat.expect_quiet().await;
        let _ = cat_id;
    }
}

#[tokio::test]
async fn room_messages_and_typing_reach_the_members_only() {
    let gw = start(Profile::Strict).await;
    let mut u = users(gw.addr(), Transport::Websocket, &["ann", "bob", "cat"]).await;
    let (mut cat, _) = u.pop().unwrap();
    let (mut bob, _) = u.pop().unwrap();
    let (mut ann, _) = u.pop().unwrap();
    for client in [&mut ann, &mut bob] {
        client.emit("joinRoom", &[&room("r1")]).await;
        client.wait_event("roomJoined").await;
    }
    ann.wait_event("roomJoined").await; // bob's

    ann.emit_ack(3, "sendMessage", &[r#"{"message":"hi","room":"r1"}"#])
        .await;
    let to_ann = next_event(&mut ann, "newMessage").await;
    let to_bob = next_event(&mut bob, "newMessage").await;
    assert_eq!(to_ann, to_bob);
    assert_eq!(to_bob["username"], json!("ann"));
    assert_eq!(to_bob["message"], json!("hi"));
    assert_eq!(to_bob["room"], json!("r1"));
    let keys: Vec<&String> = to_bob.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["username", "message", "timestamp", "room"]);
    let ack = next_ack(&mut ann, 3).await;
    assert_eq!(ack["ok"], json!(true));
    assert_eq!(ack["timestamp"], to_bob["timestamp"]);

    ann.emit("typing", &[r#"{"isTyping":true,"room":"r1"}"#])
        .await;
    assert_eq!(
        next_event(&mut bob, "userTyping").await,
        json!({"username": "ann", "isTyping": true, "room": "r1"})
    );
    // Not to the typist, and nothing of r1 to cat.
    ann.expect_quiet().await;
    cat.expect_quiet().await;

    // Without `room`, section 2 holds: everyone gets it, cat too.
    bob.emit("sendMessage", &[r#"{"message":"all"}"#]).await;
    for client in [&mut ann, &mut bob, &mut cat] {
        let m = next_event(client, "newMessage").await;
        assert_eq!(m["message"], json!("all"));
        assert!(m.get("room").is_none(), "{m}");
    }
}

#[tokio::test]
async fn a_non_member_sending_to_a_room_gets_an_exception_and_nothing_is_sent() {
    let gw = start(Profile::Strict).await;
    let mut u = users(gw.addr(), Transport::Websocket, &["ann", "cat"]).await;
    let (mut cat, _) = u.pop().unwrap();
    let (mut ann, _) = u.pop().unwrap();
    ann.emit("joinRoom", &[&room("r1")]).await;
    ann.wait_event("roomJoined").await;

    for (id, event, args) in [
        (5, "sendMessage", r#"{"message":"sneak","room":"r1"}"#),
        (6, "typing", r#"{"isTyping":true,"room":"r1"}"#),
    ] {
        cat.emit_ack(id, event, &[args]).await;
        let exception = next_event(&mut cat, "exception").await;
        assert_eq!(exception["message"], json!("not in room"), "{event}");
        assert_eq!(
            next_ack(&mut cat, id).await["message"],
            json!("not in room")
        );
    }
    ann.expect_quiet().await;
}

#[tokio::test]
async fn leaving_a_room_tells_the_members_and_the_leaver_and_stops_its_events() {
    let gw = start(Profile::Strict).await;
    let mut u = users(gw.addr(), Transport::Websocket, &["ann", "bob"]).await;
    let (mut bob, bob_id) = u.pop().unwrap();
    let (mut ann, _) = u.pop().unwrap();
    for client in [&mut ann, &mut bob] {
        client.emit("joinRoom", &[&room("r1")]).await;
        client.wait_event("roomJoined").await;
    }
    ann.wait_event("roomJoined").await;

    bob.emit_ack(7, "leaveRoom", &[&room("r1")]).await;
    let left = json!({"room": "r1", "username": "bob", "clientId": bob_id});
    assert_eq!(next_event(&mut bob, "roomLeft").await, left);
    assert_eq!(
        next_ack(&mut bob, 7).await,
        json!({"ok": true, "room": "r1"})
    );
    assert_eq!(next_event(&mut ann, "roomLeft").await, left);

    ann.emit("sendMessage", &[r#"{"message":"after","room":"r1"}"#])
        .await;
    assert_eq!(
        next_event(&mut ann, "newMessage").await["message"],
        json!("after")
    );
    bob.expect_quiet().await;

    // Leaving again changes nothing; bob may no longer send to r1.
    bob.emit_ack(8, "leaveRoom", &[&room("r1")]).await;
    assert_eq!(
        next_ack(&mut bob, 8).await,
        json!({"ok": true, "room": "r1"})
    );
    bob.emit("sendMessage", &[r#"{"message":"x","room":"r1"}"#])
        .await;
    assert_eq!(
        next_event(&mut bob, "exception").await["message"],
        json!("not in room")
    );
    ann.expect_quiet().await;
}

#[tokio::test]
async fn a_disconnect_leaves_every_room_before_going_offline() {
    let gw = start(Profile::Strict).await;
    let mut u = users(gw.addr(), Transport::Websocket, &["ann", "bob"]).await;
    let (mut bob, bob_id) = u.pop().unwrap();
    let (mut ann, _) = u.pop().unwrap();
    for r in ["r1", "r2"] {
        for client in [&mut ann, &mut bob] {
            client.emit("joinRoom", &[&room(r)]).await;
            client.wait_event("roomJoined").await;
        }
        ann.wait_event("roomJoined").await;
    }
    bob.close().await;
    for r in ["r1", "r2"] {
        assert_eq!(
            next_event(&mut ann, "roomLeft").await,
            json!({"room": r, "username": "bob", "clientId": bob_id})
        );
    }
    assert_eq!(
        next_event(&mut ann, "userOffline").await["username"],
        json!("bob")
    );
    // The room lives on with ann alone.
    ann.emit("sendMessage", &[r#"{"message":"alone","room":"r2"}"#])
        .await;
    assert_eq!(
        next_event(&mut ann, "newMessage").await["room"],
        json!("r2")
    );
}

#[tokio::test]
async fn room_names_limits_and_joining_first_are_enforced() {
    let mut cfg = config(Profile::Strict);
    cfg.max_rooms_per_socket = 2;
    let gw = start_with(cfg).await;

    // Before joinChat: ignored, an ack gets `not joined`.
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid("early"));
    let mut early = RawClient::connect(gw.addr(), Transport::Websocket, "", &[]).await;
    early.connect_chat_auth(Some(&auth)).await;
    early.emit_ack(1, "joinRoom", &[&room("r1")]).await;
    assert_eq!(
        next_ack(&mut early, 1).await["message"],
        json!("not joined")
    );

    let (mut ann, _) = user(gw.addr(), Transport::Websocket, "ann").await;
    for bad in [
        r#"{"room":""}"#,
        r#"{"room":"a b"}"#,
        r#"{"room":7}"#,
        r#"{}"#,
        &format!(r#"{{"room":"{}"}}"#, "r".repeat(65)),
    ] {
        ann.emit("joinRoom", &[bad]).await;
        let exception = next_event(&mut ann, "exception").await;
        assert_eq!(exception["status"], json!("error"), "{bad}");
        assert_eq!(exception["cause"]["pattern"], json!("joinRoom"), "{bad}");
    }
    ann.emit("sendMessage", &[r#"{"message":"x","room":"no spaces"}"#])
        .await;
    next_event(&mut ann, "exception").await;

    for r in ["r1", "r2"] {
        ann.emit("joinRoom", &[&room(r)]).await;
        ann.wait_event("roomJoined").await;
    }
    ann.emit("joinRoom", &[&room("r3")]).await;
    assert_eq!(
        next_event(&mut ann, "exception").await["message"],
        json!("at most 2 rooms per socket")
    );
    // Leaving one makes room for another.
    ann.emit("leaveRoom", &[&room("r1")]).await;
    ann.wait_event("roomLeft").await;
    ann.emit("joinRoom", &[&room("r3")]).await;
    next_event(&mut ann, "roomUsers").await;
    next_event(&mut ann, "roomJoined").await;
    ann.expect_quiet().await;
    // `early` is in /chat, so it saw ann come online, and nothing of her rooms.
    assert_eq!(
        next_event(&mut early, "userOnline").await["username"],
        json!("ann")
    );
    early.expect_quiet().await;
}

#[tokio::test]
async fn the_seed_profile_has_no_rooms() {
    let gw = start(Profile::Seed).await;
    let token = tokens::valid("ann");
    let query = format!("token={token}");
    let (mut ann, _) = joined_client(gw.addr(), Transport::Websocket, &query, None, "ann").await;
    ann.emit_ack(1, "joinRoom", &[&room("r1")]).await;
    ann.emit("sendMessage", &[r#"{"message":"hi","room":"r1"}"#])
        .await;
    // The room key is ignored: section 2's newMessage, to everyone, without it.
    let m = next_event(&mut ann, "newMessage").await;
    assert!(m.get("room").is_none(), "{m}");
    ann.expect_quiet().await;
}
