//! Reports and comparison over a real run directory written by the metrics
//! module's own writers, exactly as the run engine writes it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use chorus::metrics::{
    format_ms, IntervalLogs, Registry, RunInfo, Summary, TimeSeries, CPU_PERCENT, RSS_BYTES,
    RUNTIME_LAG,
};
use chorus::report::{compare, render_run_dir, Tolerances, SECTION_TITLES};

use crate::support::harness::temp_dir;

const TARGET: &str = "http://127.0.0.1:3000";
const SCENARIO_YML: &str = "name: smoke-report\n# <script>alert(1)</script> & friends\n";

/// Records five seconds of a small chat run and writes `hdr/*.hlog`,
/// `timeseries.json`, `summary.json`, `scenario.yml` and `violations.json`.
fn write_run_dir(dir: &Path) -> Summary {
    let registry = Registry::new();
    let recorder = registry.recorder();
    let connect = registry.latency("connect");
    let joined = registry.latency("expect.joined");
    let ack = registry.latency("ack.sendMessage");
    let delivery = registry.latency("delivery.newMessage");
    let lag = registry.latency(RUNTIME_LAG);
    let clients = registry.gauge("clients.connected");
    let cpu = registry.gauge(CPU_PERCENT);
    let rss = registry.gauge(RSS_BYTES);
    let mut logs = IntervalLogs::create(dir, registry.started_at()).expect("hdr dir");
    let mut series = TimeSeries::new(registry.started_at());
    let t0 = registry.started();
    for second in 1..=5u64 {
        for i in 0..200u64 {
            recorder.record(delivery, 500 + i * 37 * second);
            recorder.record(lag, 100 + i);
        }
        for i in 0..20u64 {
            recorder.record(connect, 2_000 + i * 150);
            recorder.record(joined, 800 + i * 90);
            recorder.record(ack, 300 + i * 45 + second * 1_000);
        }
        recorder.add_by_name("connections", 20);
        recorder.add_by_name("emits", 40);
        recorder.add_by_name("deliveries.expected", 200);
        recorder.add_by_name("deliveries.received", 200 - second);
        recorder.add_by_name("deliveries.lost", second);
        recorder.add_by_name("violations.ack_without_id", second % 2);
        recorder.set_gauge(clients, (20 * second) as f64);
        recorder.set_gauge(cpu, 10.0 * second as f64);
        recorder.set_gauge(rss, 30e6 + second as f64 * 1e6);
        let snapshot = registry.collect_interval(t0 + Duration::from_secs(second));
        logs.write(&snapshot).expect("hlog");
        series.push(&snapshot);
    }
    let mut summary = Summary::from_registry(
        &registry,
        RunInfo {
            scenario: "smoke-report".into(),
            target: TARGET.into(),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600),
            duration: Duration::from_secs(5),
        },
    );
    summary.evaluate(
        "delivery.newMessage.p99 < 50ms",
        "delivery.newMessage",
        Some("p99"),
        |v| v < 50_000.0,
    );
    summary.evaluate("deliveries.lost == 0", "deliveries.lost", None, |v| {
        v == 0.0
    });
    summary.write(dir).expect("summary.json");
    series.write(dir).expect("timeseries.json");
    std::fs::write(dir.join("scenario.yml"), SCENARIO_YML).expect("scenario.yml");
    std::fs::write(
        dir.join("violations.json"),
        r#"[{"t_s": 1.25, "kind": "ack_without_id", "client": 7, "event": "sendMessage",
             "expected": "ack id 3", "got": "43[\"ok\"]"}]"#,
    )
    .expect("violations.json");
    summary
}

#[test]
fn report_html_and_summary_md_match_summary_json() {
    let dir = temp_dir("render");
    write_run_dir(&dir);
    let files = render_run_dir(&dir).expect("render");
    assert_eq!(files.html, dir.join("report.html"));
    assert_eq!(files.junit, None, "no conformance.json, no junit.xml");
    assert!(!dir.join("junit.xml").exists());

    // Compare against summary.json as read back, not the in-memory summary.
    let summary = Summary::read(&dir).expect("summary.json");
    let html = std::fs::read_to_string(&files.html).expect("report.html");

    // Every section, in order.
    let mut at = 0;
    for title in SECTION_TITLES {
        let found = html[at..]
            .find(&format!("<h2>{title}</h2>"))
            .unwrap_or_else(|| panic!("section {title} missing or out of order"));
        at += found;
    }

    // Verdict and thresholds.
    assert!(html.contains("Verdict: <span class=\"badge fail\">FAIL</span>"));
    let p99 = format_ms(summary.latency["delivery.newMessage"].p99_us as f64);
    assert!(html.contains(&format!(
        "<tr><td><code>delivery.newMessage.p99 &lt; 50ms</code></td><td>{p99} ms</td><td><span class=\"badge pass\">PASS</span></td></tr>"
    )));
    assert!(html.contains(
        "<tr><td><code>deliveries.lost == 0</code></td><td>15</td><td><span class=\"badge fail\">FAIL</span></td></tr>"
    ));

    // Every latency metric's row equals summary.json, formatted as in the table.
    assert_eq!(summary.latency.len(), 5);
    for (name, s) in &summary.latency {
        let ms = [s.min_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us]
            .map(|us| format!("<td>{}</td>", format_ms(us as f64)))
            .concat();
        let row = format!(
            "<tr><td>{name}</td><td>{}</td>{ms}<td>{}</td></tr>",
            s.count,
            format_ms(s.mean_us)
        );
        assert!(html.contains(&row), "{name}: {row}");
        // Its percentile curve (from the hlog) and, for target metrics, its
        // latency-over-time chart.
        assert!(html.contains(&format!("<title>{name} percentile distribution</title>")));
        if !name.starts_with("driver.") {
            assert!(html.contains(&format!("<h3>{name}</h3>\n<svg")), "{name}");
        }
    }
    for (name, total) in &summary.counters {
        assert!(html.contains(&format!("<tr><td>{name}</td><td>{total}</td></tr>")));
    }
    assert!(html.contains("<tr><td>ack_without_id</td><td>3</td></tr>"));
    assert!(html.contains(
        "<tr><td>1.250</td><td>ack_without_id</td><td>7</td><td>sendMessage</td><td><code>ack id 3</code></td><td><code>43[&quot;ok&quot;]</code></td></tr>"
    ));
    for chart in [
        "Clients connected",
        "Sends and deliveries per second",
        "Violations per interval",
        "CPU (percent of one core)",
        "Runtime lag",
        "Memory (resident, MB)",
    ] {
        let heading = format!("<h3>{chart}</h3>\n<svg");
        assert!(html.contains(&heading), "{chart}");
        let svg = &html[html.find(&heading).expect("chart")..];
        let svg = &svg[..svg.find("</svg>").expect("end")];
        assert!(!svg.contains("no data"), "{chart} is empty");
        assert!(svg.contains("class=\"line\""), "{chart}");
    }

    // The scenario is escaped, and the page loads nothing from elsewhere.
    assert!(html.contains("# &lt;script&gt;alert(1)&lt;/script&gt; &amp; friends"));
    assert!(!html.contains("<script"));
    let without_target = html.replace(&format!("<code>{TARGET}</code>"), "");
    assert!(!without_target.contains("http://") && !without_target.contains("https://"));

    let md = std::fs::read_to_string(&files.markdown).expect("summary.md");
    assert!(
        md.starts_with("## chorus `smoke-report`: ❌ FAIL\n"),
        "{md}"
    );
    assert!(md.contains(&format!(
        "| ✅ | `delivery.newMessage.p99 < 50ms` | {p99} ms |"
    )));
    assert!(md.contains("| ❌ | `deliveries.lost == 0` | 15 |"));
    for (name, s) in &summary.latency {
        let cells = [s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us]
            .map(|us| format_ms(us as f64))
            .join(" | ");
        assert!(
            md.contains(&format!("| {name} | {} | {cells} |", s.count)),
            "{name}"
        );
    }
    assert!(md.contains("| deliveries.lost | 15 |"));
    assert!(md.contains("| ack_without_id | 3 |"));
    assert!(md.contains("| 1.250 | ack_without_id | 7 | sendMessage | `ack id 3` | `43[\"ok\"]` |"));
    assert!(
        md.contains("chorus kept up (CPU max 50.0%, runtime lag p99 "),
        "{md}"
    );

    // With conformance results, junit.xml appears too.
    std::fs::write(
        dir.join("conformance.json"),
        r#"{"cases": [{"name": "handshake", "status": "pass", "duration_ms": 3},
                      {"name": "ack ids", "status": "fail", "evidence": "no id", "duration_ms": 4}]}"#,
    )
    .expect("conformance.json");
    let files = render_run_dir(&dir).expect("render again");
    let junit = std::fs::read_to_string(files.junit.expect("junit.xml")).expect("read junit");
    assert!(junit.contains("tests=\"2\" failures=\"1\""), "{junit}");
    assert!(junit.contains("<failure message=\"no id\">no id</failure>"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn empty_violations_say_so() {
    let dir = temp_dir("clean");
    let registry = Registry::new();
    registry
        .recorder()
        .record(registry.latency("connect"), 1_000);
    registry.collect_interval(registry.started() + Duration::from_secs(1));
    let summary = Summary::from_registry(
        &registry,
        RunInfo {
            scenario: "clean".into(),
            target: "embedded".into(),
            started_at: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
        },
    );
    summary.write(&dir).expect("summary.json");
    let files = render_run_dir(&dir).expect("render");
    let html = std::fs::read_to_string(&files.html).expect("html");
    assert!(html.contains("<p>Verdict: <span class=\"badge pass\">PASS</span></p>"));
    assert!(html.contains("<h2>Violations</h2>\n<p>No violations.</p>"));
    assert!(html.contains("No <code>timeseries.json</code> in this run directory."));
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(md.contains("### Violations\n\nNo violations.\n"));
    assert!(render_run_dir(&dir.join("missing")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_passes_identical_runs_and_names_a_slower_p99() {
    let dir = temp_dir("compare");
    let baseline_dir = dir.join("baseline");
    std::fs::create_dir_all(&baseline_dir).expect("dir");
    write_run_dir(&baseline_dir);
    let baseline = Summary::read(&baseline_dir).expect("baseline");
    let tolerances = Tolerances::new();
    assert!(!compare(&baseline, &baseline, &tolerances).regressed());

    let mut slower = baseline.clone();
    slower
        .latency
        .get_mut("delivery.newMessage")
        .expect("metric")
        .p99_us *= 3;
    let comparison = compare(&baseline, &slower, &tolerances);
    assert!(comparison.regressed());
    let names: Vec<&str> = comparison
        .regressions()
        .map(|r| r.metric.as_str())
        .collect();
    assert_eq!(names, ["delivery.newMessage.p99"]);
    assert!(comparison
        .render_text()
        .ends_with("1 regression: delivery.newMessage.p99\n"));

    // The same through the command line: exit codes 0, 1 and 2.
    let slower_file = dir.join("slower.json");
    slower.write(&slower_file).expect("write slower");
    let chorus = |args: &[&Path]| {
        Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg("compare")
            .args(args)
            .output()
            .expect("run chorus")
    };
    let same = chorus(&[&baseline_dir, &baseline_dir.join("summary.json")]);
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).contains("no regression"));

    let markdown = dir.join("compare.md");
    let worse = chorus(&[
        &baseline_dir,
        &slower_file,
        Path::new("--markdown"),
        &markdown,
    ]);
    assert_eq!(worse.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&worse.stdout);
    assert!(
        stdout.contains("1 regression: delivery.newMessage.p99"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(&markdown).expect("markdown");
    assert!(md.starts_with("### ❌ chorus compare: 1 regression: delivery.newMessage.p99"));

    let lenient = chorus(&[
        &baseline_dir,
        &slower_file,
        Path::new("--tolerance"),
        Path::new("delivery.*.p99=250%:0"),
    ]);
    assert_eq!(lenient.status.code(), Some(0));

    let bad = chorus(&[&baseline_dir, &slower_file, Path::new("--tolerance=p99=10")]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("chorus: invalid tolerance `p99=10`"),
        "{stderr}"
    );

    let missing = chorus(&[&dir.join("nope"), &slower_file]);
    assert_eq!(missing.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
