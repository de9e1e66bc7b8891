//! docs/protocol.md section 3 (authentication in the seed profile): the guard runs
//! on the three message handlers only, never on connection.

use std::time::Duration;

use chorus_gateway::Profile;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::raw::{joined_client, RawClient, Transport};
use crate::support::{start, tokens, INVALID_TOKEN, JOINED_TEXT, NO_TOKEN};

/// The exception frame a refused event gets.
fn exception(message: &str, cause: &str) -> String {
    format!(r#"42/chat,["exception",{{"status":"error","message":"{message}","cause":{cause}}}]"#)
}

/// Every token the seed guard refuses, and the message it refuses it with.
fn bad_tokens() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("garbage", tokens::garbage(), INVALID_TOKEN),
        ("expired", tokens::expired(), INVALID_TOKEN),
        ("nbf in the future", tokens::not_yet_valid(), INVALID_TOKEN),
        ("wrong secret", tokens::wrong_secret(), INVALID_TOKEN),
        ("alg none", tokens::alg_none(), INVALID_TOKEN),
    ]
}

#[tokio::test]
async fn seed_unauthenticated_sockets_connect_and_receive_online_users_and_broadcasts() {
    let gw = start(Profile::Seed).await;
    let valid = format!("token={}", tokens::valid("u1"));
    let (mut alice, sid) =
        joined_client(gw.addr(), Transport::Websocket, &valid, None, "alice").await;
    let mut queries = vec![("no token".to_owned(), String::new())];
    queries.extend(
        bad_tokens()
            .into_iter()
            .map(|(what, token, _)| (what.to_owned(), format!("token={token}"))),
    );
    let mut guests = Vec::new();
    for (what, query) in queries {
        let mut guest = RawClient::connect(gw.addr(), Transport::Polling, &query, &[]).await;
        let (_, list) = guest.connect_chat().await;
        assert_eq!(list, json!([[sid, "alice"]]), "{what}");
        guests.push((what, guest));
    }
    alice
        .emit("sendMessage", &[r#"{"message":"hello guests"}"#])
        .await;
    for (what, guest) in &mut guests {
        let msg = guest.wait_event("newMessage").await;
        assert_eq!(msg.arg()["message"], json!("hello guests"), "{what}");
    }
}

#[tokio::test]
async fn seed_refused_join_gets_an_exception_to_the_sender_alone_and_stays_connected() {
    let gw = start(Profile::Seed).await;
    let valid = format!("token={}", tokens::valid("u1"));
    let (mut alice, _) =
        joined_client(gw.addr(), Transport::Websocket, &valid, None, "alice").await;
    let mut mallory = RawClient::ws(gw.addr()).await;
    mallory.connect_chat().await;
    mallory
        .emit("joinChat", &[r#"{"username":"mallory"}"#])
        .await;
    assert_eq!(
        mallory.next_frame().await,
        exception(
            NO_TOKEN,
            r#"{"pattern":"joinChat","data":{"username":"mallory"}}"#
        )
    );
    alice.expect_quiet().await;
    // Still connected and receiving broadcasts; never listed.
    alice
        .emit("sendMessage", &[r#"{"message":"still there?"}"#])
        .await;
    assert_eq!(
        mallory.wait_event("newMessage").await.arg()["message"],
        json!("still there?")
    );
    let mut late = RawClient::ws(gw.addr()).await;
    let (_, list) = late.connect_chat().await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn seed_refused_events_name_their_pattern_and_payload() {
    let gw = start(Profile::Seed).await;
    let mut guest = RawClient::ws(gw.addr()).await;
    guest.connect_chat().await;
    let cases = [
        ("sendMessage", Some(r#"{"message":"hi"}"#)),
        ("typing", Some(r#"{"isTyping":true}"#)),
        ("joinChat", None),
        ("sendMessage", Some(r#""text""#)),
    ];
    for (event, payload) in cases {
        let args: Vec<&str> = payload.into_iter().collect();
        guest.emit(event, &args).await;
        let cause = match payload {
            Some(p) => format!(r#"{{"pattern":"{event}","data":{p}}}"#),
            None => format!(r#"{{"pattern":"{event}"}}"#),
        };
        assert_eq!(guest.next_frame().await, exception(NO_TOKEN, &cause));
    }
}

#[tokio::test]
async fn seed_invalid_tokens_are_refused_per_event_with_invalid_token() {
    let gw = start(Profile::Seed).await;
    for (what, token, message) in bad_tokens() {
        let mut client = RawClient::connect(
            gw.addr(),
            Transport::Websocket,
            &format!("token={token}"),
            &[],
        )
        .await;
        client.connect_chat().await;
        client.emit("joinChat", &[r#"{"username":"m"}"#]).await;
        assert_eq!(
            client.next_frame().await,
            exception(message, r#"{"pattern":"joinChat","data":{"username":"m"}}"#),
            "{what}"
        );
    }
}

#[tokio::test]
async fn seed_accepts_hs256_hs384_hs512_tokens_without_exp_and_string_payloads() {
    let gw = start(Profile::Seed).await;
    let accepted = [
        ("HS256", tokens::valid_alg(Algorithm::HS256)),
        ("HS384", tokens::valid_alg(Algorithm::HS384)),
        ("HS512", tokens::valid_alg(Algorithm::HS512)),
        ("no exp", tokens::without_exp()),
        ("string payload", tokens::string_payload()),
    ];
    for (what, token) in accepted {
        let mut client = RawClient::connect(
            gw.addr(),
            Transport::Websocket,
            &format!("token={token}"),
            &[],
        )
        .await;
        client.connect_chat().await;
        client.emit("joinChat", &[r#"{"username":"ok"}"#]).await;
        assert_eq!(
            client.next_msg().await.name().as_deref(),
            Some("userOnline"),
            "{what}"
        );
        assert_eq!(
            client.wait_event("joined").await.frame,
            format!(r#"42/chat,["joined",{{"username":"ok","message":"{JOINED_TEXT}"}}]"#),
            "{what}"
        );
    }
}

/// The answer to `joinChat` from a socket whose handshake carried `query` and `headers`:
/// `Ok(())` when it joined, `Err(message)` for an exception.
async fn join_outcome(
    addr: std::net::SocketAddr,
    transport: Transport,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<(), String> {
    let mut client = RawClient::connect(addr, transport, query, headers).await;
    client.connect_chat().await;
    client.emit("joinChat", &[r#"{"username":"t"}"#]).await;
    let msg = client.next_msg().await;
    match msg.name().as_deref() {
        Some("userOnline") => Ok(()),
        Some("exception") => Err(msg.arg()["message"].as_str().expect("a message").to_owned()),
        _ => panic!("unexpected answer {}", msg.frame),
    }
}

#[tokio::test]
async fn seed_query_token_wins_even_when_invalid() {
    let gw = start(Profile::Seed).await;
    let bearer = format!("Bearer {}", tokens::valid("u1"));
    for transport in [Transport::Websocket, Transport::Polling] {
        let outcome = join_outcome(
            gw.addr(),
            transport,
            "token=garbage",
            &[("Authorization", &bearer)],
        )
        .await;
        assert_eq!(outcome, Err(INVALID_TOKEN.to_owned()), "{transport:?}");
    }
}

#[tokio::test]
async fn seed_empty_query_token_falls_back_to_the_bearer_header() {
    let gw = start(Profile::Seed).await;
    let bearer = format!("Bearer {}", tokens::valid("u1"));
    for transport in [Transport::Websocket, Transport::Polling] {
        let outcome = join_outcome(
            gw.addr(),
            transport,
            "token=",
            &[("Authorization", &bearer)],
        )
        .await;
        assert_eq!(outcome, Ok(()), "{transport:?}");
        let outcome = join_outcome(gw.addr(), transport, "", &[("Authorization", &bearer)]).await;
        assert_eq!(outcome, Ok(()), "{transport:?}");
    }
}

#[tokio::test]
async fn seed_last_query_token_counts_when_repeated() {
    let gw = start(Profile::Seed).await;
    let valid = tokens::valid("u1");
    let addr = gw.addr();
    let ws = Transport::Websocket;
    let last_valid = format!("token=garbage&token={valid}");
    assert_eq!(join_outcome(addr, ws, &last_valid, &[]).await, Ok(()));
    let last_invalid = format!("token={valid}&token=garbage");
    assert_eq!(
        join_outcome(addr, ws, &last_invalid, &[]).await,
        Err(INVALID_TOKEN.to_owned())
    );
}

#[tokio::test]
async fn seed_bearer_header_needs_exactly_bearer_and_one_space() {
    let gw = start(Profile::Seed).await;
    let valid = tokens::valid("u1");
    let cases = [
        (format!("bearer {valid}"), NO_TOKEN),
        (valid.clone(), NO_TOKEN),
        (format!("Token {valid}"), NO_TOKEN),
        (format!("Bearer  {valid}"), INVALID_TOKEN),
        (format!("Bearer {}", tokens::expired()), INVALID_TOKEN),
    ];
    for (header, message) in cases {
        let outcome = join_outcome(
            gw.addr(),
            Transport::Websocket,
            "",
            &[("Authorization", &header)],
        )
        .await;
        assert_eq!(outcome, Err(message.to_owned()), "Authorization: {header}");
    }
}

#[tokio::test]
async fn seed_auth_payload_is_ignored() {
    let gw = start(Profile::Seed).await;
    let mut client = RawClient::ws(gw.addr()).await;
    let auth = format!(r#"{{"token":"{}"}}"#, tokens::valid("u1"));
    client.connect_chat_auth(Some(&auth)).await;
    client.emit("joinChat", &[r#"{"username":"a"}"#]).await;
    assert_eq!(
        client.next_frame().await,
        exception(
            NO_TOKEN,
            r#"{"pattern":"joinChat","data":{"username":"a"}}"#
        )
    );
}

#[tokio::test]
async fn seed_token_is_verified_on_every_event_and_expiry_refuses_later_events() {
    let gw = start(Profile::Seed).await;
    let query = format!("token={}", tokens::expiring_in("u1", 2));
    let (mut alice, sid) =
        joined_client(gw.addr(), Transport::Websocket, &query, None, "alice").await;
    let valid = format!("token={}", tokens::valid("u2"));
    let (mut bob, _) = joined_client(gw.addr(), Transport::Polling, &valid, None, "bob").await;
    alice.wait_event("userOnline").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;

    alice.emit("sendMessage", &[r#"{"message":"late"}"#]).await;
    assert_eq!(
        alice.next_frame().await,
        exception(
            INVALID_TOKEN,
            r#"{"pattern":"sendMessage","data":{"message":"late"}}"#
        )
    );
    bob.expect_quiet().await;
    // Still connected, still receiving broadcasts, still listed.
    bob.emit("sendMessage", &[r#"{"message":"for alice"}"#])
        .await;
    assert_eq!(
        alice.wait_event("newMessage").await.arg()["message"],
        json!("for alice")
    );
    let mut late = RawClient::ws(gw.addr()).await;
    let (_, list) = late.connect_chat().await;
    assert_eq!(list[0], json!([sid, "alice"]));
}
