//! Several nodes of one gateway: clients spread over a target list (round
//! robin or by weights), every check settled across the nodes, per-node
//! metrics, presence snapshots checked across the shards of a distributed
//! run, the "Session ID unknown" of a cluster without sticky sessions, and a
//! real cluster: two nodes of the official socket.io 4 server joined by
//! `@socket.io/redis-adapter` on a real `redis-server`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus::metrics::{NodeSummary, Summary, Verdict};
use chorus::run::{run, RunError, RunOptions, RunReport};
use chorus_gateway::Faults;
use chorus_test_support::chat_node::ChatNode;
use chorus_test_support::redis::RedisServer;
use serde_json::Value;

use crate::support::alternate::Alternate;
use crate::support::harness::{
    self, chorus, counter, finish, read_summary, run_args, start_gateway, temp_dir, url_of, SERIAL,
};

const SCENARIO: &str = "tests/scenarios/nodes.yml";
const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_NODES", "secret-for-nodes");
/// `tests/scenarios/nodes.yml` ramps up to this many clients.
const CLIENTS: u64 = 8;

fn options(target: Option<String>, overrides: &[&str]) -> RunOptions {
    std::env::set_var(SECRET.0, SECRET.1);
    harness::run_options(SCENARIO, target, temp_dir("nodes"), overrides)
}

async fn run_bounded(options: RunOptions) -> Result<RunReport, RunError> {
    tokio::time::timeout(Duration::from_secs(90), run(options))
        .await
        .expect("the run ends in time")
}

/// `target=[a, b, …]`, the override of the scenario's target list.
fn target_list(urls: &[&str]) -> String {
    format!("target=[{}]", urls.join(", "))
}

/// A node of the summary's `nodes` section, which must be there.
fn node(summary: &Summary, index: u8) -> &NodeSummary {
    summary
        .nodes
        .iter()
        .find(|n| n.node == index)
        .unwrap_or_else(|| panic!("no node {index}: {:?}", summary.nodes))
}

fn node_counter(summary: &Summary, index: u8, name: &str) -> u64 {
    let node = node(summary, index);
    *node
        .counters
        .get(name)
        .unwrap_or_else(|| panic!("node {index} has no {name}: {:?}", node.counters))
}

/// The run directory's `violations.json`.
fn evidence(run_dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("violations.json")).expect("violations.json");
    serde_json::from_str(&text).expect("violations.json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_spread_round_robin_and_owed_every_broadcast_across_nodes() {
    let _serial = SERIAL.lock().await;
    // Two independent gateways, no adapter: nothing crosses between them.
    let (a, b) = (
        start_gateway(Faults::default(), SECRET.1).await,
        start_gateway(Faults::default(), SECRET.1).await,
    );
    let (url_a, url_b) = (url_of(&a), url_of(&b));
    let report = run_bounded(options(None, &[&target_list(&[&url_a, &url_b])]))
        .await
        .expect("the run completes");
    a.shutdown().await;
    b.shutdown().await;
    let s = &report.summary;
    assert_eq!(s.target, format!("{url_a}, {url_b}"));
    assert_eq!(s.nodes.len(), 2, "{:?}", s.nodes);
    assert_eq!(
        (node(s, 0).url.as_str(), node(s, 1).url.as_str()),
        (&*url_a, &*url_b)
    );
    assert_eq!(counter(s, "connections.ok"), CLIENTS);
    assert_eq!(node_counter(s, 0, "connections.ok"), CLIENTS / 2);
    assert_eq!(node_counter(s, 1, "connections.ok"), CLIENTS / 2);
    assert_eq!(node(s, 0).latency["connect"].count, CLIENTS / 2);
    // Each node delivered its own clients' messages and none of the other's ...
    assert!(node_counter(s, 0, "received_from.0") > 0);
    assert!(node_counter(s, 1, "received_from.1") > 0);
    assert_eq!(node_counter(s, 0, "received_from.1"), 0);
    assert_eq!(node_counter(s, 1, "received_from.0"), 0);
    assert!(node(s, 1).latency["delivery.newMessage"].count > 0);
    // ... and the ledger, settled across nodes, owed them: half of every
    // receiver's messages came from the other node and were lost.
    let expected = counter(s, "deliveries.expected");
    let lost = counter(s, "deliveries.lost");
    assert!(expected > 0 && lost * 2 == expected, "{lost} of {expected}");
    assert!(s.violations["loss"] > 0);
    assert_eq!(s.verdict, Verdict::Fail);
    // The global metrics are as they were: no `node.` name among them.
    assert!(!s
        .latency
        .keys()
        .chain(s.counters.keys())
        .any(|n| n.starts_with("node.")));
    assert_eq!(s.latency["connect"].count, CLIENTS);
    let table = chorus::report::render_table(s);
    assert!(
        table.contains("\nnodes\n") && table.contains(&url_b),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_decide_how_many_clients_each_node_gets() {
    let _serial = SERIAL.lock().await;
    let gateway = start_gateway(Faults::default(), SECRET.1).await;
    let url = url_of(&gateway);
    // The same gateway twice: every delivery is made, the spread is 3:1.
    let report = run_bounded(options(
        None,
        &[&target_list(&[&url, &url]), "weights=[3, 1]"],
    ))
    .await
    .expect("the run completes");
    gateway.shutdown().await;
    let s = &report.summary;
    let (first, second) = (
        node_counter(s, 0, "connections.ok"),
        node_counter(s, 1, "connections.ok"),
    );
    assert_eq!((first, second), (6, 2), "3:1 of {CLIENTS}");
    assert_eq!(counter(s, "deliveries.lost"), 0);
    assert!(node_counter(s, 0, "received_from.1") > 0);
    assert!(node_counter(s, 1, "received_from.0") > 0);
}

#[tokio::test]
async fn every_unreachable_node_is_named_in_its_own_line() {
    let gateway = start_gateway(Faults::default(), SECRET.1).await;
    let closed: Vec<String> = (0..2)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("an address"))
        })
        .collect();
    let url = url_of(&gateway);
    let err = run_bounded(options(
        None,
        &[&target_list(&[&url, &closed[0], &closed[1]])],
    ))
    .await
    .expect_err("two nodes do not listen");
    gateway.shutdown().await;
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, closed) in lines.iter().zip(&closed) {
        assert!(
            line.contains(closed.trim_start_matches("http://")),
            "{text}"
        );
    }
    assert!(!text.contains(url.trim_start_matches("http://")), "{text}");
    // A weight per node, or the scenario does not load.
    let err = run_bounded(options(None, &[&target_list(&[&url]), "weights=[1, 2]"]))
        .await
        .expect_err("two weights for one node");
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .contains("weights has 2 entries for 1 targets"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_without_sticky_sessions_is_its_own_counted_error() {
    let _serial = SERIAL.lock().await;
    let (a, b) = (
        start_gateway(Faults::default(), SECRET.1).await,
        start_gateway(Faults::default(), SECRET.1).await,
    );
    // Each new connection goes to the other node: a client's POSTs never
    // reach the node that opened its session. One client a second, so each
    // client's two connections are consecutive.
    let balancer = Alternate::start(vec![a.addr(), b.addr()]).await;
    let clients = 3;
    let report = run_bounded(options(
        Some(format!("http://{}", balancer.addr)),
        &[
            "socketio.transport=polling",
            &format!("load.phases.0.ramp.to={clients}"),
            "load.phases.0.ramp.over=3s",
        ],
    ))
    .await
    .expect("the run completes");
    drop(balancer);
    a.shutdown().await;
    b.shutdown().await;
    let s = &report.summary;
    assert_eq!(counter(s, "connections"), clients);
    assert_eq!(counter(s, "errors.connect.session_unknown"), clients);
    let failed: u64 = s
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("errors.connect."))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, clients, "{:?}", s.counters);
    let why = s.aborted.as_deref().unwrap_or_default();
    assert!(
        why.contains("the load balancer must pin a polling session to one node (sticky sessions)"),
        "{why}"
    );
}

/// Plays `tests/scenarios/nodes.yml` as two shards, shard `i` against
/// `targets[i]`, merges them, and returns the merge's exit code and directory.
async fn two_shards(targets: [&str; 2], tag: &str) -> (Option<i32>, std::path::PathBuf) {
    let dir = temp_dir(tag);
    let start_at = (SystemTime::now() + Duration::from_secs(2))
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let shard_dirs: Vec<_> = (0..2).map(|i| dir.join(format!("shard-{i}"))).collect();
    let shards = shard_dirs
        .iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (out, target))| {
            let mut args = run_args(SCENARIO, target, out);
            args.extend([
                "--shard".into(),
                format!("{i}/2"),
                "--start-at".into(),
                format!("@{start_at:.3}"),
            ]);
            finish(chorus(args, SECRET))
        });
    for output in futures_util::future::join_all(shards).await {
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "a shard ran: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let merged = dir.join("merged");
    let mut args = vec!["merge".to_owned()];
    args.extend(shard_dirs.iter().map(|d| d.display().to_string()));
    args.extend([
        "--out".into(),
        merged.display().to_string(),
        "--no-report".into(),
    ]);
    let output = finish(chorus(args, SECRET)).await;
    (output.status.code(), merged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_checks_each_snapshot_against_the_users_of_every_shard() {
    let (a, b) = (
        start_gateway(Faults::default(), SECRET.1).await,
        start_gateway(Faults::default(), SECRET.1).await,
    );
    let (url_a, url_b) = (url_of(&a), url_of(&b));

    // One gateway: every snapshot lists the users of both shards.
    let (code, merged) = two_shards([&url_a, &url_a], "nodes-one").await;
    assert_eq!(code, Some(0), "{:?}", evidence(&merged));
    let one = read_summary(&merged);
    assert_eq!(one.violations["presence"], 0);
    assert_eq!(counter(&one, "connections.ok"), CLIENTS);

    // A shard per independent node: presence kept per node, so the later
    // joiners' snapshots miss the other shard's users, and merge says whom.
    let (code, merged) = two_shards([&url_a, &url_b], "nodes-two").await;
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(code, Some(1));
    let two = read_summary(&merged);
    assert_eq!(
        two.target,
        format!("{url_a}, {url_b}"),
        "both shards' targets"
    );
    assert!(two.violations["presence"] > 0);
    let across: Vec<Value> = evidence(&merged)
        .into_iter()
        .filter(|e| {
            e["event"] == "onlineUsers"
                && e["expected"]
                    .as_str()
                    .is_some_and(|x| x.contains("users of other shards joined before"))
        })
        .collect();
    assert!(!across.is_empty(), "{:?}", evidence(&merged));
    for e in &across {
        // vu k plays in shard k % 2: the missing users are the other shard's.
        let receiver: u32 = e["client"].as_str().unwrap()["vu ".len()..]
            .parse()
            .unwrap();
        let expected = e["expected"].as_str().unwrap();
        assert!(expected.contains("\"node-user-"), "{expected}");
        for name in expected.split("\"node-user-").skip(1) {
            let vu: u32 = name.split('"').next().unwrap().parse().unwrap();
            assert_ne!(vu % 2, receiver % 2, "{expected}");
        }
        assert_eq!(e["got"], "not listed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_adapter_cluster_delivers_across_nodes_and_presence_stays_per_node() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let nodes = [
        ChatNode::start(SECRET.1, Some(&redis.url())),
        ChatNode::start(SECRET.1, Some(&redis.url())),
    ];
    let report = run_bounded(options(
        None,
        &[&target_list(&[&nodes[0].url, &nodes[1].url])],
    ))
    .await
    .expect("the run completes");
    let nodes_urls = nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>();
    drop(nodes);
    drop(redis);
    let s = &report.summary;
    assert_eq!(counter(s, "connections.ok"), CLIENTS);
    // Messaging works across the cluster: nothing lost, and receivers on
    // each node got messages from senders on the other.
    assert!(counter(s, "deliveries.expected") > 0);
    assert_eq!(counter(s, "deliveries.lost"), 0);
    assert_eq!(counter(s, "deliveries.unmarked.lost"), 0);
    assert!(node_counter(s, 1, "received_from.0") > 0);
    assert!(node_counter(s, 0, "received_from.1") > 0);
    for kind in [
        "loss",
        "order",
        "duplicate",
        "recipient",
        "payload",
        "reply",
    ] {
        assert_eq!(
            s.violations[kind],
            0,
            "{kind}: {:?}",
            evidence(&report.run_dir)
        );
    }
    // The reports show the nodes side by side.
    chorus::report::render_run_dir(&report.run_dir).expect("the reports render");
    let read = |name: &str| std::fs::read_to_string(report.run_dir.join(name)).expect(name);
    let (markdown, html) = (read("summary.md"), read("report.html"));
    assert!(
        markdown.contains("### Nodes") && markdown.contains(&nodes_urls[1]),
        "{markdown}"
    );
    assert!(html.contains("<h3>Nodes</h3>") && html.contains(&nodes_urls[1]));
    // Presence does not: each node's `onlineUsers` lists its own users only,
    // and chorus names the other node's users it missed.
    assert!(s.violations["presence"] > 0);
    let missing: Vec<Value> = evidence(&report.run_dir)
        .into_iter()
        .filter(|e| e["kind"] == "presence")
        .collect();
    assert!(!missing.is_empty());
    for e in &missing {
        assert_eq!(e["event"], "onlineUsers", "{e}");
        assert_eq!(e["got"], "not listed", "{e}");
        let receiver: u32 = e["client"].as_str().unwrap()["vu ".len()..]
            .parse()
            .unwrap();
        let expected = e["expected"].as_str().unwrap();
        let vu: u32 = expected
            .split("(vu ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a vu in {expected}"));
        // Round-robin: vu k is on node k % 2.
        assert_ne!(vu % 2, receiver % 2, "{expected}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_target_flag_is_a_target_list() {
    let gateway = start_gateway(Faults::default(), SECRET.1).await;
    let url = url_of(&gateway);
    let out = temp_dir("nodes-flags");
    let mut args = run_args(SCENARIO, &url, &out);
    args.extend(["--target".into(), url.clone()]);
    args.extend(["--set".into(), "load.phases.0.ramp.to=2".into()]);
    let output = finish(chorus(args, SECRET)).await;
    gateway.shutdown().await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s = read_summary(&out);
    assert_eq!(s.target, format!("{url}, {url}"));
    assert_eq!(node_counter(&s, 0, "connections.ok"), 1);
    assert_eq!(node_counter(&s, 1, "connections.ok"), 1);
    // A bad one is a scenario error naming the flag (exit 2).
    let mut args = run_args(SCENARIO, &url, &temp_dir("nodes-flags"));
    args.extend(["--target".into(), "ftp://x".into()]);
    let output = finish(chorus(args, SECRET)).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--target:") && stderr.contains("target `ftp://x` must start with"),
        "{stderr}"
    );
}
