//! Clusters of the reference gateway (`--cluster`, docs/protocol.md section
//! 9) as chorus sees them: `tests/scenarios/nodes.yml` over two nodes joined
//! by a real `redis-server`. A strict cluster passes with every check at 0; a
//! seed cluster delivers across nodes but is caught with `presence`
//! violations (its presence stays per node, as the tutorial's does); a mixed
//! cluster, one node of ours and one official socket.io node, delivers both
//! ways with nothing lost; a node killed mid-run takes its users offline
//! at the others, and the survivors lose nothing.

use std::path::Path;
use std::time::Duration;

use chorus::metrics::Summary;
use chorus::run::{run, RunOptions, RunReport};
use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use chorus_test_support::chat_node::ChatNode;
use chorus_test_support::process::GatewayProcess;
use chorus_test_support::redis::RedisServer;

use crate::support::harness::{self, counter, temp_dir, url_of, SERIAL};

const SCENARIO: &str = "tests/scenarios/nodes.yml";
const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_NODES", "secret-for-nodes");
/// `tests/scenarios/nodes.yml` ramps up to this many clients.
const CLIENTS: u64 = 8;
/// The checks that must stay at 0 in every cluster (presence aside).
const DELIVERY_CHECKS: [&str; 6] = [
    "loss",
    "order",
    "duplicate",
    "recipient",
    "payload",
    "reply",
];

async fn node(profile: Profile, redis: &RedisServer) -> RunningGateway {
    let config = GatewayConfig {
        cluster: Some(redis.url()),
        ..chorus_test_support::gateway::config(profile, SECRET.1)
    };
    chorus_test_support::gateway::start(config).await
}

/// Two strict nodes joined on `redis`.
async fn strict_pair(redis: &RedisServer) -> (RunningGateway, RunningGateway) {
    (
        node(Profile::Strict, redis).await,
        node(Profile::Strict, redis).await,
    )
}

/// A run of the scenario over `urls`, on `transport` (`websocket` or `polling`).
async fn run_over(urls: &[&str], transport: &str) -> RunReport {
    std::env::set_var(SECRET.0, SECRET.1);
    let targets = format!("target=[{}]", urls.join(", "));
    let transport = format!("socketio.transport={transport}");
    let options: RunOptions =
        harness::run_options(SCENARIO, None, temp_dir("cluster"), &[&targets, &transport]);
    tokio::time::timeout(Duration::from_secs(90), run(options))
        .await
        .expect("the run ends in time")
        .expect("the run completes")
}

fn node_counter(summary: &Summary, index: u8, name: &str) -> u64 {
    let node = summary
        .nodes
        .iter()
        .find(|n| n.node == index)
        .unwrap_or_else(|| panic!("no node {index}: {:?}", summary.nodes));
    node.counters.get(name).copied().unwrap_or(0)
}

/// Every client connected, deliveries were owed and none lost, and
/// receivers on each node got messages from senders on the other.
fn assert_delivers_across(s: &Summary) {
    assert_eq!(counter(s, "connections.ok"), CLIENTS);
    assert!(counter(s, "deliveries.expected") > 0);
    assert_eq!(counter(s, "deliveries.lost"), 0);
    assert!(node_counter(s, 1, "received_from.0") > 0, "{:?}", s.nodes);
    assert!(node_counter(s, 0, "received_from.1") > 0, "{:?}", s.nodes);
    for kind in DELIVERY_CHECKS {
        assert_eq!(s.violations[kind], 0, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_cluster_of_the_reference_gateway_passes_every_check() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let (a, b) = strict_pair(&redis).await;
    for transport in ["websocket", "polling"] {
        let report = run_over(&[&url_of(&a), &url_of(&b)], transport).await;
        let s = &report.summary;
        assert_delivers_across(s);
        assert_eq!(
            s.violations["presence"], 0,
            "{transport}: {:?}",
            s.violations
        );
        let all: u64 = s.violations.values().sum();
        assert_eq!(all, 0, "{transport}: {:?}", s.violations);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_cluster_of_the_reference_gateway_is_caught_by_presence() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let (a, b) = (
        node(Profile::Seed, &redis).await,
        node(Profile::Seed, &redis).await,
    );
    let report = run_over(&[&url_of(&a), &url_of(&b)], "websocket").await;
    a.shutdown().await;
    b.shutdown().await;
    let s = &report.summary;
    assert_delivers_across(s);
    assert!(s.violations["presence"] > 0, "{:?}", s.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_cluster_of_ours_and_an_official_socket_io_node_delivers_both_ways() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let ours = node(Profile::Seed, &redis).await;
    let official = ChatNode::start(SECRET.1, Some(&redis.url()));
    let report = run_over(&[&url_of(&ours), &official.url], "websocket").await;
    ours.shutdown().await;
    drop(official);
    assert_delivers_across(&report.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_takes_its_users_offline_and_the_survivors_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let (a, b) = strict_pair(&redis).await;
    // The third node is a process, to be killed with no goodbye to Redis.
    let c = GatewayProcess::spawn_at(
        Path::new(env!("CARGO_BIN_EXE_chorus")),
        &["serve"],
        "127.0.0.1:0",
        SECRET.1,
        &["--profile", "strict", "--cluster", &redis.url()],
    );
    std::env::set_var(SECRET.0, SECRET.1);
    let urls = [url_of(&a), url_of(&b), format!("http://{}", c.addr)];
    let targets = format!("target=[{}]", urls.join(", "));
    let options = harness::run_options(
        "tests/scenarios/node-death.yml",
        None,
        temp_dir("node-death"),
        &[&targets],
    );
    let running = tokio::spawn(tokio::time::timeout(Duration::from_secs(60), run(options)));
    // Everyone has joined by then (9 clients over 900 ms), and nobody talks yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.signal("KILL");
    let report = running
        .await
        .expect("the run task")
        .expect("the run ends in time")
        .expect("the run completes");
    a.shutdown().await;
    b.shutdown().await;
    let s = &report.summary;
    assert_eq!(counter(s, "connections.ok"), 9, "{:?}", s.counters);
    // Round-robin: clients 2, 5 and 8 were on the killed node.
    assert_eq!(node_counter(s, 2, "connections.ok"), 3, "{:?}", s.nodes);
    assert!(counter(s, "deliveries.expected") > 0);
    assert_eq!(counter(s, "deliveries.lost"), 0, "{:?}", s.violations);
    // Every survivor heard each dead user's userOffline (else `presence`).
    for kind in DELIVERY_CHECKS.iter().chain(&["presence"]) {
        assert_eq!(s.violations[*kind], 0, "{kind}: {:?}", s.violations);
    }
}
