//! The websocket write path keeps no buffer the size of the largest frame it
//! sent: after a ~900 KB broadcast to every connection, the gateway holds
//! neither a copy per connection (RSS) nor large buffers (its buffer gauges,
//! which read the real capacity of every connection's read and write buffers).

use chorus_test_support::process::metric;

use super::support::gateway_process;
use super::support::raw::{RawClient, Transport};
use super::support::tokens;

/// Connections that receive the large frame (the sender receives it too).
const RECEIVERS: usize = 40;
/// Characters of the large message.
const TEXT: usize = 900_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_broadcast_leaves_no_large_buffer_behind() {
    let gw = gateway_process(&["--profile", "seed"]);
    let mut clients = Vec::new();
    for _ in 0..RECEIVERS {
        let mut client = RawClient::ws(gw.addr).await;
        client.connect_chat().await;
        clients.push(client);
    }
    let query = format!("token={}", tokens::valid("big"));
    let mut sender = RawClient::connect(gw.addr, Transport::Websocket, &query, &[]).await;
    sender.connect_chat().await;
    sender.emit("joinChat", &[r#"{"username":"big"}"#]).await;
    sender.wait_event("joined").await;
    let before = gw.rss_bytes();

    let text = "x".repeat(TEXT);
    sender
        .emit("sendMessage", &[&format!(r#"{{"message":"{text}"}}"#)])
        .await;
    clients.push(sender);
    for client in &mut clients {
        let msg = client.wait_event("newMessage").await;
        assert_eq!(msg.arg()["message"].as_str().map(str::len), Some(TEXT));
    }

    let metrics = gw.metrics().await;
    let write = metric(&metrics, "chorus_gateway_ws_write_buffer_bytes");
    let read = metric(&metrics, "chorus_gateway_ws_read_buffer_bytes");
    let connections = clients.len() as f64;
    // Idle connections keep at most 1 KiB of write buffer and no read buffer
    // (a large frame's room is given back once it is handled).
    assert!(
        write <= connections * 1024.0,
        "write buffers {write} bytes over {connections} idle connections"
    );
    assert!(
        read <= connections * 4096.0,
        "read buffers {read} bytes over {connections} idle connections"
    );
    // One retained copy per connection would be ~36 MB.
    let grown = gw.rss_bytes().saturating_sub(before);
    assert!(
        grown < 12 << 20,
        "the gateway grew by {grown} bytes after one {TEXT}-byte broadcast to {connections} connections"
    );
}
