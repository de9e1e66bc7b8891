//! The terminal summary table: latencies in milliseconds, non-zero
//! counters and violations, threshold lines and driver notes.

use std::fmt::Write as _;

use super::summary::{LatencyStats, Summary};

/// Width of each numeric column.
const NUMBER_WIDTH: usize = 9;

/// Formats microseconds as milliseconds with about three significant
/// digits (the precision of the histograms): `0.125`, `4.25`, `42.0`, `1234`.
pub fn format_ms(micros: f64) -> String {
    let ms = micros / 1000.0;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// Formats a plain number: integers without decimals, others to 4 places.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

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

    if !summary.thresholds.is_empty() {
        out.push_str("\nthresholds\n");
        for threshold in &summary.thresholds {
            let mark = if threshold.pass { '✓' } else { '✗' };
            if threshold.no_data {
                let _ = writeln!(out, "{mark} {}  (no data)", threshold.expr);
                continue;
            }
            let actual = match threshold.value {
                Some(value) if is_latency_expr(summary, &threshold.expr) => {
                    format!("{} ms", format_ms(value))
                }
                Some(value) => format_number(value),
                None => "no value".to_string(),
            };
            let _ = writeln!(out, "{mark} {}  (actual {actual})", threshold.expr);
        }
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

/// Whether a threshold expression (`<metric>.<stat> <op> <value>`, possibly
/// with a `:` after the metric) measures a latency other than its count.
fn is_latency_expr(summary: &Summary, expr: &str) -> bool {
    let target = expr
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap_or_default();
    target
        .rsplit_once('.')
        .is_some_and(|(metric, stat)| stat != "count" && summary.latency.contains_key(metric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::summary::tests::sample_summary;

    #[test]
    fn formats_milliseconds() {
        assert_eq!(format_ms(125.0), "0.125");
        assert_eq!(format_ms(4_250.0), "4.25");
        assert_eq!(format_ms(42_000.0), "42.0");
        assert_eq!(format_ms(1_234_000.0), "1234");
    }

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
