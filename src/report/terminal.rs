//! The terminal summary table: latencies in milliseconds, non-zero
//! counters and violations, threshold lines and driver notes.

use std::fmt::Write as _;

use super::markup::{node_rows, reconnect_line, threshold_value, NODE_HEADERS};
use crate::metrics::{format_ms, LatencyStats, Summary};

/// Width of each numeric column.
const NUMBER_WIDTH: usize = 9;

/// Renders the summary as an aligned plain-text table, ending with a newline.
pub fn render_table(summary: &Summary) -> String {
    let mut out = String::new();
    let name_width = summary
        .latency
        .keys()
        .chain(summary.counters.keys())
        .chain(summary.violations.keys())
        .map(|name| name.chars().count())
        .chain([12])
        .max()
        .unwrap_or(12);

    let headers = ["count", "min", "p50", "p90", "p99", "p99.9", "max"];
    let _ = write!(out, "{:<name_width$}", "latency (ms)");
    for header in headers {
        let _ = write!(out, " {header:>NUMBER_WIDTH$}");
    }
    out.push('\n');
    for (name, stats) in &summary.latency {
        let _ = write!(out, "{name:<name_width$}");
        for cell in latency_cells(stats) {
            let _ = write!(out, " {cell:>NUMBER_WIDTH$}");
        }
        out.push('\n');
    }

    for (title, entries) in [
        ("counters", &summary.counters),
        ("violations", &summary.violations),
    ] {
        let nonzero: Vec<_> = entries.iter().filter(|(_, &n)| n > 0).collect();
        if nonzero.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for (name, n) in nonzero {
            let _ = writeln!(out, "{name:<name_width$} {n:>NUMBER_WIDTH$}");
        }
    }

    let nodes = node_rows(summary);
    if !nodes.is_empty() {
        out.push_str("\nnodes\n");
        let widths: Vec<usize> = (0..NODE_HEADERS.len())
            .map(|i| {
                nodes
                    .iter()
                    .map(|row| row[i].chars().count())
                    .chain([NODE_HEADERS[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let rows = std::iter::once(NODE_HEADERS.map(String::from)).chain(nodes);
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    }

    if !summary.thresholds.is_empty() {
        out.push_str("\nthresholds\n");
        for threshold in &summary.thresholds {
            let mark = if threshold.pass { '✓' } else { '✗' };
            if threshold.no_data {
                let _ = writeln!(out, "{mark} {}  (no data)", threshold.expr);
                continue;
            }
            let actual = threshold_value(summary, threshold);
            let _ = writeln!(out, "{mark} {}  (actual {actual})", threshold.expr);
        }
    }

    if let Some(line) = reconnect_line(summary) {
        let _ = writeln!(out, "\n{line}");
    }
    if let Some(why) = &summary.aborted {
        let _ = writeln!(out, "\nrun stopped: {why}");
    }
    for note in &summary.driver.notes {
        let _ = writeln!(out, "\n! {note}");
    }
    out
}

/// Cells of one latency row; `-` for a metric without samples.
fn latency_cells(stats: &LatencyStats) -> [String; 7] {
    if stats.count == 0 {
        return [
            "0".to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ];
    }
    [
        stats.count.to_string(),
        format_ms(stats.min_us as f64),
        format_ms(stats.p50_us as f64),
        format_ms(stats.p90_us as f64),
        format_ms(stats.p99_us as f64),
        format_ms(stats.p999_us as f64),
        format_ms(stats.max_us as f64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::sample_summary;

    #[test]
    fn renders_known_summary() {
        let mut summary = sample_summary();
        summary.evaluate(
            "delivery.newMessage.p99 < 50ms",
            "delivery.newMessage",
            Some("p99"),
            |v| v < 50_000.0,
        );
        summary.evaluate("errors == 0", "errors", None, |v| v == 0.0);
        let table = render_table(&summary);
        let lines: Vec<&str> = table.lines().collect();

        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["latency", "(ms)", "count", "min", "p50", "p90", "p99", "p99.9", "max"]
        );
        // Rows are aligned: every latency row has the header's width.
        let connect = lines
            .iter()
            .find(|l| l.starts_with("connect "))
            .expect("row");
        let delivery = lines
            .iter()
            .find(|l| l.starts_with("delivery.newMessage "))
            .expect("row");
        assert_eq!(connect.len(), lines[0].len());
        assert_eq!(delivery.len(), lines[0].len());
        let cells: Vec<&str> = delivery.split_whitespace().collect();
        assert_eq!(cells[1], "1000");
        assert_eq!(cells[2], "0.010"); // min 10 µs
        assert_eq!(cells[7], "10.0"); // max 10 ms
        assert_eq!(connect.split_whitespace().nth(2), Some("-"));

        assert!(table.contains("\ncounters\n"));
        assert!(lines
            .iter()
            .any(|l| l.split_whitespace().eq(["errors.ack", "3"])));
        assert!(!table.contains("timeouts.ack"), "zero counters are omitted");
        assert!(lines
            .iter()
            .any(|l| l.split_whitespace().eq(["bad_packet", "4"])));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("✓ delivery.newMessage.p99 < 50ms  (actual 9.9")));
        assert!(lines.contains(&"✗ errors == 0  (actual 5)"));
        assert!(!table.contains("run stopped"));
    }

    #[test]
    fn a_p99_9_threshold_shows_milliseconds() {
        let mut summary = sample_summary();
        let expr = "delivery.newMessage.p99.9 < 50ms";
        summary.evaluate(expr, "delivery.newMessage", Some("p99.9"), |v| v < 50_000.0);
        let table = render_table(&summary);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("✓ {expr}  (actual ")) && l.ends_with(" ms)")),
            "{table}"
        );
    }

    #[test]
    fn a_threshold_without_samples_shows_no_data() {
        let mut summary = sample_summary();
        summary.evaluate("connect.p95 <= 200ms", "connect", Some("p95"), |v| {
            v <= 200_000.0
        });
        summary.aborted = Some("interrupted by SIGINT".into());
        let table = render_table(&summary);
        assert!(
            table
                .lines()
                .any(|l| l == "✗ connect.p95 <= 200ms  (no data)"),
            "{table}"
        );
        assert!(!table.contains("0.000 ms"), "{table}");
        assert!(
            table.contains("\nrun stopped: interrupted by SIGINT\n"),
            "{table}"
        );
    }
}
