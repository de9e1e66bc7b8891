//! Benchmark peer: a bare tokio-tungstenite fan-out server, the practical
//! limit of one core for a broadcast chat. It speaks just enough Engine.IO /
//! Socket.IO for `chorus run bench/scenarios/fanout.yml` to drive it (the
//! same generator and criterion as the gateway), and nothing more: no
//! authentication, no JSON parsing (the message text is sliced out of the
//! `sendMessage` packet as raw JSON), no rate limit, no queue bounds, no
//! heartbeat, no `onlineUsers` roster.
//!
//! Every `sendMessage` becomes one `newMessage` frame, built once and shared
//! (`Utf8Bytes` is reference counted) by every connection's queue; each
//! connection's task feeds what is queued and flushes once when its queue is
//! empty: the idiomatic tokio-tungstenite server. Run by `bench/gateway.sh`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A bare fan-out server for `bench/gateway.sh`.
#[derive(Parser)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:3200")]
    addr: SocketAddr,
}

/// The receivers: one queue per connected, namespace-connected socket.
type Registry = Mutex<Vec<(u64, mpsc::UnboundedSender<Utf8Bytes>)>>;

/// The raw JSON value of `"key":` in `packet` (an object member whose value
/// ends at the next `,"` or `}` outside a string), without parsing the rest.
fn raw_member<'a>(packet: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":");
    let start = packet.find(&needle)? + needle.len();
    let rest = &packet[start..];
    let bytes = rest.as_bytes();
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b',' | b'}') => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

async fn serve(stream: TcpStream, id: u64, registry: Arc<Registry>) -> Option<()> {
    stream.set_nodelay(true).ok()?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024);
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
        .await
        .ok()?;
    let mut ws = ws;
    let sid = format!("bare{id:016}");
    let open = format!(
        r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":600000,"pingTimeout":600000,"maxPayload":1000000}}"#
    );
    ws.send(Message::text(open)).await.ok()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let mut username = String::from("null");
    // One task per connection, no split (and so no lock between a reader
    // and a writer): read a frame or write what is queued, whichever is ready.
    loop {
        let msg = tokio::select! {
            msg = ws.next() => msg,
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                if ws.feed(Message::Text(frame)).await.is_err() {
                    break;
                }
                while let Ok(frame) = rx.try_recv() {
                    if ws.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
                if ws.flush().await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Some(Ok(msg)) = msg else { break };
        let Message::Text(text) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        let text = text.as_str();
        if let Some(nsp) = text.strip_prefix("40") {
            let nsp = nsp.split(',').next().unwrap_or("/");
            let _ = tx.send(format!(r#"40{nsp},{{"sid":"{sid}"}}"#).into());
            registry.lock().expect("registry").push((id, tx.clone()));
        } else if text.starts_with("42/chat,[\"joinChat\"") {
            username = raw_member(text, "username").unwrap_or("null").to_owned();
            let _ = tx.send(
                format!(r#"42/chat,["joined",{{"username":{username},"message":"ok"}}]"#).into(),
            );
        } else if text.starts_with("42/chat,[\"sendMessage\"") {
            let message = raw_member(text, "message").unwrap_or("null");
            let stamp = chorus_protocol::timestamp::format_iso(SystemTime::now());
            let frame: Utf8Bytes = format!(
                r#"42/chat,["newMessage",{{"username":{username},"message":{message},"timestamp":"{stamp}"}}]"#
            )
            .into();
            for (_, receiver) in registry.lock().expect("registry").iter() {
                let _ = receiver.send(frame.clone());
            }
        } else if text == "41/chat," || text == "1" {
            break;
        }
    }
    registry.lock().expect("registry").retain(|(i, _)| *i != id);
    Some(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    rlimit::increase_nofile_limit(u64::MAX)?;
    let listener = TcpListener::bind(args.addr).await?;
    println!("bare fan-out server on {}", listener.local_addr()?);
    let registry = Arc::new(Registry::default());
    let ids = AtomicU64::new(0);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let id = ids.fetch_add(1, Relaxed);
        tokio::spawn(serve(stream, id, registry.clone()));
    }
}
