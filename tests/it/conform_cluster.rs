//! `chorus conform` with several targets, the nodes of one cluster: a real
//! `redis-server` and two reference gateway nodes (`--cluster`). A strict
//! cluster passes the whole strict suite, cluster cases included; a seed
//! cluster passes the cases every cluster owes (broadcasts cross nodes, in
//! order) and fails exactly the strict-only ones, its per-node presence
//! snapshots shown as evidence; official socket.io nodes behind
//! `@socket.io/redis-adapter` pass the cases of every cluster too; two
//! nodes that are no cluster fail every
//! cluster case; one target skips them with the reason; a case naming a
//! node that was not given is a case error with its position.

use std::collections::BTreeSet;
use std::process::Output;

use chorus::conform::{all_cases, load_builtin_files, Case, Category, ProfileName};
use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use chorus_test_support::chat_node::ChatNode;
use chorus_test_support::gateway;
use chorus_test_support::redis::RedisServer;

use crate::support::harness::{chorus, finish, temp_dir, url_of};
use crate::support::verdict_lines::{names, stdout};

const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_CCON", "secret-for-conform-cluster");
/// Selects the cluster cases (`cluster.*` and `strict.cluster.*`) and nothing else.
const CLUSTER_CASES: &str = "*cluster.*";

/// A node of `profile`, joined to the others through `redis` when given.
async fn node(profile: Profile, redis: Option<&RedisServer>) -> RunningGateway {
    let config = GatewayConfig {
        cluster: redis.map(RedisServer::url),
        ..gateway::config(profile, SECRET.1)
    };
    gateway::start(config).await
}

/// `chorus conform --jwt-secret-env … ARGS`, one `--target` per URL.
async fn conform(targets: &[&str], args: &[&str]) -> Output {
    let mut all = vec!["conform", "--jwt-secret-env", SECRET.0];
    for url in targets {
        all.extend(["--target", url]);
    }
    all.extend(args);
    finish(chorus(all, SECRET)).await
}

/// The lines under `FAIL name` (statement and evidence).
fn evidence_of<'a>(out: &'a str, name: &str) -> &'a str {
    let block = out
        .split(&format!("FAIL {name}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("{name} did not fail:\n{out}"));
    let end = block
        .find("\nPASS ")
        .into_iter()
        .chain(block.find("\nFAIL "))
        .chain(block.find("\nSKIP "))
        .min()
        .unwrap_or(block.len());
    &block[..end]
}

/// The shipped cluster cases that apply to `profile`.
fn cluster_cases(profile: ProfileName) -> Vec<Case> {
    all_cases(load_builtin_files().expect("the shipped cases load"))
        .into_iter()
        .filter(|c| c.category == Category::Cluster && c.applies_to(profile))
        .collect()
}

fn names_of<'a>(cases: impl IntoIterator<Item = &'a Case>) -> BTreeSet<String> {
    cases.into_iter().map(|c| c.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_cluster_passes_the_strict_suite_with_every_cluster_case() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(Profile::Strict, Some(&redis)).await,
        node(Profile::Strict, Some(&redis)).await,
    );
    let output = conform(&[&url_of(&a), &url_of(&b)], &["--profile", "strict"]).await;
    a.shutdown().await;
    b.shutdown().await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let cluster = names_of(&cluster_cases(ProfileName::Strict));
    assert!(cluster.len() >= 8, "{cluster:?}");
    let passed = names(&out, "PASS ");
    assert!(cluster.is_subset(&passed), "{out}");
    // With targets, only what needs a gateway the run controls (shutdown, a
    // fast heartbeat) is skipped.
    let skipped = names(&out, "SKIP ");
    assert!(
        skipped.iter().all(|n| n.starts_with("engineio.heartbeat.")
            || n == "strict.lifecycle.shutdown-disconnects-namespace"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_cluster_fails_exactly_the_strict_only_cluster_cases() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(Profile::Seed, Some(&redis)).await,
        node(Profile::Seed, Some(&redis)).await,
    );
    let targets = [url_of(&a), url_of(&b)];
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();

    // What seed promises of a cluster (broadcasts cross, in order) holds.
    let output = conform(&targets, &["--profile", "seed", "--only", CLUSTER_CASES]).await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let seed = names_of(&cluster_cases(ProfileName::Seed));
    assert!(seed.len() >= 5, "{seed:?}");
    assert_eq!(names(&out, "PASS "), seed, "{out}");

    // The strict cluster cases: the shared ones pass, the strict-only ones fail.
    let output = conform(&targets, &["--profile", "strict", "--only", CLUSTER_CASES]).await;
    a.shutdown().await;
    b.shutdown().await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let strict_only: BTreeSet<String> = cluster_cases(ProfileName::Strict)
        .iter()
        .filter(|c| !c.applies_to(ProfileName::Seed))
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names(&out, "PASS "), seed, "{out}");
    assert_eq!(names(&out, "FAIL "), strict_only, "{out}");
    assert!(names(&out, "SKIP ").is_empty(), "{out}");

    // The presence failures are the snapshots: the user of the other node,
    // whose userOnline did cross, is missing from the newcomer's onlineUsers.
    for name in [
        "strict.cluster.presence.snapshot-holds-every-node",
        "strict.cluster.presence.snapshot-holds-every-node-both-ways",
    ] {
        let evidence = evidence_of(&out, name);
        assert!(
            evidence.contains("to receive event \"onlineUsers\" with arguments containing"),
            "{evidence}"
        );
        assert!(evidence.contains("event [\"onlineUsers\","), "{evidence}");
    }
    let snapshot = evidence_of(&out, "strict.cluster.presence.snapshot-holds-every-node");
    assert!(snapshot.contains("expected: late to receive"), "{snapshot}");
    assert!(snapshot.contains("\"pa-"), "{snapshot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_socket_io_nodes_behind_the_redis_adapter_pass_what_seed_promises() {
    let redis = RedisServer::start();
    let (a, b) = (
        ChatNode::start(SECRET.1, Some(&redis.url())),
        ChatNode::start(SECRET.1, Some(&redis.url())),
    );
    let output = conform(
        &[&a.url, &b.url],
        &["--profile", "seed", "--only", CLUSTER_CASES],
    )
    .await;
    drop((a, b));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(
        names(&out, "PASS "),
        names_of(&cluster_cases(ProfileName::Seed)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_are_no_cluster_fail_every_cluster_case() {
    let (a, b) = (
        node(Profile::Strict, None).await,
        node(Profile::Strict, None).await,
    );
    let output = conform(
        &[&url_of(&a), &url_of(&b)],
        &["--profile", "strict", "--only", CLUSTER_CASES],
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let all = names_of(&cluster_cases(ProfileName::Strict));
    assert_eq!(names(&out, "FAIL "), all, "{out}");
    assert!(names(&out, "PASS ").is_empty(), "{out}");
    let crossing = evidence_of(&out, "cluster.message.crosses-nodes-both-ways");
    assert!(
        crossing.contains("expected: b to receive event \"newMessage\""),
        "{crossing}"
    );
}

#[tokio::test]
async fn one_target_skips_the_cluster_cases_with_the_reason() {
    let a = node(Profile::Strict, None).await;
    let output = conform(
        &[&url_of(&a)],
        &["--profile", "strict", "--only", CLUSTER_CASES],
    )
    .await;
    a.shutdown().await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let all = names_of(&cluster_cases(ProfileName::Strict));
    assert_eq!(names(&out, "SKIP "), all, "{out}");
    for line in out.lines().filter(|l| l.starts_with("SKIP ")) {
        assert!(
            line.ends_with("(a cluster case: needs 2 targets or more (--target repeated, one per node of one cluster); 1 given)"),
            "{line}"
        );
    }
    assert_eq!(
        out.lines().last(),
        Some(format!("0 passed, 0 failed, {} skipped", all.len()).as_str())
    );
}

#[tokio::test]
async fn a_node_that_was_not_given_is_a_case_error_with_its_position() {
    let dir = temp_dir("ccon-node");
    let file = dir.join("three.yml");
    std::fs::write(
        &file,
        "cases:\n  - name: c.three\n    profiles: [strict]\n    category: cluster\n    statement: s\n    clients: {a: {}, c: {node: 2}}\n    steps:\n      - connect: c\n",
    )
    .unwrap();
    // Checked before any node is reached: these two ports need not answer.
    let output = conform(
        &["http://127.0.0.1:9", "http://127.0.0.1:9"],
        &["--cases", dir.to_str().unwrap()],
    )
    .await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "chorus: {}:6:32: case c.three: node 2 is not among the 2 targets given (nodes 0 to 1)",
            file.display()
        )
    );

    // Beyond the limit, the file itself is refused, whatever the targets.
    std::fs::write(
        &file,
        "cases:\n  - name: c.far\n    profiles: [strict]\n    category: cluster\n    statement: s\n    clients: {a: {node: 99}}\n    steps:\n      - connect: a\n",
    )
    .unwrap();
    let output = conform(&[], &["--cases", dir.to_str().unwrap()]).await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:6:", file.display())), "{err}");
    assert!(err.contains("nodes are 0 to 15"), "{err}");
}
