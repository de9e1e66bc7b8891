//! Reconnection under a gateway restart: the shipped `restart-storm`
//! scenario, played by the `chorus` binary against the reference gateway
//! run as its own process (`chorus serve`) on a fixed loopback port. The
//! gateway is killed mid-run and started again on the same port with the
//! same secret; every client must come back, and nothing owed to it after
//! it rejoined may be lost. Without `reconnect` the same restart stops the
//! run (every client dropped, the target gone).

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use chorus::metrics::{Summary, TimeSeries, Verdict};
use chorus_test_support::process::GatewayProcess;

use crate::support::harness::{self, SERIAL};

const SECRET: &str = "restart-storm-secret";
/// Clients of the run.
const CLIENTS: u64 = 20;
/// When the gateway is killed, after `chorus run` starts (all clients are
/// in and sending by then: they ramp up over 1 s).
const KILL_AFTER: Duration = Duration::from_secs(4);
/// How long the gateway stays down: longer than the first tries' backoff.
const DOWN_FOR: Duration = Duration::from_millis(1500);

/// A loopback address nothing listens on right now.
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("its address").to_string()
}

/// `chorus serve` on `addr` (the seed profile, the scenario's tokens' secret).
fn gateway(addr: &str) -> GatewayProcess {
    let chorus = Path::new(env!("CARGO_BIN_EXE_chorus"));
    GatewayProcess::spawn_at(chorus, &["serve"], addr, SECRET, &["--profile", "seed"])
}

/// Plays `restart-storm.yml` (shrunk to [`CLIENTS`] clients and a 10 s
/// loop, `extra` overrides on top) while the gateway is killed and
/// restarted on the same port; returns the exit code and the run directory.
async fn run_through_a_restart(extra: &[&str]) -> (Option<i32>, std::path::PathBuf) {
    let addr = free_addr();
    let mut gw = gateway(&addr);
    let out = harness::temp_dir("restart-storm").join("run");
    let mut args = harness::run_args(
        "scenarios/restart-storm.yml",
        &format!("http://{addr}"),
        &out,
    );
    let to = format!("load.phases.0.ramp.to={CLIENTS}");
    let sets = [
        to.as_str(),
        "load.phases.0.ramp.over=1s",
        "load.phases.1.hold=10s",
        "groups.0.flow.3.loop.duration=10s",
        "groups.0.flow.3.loop.rate=2/s",
        "reconnect.delay=200ms",
        "reconnect.max_delay=1s",
        "max_duration=40s",
    ];
    for set in sets.iter().chain(extra) {
        args.extend(["--set".to_owned(), (*set).to_owned()]);
    }
    let child = harness::chorus(args, ("JWT_SECRET", SECRET))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chorus starts");
    tokio::time::sleep(KILL_AFTER).await;
    // A crash, not a shutdown: no goodbye reaches the clients.
    gw.signal("KILL");
    assert!(!gw.wait_exit(Duration::from_secs(5)).success());
    tokio::time::sleep(DOWN_FOR).await;
    gw = gateway(&addr);
    let output = tokio::time::timeout(Duration::from_secs(50), child.wait_with_output())
        .await
        .expect("chorus ends in time")
        .expect("chorus runs");
    assert!(
        gw.is_running(),
        "the restarted gateway lived through the run"
    );
    drop(gw);
    if output.status.code() != Some(0) {
        eprintln!(
            "chorus stderr:\n{}\nstdout:\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    (output.status.code(), out)
}

fn count(summary: &Summary, name: &str) -> u64 {
    summary.counters.get(name).copied().unwrap_or(0)
}

/// Sessions lost without a goodbye.
fn dropped(summary: &Summary) -> u64 {
    summary
        .counters
        .iter()
        .filter(|(n, _)| n.starts_with("disconnects.") && *n != "disconnects.client")
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_comes_back_after_a_gateway_restart_and_nothing_owed_after_is_lost() {
    let _serial = SERIAL.lock().await;
    let (code, run_dir) = run_through_a_restart(&[]).await;
    let summary = harness::read_summary(&run_dir);
    assert!(
        dropped(&summary) >= CLIENTS,
        "the restart dropped every session: {:?}",
        summary.counters
    );
    assert_eq!(
        count(&summary, "reconnects.succeeded"),
        CLIENTS,
        "{:?}",
        summary.counters
    );
    assert_eq!(count(&summary, "reconnects.exhausted"), 0);
    assert!(count(&summary, "reconnects.attempted") >= CLIENTS);
    assert_eq!(
        summary.latency["reconnect"].count, CLIENTS,
        "one sample per client"
    );
    assert!(
        summary.latency["reconnect"].min_us >= 100_000,
        "timed from the drop, through the backoff: {:?}",
        summary.latency["reconnect"]
    );
    assert!(count(&summary, "deliveries.expected") > 0);
    assert_eq!(
        count(&summary, "deliveries.lost"),
        0,
        "{:?}",
        summary.counters
    );
    assert_eq!(
        summary.violations.values().sum::<u64>(),
        0,
        "{:?}",
        summary.violations
    );
    assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.thresholds);
    assert_eq!(code, Some(0));

    // Deliveries went on after the rejoin, and the storm is in the series.
    let series = TimeSeries::read(&run_dir.join("timeseries.json")).expect("timeseries.json");
    let rate =
        |p: &chorus::metrics::TimePoint, name: &str| p.rates.get(name).copied().unwrap_or(0.0);
    let back_at = series
        .points
        .iter()
        .find(|p| rate(p, "storm.reconnects") > 0.0)
        .map(|p| p.t_s)
        .expect("reconnects in the time series");
    assert!(series
        .points
        .iter()
        .any(|p| rate(p, "storm.disconnects") > 0.0));
    let after: f64 = series
        .points
        .iter()
        .filter(|p| p.t_s > back_at + 1.0)
        .map(|p| rate(p, "deliveries.received.newMessage") * p.duration_s)
        .sum();
    assert!(
        after > 0.0,
        "messages were delivered after the clients came back"
    );

    // The report draws the storm and says it in one line.
    let files = chorus::report::render_run_dir(&run_dir).expect("the reports render");
    let html = std::fs::read_to_string(&files.html).expect("report.html");
    let heading = "<h3>Disconnects and reconnects per second</h3>\n<svg";
    let chart = &html[html.find(heading).expect("the storm chart")..];
    let chart = &chart[..chart.find("</svg>").expect("its end")];
    assert!(chart.contains("storm.disconnects") && chart.contains("storm.reconnects"));
    assert!(
        chart.contains("class=\"line\""),
        "the storm chart has lines"
    );
    let md = std::fs::read_to_string(&files.markdown).expect("summary.md");
    let line = format!("{CLIENTS} back, 0 gave up; reconnect p50");
    assert!(md.contains(&line), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_the_same_restart_fails_the_run() {
    let _serial = SERIAL.lock().await;
    let (code, run_dir) = run_through_a_restart(&["reconnect.attempts=0"]).await;
    let summary = harness::read_summary(&run_dir);
    assert!(dropped(&summary) >= CLIENTS, "{:?}", summary.counters);
    assert!(!summary.counters.contains_key("reconnects.succeeded"));
    assert!(!summary.latency.contains_key("reconnect"));
    assert!(
        summary.violations.get("liveness").copied().unwrap_or(0) >= CLIENTS,
        "every dropped client is a violation: {:?}",
        summary.violations
    );
    // Every session gone and the target refusing TCP while it is down: the
    // run stops there, as any run whose target went away does.
    let aborted = summary.aborted.as_deref().unwrap_or_default();
    assert!(aborted.contains("the target went away"), "{aborted:?}");
    assert_eq!(summary.verdict, Verdict::Fail);
    assert_eq!(code, Some(3));
}

/// A loopback TCP proxy to `upstream` that cuts its `cut`-th connection
/// (1-based) `after` it was accepted, as a network cut would: both sides
/// closed, no goodbye. Every other connection is passed through.
async fn cutting_proxy(
    upstream: std::net::SocketAddr,
    cut: usize,
    after: Duration,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut inbound, _)) = listener.accept().await {
            n += 1;
            let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let limit = if n == cut {
                after
            } else {
                Duration::from_secs(120)
            };
            tokio::spawn(async move {
                let pipe = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                let _ = tokio::time::timeout(limit, pipe).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_comes_back_and_is_owed_nothing_sent_while_it_was_away() {
    const SECRET_ENV: &str = "RECONNECT_CUT_SECRET";
    let _serial = SERIAL.lock().await;
    std::env::set_var(SECRET_ENV, SECRET);
    let gw = harness::start_gateway(chorus_gateway::Faults::default(), SECRET).await;
    // The third of 5 clients is cut 3 s after it connected (websocket: one
    // TCP connection per client); its reconnect goes through untouched.
    let proxy = cutting_proxy(gw.addr(), 3, Duration::from_secs(3)).await;
    let out = harness::temp_dir("reconnect-cut").join("run");
    let options = harness::run_options(
        "scenarios/restart-storm.yml",
        Some(format!("http://{proxy}")),
        out,
        &[
            &format!("auth.jwt.secret_env={SECRET_ENV}"),
            "load.phases.0.ramp.to=5",
            "load.phases.0.ramp.over=1s",
            "load.phases.1.hold=7s",
            "groups.0.flow.3.loop.duration=7s",
            "groups.0.flow.3.loop.rate=4/s",
            // Away for at least 1 s: messages of the others are sent meanwhile.
            "reconnect.delay=1s",
            "reconnect.jitter=0",
        ],
    );
    let report = tokio::time::timeout(Duration::from_secs(50), chorus::run::run(options))
        .await
        .expect("the run ends in time")
        .expect("the run completes");
    gw.shutdown().await;
    let summary = report.summary;
    assert_eq!(
        count(&summary, "reconnects.succeeded"),
        1,
        "{:?}",
        summary.counters
    );
    assert_eq!(count(&summary, "reconnects.attempted"), 1);
    assert_eq!(summary.latency["reconnect"].count, 1);
    assert!(
        summary.latency["reconnect"].min_us >= 1_000_000,
        "through the 1 s backoff"
    );
    // The others sent about 16 messages a second while it was away: none
    // of them is owed to it, everything after its rejoin is, and arrived.
    let expected = count(&summary, "deliveries.expected");
    let received = count(&summary, "deliveries.received.newMessage");
    assert!(
        expected > 0 && received > expected,
        "{:?}",
        summary.counters
    );
    assert_eq!(
        count(&summary, "deliveries.lost"),
        0,
        "{:?}",
        summary.counters
    );
    assert_eq!(
        summary.violations.values().sum::<u64>(),
        0,
        "{:?}",
        summary.violations
    );
    assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.thresholds);
}
