//! Verdicts you can trust: the real `chorus` binary against real gateways on
//! 127.0.0.1 (and a listener that never answers), checking that "pass" never
//! means "nothing happened": thresholds without data fail, clients that could
//! not connect fail the run (exit 3 with one line when none could), signals
//! stop a run with its partial results written, every exit leaves
//! `summary.json`, the summary table goes to stdout, `arrive` starts exactly
//! rate × duration clients and out-of-range numbers are load errors.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use chorus::metrics::{Summary, Verdict};
use chorus_gateway::{Faults, Profile};
use chorus_test_support::tokens::valid_for_an_hour;

use crate::support::harness;
use crate::support::hostile::{Hostile, Mode};

/// A scenario file written into `dir`, returning its path.
fn scenario_file(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yml"));
    std::fs::write(&path, yaml).expect("write the scenario");
    path
}

/// `chorus run <scenario> --target <url> --out <dir>/run`, not quiet, with
/// reports, plus `extra` arguments.
fn run_command(
    scenario: &Path,
    target: &str,
    out: &Path,
    extra: &[&str],
    env: (&str, &str),
) -> tokio::process::Command {
    let mut args = vec![
        "run".to_owned(),
        scenario.display().to_string(),
        "--target".to_owned(),
        target.to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    harness::chorus(args, env)
}

/// Runs `chorus run --quiet --no-report` to completion, tokens unused.
async fn run_quietly(scenario: &Path, target: &str, out: &Path) -> std::process::Output {
    harness::finish(run_command(
        scenario,
        target,
        out,
        &["--quiet", "--no-report"],
        ("UNUSED", ""),
    ))
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of stderr that start with `chorus: ` (the one-line reasons).
fn reason_lines(output: &Output) -> Vec<String> {
    text(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("chorus: "))
        .map(str::to_owned)
        .collect()
}

fn threshold<'a>(summary: &'a Summary, expr: &str) -> &'a chorus::metrics::ThresholdResult {
    summary
        .thresholds
        .iter()
        .find(|t| t.expr == expr)
        .unwrap_or_else(|| panic!("no threshold {expr}: {:?}", summary.thresholds))
}

/// A small chat flow for `clients` clients, tokens minted from `secret_env`.
fn chat_scenario(clients: u32, secret_env: &str, hold: &str, thresholds: &str) -> String {
    format!(
        r#"name: verdict
socketio:
  namespace: /chat
auth:
  jwt:
    secret_env: {secret_env}
    claims: {{ sub: "user-{{{{vu}}}}" }}
  place: query
groups:
  - name: chatters
    flow:
      - connect
      - expect: {{ event: onlineUsers, timeout: 5s }}
      - emit: {{ event: joinChat, data: {{ username: "u{{{{vu}}}}" }} }}
      - expect: {{ event: joined, timeout: 5s }}
      - loop:
          duration: {hold}
          steps:
            - emit: {{ event: sendMessage, data: {{ message: "hi {{{{seq}}}}" }} }}
            - think: 200ms
      - disconnect
load:
  phases:
    - ramp: {{ to: {clients}, over: 500ms }}
    - hold: {hold}
max_duration: 2m
thresholds:
{thresholds}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_secret_exits_3_and_the_one_line_names_invalid_token() {
    let dir = harness::temp_dir("verdict-secret");
    let gw = harness::start_gateway_in(Profile::Strict, Faults::default(), "secret-A").await;
    let env = "CHORUS_VERDICT_SECRET_B";
    let scenario = scenario_file(
        &dir,
        "secret",
        &chat_scenario(
            5,
            env,
            "1s",
            "  connect.p95: \"<= 200ms\"\n  errors: \"== 0\"\n",
        ),
    );
    let out = dir.join("run");
    let started = Instant::now();
    let output = harness::finish(run_command(
        &scenario,
        &harness::url_of(&gw),
        &out,
        &[],
        (env, "secret-B"),
    ))
    .await;
    gw.shutdown().await;
    harness::assert_exit(&output, 3, "every client refused");
    assert!(started.elapsed() < Duration::from_secs(30));
    let reasons = reason_lines(&output);
    assert_eq!(
        reasons,
        ["chorus: all 5 clients refused with INVALID_TOKEN: is CHORUS_VERDICT_SECRET_B the gateway's secret?"],
        "stderr: {}",
        text(&output.stderr)
    );
    // The progress line counts the failures by reason.
    let stderr = text(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("connect failures 5 (refused.INVALID_TOKEN 5)")),
        "{stderr}"
    );

    let summary = harness::read_summary(&out);
    assert_eq!(summary.verdict, Verdict::Fail);
    assert_eq!(
        harness::counter(&summary, "errors.connect.refused.INVALID_TOKEN"),
        5
    );
    assert_eq!(harness::counter(&summary, "connections.refused"), 5);
    assert_eq!(harness::counter(&summary, "connections.ok"), 0);
    assert!(summary
        .aborted
        .as_deref()
        .is_some_and(|a| a.contains("INVALID_TOKEN")));
    let p95 = threshold(&summary, "connect.p95 <= 200ms");
    assert!(!p95.pass && p95.no_data && p95.value.is_none(), "{p95:?}");
    assert!(!threshold(&summary, "errors == 0").pass);
    assert!(!threshold(&summary, "errors.connect == 0 (built-in check)").pass);

    // The table (stdout) and both reports say "no data" and name the reason.
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("✗ connect.p95 <= 200ms  (no data)"),
        "{stdout}"
    );
    assert!(!stdout.contains("actual 0.000 ms"), "{stdout}");
    assert!(stdout.contains("errors.connect.refused.INVALID_TOKEN"));
    assert!(stdout.contains("verdict: Fail"), "{stdout}");
    for report in ["report.html", "summary.md"] {
        let page = std::fs::read_to_string(out.join(report)).expect(report);
        assert!(page.contains("no data"), "{report}");
        assert!(
            page.contains("5 of 5 connects failed: refused.INVALID_TOKEN 5"),
            "{report}"
        );
        assert!(
            page.contains("INVALID_TOKEN: is CHORUS_VERDICT_SECRET_B"),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_accepts_tcp_and_never_answers_exits_3_after_the_connect_timeout() {
    let dir = harness::temp_dir("verdict-silent");
    let silent = Hostile::start(Mode::Silent).await;
    let addr = silent.addr();
    let scenario = scenario_file(
        &dir,
        "silent",
        "name: silent\nsocketio: { namespace: /chat }\ngroups:\n  - name: g\n    flow: [connect, {listen: 1s}, disconnect]\n\
         load:\n  phases:\n    - ramp: { to: 3, over: 300ms }\n    - hold: 300ms\n",
    );
    let out = dir.join("run");
    let started = Instant::now();
    let output = harness::finish(run_command(
        &scenario,
        &format!("http://{addr}"),
        &out,
        &["--no-report"],
        ("UNUSED", ""),
    ))
    .await;
    let took = started.elapsed();
    drop(silent);
    harness::assert_exit(&output, 3, "nobody answers");
    // The client's connect timeout is 10 s; the run ends soon after it.
    assert!(took >= Duration::from_secs(9), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let reasons = reason_lines(&output);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with(&format!(
            "chorus: no client got an Engine.IO open packet within 10 s from {addr}"
        )) && reasons[0].ends_with("is it a Socket.IO server at path /socket.io/?"),
        "{reasons:?}"
    );
    let summary = harness::read_summary(&out);
    assert_eq!(harness::counter(&summary, "errors.connect.timeout"), 3);
    assert_eq!(summary.verdict, Verdict::Fail);
}

/// Sends `signal` to a running `chorus run` after a few seconds; it stops
/// cleanly with exit 3 and writes its partial results and report.
async fn a_signal_stops_the_run_cleanly(signal: libc::c_int, name: &str) {
    let dir = harness::temp_dir(&format!("verdict-{name}"));
    let env = "CHORUS_VERDICT_SECRET_SIGNAL";
    let gw = harness::start_gateway(Faults::default(), "signal-secret").await;
    let scenario = scenario_file(
        &dir,
        "long",
        &chat_scenario(4, env, "60s", "  errors: \"== 0\"\n"),
    );
    let out = dir.join("run");
    let child = run_command(
        &scenario,
        &harness::url_of(&gw),
        &out,
        &[],
        (env, "signal-secret"),
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("chorus starts");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid = child.id().expect("running") as libc::pid_t;
    let sent = Instant::now();
    // SAFETY: `kill` with a child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("chorus stops within 30 s of the signal")
        .expect("chorus ran");
    gw.shutdown().await;
    harness::assert_exit(&output, 3, name);
    assert!(sent.elapsed() < Duration::from_secs(30));
    assert_eq!(
        reason_lines(&output),
        [format!("chorus: interrupted by {name}")],
        "{}",
        text(&output.stderr)
    );
    let summary = harness::read_summary(&out);
    assert_eq!(
        summary.aborted.as_deref(),
        Some(&*format!("interrupted by {name}"))
    );
    assert_eq!(harness::counter(&summary, "connections.ok"), 4);
    assert!(
        harness::counter(&summary, "emits") >= 4,
        "{:?}",
        summary.counters
    );
    assert!(summary.duration_s < 40.0, "{}", summary.duration_s);
    assert_eq!(summary.verdict, Verdict::Fail);
    assert!(out.join("report.html").is_file());
    assert!(out.join("summary.md").is_file());
    assert!(text(&output.stdout).contains("run stopped: interrupted by"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_run_with_partial_results_and_exit_3() {
    a_signal_stops_the_run_cleanly(libc::SIGINT, "SIGINT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_with_partial_results_and_exit_3() {
    a_signal_stops_the_run_cleanly(libc::SIGTERM, "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_without_samples_fails_with_no_data_and_the_table_goes_to_stdout() {
    let dir = harness::temp_dir("verdict-nodata");
    let env = "CHORUS_VERDICT_SECRET_NODATA";
    let gw = harness::start_gateway(Faults::default(), "nodata-secret").await;
    // Nobody types, so `delivery.userTyping` has no sample; its count is 0.
    let scenario = scenario_file(
        &dir,
        "nodata",
        &chat_scenario(
            3,
            env,
            "1s",
            "  delivery.userTyping.p99: \"< 1s\"\n  delivery.userTyping.count: \"== 0\"\n  errors: \"== 0\"\n  connect.p99: \"< 10s\"\n",
        ),
    );
    let out = dir.join("run");
    let output = harness::finish(run_command(
        &scenario,
        &harness::url_of(&gw),
        &out,
        &["--no-report"],
        (env, "nodata-secret"),
    ))
    .await;
    gw.shutdown().await;
    harness::assert_exit(&output, 1, "a threshold without data");
    let summary = harness::read_summary(&out);
    let p99 = threshold(&summary, "delivery.userTyping.p99 < 1000ms");
    assert!(!p99.pass && p99.no_data, "{p99:?}");
    let count = threshold(&summary, "delivery.userTyping.count == 0");
    assert!(
        count.pass && !count.no_data && count.value == Some(0.0),
        "{count:?}"
    );
    assert!(threshold(&summary, "errors == 0").pass);
    assert!(threshold(&summary, "connect.p99 < 10000ms").pass);
    assert!(threshold(&summary, "errors.connect == 0 (built-in check)").pass);
    assert!(threshold(&summary, "errors.panic == 0 (built-in check)").pass);
    assert!(summary.aborted.is_none());
    assert_eq!(harness::counter(&summary, "connections.ok"), 3);
    // `chorus run … > result.txt` keeps the table; progress stays on stderr.
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stdout.starts_with("latency (ms)"), "{stdout}");
    assert!(
        stdout.contains("✗ delivery.userTyping.p99 < 1000ms  (no data)"),
        "{stdout}"
    );
    assert!(stdout.contains("verdict: Fail"));
    assert!(!stderr.contains("latency (ms)"), "{stderr}");
    assert!(stderr.contains("run directory:"), "{stderr}");
    assert!(reason_lines(&output).is_empty(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn some_clients_refused_fail_the_run_with_exit_1_and_the_reasons_counted() {
    let dir = harness::temp_dir("verdict-partial");
    let secret = "partial-secret";
    let gw = harness::start_gateway_in(Profile::Strict, Faults::default(), secret).await;
    let good = valid_for_an_hour(secret, "good");
    // Round-robin per client: clients 0 and 2 get the good token, 1 and 3 garbage.
    std::fs::write(dir.join("tokens.csv"), format!("token\n{good}\ngarbage\n")).expect("csv");
    let scenario = scenario_file(
        &dir,
        "partial",
        "name: partial\nsocketio: { namespace: /chat }\nauth: { csv: { file: tokens.csv }, place: query }\n\
         groups:\n  - name: g\n    flow: [connect, {listen: 500ms}, disconnect]\n\
         load:\n  phases:\n    - ramp: { to: 4, over: 400ms }\n    - hold: 500ms\n",
    );
    let out = dir.join("run");
    let output = run_quietly(&scenario, &harness::url_of(&gw), &out).await;
    gw.shutdown().await;
    harness::assert_exit(&output, 1, "half the clients refused");
    let summary = harness::read_summary(&out);
    assert_eq!(harness::counter(&summary, "connections.ok"), 2);
    assert_eq!(
        harness::counter(&summary, "errors.connect.refused.INVALID_TOKEN"),
        2
    );
    assert!(!threshold(&summary, "errors.connect == 0 (built-in check)").pass);
    assert_eq!(summary.verdict, Verdict::Fail);
    assert!(summary.aborted.is_none(), "{:?}", summary.aborted);
    assert!(text(&output.stdout).is_empty(), "--quiet prints no table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrive_phase_starts_exactly_rate_times_duration_clients() {
    let dir = harness::temp_dir("verdict-arrive");
    let gw = harness::start_gateway(Faults::default(), "arrive-secret").await;
    let scenario = scenario_file(
        &dir,
        "arrive",
        "name: arrive\nsocketio: { namespace: /chat }\ngroups:\n  - name: g\n    flow: [connect, {listen: 200ms}, disconnect]\n\
         load:\n  phases:\n    - arrive: { rate: 20/s, duration: 1s }\n    - arrive: { rate: 30/s, duration: 500ms, arrival: poisson }\n",
    );
    let out = dir.join("run");
    let output = run_quietly(&scenario, &harness::url_of(&gw), &out).await;
    gw.shutdown().await;
    harness::assert_exit(&output, 0, "arrivals");
    let summary = harness::read_summary(&out);
    assert_eq!(harness::counter(&summary, "connections"), 20 + 15);
    assert_eq!(harness::counter(&summary, "connections.ok"), 20 + 15);
}

#[tokio::test]
async fn out_of_range_numbers_are_exit_2_with_a_position() {
    let dir = harness::temp_dir("verdict-numbers");
    for (phase, column, message) in [
        (
            "arrive: { rate: 1e-300/s, duration: 10s }",
            23,
            "rate `1e-300/s` is out of range",
        ),
        (
            "arrive: { rate: 1/m, duration: 10s }",
            23,
            "starts no client",
        ),
        ("hold: 99999999999h", 13, "is out of range"),
    ] {
        let scenario = scenario_file(
            &dir,
            "numbers",
            &format!(
                "name: numbers\ngroups:\n  - name: g\n    flow: [connect]\nload:\n  phases:\n    - {phase}\n"
            ),
        );
        let output = harness::finish(run_command(
            &scenario,
            "http://127.0.0.1:9",
            &dir.join("run"),
            &[],
            ("UNUSED", ""),
        ))
        .await;
        harness::assert_exit(&output, 2, phase);
        let stderr = text(&output.stderr);
        let expected = format!("chorus: {}:7:{column}: ", scenario.display());
        assert!(
            stderr.starts_with(&expected)
                && stderr.contains(message)
                && stderr.lines().count() == 1,
            "{phase}: {stderr}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_target_still_leaves_a_summary() {
    let dir = harness::temp_dir("verdict-unreachable");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("an address").port()
    };
    let scenario = scenario_file(
        &dir,
        "unreachable",
        "name: u\ngroups:\n  - name: g\n    flow: [connect]\nload:\n  phases:\n    - hold: 1s\n",
    );
    let out = dir.join("run");
    let output = harness::finish(run_command(
        &scenario,
        &format!("http://127.0.0.1:{port}"),
        &out,
        &[],
        ("UNUSED", ""),
    ))
    .await;
    harness::assert_exit(&output, 3, "unreachable");
    let lines = reason_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&format!("cannot reach http://127.0.0.1:{port}")));
    let summary = harness::read_summary(&out);
    assert_eq!(summary.verdict, Verdict::Fail);
    assert!(summary
        .aborted
        .as_deref()
        .is_some_and(|a| a.contains("cannot reach")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_dies_mid_run_ends_it_with_partial_results_and_exit_3() {
    let dir = harness::temp_dir("verdict-died");
    let env = "CHORUS_VERDICT_SECRET_DIED";
    let gw = harness::start_gateway(
        Faults {
            crash_after: Some(Duration::from_secs(2)),
            ..Faults::default()
        },
        "died-secret",
    )
    .await;
    let scenario = scenario_file(
        &dir,
        "died",
        &chat_scenario(3, env, "60s", "  errors: \"== 0\"\n"),
    );
    let out = dir.join("run");
    let url = harness::url_of(&gw);
    let started = Instant::now();
    let output = harness::finish(run_command(
        &scenario,
        &url,
        &out,
        &["--no-report"],
        (env, "died-secret"),
    ))
    .await;
    let took = started.elapsed();
    gw.shutdown().await;
    harness::assert_exit(&output, 3, "the target died");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let lines = reason_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("chorus: the target went away during the run (3 connections lost")
            && lines[0].contains(&format!("cannot reach {url}")),
        "{lines:?}"
    );
    let summary = harness::read_summary(&out);
    assert_eq!(harness::counter(&summary, "connections.ok"), 3);
    assert!(
        harness::counter(&summary, "emits") >= 3,
        "{:?}",
        summary.counters
    );
    assert_eq!(summary.verdict, Verdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_the_flow_expects_is_not_a_failure_and_one_it_does_not_match_is() {
    let dir = harness::temp_dir("verdict-expected");
    let secret = "expected-secret";
    let gw = harness::start_gateway_in(Profile::Strict, Faults::default(), secret).await;
    // Clients 0 and 1 (members) get good tokens, 2 and 3 (intruders) garbage.
    let (a, b) = (
        valid_for_an_hour(secret, "a"),
        valid_for_an_hour(secret, "b"),
    );
    std::fs::write(
        dir.join("tokens.csv"),
        format!("token\n{a}\n{b}\ngarbage\ngarbage\n"),
    )
    .expect("csv");
    let scenario = |code: &str| {
        format!(
            "name: expected\nsocketio: {{ namespace: /chat }}\nauth: {{ csv: {{ file: tokens.csv }}, place: query }}\n\
             groups:\n  - name: members\n    count: 2\n    flow: [connect, {{listen: 300ms}}, disconnect]\n\
             \x20 - name: intruders\n    count: 2\n    flow:\n      - connect\n      - expect: {{ event: connect_error, match: {{ data: {{ code: {code} }} }} }}\n      - think: 100ms\n\
             load:\n  phases:\n    - ramp: {{ to: 4, over: 200ms }}\n    - hold: 500ms\n"
        )
    };
    let mut outcomes = Vec::new();
    for code in ["INVALID_TOKEN", "NO_TOKEN"] {
        let file = scenario_file(&dir, code, &scenario(code));
        let out = dir.join(format!("run-{code}"));
        let output = harness::finish(run_command(
            &file,
            &harness::url_of(&gw),
            &out,
            &["--quiet", "--no-report"],
            ("UNUSED", ""),
        ))
        .await;
        outcomes.push((output, harness::read_summary(&out)));
    }
    gw.shutdown().await;

    let (output, summary) = &outcomes[0];
    harness::assert_exit(output, 0, "the refusals were expected");
    assert_eq!(harness::counter(summary, "connections.ok"), 2);
    assert_eq!(harness::counter(summary, "connections.refused"), 2);
    assert_eq!(harness::counter(summary, "connections.refused_expected"), 2);
    assert!(
        !summary
            .counters
            .keys()
            .any(|k| k.starts_with("errors.connect.")),
        "{:?}",
        summary.counters
    );
    assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.thresholds);

    // Expecting NO_TOKEN, getting INVALID_TOKEN: an unexpected refusal.
    let (output, summary) = &outcomes[1];
    harness::assert_exit(output, 1, "the refusals did not match");
    assert!(!summary
        .counters
        .contains_key("connections.refused_expected"));
    assert_eq!(
        harness::counter(summary, "errors.connect.refused.INVALID_TOKEN"),
        2
    );
    assert!(!threshold(summary, "errors.connect == 0 (built-in check)").pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_by_max_duration_still_writes_its_summary() {
    let dir = harness::temp_dir("verdict-cap");
    let gw = harness::start_gateway(Faults::default(), "cap-secret").await;
    let scenario = scenario_file(
        &dir,
        "cap",
        "name: cap\nsocketio: { namespace: /chat }\ngroups:\n  - name: g\n    flow: [connect, {listen: 60s}, disconnect]\n\
         load:\n  phases:\n    - ramp: { to: 2, over: 200ms }\n    - hold: 60s\nmax_duration: 2s\n",
    );
    let out = dir.join("run");
    let started = Instant::now();
    let output = run_quietly(&scenario, &harness::url_of(&gw), &out).await;
    gw.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(20));
    harness::assert_exit(&output, 0, "cut by max_duration, nothing failed");
    let summary = harness::read_summary(&out);
    assert_eq!(harness::counter(&summary, "connections.ok"), 2);
    assert!(summary.duration_s < 15.0, "{}", summary.duration_s);
}
