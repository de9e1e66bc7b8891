//! `scenarios/cluster.yml`, scaled down with `--set`, over two reference
//! gateway nodes joined by a real `redis-server`: a strict cluster meets its
//! thresholds (nothing lost, presence clean) with deliveries crossing both
//! ways; a seed cluster fails the presence threshold (its presence is per
//! node, as the tutorial's).

use std::time::Duration;

use chorus::metrics::Summary;
use chorus::run::run;
use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use chorus_test_support::redis::RedisServer;

use crate::support::harness::{self, counter, temp_dir, url_of, SERIAL};

const SCENARIO: &str = "scenarios/cluster.yml";
const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_CLUSTER_LOAD", "secret-for-cluster-load");
/// The scaled-down run: 40 clients (8 writers) ramped over 2 s, 10
/// messages a second for about 5 s.
const CLIENTS: u64 = 40;
const SCALE: [&str; 9] = [
    "load.phases.0.ramp.to=40",
    "load.phases.0.ramp.over=2s",
    "load.phases.1.hold=4s",
    "groups.0.weight=20",
    "groups.1.weight=80",
    "groups.0.flow.4.loop.duration=5s",
    "groups.1.flow.4.listen=6s",
    "load.messages.rate=10/s",
    "auth.jwt.secret_env=CHORUS_TEST_SECRET_CLUSTER_LOAD",
];

async fn node(profile: Profile, redis: &RedisServer) -> RunningGateway {
    let config = GatewayConfig {
        cluster: Some(redis.url()),
        ..chorus_test_support::gateway::config(profile, SECRET.1)
    };
    chorus_test_support::gateway::start(config).await
}

/// The scaled-down scenario over a fresh two-node cluster of `profile`.
async fn run_on_cluster(profile: Profile) -> Summary {
    let redis = RedisServer::start();
    let (a, b) = (node(profile, &redis).await, node(profile, &redis).await);
    std::env::set_var(SECRET.0, SECRET.1);
    let targets = format!("target=[{}, {}]", url_of(&a), url_of(&b));
    let mut overrides = vec![targets.as_str()];
    overrides.extend(SCALE);
    let options = harness::run_options(SCENARIO, None, temp_dir("cluster-load"), &overrides);
    let report = tokio::time::timeout(Duration::from_secs(60), run(options))
        .await
        .expect("the run ends in time")
        .expect("the run completes");
    a.shutdown().await;
    b.shutdown().await;
    report.summary
}

/// Whether the threshold written `expr` (as `summary.json` shows it) held.
fn threshold(s: &Summary, expr: &str) -> bool {
    s.thresholds
        .iter()
        .find(|t| t.expr == expr)
        .unwrap_or_else(|| panic!("no threshold {expr:?}: {:?}", s.thresholds))
        .pass
}

fn node_counter(s: &Summary, index: u8, name: &str) -> u64 {
    let node = s
        .nodes
        .iter()
        .find(|n| n.node == index)
        .unwrap_or_else(|| panic!("no node {index}: {:?}", s.nodes));
    node.counters.get(name).copied().unwrap_or(0)
}

/// Every client connected, messages were owed and crossed both ways.
fn assert_crosses(s: &Summary) {
    assert_eq!(counter(s, "connections.ok"), CLIENTS);
    assert!(counter(s, "deliveries.expected") > 0);
    assert!(node_counter(s, 0, "received_from.1") > 0, "{:?}", s.nodes);
    assert!(node_counter(s, 1, "received_from.0") > 0, "{:?}", s.nodes);
    assert!(threshold(s, "deliveries.lost == 0"), "{:?}", s.thresholds);
    assert!(threshold(s, "errors == 0"), "{:?}", s.thresholds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenario_passes_on_a_strict_cluster() {
    let _serial = SERIAL.lock().await;
    let s = run_on_cluster(Profile::Strict).await;
    assert_crosses(&s);
    assert!(
        threshold(&s, "violations.presence == 0"),
        "{:?}",
        s.violations
    );
    let all: u64 = s.violations.values().sum();
    assert_eq!(all, 0, "{:?}", s.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenario_fails_a_seed_cluster_on_presence() {
    let _serial = SERIAL.lock().await;
    let s = run_on_cluster(Profile::Seed).await;
    assert_crosses(&s);
    assert!(s.violations["presence"] > 0, "{:?}", s.violations);
    assert!(!threshold(&s, "violations.presence == 0"));
    // Presence is what fails: deliveries are whole.
    for kind in ["loss", "order", "duplicate", "recipient", "payload"] {
        assert_eq!(s.violations[kind], 0, "{kind}: {:?}", s.violations);
    }
}
