//! The `chorus-gateway` binary: SIGTERM and SIGINT shut it down gracefully
//! (`41/chat,` to every socket, then exit 0).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::raw::{RawClient, Transport};
use common::within;

/// Starts the binary on a free port and returns it with the address it printed.
fn spawn_gateway() -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus-gateway"))
        .args([
            "--profile",
            "seed",
            "--addr",
            "127.0.0.1:0",
            "--jwt-secret",
            common::SECRET,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chorus-gateway");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("a log line before exit")
            .expect("utf-8 log");
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().expect("an address");
            break addr.parse().expect("a socket address");
        }
    };
    // Keep draining the log so the gateway never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

async fn shuts_down_gracefully_on(name: &'static str) {
    let (mut child, addr) = spawn_gateway();
    let mut client = RawClient::connect(addr, Transport::Websocket, "", &[]).await;
    client.connect_chat().await;
    signal(&child, name);
    within(client.wait_for_frame("41/chat,")).await;
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(status) = child.try_wait().expect("wait for the gateway") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("the gateway did not exit within 5 s of {name}");
    })
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
