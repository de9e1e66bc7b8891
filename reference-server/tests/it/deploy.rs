//! `deploy/k8s/gateway-cluster.yaml` against the real binary: the gateway
//! container's environment is read from the manifest and the node is started
//! with it as it stands (only the address and Redis are this machine's), so a
//! renamed flag or a value the gateway no longer takes fails here rather than
//! in someone's cluster.

use std::path::Path;
use std::process::Command;

use chorus_test_support::process::GatewayProcess;
use chorus_test_support::redis::RedisServer;

use crate::support::SECRET;

const BIN: &str = env!("CARGO_BIN_EXE_chorus-gateway");

fn manifest() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/k8s/gateway-cluster.yaml"
    );
    std::fs::read_to_string(path).expect("read the cluster manifest")
}

/// `(name, value)` of each `- { name: X, value: Y }` line: the container's
/// literal environment (the secret comes through `valueFrom`, not here).
fn literal_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix("- { name: ")?.strip_suffix(" }")?;
            let (name, value) = inner.split_once(", value: ")?;
            Some((name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn the_cluster_manifest_starts_a_node_that_links_and_serves() {
    let env = literal_env(&manifest());
    let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GATEWAY_ADDR",
            "GATEWAY_PROFILE",
            "GATEWAY_CLUSTER",
            "GATEWAY_MAX_CONNECTIONS"
        ]
    );
    let help = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for name in names.iter().chain(&["JWT_SECRET"]) {
        assert!(
            help.contains(&format!("[env: {name}")),
            "{name} is no flag's env"
        );
    }
    // The manifest's environment, with this machine's address and Redis given
    // as flags (which win over the environment).
    let redis = RedisServer::start();
    let node = GatewayProcess::spawn_env(
        Path::new(BIN),
        &[],
        "127.0.0.1:0",
        SECRET,
        &env,
        &["--cluster", &redis.url()],
    );
    // `/healthz` is 200 only while the cluster link is up.
    assert!(node.healthy().await, "{:#?}", node.log());
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("chorus_gateway_cluster_disconnects_total"),
        "{metrics}"
    );
}
