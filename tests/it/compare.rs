//! `chorus compare` on real runs: two runs of one scenario against the same
//! healthy gateway compare clean, a run against a gateway that delays every
//! broadcast by 100 ms is a regression of `delivery.newMessage`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use chorus_gateway::Faults;

use crate::support::harness::{
    assert_exit, chorus, finish, run_args, start_gateway, temp_dir, url_of,
};

const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_STEADY", "secret-for-compare");

/// Latency gates loose enough for two runs on a busy 2-core test machine,
/// far tighter than the 100 ms injected delay. Counter gates stay the
/// defaults (+0 for errors, losses, violations); the driver's own health
/// metrics are not the target's and are not gated.
const TOLERANCES: [&str; 6] = [
    "*.p50=100%:20ms",
    "*.p90=100%:20ms",
    "*.p99=100%:20ms",
    "*.p99.9=100%:20ms",
    "driver.*=off",
    "schedule_lag.*=off",
];

/// Plays `tests/scenarios/steady-chat.yml` against `target` into `out`;
/// `chorus run` must exit with `code`.
async fn play(target: &str, out: &Path, code: i32) {
    let args = run_args("tests/scenarios/steady-chat.yml", target, out);
    assert_exit(&finish(chorus(args, SECRET)).await, code, "chorus run");
}

/// `chorus compare baseline current` under [`TOLERANCES`].
async fn compare(baseline: &Path, current: &Path) -> Output {
    let mut args = vec![
        "compare".to_owned(),
        baseline.display().to_string(),
        current.display().to_string(),
    ];
    for rule in TOLERANCES {
        args.extend(["--tolerance".to_owned(), rule.to_owned()]);
    }
    finish(chorus(args, SECRET)).await
}

/// The printed table's row of `metric`.
fn row<'a>(table: &'a str, metric: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(metric))
        .unwrap_or_else(|| panic!("no row {metric} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_gateway_regresses_delivery_latency_and_a_rerun_does_not() {
    let dir = temp_dir("compare");
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));

    let healthy = start_gateway(Faults::default(), SECRET.1).await;
    play(&url_of(&healthy), &a, 0).await;
    play(&url_of(&healthy), &b, 0).await;
    healthy.shutdown().await;
    let delayed = start_gateway(
        Faults {
            delay_all: Duration::from_millis(100),
            ..Faults::default()
        },
        SECRET.1,
    )
    .await;
    // The delay also holds back each client's own `userOnline` behind the
    // undelayed `joined` reply: an order violation per client, so the run fails.
    play(&url_of(&delayed), &c, 1).await;
    delayed.shutdown().await;

    let rerun = compare(&a, &b).await;
    assert_exit(&rerun, 0, "compare A B");
    let table = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        row(&table, "delivery.newMessage.p50").ends_with(" ok"),
        "{table}"
    );
    assert!(table.contains("no regression"), "{table}");

    let slower = compare(&a, &c).await;
    assert_exit(&slower, 1, "compare A C");
    let table = String::from_utf8_lossy(&slower.stdout);
    for stat in ["p50", "p90", "p99"] {
        let line = row(&table, &format!("delivery.newMessage.{stat}"));
        assert!(line.ends_with("REGRESSED"), "{line}");
    }
    let verdict = table.lines().last().unwrap_or_default();
    assert!(
        verdict.contains("regression") && verdict.contains("delivery.newMessage.p50"),
        "{verdict}"
    );
    assert!(
        row(&table, "violations.order").ends_with("REGRESSED"),
        "{table}"
    );
    // Every message still arrived.
    assert!(row(&table, "deliveries.lost").ends_with(" ok"), "{table}");
}
