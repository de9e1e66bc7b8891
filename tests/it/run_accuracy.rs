//! `chorus run` end to end: the counts it reports add up, and the latencies it
//! measures are right, against gateways with known injected faults (the
//! gateway's `faults` feature, enabled by this crate's dev-dependency).

use std::time::Duration;

use chorus::metrics::{LatencyStats, Summary, Verdict};
use chorus::run::{run, RunError, RunOptions, RunReport};
use chorus_gateway::Faults;

use crate::support::harness::{self, SERIAL};

const MS: u64 = 1_000;

fn options(scenario: &str, target: Option<String>, overrides: &[&str]) -> RunOptions {
    let tag = scenario
        .rsplit('/')
        .next()
        .unwrap_or(scenario)
        .trim_end_matches(".yml");
    harness::run_options(
        scenario,
        target,
        harness::temp_dir(&format!("run-{tag}")),
        overrides,
    )
}

/// A seed gateway on 127.0.0.1 port 0 injecting `faults`, whose secret is
/// put in the environment variable `secret_env` for the scenario's tokens.
/// Plays `scenario` against a seed gateway injecting `faults`, whose secret is
/// put in the environment variable `secret_env` for the scenario's tokens.
async fn run_against(faults: Faults, secret_env: &str, scenario: &str) -> Summary {
    let secret = format!("secret-for-{secret_env}");
    std::env::set_var(secret_env, &secret);
    let gw = harness::start_gateway(faults, &secret).await;
    let report = run_bounded(options(scenario, Some(harness::url_of(&gw)), &[]))
        .await
        .expect("the run completes");
    gw.shutdown().await;
    report.summary
}

async fn run_bounded(options: RunOptions) -> Result<RunReport, RunError> {
    tokio::time::timeout(Duration::from_secs(90), run(options))
        .await
        .expect("the run ends in time")
}

fn counter(summary: &Summary, name: &str) -> u64 {
    *summary
        .counters
        .get(name)
        .unwrap_or_else(|| panic!("no counter {name}: {:?}", summary.counters))
}

fn latency<'a>(summary: &'a Summary, name: &str) -> &'a LatencyStats {
    summary
        .latency
        .get(name)
        .unwrap_or_else(|| panic!("no latency {name}: {:?}", summary.latency.keys()))
}

fn violations(summary: &Summary) -> u64 {
    summary.violations.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_counts_add_up_against_the_embedded_gateway() {
    let _serial = SERIAL.lock().await;
    // Shorter phases and pauses than the shipped file; the flow's shape is unchanged:
    // connect, expect onlineUsers, joinChat, expect joined, 3 × sendMessage,
    // typing true, think, typing false, listen, disconnect.
    let report = run_bounded(options(
        "scenarios/smoke.yml",
        None,
        &[
            "load.phases.0.ramp.over=2s",
            "load.phases.1.hold=1s",
            "groups.0.flow.4.loop.steps.1.think=200ms",
            "groups.0.flow.6.think=200ms",
            "groups.0.flow.8.listen=3s",
            // The verdict asserted below must not depend on the machine's speed: the
            // shipped latency thresholds give way to counts this test controls.
            r#"thresholds={"errors": "== 0", "deliveries.lost": "== 0", "delivery.newMessage.count": "> 0"}"#,
        ],
    ))
    .await
    .expect("the run completes");
    let s = &report.summary;
    const CLIENTS: u64 = 100;
    const EMITS_PER_CLIENT: u64 = 1 + 3 + 2; // joinChat, 3 × sendMessage, 2 × typing
    assert_eq!(counter(s, "connections"), CLIENTS);
    assert_eq!(counter(s, "connections.ok"), CLIENTS);
    assert_eq!(counter(s, "emits"), CLIENTS * EMITS_PER_CLIENT);
    assert_eq!(counter(s, "deliveries.lost"), 0);
    let expected = counter(s, "deliveries.expected");
    assert!(expected > 0);
    assert_eq!(counter(s, "deliveries.received"), expected);
    // Every message reaches at most every client.
    assert!(latency(s, "delivery.newMessage").count <= CLIENTS * 3 * CLIENTS);
    assert_eq!(violations(s), 0, "{:?}", s.violations);
    assert_eq!(s.verdict, Verdict::Pass, "{:?}", s.thresholds);
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_delivery_latency_matches_a_known_gateway_delay() {
    let _serial = SERIAL.lock().await;
    let summary = run_against(
        Faults {
            delay_all: Duration::from_millis(50),
            ..Faults::default()
        },
        "CHORUS_TEST_SECRET_ACCURACY",
        "tests/scenarios/accuracy.yml",
    )
    .await;
    let s = &summary;
    let delivery = latency(s, "delivery.newMessage");
    // 5 senders × 20 messages, each to the 5 clients.
    assert_eq!(delivery.count, 5 * 20 * 5, "{delivery:?}");
    // Never below the delay; above it by what a busy machine's scheduling
    // adds (a measuring error would be of the order of the delay or more).
    assert!(
        (50 * MS..=100 * MS).contains(&delivery.p50_us),
        "p50 {} µs for a 50 ms delay",
        delivery.p50_us
    );
    assert!(delivery.min_us >= 50 * MS, "{delivery:?}");
    assert_eq!(counter(s, "deliveries.lost"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stall_shows_in_corrected_latency_but_not_in_uncorrected() {
    let _serial = SERIAL.lock().await;
    let summary = run_against(
        Faults {
            stall_once: Some((Duration::from_secs(3), Duration::from_secs(1))),
            ..Faults::default()
        },
        "CHORUS_TEST_SECRET_CO",
        "tests/scenarios/coordinated-omission.yml",
    )
    .await;
    let s = &summary;
    let corrected = latency(s, "delivery.newMessage");
    let uncorrected = latency(s, "delivery_uncorrected.newMessage");
    eprintln!("corrected {corrected:?}\nuncorrected {uncorrected:?}");
    assert!(
        corrected.max_us >= 900 * MS,
        "corrected max {} µs",
        corrected.max_us
    );
    assert!(
        corrected.p99_us >= 500 * MS,
        "corrected p99 {} µs",
        corrected.p99_us
    );
    // Far below the corrected p99's 500 ms floor, with room for a busy machine.
    assert!(
        uncorrected.p99_us < 400 * MS,
        "uncorrected p99 {} µs",
        uncorrected.p99_us
    );
    assert_eq!(counter(s, "deliveries.lost"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_upgrade_runs_clean_against_the_embedded_gateway() {
    let _serial = SERIAL.lock().await;
    let report = run_bounded(options("tests/scenarios/interop.yml", None, &[]))
        .await
        .expect("the run completes");
    let s = &report.summary;
    assert_eq!(counter(s, "connections.ok"), 10);
    assert_eq!(counter(s, "emits"), 10 * (1 + 5 + 1));
    let errors: u64 = s
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("errors") || name.starts_with("timeouts"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(errors, 0, "{:?}", s.counters);
    assert_eq!(counter(s, "deliveries.lost"), 0);
    assert!(counter(s, "deliveries.received") > 0, "{:?}", s.counters);
    assert_eq!(s.verdict, Verdict::Pass, "{:?}", s.thresholds);
}

#[tokio::test]
async fn an_unreachable_target_is_one_line_and_exit_code_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("an address").port();
    drop(listener);
    let err = run_bounded(options(
        "tests/scenarios/interop.yml",
        Some(format!("http://127.0.0.1:{port}")),
        &[],
    ))
    .await
    .expect_err("nobody listens there");
    assert!(matches!(err, RunError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 3);
    let line = err.to_string();
    assert!(
        line.contains(&format!("127.0.0.1:{port}")) && !line.contains('\n'),
        "{line}"
    );
}
