//! `chorus compare`: a current run's summary against a baseline, metric by
//! metric, gated by [`Tolerances`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::markup::md_cell;
use super::tolerance::{Gate, MetricKind, Tolerances};
use crate::metrics::{format_ms, LatencyStats, Summary};

/// Picks one statistic out of a metric's [`LatencyStats`].
type StatPicker = fn(&LatencyStats) -> u64;

/// The latency statistics compared, with their key suffix.
const LATENCY_STATS: [(&str, StatPicker); 5] = [
    ("p50", |s| s.p50_us),
    ("p90", |s| s.p90_us),
    ("p99", |s| s.p99_us),
    ("p99.9", |s| s.p999_us),
    ("max", |s| s.max_us),
];

/// One metric in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    /// `<latency metric>.<stat>` or a counter name (`violations.<kind>` for violations).
    pub metric: String,
    /// Latency (µs) or counter.
    pub kind: MetricKind,
    /// Baseline value; `None` for a latency metric without samples there.
    pub baseline: Option<f64>,
    /// Current value; `None` for a latency metric without samples there.
    pub current: Option<f64>,
    /// The gate that applied.
    pub gate: Gate,
    /// Whether the metric got worse beyond its gate.
    pub regressed: bool,
}

impl ComparisonRow {
    /// `current - baseline`, when both are known.
    pub fn change(&self) -> Option<f64> {
        Some(self.current? - self.baseline?)
    }

    /// The change relative to the baseline (`inf` from a zero baseline,
    /// 0 when both are zero).
    pub fn relative_change(&self) -> Option<f64> {
        let (baseline, change) = (self.baseline?, self.change()?);
        Some(if change == 0.0 {
            0.0
        } else if baseline == 0.0 {
            change.signum() * f64::INFINITY
        } else {
            change / baseline
        })
    }

    fn value_text(&self, value: Option<f64>) -> String {
        match (value, self.kind) {
            (None, _) => "-".to_string(),
            (Some(v), MetricKind::Latency) => format!("{}ms", format_ms(v)),
            (Some(v), MetricKind::Counter) => format!("{v}"),
        }
    }

    fn change_text(&self) -> String {
        match (self.change(), self.kind) {
            (None, _) => "-".to_string(),
            (Some(c), MetricKind::Latency) => {
                let sign = if c < 0.0 { "-" } else { "+" };
                format!("{sign}{}ms", format_ms(c.abs()))
            }
            (Some(c), MetricKind::Counter) => format!("{c:+}"),
        }
    }

    fn relative_text(&self) -> String {
        match self.relative_change() {
            None => "-".to_string(),
            Some(r) if r.is_infinite() => if r > 0.0 { "new" } else { "gone" }.to_string(),
            Some(r) => format!("{:+.1}%", r * 100.0),
        }
    }

    fn result_text(&self) -> &'static str {
        match (self.regressed, self.gate, self.change()) {
            (true, _, _) => "REGRESSED",
            (false, Gate::Off, _) => "-",
            (false, _, None) => "no data",
            (false, _, Some(_)) => "ok",
        }
    }

    /// The row's cells: metric, baseline, current, change, change %, tolerance, result.
    fn cells(&self) -> [String; 7] {
        [
            self.metric.clone(),
            self.value_text(self.baseline),
            self.value_text(self.current),
            self.change_text(),
            self.relative_text(),
            self.gate.describe(self.kind),
            self.result_text().to_string(),
        ]
    }
}

/// Column titles of the comparison tables.
const HEADERS: [&str; 7] = [
    "metric",
    "baseline",
    "current",
    "change",
    "change %",
    "tolerance",
    "result",
];

/// Every compared metric, latency statistics first.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// One row per latency statistic and per counter.
    pub rows: Vec<ComparisonRow>,
}

/// Latency metrics with fewer samples than this on either side are not gated.
pub const MIN_GATED_SAMPLES: u64 = 100;

/// Compares `current` against `baseline`. Latency metrics are compared on
/// p50, p90, p99, p99.9 and max; counters and violations on their totals,
/// a counter missing on one side counting as 0.
pub fn compare(baseline: &Summary, current: &Summary, tolerances: &Tolerances) -> Comparison {
    let mut rows = Vec::new();
    let latency_names: BTreeSet<&String> = baseline
        .latency
        .keys()
        .chain(current.latency.keys())
        .collect();
    for name in latency_names {
        let stats = |summary: &Summary| summary.latency.get(name).filter(|s| s.count > 0).copied();
        let (base, cur) = (stats(baseline), stats(current));
        // A percentile of a handful of samples is noise: shown, not gated.
        let few = base
            .zip(cur)
            .is_some_and(|(b, c)| b.count.min(c.count) < MIN_GATED_SAMPLES);
        for (stat, value) in LATENCY_STATS {
            let metric = format!("{name}.{stat}");
            let mut r = row(
                tolerances,
                metric,
                MetricKind::Latency,
                base.as_ref().map(|s| value(s) as f64),
                cur.as_ref().map(|s| value(s) as f64),
            );
            if few {
                r.gate = Gate::Off;
                r.regressed = false;
            }
            rows.push(r);
        }
    }
    let counters = |summary: &Summary| {
        let plain = summary.counters.iter().map(|(k, &v)| (k.clone(), v));
        let violations = summary
            .violations
            .iter()
            .map(|(k, &v)| (format!("violations.{k}"), v));
        plain
            .chain(violations)
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (base, cur) = (counters(baseline), counters(current));
    let counter_names: BTreeSet<&String> = base.keys().chain(cur.keys()).collect();
    for name in counter_names {
        let value = |side: &std::collections::BTreeMap<String, u64>| {
            Some(side.get(name).copied().unwrap_or(0) as f64)
        };
        rows.push(row(
            tolerances,
            name.clone(),
            MetricKind::Counter,
            value(&base),
            value(&cur),
        ));
    }
    Comparison { rows }
}

fn row(
    tolerances: &Tolerances,
    metric: String,
    kind: MetricKind,
    baseline: Option<f64>,
    current: Option<f64>,
) -> ComparisonRow {
    let gate = tolerances.gate(&metric, kind);
    let regressed = match (baseline, current) {
        (Some(b), Some(c)) => gate.is_regression(b, c),
        _ => false,
    };
    ComparisonRow {
        metric,
        kind,
        baseline,
        current,
        gate,
        regressed,
    }
}

impl Comparison {
    /// Whether any metric regressed.
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|row| row.regressed)
    }

    /// The rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &ComparisonRow> {
        self.rows.iter().filter(|row| row.regressed)
    }

    /// An aligned plain-text table of every row, then a one-line verdict.
    pub fn render_text(&self) -> String {
        let cells: Vec<[String; 7]> = self.rows.iter().map(ComparisonRow::cells).collect();
        let mut widths = HEADERS.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |row: &[String]| {
            let mut text = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(text, "{cell:<width$}");
                } else {
                    let _ = write!(text, "  {cell:>width$}");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&HEADERS.map(String::from));
        for row in &cells {
            line(row);
        }
        out.push('\n');
        out.push_str(&self.verdict_line());
        out.push('\n');
        out
    }

    /// Markdown for a PR comment: the verdict, the regressions, and every
    /// row in a collapsed table.
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        let icon = if self.regressed() { "❌" } else { "✅" };
        let _ = writeln!(out, "### {icon} chorus compare: {}\n", self.verdict_line());
        let table = |rows: &mut dyn Iterator<Item = &ComparisonRow>| {
            let mut text = format!("| {} |\n|", HEADERS.join(" | "));
            text.push_str(&"---|".repeat(HEADERS.len()));
            text.push('\n');
            for row in rows {
                let cells = row.cells().map(|c| md_cell(&c));
                let _ = writeln!(text, "| {} |", cells.join(" | "));
            }
            text
        };
        if self.regressed() {
            out.push_str(&table(&mut self.regressions()));
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "<details><summary>All {} compared metrics</summary>\n",
            self.rows.len()
        );
        out.push_str(&table(&mut self.rows.iter()));
        out.push_str("\n</details>\n");
        out
    }

    fn verdict_line(&self) -> String {
        let names: Vec<&str> = self.regressions().map(|r| r.metric.as_str()).collect();
        match names.len() {
            0 => format!("no regression ({} metrics compared)", self.rows.len()),
            1 => format!("1 regression: {}", names[0]),
            n => format!("{n} regressions: {}", names.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Registry, RunInfo};
    use std::time::{Duration, Instant, SystemTime};

    /// A summary with one latency metric (samples 1..=1000 × `scale` µs)
    /// and the given counters.
    fn summary(scale: u64, counters: &[(&str, u64)]) -> Summary {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let delivery = registry.latency("delivery.newMessage");
        for v in 1..=1000u64 {
            recorder.record(delivery, v * scale);
        }
        for &(name, n) in counters {
            recorder.add_by_name(name, n);
        }
        registry.collect_interval(Instant::now());
        Summary::from_cumulative(
            &registry.cumulative(),
            RunInfo {
                scenario: "cmp".into(),
                target: "embedded".into(),
                started_at: SystemTime::UNIX_EPOCH,
                duration: Duration::from_secs(10),
            },
            2,
        )
    }

    #[test]
    fn identical_summaries_do_not_regress() {
        let base = summary(10, &[("emits", 100), ("errors.ack", 1)]);
        let comparison = compare(&base, &base, &Tolerances::new());
        assert!(!comparison.regressed());
        assert_eq!(comparison.rows.len(), 5 + 2);
        assert!(comparison
            .render_text()
            .ends_with("no regression (7 metrics compared)\n"));
    }

    #[test]
    fn slower_latency_and_new_errors_regress() {
        let base = summary(10, &[("emits", 100)]);
        let slow = summary(
            30,
            &[("emits", 50), ("errors.ack", 1), ("violations.bad_ack", 2)],
        );
        let comparison = compare(&base, &slow, &Tolerances::new());
        let regressed: Vec<&str> = comparison
            .regressions()
            .map(|r| r.metric.as_str())
            .collect();
        assert_eq!(
            regressed,
            [
                "delivery.newMessage.p50",
                "delivery.newMessage.p90",
                "delivery.newMessage.p99",
                "delivery.newMessage.p99.9",
                "errors.ack",
                "violations.bad_ack"
            ]
        );
        // max tripled but is not gated; fewer emits is not gated either.
        let row = |m: &str| comparison.rows.iter().find(|r| r.metric == m).expect(m);
        assert_eq!(row("delivery.newMessage.max").gate, Gate::Off);
        assert_eq!(row("errors.ack").baseline, Some(0.0));
        assert_eq!(row("errors.ack").relative_text(), "new");
        assert_eq!(row("emits").relative_text(), "-50.0%");

        let p99 = row("delivery.newMessage.p99").cells();
        assert_eq!(
            p99,
            [
                "delivery.newMessage.p99",
                "9.90ms",
                "29.7ms",
                "+19.8ms",
                "+200.0%",
                "+25%:+2.00ms",
                "REGRESSED"
            ]
            .map(String::from)
        );
        let text = comparison.render_text();
        assert!(text.starts_with("metric "), "{text}");
        assert!(
            text.contains("6 regressions: delivery.newMessage.p50,"),
            "{text}"
        );

        // A wide enough tolerance lets the same change pass.
        let lenient = Tolerances::parse(["delivery.*=300%:0", "errors*=off", "violations.*=:5"])
            .expect("rules");
        assert!(!compare(&base, &slow, &lenient).regressed());
    }

    #[test]
    fn markdown_lists_regressions_then_everything() {
        let base = summary(10, &[]);
        let slow = summary(30, &[("violations.a|b", 1)]);
        let markdown = compare(&base, &slow, &Tolerances::new()).render_markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert_eq!(
            lines[0],
            "### ❌ chorus compare: 5 regressions: delivery.newMessage.p50, delivery.newMessage.p90, delivery.newMessage.p99, delivery.newMessage.p99.9, violations.a|b"
        );
        assert_eq!(
            lines[2],
            "| metric | baseline | current | change | change % | tolerance | result |"
        );
        assert_eq!(lines[3], "|---|---|---|---|---|---|---|");
        assert_eq!(
            lines[4],
            "| delivery.newMessage.p50 | 5.00ms | 15.0ms | +10.0ms | +200.0% | +25%:+2.00ms | REGRESSED |"
        );
        assert!(markdown.contains("| violations.a\\|b | 0 | 1 | +1 | new | +0%:+0 | REGRESSED |"));
        assert!(markdown.contains("<details><summary>All 6 compared metrics</summary>"));
        assert!(
            markdown.contains(
                "| delivery.newMessage.max | 10.0ms | 30.0ms | +20.0ms | +199.9% | not gated | - |"
            ),
            "{markdown}"
        );

        let clean = compare(&base, &base, &Tolerances::new()).render_markdown();
        assert!(clean.starts_with("### ✅ chorus compare: no regression (5 metrics compared)"));
    }

    #[test]
    fn latency_without_samples_is_not_gated() {
        let base = summary(10, &[]);
        let mut empty = base.clone();
        empty
            .latency
            .get_mut("delivery.newMessage")
            .expect("metric")
            .count = 0;
        let comparison = compare(&empty, &base, &Tolerances::new());
        assert!(!comparison.regressed());
        assert_eq!(comparison.rows[2].result_text(), "no data");
        assert_eq!(comparison.rows[2].change_text(), "-");
    }
}
