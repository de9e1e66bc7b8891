//! `summary.md`: GitHub-flavoured Markdown for a PR comment or
//! `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;

use super::html::MAX_VIOLATION_ROWS;
use super::markup::{
    connect_failure_line, json_text, md_cell, node_rows, reconnect_line, threshold_value,
    NODE_HEADERS,
};
use super::run_dir::RunData;
use crate::metrics::{format_ms, Verdict};

/// How many violation records `summary.md` lists (the HTML lists more).
const MD_VIOLATION_ROWS: usize = 10;

/// Renders the run's summary as Markdown.
pub(crate) fn render_markdown(run: &RunData) -> String {
    let summary = &run.summary;
    let mut out = String::new();
    let verdict = match summary.verdict {
        Verdict::Pass => "✅ PASS",
        Verdict::Fail => "❌ FAIL",
    };
    let _ = writeln!(
        out,
        "## chorus `{}`: {verdict}\n\nTarget `{}`, started {}, ran {:.1} s.\n",
        md_cell(&summary.scenario),
        md_cell(&summary.target),
        summary.started_at,
        summary.duration_s
    );

    if let Some(why) = &summary.aborted {
        let _ = writeln!(out, "**Run stopped:** {}\n", md_cell(why));
    }
    if let Some(line) = connect_failure_line(summary) {
        let _ = writeln!(out, "**{}**\n", md_cell(&line));
    }
    if let Some(line) = reconnect_line(summary) {
        let _ = writeln!(out, "{}\n", md_cell(&line));
    }
    out.push_str("### Thresholds\n\n");
    if summary.thresholds.is_empty() {
        out.push_str("No thresholds were set.\n\n");
    } else {
        out.push_str("| | threshold | measured |\n|---|---|---|\n");
        for t in &summary.thresholds {
            let mark = if t.pass { "✅" } else { "❌" };
            let _ = writeln!(
                out,
                "| {mark} | `{}` | {} |",
                md_cell(&t.expr),
                threshold_value(summary, t)
            );
        }
        out.push('\n');
    }

    out.push_str("### Latency (ms)\n\n| metric | count | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, s) in &summary.latency {
        let cells = if s.count == 0 {
            ["-"; 5].map(String::from)
        } else {
            [s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us].map(|us| format_ms(us as f64))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            md_cell(name),
            s.count,
            cells.join(" | ")
        );
    }

    let nodes = node_rows(summary);
    if !nodes.is_empty() {
        let _ = writeln!(
            out,
            "\n### Nodes\n\n| {} |\n|{}",
            NODE_HEADERS.join(" | "),
            "---|".repeat(NODE_HEADERS.len())
        );
        for row in nodes {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }

    out.push_str("\n### Counters\n\n| counter | total |\n|---|---:|\n");
    for (name, total) in &summary.counters {
        let _ = writeln!(out, "| {} | {total} |", md_cell(name));
    }

    out.push_str("\n### Violations\n\n");
    let kinds: Vec<_> = summary.violations.iter().filter(|(_, &n)| n > 0).collect();
    if kinds.is_empty() && run.violations.is_empty() {
        out.push_str("No violations.\n");
    } else {
        out.push_str("| kind | count |\n|---|---:|\n");
        for (kind, n) in kinds {
            let _ = writeln!(out, "| {} | {n} |", md_cell(kind));
        }
        if !run.violations.is_empty() {
            let shown = run.violations.len().min(MD_VIOLATION_ROWS);
            let _ = writeln!(
                out,
                "\nFirst {shown} of {} (up to {MAX_VIOLATION_ROWS} in report.html):\n\n| t (s) | kind | client | event | expected | got |\n|---:|---|---|---|---|---|",
                run.violations.len()
            );
            for v in &run.violations[..shown] {
                let _ = writeln!(
                    out,
                    "| {:.3} | {} | {} | {} | `{}` | `{}` |",
                    v.t_s,
                    md_cell(&v.kind),
                    md_cell(&json_text(&v.client)),
                    md_cell(v.event.as_deref().unwrap_or("")),
                    md_cell(&json_text(&v.expected)),
                    md_cell(&json_text(&v.got))
                );
            }
        }
    }

    out.push_str("\n### Driver\n\n");
    let driver = &summary.driver;
    if driver.bottleneck {
        out.push_str("> [!WARNING]\n");
        for note in &driver.notes {
            let _ = writeln!(out, "> {note}");
        }
    } else {
        let _ = writeln!(
            out,
            "chorus kept up (CPU max {}, runtime lag p99 {}).",
            driver
                .cpu_percent_max
                .map_or("not sampled".to_string(), |cpu| format!("{cpu:.1}%")),
            driver
                .runtime_lag_p99_us
                .map_or("not sampled".to_string(), |lag| format!(
                    "{} ms",
                    format_ms(lag as f64)
                ))
        );
        for note in &driver.notes {
            let _ = writeln!(out, "\n{note}");
        }
    }
    out
}
