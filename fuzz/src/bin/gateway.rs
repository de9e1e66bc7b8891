//! The gateway's whole packet path, through its public API: a real
//! `chorus_gateway` (one seed, one strict) on 127.0.0.1, sent what a client
//! may send, over a real websocket or real HTTP long-polling requests.
//!
//! Input: one flag byte, then parts separated by a line holding `%%`.
//! - bit 0: strict (set) or seed gateway;
//! - bit 1: polling (set) or websocket;
//! - bit 2: put a valid token in the handshake query;
//! - bit 3: the first part is a JWT payload the harness signs with the
//!   gateway's secret and puts in the query (huge `exp`, strings, ...).
//!
//! Websocket: each part is one frame; a part starting with `b` is sent as a
//! binary frame of the bytes after the `b`, the others as text frames.
//! Polling: each part is one POST body (`\x1e`-separated records).
//!
//! After every input the gateway must still answer a new client's
//! handshake; any panic in a gateway task aborts the process (a crash).
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chorus_fuzz::live::{self, encode_query, STEP};
use chorus_fuzz::{split, PART};
use chorus_gateway::{Profile, RunningGateway};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Inputs between gateway restarts, so state a session legitimately leaves
/// behind (seed's leaked users) cannot slow the campaign down.
const RESTART_EVERY: u32 = 2000;
/// How long the harness reads what the gateway answers after the last part.
const SETTLE: Duration = Duration::from_millis(2);

async fn websocket(addr: SocketAddr, query: &str, parts: &[&[u8]]) {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket{query}");
    let Ok(Ok((mut ws, _))) =
        tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url)).await
    else {
        return;
    };
    for part in parts {
        let frame = match part.split_first() {
            Some((b'b', bytes)) => Message::Binary(bytes.to_vec().into()),
            _ => match std::str::from_utf8(part) {
                Ok(text) => Message::Text(text.into()),
                Err(_) => Message::Binary(part.to_vec().into()),
            },
        };
        if ws.send(frame).await.is_err() {
            return;
        }
    }
    // Read what comes back until the gateway is quiet or closes.
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(SETTLE, ws.next()).await {
        if msg.is_close() {
            break;
        }
    }
    let _ = tokio::time::timeout(STEP, ws.close(None)).await;
}

async fn polling(addr: SocketAddr, query: &str, parts: &[&[u8]]) {
    let Some(sid) = live::polling_handshake(addr, query).await else {
        return;
    };
    let target = format!(
        "/socket.io/?EIO=4&transport=polling&sid={}",
        encode_query(&sid)
    );
    for part in parts {
        if live::http(addr, "POST", &target, part, STEP)
            .await
            .is_none()
        {
            break;
        }
    }
    // Drain what is queued (a GET with nothing queued waits for a ping: bounded by SETTLE).
    let _ = live::http(addr, "GET", &target, b"", SETTLE).await;
    live::close_polling(addr, &sid).await;
}

fn main() {
    chorus_fuzz::abort_on_panic();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let token = live::valid_token("fuzz-user");
    // The gateways live across inputs; a panic aborts the process, so no
    // state is ever observed after an unwind.
    let mut gateways = AssertUnwindSafe(None::<(RunningGateway, RunningGateway)>);
    let mut inputs = 0u32;
    afl::fuzz_nohook!(|data: &[u8]| {
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        runtime.block_on(async {
            if inputs.is_multiple_of(RESTART_EVERY) {
                if let Some((seed, strict)) = gateways.take() {
                    seed.shutdown().await;
                    strict.shutdown().await;
                }
            }
            inputs = inputs.wrapping_add(1);
            if gateways.is_none() {
                *gateways = Some((
                    live::start(Profile::Seed).await,
                    live::start(Profile::Strict).await,
                ));
            }
            let (seed, strict) = gateways.as_ref().expect("started above");
            let addr = if flags & 1 != 0 {
                strict.addr()
            } else {
                seed.addr()
            };
            let mut parts = split(rest, PART);
            let mut query = String::new();
            if flags & 8 != 0 {
                let claims = parts.remove(0);
                query = format!("&token={}", encode_query(&live::sign_raw(claims)));
                if parts.is_empty() {
                    parts.push(b"40/chat,");
                }
            } else if flags & 4 != 0 {
                query = format!("&token={}", encode_query(&token));
            }
            if flags & 2 != 0 {
                polling(addr, &query, &parts).await;
            } else {
                websocket(addr, &query, &parts).await;
            }
            live::assert_alive(addr).await;
        });
    });
}
