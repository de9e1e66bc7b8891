//! Rooms in the driver: a rooms scenario against a clean strict gateway
//! passes every check with every member owed and given every message of its
//! room; a gateway that leaks a room's messages to a non-member is caught as
//! `leak`, one that drops deliveries as `loss`, a short `roomUsers` as
//! `presence`; a seed model (no rooms) is a
//! clear load error; the spread's room sizes follow its distribution.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chorus::metrics::{Summary, Verdict};
use chorus::run::run;
use chorus::scenario::Scenario;
use chorus_gateway::{Faults, Profile};
use serde_json::Value;

use crate::support::harness::{self, SERIAL};

const SCENARIO: &str = "tests/scenarios/rooms.yml";
const SECRET_ENV: &str = "CHORUS_TEST_SECRET_ROOMS";
const SECRET: &str = "secret-for-the-room-tests";
/// 6 rooms x 4 members x (4 senders x 10 messages).
const OWED: u64 = 960;

struct Outcome {
    summary: Summary,
    evidence: Vec<Value>,
    run_dir: PathBuf,
}

impl Outcome {
    fn counter(&self, name: &str) -> u64 {
        self.summary.counters.get(name).copied().unwrap_or(0)
    }
    fn violations(&self, kind: &str) -> u64 {
        self.summary.violations.get(kind).copied().unwrap_or(0)
    }
}

async fn play(faults: Faults, overrides: &[&str]) -> Result<Outcome, chorus::run::RunError> {
    std::env::set_var(SECRET_ENV, SECRET);
    let gw = harness::start_gateway_in(Profile::Strict, faults, SECRET).await;
    let dir: PathBuf = harness::temp_dir(&format!("rooms-{:08x}", rand::random::<u32>()));
    let options = harness::run_options(SCENARIO, Some(harness::url_of(&gw)), dir, overrides);
    let report = tokio::time::timeout(Duration::from_secs(60), run(options))
        .await
        .expect("the run ends in time");
    gw.shutdown().await;
    let report = report?;
    let text = std::fs::read_to_string(report.run_dir.join("violations.json")).unwrap();
    let evidence: Value = serde_json::from_str(&text).unwrap();
    eprintln!(
        "verdict {:?}, violations {:?}",
        report.summary.verdict, report.summary.violations
    );
    Ok(Outcome {
        summary: report.summary,
        evidence: evidence.as_array().cloned().unwrap_or_default(),
        run_dir: report.run_dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_scenario_runs_clean_and_every_member_gets_its_rooms_messages() {
    let _serial = SERIAL.lock().await;
    let out = play(Faults::default(), &[])
        .await
        .expect("the run completes");
    assert!(out.evidence.is_empty(), "{:?}", out.evidence);
    assert!(out.summary.violations.values().all(|&n| n == 0));
    assert_eq!(
        out.summary.verdict,
        Verdict::Pass,
        "{:?}",
        out.summary.thresholds
    );
    // Owed to the members of each room, and only to them: a room that got
    // nothing, or a message to another room, would change these counts.
    assert_eq!(out.counter("deliveries.expected"), OWED);
    assert_eq!(out.counter("deliveries.received"), OWED);
    assert_eq!(out.counter("deliveries.received.newMessage"), OWED);
    assert_eq!(out.counter("deliveries.lost"), 0);
    // Room typing: to the 3 other members of each room, from each member.
    assert_eq!(out.counter("deliveries.unmarked.expected"), 24 * 3);
    assert_eq!(out.counter("deliveries.received.roomUsers"), 24);
    assert!(out.counter("deliveries.received.roomJoined") >= 24);
    // Every delivery is timed in its room-size bucket (4 members: 1-10).
    let small = &out.summary.latency["delivery.newMessage.room_size.1-10"];
    assert_eq!(small.count, OWED);
    assert_eq!(
        out.summary.latency["delivery.newMessage.room_size.11-100"].count,
        0
    );
    // The buckets are in the reports, as every latency is.
    chorus::report::render_run_dir(&out.run_dir).expect("the reports render");
    for file in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(out.run_dir.join(file)).unwrap();
        assert!(
            text.contains("delivery.newMessage.room_size.1-10"),
            "{file}"
        );
    }
    let table = chorus::report::render_table(&out.summary);
    assert!(
        table.contains("delivery.newMessage.room_size.1-10"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_sent_to_a_non_member_is_a_leak() {
    let _serial = SERIAL.lock().await;
    let faults = Faults {
        leak_room: true,
        ..Faults::default()
    };
    let out = play(faults, &[]).await.expect("the run completes");
    assert_eq!(out.summary.verdict, Verdict::Fail);
    assert!(out.violations("leak") > 0, "{:?}", out.summary.violations);
    let leak = out
        .evidence
        .iter()
        .find(|e| e["kind"] == "leak")
        .expect("leak evidence");
    assert_eq!(leak["event"], "newMessage");
    assert!(
        leak["got"].as_str().unwrap().contains("not in it"),
        "{leak}"
    );
    // What the members were owed still all arrived.
    assert_eq!(out.violations("loss"), 0);
    assert_eq!(out.counter("deliveries.lost"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_room_deliveries_are_losses() {
    let _serial = SERIAL.lock().await;
    let faults = Faults {
        drop_fraction: 0.1,
        ..Faults::default()
    };
    let out = play(faults, &[]).await.expect("the run completes");
    assert_eq!(out.summary.verdict, Verdict::Fail);
    assert!(out.violations("loss") > 0, "{:?}", out.summary.violations);
    assert!(out.counter("deliveries.lost") > 0);
    assert_eq!(out.violations("leak"), 0, "dropping leaks nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_snapshot_missing_a_member_is_a_presence_violation() {
    let _serial = SERIAL.lock().await;
    let faults = Faults {
        room_snapshot_missing_oldest: true,
        ..Faults::default()
    };
    let out = play(faults, &[]).await.expect("the run completes");
    assert_eq!(out.summary.verdict, Verdict::Fail);
    // The 2nd to 4th joiner of each room join 0.5 s apart: each misses the first.
    assert!(
        out.violations("presence") >= 6,
        "{:?}",
        out.summary.violations
    );
    let presence = out
        .evidence
        .iter()
        .find(|e| e["kind"] == "presence")
        .expect("presence evidence");
    assert_eq!(presence["event"], "roomUsers");
    assert!(
        presence["expected"]
            .as_str()
            .unwrap()
            .contains("to list vu"),
        "{presence}"
    );
    assert_eq!(out.violations("leak"), 0);
    assert_eq!(out.violations("loss"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_checked_across_the_nodes_of_a_strict_cluster() {
    let _serial = SERIAL.lock().await;
    std::env::set_var(SECRET_ENV, SECRET);
    let redis = chorus_test_support::redis::RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let config = chorus_gateway::GatewayConfig {
            cluster: Some(redis.url()),
            ..chorus_test_support::gateway::config(Profile::Strict, SECRET)
        };
        nodes.push(chorus_test_support::gateway::start(config).await);
    }
    let targets = format!(
        "target=[{}, {}]",
        harness::url_of(&nodes[0]),
        harness::url_of(&nodes[1])
    );
    let dir = harness::temp_dir("rooms-cluster");
    // 3 rooms of 8: round-robin puts each room's members on both nodes.
    let options = harness::run_options(SCENARIO, None, dir, &[&targets, "rooms.count=3"]);
    let report = tokio::time::timeout(Duration::from_secs(60), run(options))
        .await
        .expect("the run ends in time")
        .expect("the run completes");
    for node in nodes {
        node.shutdown().await;
    }
    let s = &report.summary;
    assert!(s.violations.values().all(|&n| n == 0), "{:?}", s.violations);
    // Messages crossed nodes, and each member still got exactly its room's
    // messages: 3 rooms x 8 members x (8 senders x 10 messages).
    assert_eq!(s.counters["deliveries.expected"], 1920);
    assert_eq!(s.counters["deliveries.received.newMessage"], 1920);
    let crossed = |node: u8, from: u8| {
        let n = s.nodes.iter().find(|n| n.node == node).expect("the node");
        n.counters
            .get(&format!("received_from.{from}"))
            .copied()
            .unwrap_or(0)
    };
    assert!(crossed(0, 1) > 0 && crossed(1, 0) > 0, "{:?}", s.nodes);
}

/// Two `chorus run --shard I/2` processes against one strict gateway
/// injecting `faults`, merged: the merged summary and the shards'.
async fn two_shards(faults: Faults, overrides: &[&str]) -> (Summary, Vec<Summary>) {
    let gw = harness::start_gateway_in(Profile::Strict, faults, SECRET).await;
    let target = harness::url_of(&gw);
    let dir = harness::temp_dir("rooms-shards");
    let start_at = (std::time::SystemTime::now() + Duration::from_secs(2))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let shard_dirs: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("shard-{i}"))).collect();
    let shards = shard_dirs.iter().enumerate().map(|(i, out)| {
        let mut args = harness::run_args(SCENARIO, &target, out);
        args.extend(["--shard".into(), format!("{i}/2"), "--start-at".into()]);
        args.push(format!("@{start_at:.3}"));
        for o in overrides {
            args.extend(["--set".to_owned(), (*o).to_owned()]);
        }
        harness::finish(harness::chorus(args, (SECRET_ENV, SECRET)))
    });
    let outputs = futures_util::future::join_all(shards).await;
    gw.shutdown().await;
    for (i, output) in outputs.iter().enumerate() {
        assert!(output.status.code().is_some(), "shard {i}/2 ran to the end");
    }
    let merged = dir.join("merged");
    let mut args = vec!["merge".to_owned()];
    args.extend(shard_dirs.iter().map(|d| d.display().to_string()));
    args.extend([
        "--out".into(),
        merged.display().to_string(),
        "--no-report".into(),
    ]);
    harness::finish(harness::chorus(args, (SECRET_ENV, SECRET))).await;
    let shards = shard_dirs
        .iter()
        .map(|d| harness::read_summary(d))
        .collect();
    (harness::read_summary(&merged), shards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_merged_settle_rooms_as_one_process_does() {
    let _serial = SERIAL.lock().await;
    // 3 rooms of 8: each room's members are in both shards (vu mod 2).
    let (s, _) = two_shards(Faults::default(), &["rooms.count=3"]).await;
    assert!(s.violations.values().all(|&n| n == 0), "{:?}", s.violations);
    // Room members meet their rooms' senders across the shards by room
    // hash: 3 rooms x 8 members x (8 senders x 10 messages), as in one
    // process; typing to the 7 other members of each.
    assert_eq!(s.counters["deliveries.expected"], 1920);
    assert_eq!(s.counters["deliveries.received"], 1920);
    assert_eq!(s.counters["deliveries.unmarked.expected"], 24 * 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_checks_room_snapshots_against_the_members_of_other_shards() {
    let _serial = SERIAL.lock().await;
    let faults = Faults {
        room_snapshot_missing_oldest: true,
        ..Faults::default()
    };
    // 3 rooms of 8: each room's members are in both shards (vu mod 2).
    let (merged, shards) = two_shards(faults, &["rooms.count=3"]).await;
    let own: u64 = shards.iter().map(|s| s.violations["presence"]).sum();
    let all = merged.violations["presence"];
    // The oldest member of a room plays in one shard: the joiners of the
    // other shard can only be checked against it by the merge.
    assert!(all > own, "merged {all}, the shards alone {own}");
    assert_eq!(merged.violations["leak"], 0);
    assert_eq!(merged.violations["loss"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_rooms_is_a_load_error_naming_the_step() {
    let _serial = SERIAL.lock().await;
    let err = match play(Faults::default(), &["protocol=seed"]).await {
        Ok(_) => panic!("a seed model cannot run room steps"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.starts_with("tests/scenarios/rooms.yml:") || err.contains("rooms.yml:"),
        "{err}"
    );
    assert!(err.contains("`seed` has none"), "{err}");
    assert!(err.contains("protocol: strict"), "{err}");
}

/// Room sizes of `clients` clients under the scenario's spread with `overrides`.
fn sizes(overrides: &[&str], clients: u64) -> BTreeMap<String, u64> {
    let overrides: Vec<_> = overrides
        .iter()
        .map(|o| chorus::scenario::Override::parse(o).unwrap())
        .collect();
    let path = harness::crate_path(SCENARIO);
    let scenario = Scenario::load_with_overrides(&path, &overrides).expect("loads");
    let mut rng = rand::rng();
    let mut sizes = BTreeMap::new();
    for vu in 0..clients {
        let state = scenario.vu_state(vu, None, &mut rng).unwrap();
        *sizes
            .entry(state.get("room").unwrap().to_owned())
            .or_default() += 1;
    }
    sizes
}

#[test]
fn uniform_and_zipf_spreads_give_the_room_sizes_they_promise() {
    let uniform = sizes(&["rooms.count=100"], 2_000);
    assert_eq!(uniform.len(), 100);
    assert!(uniform.values().all(|&n| n == 20), "{uniform:?}");
    let zipf = sizes(&["rooms.count=100", "rooms.spread=zipf"], 2_000);
    // P(room-0) = 1/H(100) ≈ 0.193: about 386 of 2,000; room-9 ≈ 39.
    let (first, tenth) = (zipf["room-0"], zipf["room-9"]);
    assert!((300..470).contains(&first), "room-0: {first}");
    assert!(first > 5 * tenth, "{first} vs {tenth}");
    assert_eq!(zipf.values().sum::<u64>(), 2_000);
    assert_eq!(
        sizes(&["rooms.count=100", "rooms.spread=zipf"], 2_000),
        zipf,
        "deterministic"
    );
    let steeper = sizes(
        &["rooms.count=100", "rooms.spread=zipf", "rooms.zipf_s=2"],
        2_000,
    );
    assert!(
        steeper["room-0"] > first,
        "a larger s makes the first room larger"
    );
}

#[test]
fn room_size_buckets_are_addressable_by_thresholds() {
    for (key, metric) in [
        (
            "delivery.newMessage.room_size.101-1000.p99",
            "delivery.newMessage.room_size.101-1000",
        ),
        (
            "delivery.newMessage.room_size.over-1000.count",
            "delivery.newMessage.room_size.over-1000",
        ),
    ] {
        let t = chorus::scenario::Threshold::parse(key, "< 1s").expect("parses");
        assert_eq!(t.metric, metric);
        assert!(t.stat.is_some(), "{key}");
    }
}
