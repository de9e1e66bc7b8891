//! The reports of a real `chorus run`: report.html and summary.md are
//! written, complete, self-contained, and show the numbers of summary.json.

use chorus::metrics::{format_ms, Verdict};
use chorus::report::SECTION_TITLES;
use chorus_gateway::Faults;

use crate::support::harness::{
    assert_exit, chorus, crate_path, finish, read_summary, start_gateway, temp_dir, url_of,
};

const SECRET: (&str, &str) = ("CHORUS_TEST_SECRET_STEADY", "secret-for-reports");

/// Every `http://` or `https://` address in `text`, up to the next quote, `<`, space or backtick.
fn addresses(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (at, _) in text.match_indices(scheme) {
            let rest = &text[at..];
            let end = rest
                .find(['"', '\'', '<', ' ', '`', ')'])
                .unwrap_or(rest.len());
            found.push(&rest[..end]);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_writes_reports_that_match_its_summary() {
    let gateway = start_gateway(Faults::default(), SECRET.1).await;
    let target = url_of(&gateway);
    let dir = temp_dir("report-real").join("run");
    let scenario = crate_path("tests/scenarios/steady-chat.yml");
    let args = [
        "run",
        &scenario.display().to_string(),
        "--target",
        &target,
        "--out",
        &dir.display().to_string(),
        "--quiet",
    ];
    assert_exit(&finish(chorus(args, SECRET)).await, 0, "chorus run");
    gateway.shutdown().await;

    let summary = read_summary(&dir);
    assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.thresholds);
    let delivery = summary.latency["delivery.newMessage"];
    assert!(delivery.count > 0, "{delivery:?}");
    let (p50, p99) = (
        format_ms(delivery.p50_us as f64),
        format_ms(delivery.p99_us as f64),
    );

    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    let mut at = 0;
    for title in SECTION_TITLES {
        at += html[at..]
            .find(&format!("<h2>{title}</h2>"))
            .unwrap_or_else(|| panic!("section {title} missing or out of order"));
    }
    let row = format!(
        "<tr><td>delivery.newMessage</td><td>{}</td><td>{}</td><td>{p50}</td><td>{}</td><td>{p99}</td>",
        delivery.count,
        format_ms(delivery.min_us as f64),
        format_ms(delivery.p90_us as f64),
    );
    assert!(html.contains(&row), "no row {row}");
    let threshold = summary
        .thresholds
        .iter()
        .find(|t| t.expr.starts_with("delivery.newMessage.p99 <"))
        .expect("the scenario's p99 threshold");
    let threshold_row = format!(
        "<tr><td><code>{}</code></td><td>{p99} ms</td>",
        threshold.expr.replace('<', "&lt;")
    );
    assert!(html.contains(&threshold_row), "no row {threshold_row}");
    // The target URL, named in the header, is the only address on the page.
    let found = addresses(&html);
    assert!(!found.is_empty(), "report.html does not name the target");
    assert!(found.iter().all(|a| *a == target), "addresses: {found:?}");
    assert!(!html.contains("<script"), "report.html runs a script");
    assert!(!html.contains("<link"), "report.html links a resource");

    let markdown = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    let verdict = markdown.lines().next().unwrap_or_default();
    assert_eq!(verdict, "## chorus `steady-chat`: ✅ PASS");
    assert!(
        markdown.contains(&format!("Target `{target}`")),
        "{markdown}"
    );
    assert!(
        markdown
            .contains("### Latency (ms)\n\n| metric | count | p50 | p90 | p99 | p99.9 | max |\n"),
        "{markdown}"
    );
    let latency_row = format!(
        "| delivery.newMessage | {} | {p50} | {} | {p99} | {} | {} |",
        delivery.count,
        format_ms(delivery.p90_us as f64),
        format_ms(delivery.p999_us as f64),
        format_ms(delivery.max_us as f64),
    );
    assert!(
        markdown.lines().any(|line| line == latency_row),
        "no row {latency_row} in\n{markdown}"
    );
}
