//! `chorus run --metrics-addr`: while the run goes on, `GET /metrics` answers
//! Prometheus text whose `emits` counter grows from one scrape to the next.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_gateway::Faults;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::harness::{chorus, crate_path, start_gateway, temp_dir, url_of};

const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_STEADY", "secret-for-live-metrics");
/// Time between the two scrapes compared.
const SCRAPE_GAP: Duration = Duration::from_millis(1500);
/// How long the run may take to serve `emits` at all.
const FIRST_SCRAPE_DEADLINE: Duration = Duration::from_secs(10);

/// A loopback address nobody listens on (free when this returns).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// `GET /metrics` over HTTP/1.1: the body, or `None` when nobody answers yet.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("/metrics answers in time")
        .expect("/metrics answers in UTF-8");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response with a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    Some(body.to_owned())
}

/// Checks that `body` is Prometheus text (every sample line `name{labels} value`,
/// every family typed) and returns the value of `chorus_counter_total{name="emits"}`.
fn emits(body: &str) -> Option<f64> {
    assert!(
        body.contains("# TYPE chorus_counter_total counter"),
        "{body}"
    );
    let mut emits = None;
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with("chorus_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            !series.contains('{') || series.ends_with('}'),
            "labels not closed: {line}"
        );
        if series == "chorus_counter_total{name=\"emits\"}" {
            emits = Some(value);
        }
    }
    emits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_growing_counters_during_a_run() {
    let gateway = start_gateway(Faults::default(), SECRET.1).await;
    let dir = temp_dir("live-metrics");
    let addr = free_addr();
    let scenario = crate_path("tests/scenarios/steady-chat.yml");
    let args = [
        "run",
        &scenario.display().to_string(),
        "--target",
        &url_of(&gateway),
        "--out",
        &dir.join("run").display().to_string(),
        "--quiet",
        "--no-report",
        "--metrics-addr",
        &addr.to_string(),
        // About 5 s of sending at 20 messages a second, then leave soon.
        "--set",
        "groups.0.flow.4.loop.count=100",
        "--set",
        "groups.0.flow.5.listen=500ms",
    ];
    let mut child = chorus(args, SECRET).spawn().expect("chorus starts");

    let started = Instant::now();
    let first = loop {
        if let Some(n) = scrape(addr).await.as_deref().and_then(emits) {
            if n > 0.0 {
                break n;
            }
        }
        assert!(
            started.elapsed() < FIRST_SCRAPE_DEADLINE,
            "no emits served within {FIRST_SCRAPE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(SCRAPE_GAP).await;
    let body = scrape(addr).await.expect("the endpoint still answers");
    let second = emits(&body).expect("an emits counter");
    assert!(
        child.try_wait().expect("the child's status").is_none(),
        "the run was over before the second scrape"
    );
    assert!(second > first, "emits {first} then {second}");

    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the run ends in time")
        .expect("the run's status");
    assert!(status.success(), "{status}");
    gateway.shutdown().await;
}
