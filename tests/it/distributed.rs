//! Distributed runs end to end: three `chorus run --shard I/3` processes
//! against one gateway, merged with `chorus merge`, report exactly the counts
//! of the same scenario played by one process, and latencies like its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus::metrics::Summary;
use chorus::run::LedgerFile;
use chorus_gateway::Faults;

use crate::support::harness::{
    assert_exit, chorus, counter, crate_path, finish, latency_count, read_summary, run_args,
    start_gateway, temp_dir, url_of,
};

const SCENARIO: &str = "tests/scenarios/shards.yml";
const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_SHARDS", "secret-for-shards");
const SHARDS: u32 = 3;
/// `tests/scenarios/shards.yml` ramps up to this many clients.
const CLIENTS: u64 = 12;
/// How far ahead the shards are told to start, so that all are waiting by then.
const START_DELAY: Duration = Duration::from_secs(2);

/// The latency metrics whose sample counts do not depend on timing.
const EXACT_HISTOGRAMS: [&str; 7] = [
    "connect",
    "connect.tcp",
    "connect.handshake",
    "connect.namespace",
    "join",
    "delivery.newMessage",
    "delivery_uncorrected.newMessage",
];

/// The counters that must not depend on how the clients were spread.
fn exact_counters(summary: &Summary) -> Vec<(&str, u64)> {
    let mut names = vec![
        "connections",
        "connections.ok",
        "emits",
        "deliveries.expected",
        "deliveries.received",
        "deliveries.lost",
    ];
    names.extend(
        summary
            .counters
            .keys()
            .filter(|name| {
                name.starts_with("deliveries.unmarked.") || name.starts_with("deliveries.received.")
            })
            .map(String::as_str),
    );
    names
        .into_iter()
        .map(|name| (name, counter(summary, name)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_shards_count_exactly_what_one_process_counts() {
    let gateway = start_gateway(Faults::default(), SECRET.1).await;
    let target = url_of(&gateway);
    let dir = temp_dir("distributed");

    let start_at = (SystemTime::now() + START_DELAY)
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let shard_dirs: Vec<_> = (0..SHARDS)
        .map(|i| dir.join(format!("shard-{i}")))
        .collect();
    let shards: Vec<_> = shard_dirs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            let mut args = run_args(SCENARIO, &target, out);
            args.extend([
                "--shard".into(),
                format!("{i}/{SHARDS}"),
                "--start-at".into(),
                format!("@{start_at:.3}"),
            ]);
            finish(chorus(args, SECRET))
        })
        .collect();
    for (i, output) in futures_util::future::join_all(shards)
        .await
        .iter()
        .enumerate()
    {
        assert_exit(output, 0, &format!("shard {i}/{SHARDS}"));
    }
    let merged_dir = dir.join("merged");
    let mut merge_args = vec!["merge".to_owned()];
    merge_args.extend(shard_dirs.iter().map(|d| d.display().to_string()));
    merge_args.extend([
        "--out".into(),
        merged_dir.display().to_string(),
        "--no-report".into(),
    ]);
    assert_exit(&finish(chorus(merge_args, SECRET)).await, 0, "chorus merge");

    // The same scenario in one process, against the same gateway, after the shards.
    let single_dir = dir.join("single");
    assert_exit(
        &finish(chorus(run_args(SCENARIO, &target, &single_dir), SECRET)).await,
        0,
        "the single run",
    );
    gateway.shutdown().await;

    let merged = read_summary(&merged_dir);
    let single = read_summary(&single_dir);
    assert_eq!(counter(&single, "connections.ok"), CLIENTS);
    assert!(counter(&single, "deliveries.expected") > 0);
    assert_eq!(exact_counters(&merged), exact_counters(&single));
    // Every event's received counter, none missing on either side.
    let received = |s: &Summary| {
        s.counters
            .keys()
            .filter(|n| n.starts_with("deliveries.received."))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(received(&merged), received(&single));
    assert!(received(&single).contains(&"deliveries.received.newMessage".to_owned()));
    // Every violation kind, all zero.
    assert!(!single.violations.is_empty());
    assert_eq!(merged.violations, single.violations);
    assert!(
        single.violations.values().all(|&n| n == 0),
        "{:?}",
        single.violations
    );
    for name in EXACT_HISTOGRAMS {
        assert_eq!(
            latency_count(&merged, name),
            latency_count(&single, name),
            "{name}.count"
        );
    }
    assert_eq!(latency_count(&single, "connect"), CLIENTS);
    // Plaintext: no TLS handshake was timed.
    assert_eq!(latency_count(&single, "connect.tls"), 0);

    // Latencies are measured, not counted: alike, not equal.
    let p50 = |s: &Summary| s.latency["delivery.newMessage"].p50_us;
    let (merged_p50, single_p50) = (p50(&merged), p50(&single));
    let both_fast = merged_p50 < 50_000 && single_p50 < 50_000;
    let within_3x = merged_p50 <= 3 * single_p50 && single_p50 <= 3 * merged_p50;
    assert!(
        both_fast || within_3x,
        "delivery.newMessage p50: merged {merged_p50} µs, single {single_p50} µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_with_a_job_index_play_that_shard() {
    let dir = temp_dir("job-index");
    let out = dir.join("shard");
    let scenario = crate_path(SCENARIO);
    let mut args: Vec<String> = [
        "run",
        &scenario.display().to_string(),
        "--gateway-profile",
        "seed",
        "--shards",
        "3",
        "--out",
        &out.display().to_string(),
        "--quiet",
        "--no-report",
    ]
    .map(String::from)
    .to_vec();
    // Which clients a shard plays does not depend on how long they listen.
    for set in [
        "groups.0.flow.3.listen=200ms",
        "groups.0.flow.6.listen=300ms",
    ] {
        args.extend(["--set".into(), set.into()]);
    }

    let mut without_index = chorus(&args, SECRET);
    without_index.env_remove("JOB_COMPLETION_INDEX");
    let output = finish(without_index).await;
    assert_exit(&output, 2, "--shards without JOB_COMPLETION_INDEX");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("JOB_COMPLETION_INDEX"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut with_index = chorus(&args, SECRET);
    with_index.env("JOB_COMPLETION_INDEX", "1");
    assert_exit(&finish(with_index).await, 0, "--shards 3, index 1");
    let summary = read_summary(&out);
    assert_eq!(counter(&summary, "connections"), CLIENTS / 3);
    assert_eq!(counter(&summary, "connections.ok"), CLIENTS / 3);
    let ledger = LedgerFile::read(&out).expect("a shard writes ledger.json");
    assert_eq!(ledger.shard, "1/3");
    let mut played: Vec<u32> = ledger.receivers.iter().map(|r| r.vu).collect();
    played.sort_unstable();
    assert_eq!(played, [1, 4, 7, 10]);
}
