//! The `chorus-gateway` binary: SIGTERM and SIGINT shut it down gracefully
//! (`41/chat,` to every socket, then exit 0).

use std::time::Duration;

use crate::support::raw::{RawClient, Transport};
use crate::support::{gateway_process, within};

async fn shuts_down_gracefully_on(name: &'static str) {
    let gateway = gateway_process(&["--profile", "seed"]);
    let mut client = RawClient::connect(gateway.addr, Transport::Websocket, "", &[]).await;
    client.connect_chat().await;
    gateway.signal(name);
    within(client.wait_for_frame("41/chat,")).await;
    let status = tokio::task::spawn_blocking(move || gateway.wait_exit(Duration::from_secs(5)))
        .await
        .expect("waiter");
    assert!(status.success(), "exit status after {name}: {status}");
}

#[tokio::test]
async fn sigterm_sends_namespace_disconnect_and_exits_zero() {
    shuts_down_gracefully_on("TERM").await;
}

#[tokio::test]
async fn sigint_sends_namespace_disconnect_and_exits_zero() {
    shuts_down_gracefully_on("INT").await;
}
