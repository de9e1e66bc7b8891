//! `report.html`: one self-contained page (inline CSS and SVG, no script,
//! no external resource) built from a run directory's files.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::markup::{
    connect_failure_line, escape_xml, json_text, node_rows, reconnect_line, threshold_value,
    NODE_HEADERS,
};
use super::run_dir::RunData;
use super::svg::{percentile_curve, render, Chart, Series, XAxis};
use crate::metrics::{
    format_ms, TimeSeries, Verdict, CPU_PERCENT, RSS_BYTES, RUNTIME_LAG, SCHEDULE_LAG,
    STORM_DISCONNECTS, STORM_RECONNECTS,
};

/// How many violation records the evidence table shows.
pub(crate) const MAX_VIOLATION_ROWS: usize = 50;

/// Section headings, in page order.
pub const SECTION_TITLES: [&str; 7] = [
    "Verdict and thresholds",
    "Latency percentile distribution",
    "Latency over time",
    "Clients, sends and deliveries",
    "Violations",
    "Driver self-health",
    "Scenario as run",
];

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:800px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}\
.pass{background:#2a7d2a}.fail{background:#b52a2a}.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c060}\
.chart{width:100%;height:auto}.chart text{font-size:11px;fill:#444}.chart .grid{stroke:#eee}\
.chart .line{fill:none;stroke-width:1.6;stroke-linecap:round;stroke-linejoin:round}.muted{color:#777;fill:#777}\
pre{background:#f6f6f6;padding:1em;overflow:auto}";

/// Whether a latency metric describes chorus itself rather than the target.
fn is_driver_latency(name: &str) -> bool {
    name.starts_with("driver.") || name == SCHEDULE_LAG
}

/// Renders the whole page.
pub(crate) fn render_html(run: &RunData) -> String {
    let summary = &run.summary;
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>chorus report: {}</title><style>{STYLE}</style></head><body>\n",
        escape_xml(&summary.scenario)
    );
    let _ = writeln!(
        out,
        "<h1>chorus report: {}</h1><p>Target <code>{}</code>, started {}, ran {:.1} s.</p>",
        escape_xml(&summary.scenario),
        escape_xml(&summary.target),
        escape_xml(&summary.started_at),
        summary.duration_s
    );
    let sections = [
        verdict_section(run),
        distribution_section(run),
        latency_over_time_section(run),
        traffic_section(run),
        violations_section(run),
        driver_section(run),
        scenario_section(run),
    ];
    for (title, body) in SECTION_TITLES.iter().zip(sections) {
        let _ = writeln!(out, "<section><h2>{title}</h2>\n{body}</section>");
    }
    out.push_str("</body></html>\n");
    out
}

fn badge(pass: bool) -> &'static str {
    if pass {
        "<span class=\"badge pass\">PASS</span>"
    } else {
        "<span class=\"badge fail\">FAIL</span>"
    }
}

fn verdict_section(run: &RunData) -> String {
    let summary = &run.summary;
    let mut out = format!(
        "<p>Verdict: {}</p>\n",
        badge(summary.verdict == Verdict::Pass)
    );
    if let Some(why) = &summary.aborted {
        let _ = writeln!(
            out,
            "<p class=\"warn\">Run stopped: {}</p>",
            escape_xml(why)
        );
    }
    if let Some(line) = connect_failure_line(summary) {
        let _ = writeln!(out, "<p class=\"warn\">{}</p>", escape_xml(&line));
    }
    if let Some(line) = reconnect_line(summary) {
        let _ = writeln!(out, "<p>{}</p>", escape_xml(&line));
    }
    if summary.driver.bottleneck {
        out.push_str("<p class=\"warn\">chorus itself was the bottleneck: see Driver self-health; latencies are not trustworthy.</p>\n");
    }
    if summary.thresholds.is_empty() {
        out.push_str("<p>No thresholds were set.</p>\n");
        return out;
    }
    out.push_str("<table><tr><th>threshold</th><th>measured</th><th>result</th></tr>\n");
    for threshold in &summary.thresholds {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape_xml(&threshold.expr),
            escape_xml(&threshold_value(summary, threshold)),
            badge(threshold.pass)
        );
    }
    out.push_str("</table>\n");
    out
}

fn ms_label(micros: f64) -> String {
    format!("{} ms", format_ms(micros))
}

fn distribution_section(run: &RunData) -> String {
    let summary = &run.summary;
    let mut out = String::from(
        "<table><tr><th>metric (ms)</th><th>count</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>\n",
    );
    for (name, s) in &summary.latency {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td>", escape_xml(name), s.count);
        if s.count == 0 {
            out.push_str(&"<td>-</td>".repeat(7));
        } else {
            for micros in [s.min_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us] {
                let _ = write!(out, "<td>{}</td>", format_ms(micros as f64));
            }
            let _ = write!(out, "<td>{}</td>", format_ms(s.mean_us));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let nodes = node_rows(summary);
    if !nodes.is_empty() {
        out.push_str("<h3>Nodes</h3>\n<table><tr>");
        for header in NODE_HEADERS {
            let _ = write!(out, "<th>{}</th>", escape_xml(header));
        }
        out.push_str("</tr>\n");
        for row in nodes {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{}</td>", escape_xml(&cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("<p class=\"muted\">Curves: the whole run's histogram rebuilt from <code>hdr/*.hlog</code>; x is the percentile on a log scale of 1/(1-p).</p>\n");
    // Metrics that saw no sample stay in the table; they get no chart, and
    // neither do the per-node metrics (the nodes table has them).
    let charted = run
        .histograms
        .iter()
        .filter(|(name, h)| !h.is_empty() && !name.starts_with(crate::metrics::NODE_PREFIX));
    for (name, histogram) in charted {
        let _ = writeln!(out, "<h3>{}</h3>", escape_xml(name));
        out.push_str(&render(&Chart {
            title: &format!("{name} percentile distribution"),
            x_axis: XAxis::Percentile,
            y_format: &ms_label,
            series: vec![Series {
                name: name.clone(),
                points: percentile_curve(histogram),
            }],
        }));
        out.push('\n');
    }
    if run.histograms.is_empty() {
        out.push_str("<p>No interval logs (<code>hdr/*.hlog</code>) in this run directory.</p>\n");
    }
    out
}

/// Points of one series over the time series, gaps where `value` is `None`.
fn over_time(
    series: &TimeSeries,
    value: impl Fn(&crate::metrics::TimePoint) -> Option<f64>,
) -> Vec<(f64, Option<f64>)> {
    series.points.iter().map(|p| (p.t_s, value(p))).collect()
}

/// The p50/p99/max-per-second series of a latency metric.
fn latency_series(series: &TimeSeries, name: &str) -> Vec<Series> {
    let stat = |label: &str, pick: fn(&crate::metrics::PointStats) -> u64| Series {
        name: label.to_string(),
        points: over_time(series, |p| p.latency.get(name).map(|s| pick(s) as f64)),
    };
    vec![
        stat("p50", |s| s.p50_us),
        stat("p99", |s| s.p99_us),
        stat("max", |s| s.max_us),
    ]
}

/// One series per counter of the series whose name `keep` accepts, with
/// each point's per-second rate (or count per interval when `per_interval`).
fn counter_series(
    series: &TimeSeries,
    keep: impl Fn(&str) -> bool,
    per_interval: bool,
) -> Vec<Series> {
    let names: BTreeSet<&String> = series
        .points
        .iter()
        .flat_map(|p| p.rates.keys())
        .filter(|name| keep(name))
        .collect();
    names
        .into_iter()
        .map(|name| Series {
            name: name.clone(),
            points: over_time(series, |p| {
                p.rates.get(name).map(|rate| {
                    if per_interval {
                        rate * p.duration_s
                    } else {
                        *rate
                    }
                })
            }),
        })
        .collect()
}

/// One series per gauge whose name `keep` accepts, scaled by `scale`.
fn gauge_series(series: &TimeSeries, keep: impl Fn(&str) -> bool, scale: f64) -> Vec<Series> {
    let names: BTreeSet<&String> = series
        .points
        .iter()
        .flat_map(|p| p.gauges.keys())
        .filter(|name| keep(name))
        .collect();
    names
        .into_iter()
        .map(|name| Series {
            name: name.clone(),
            points: over_time(series, |p| p.gauges.get(name).map(|v| v * scale)),
        })
        .collect()
}

fn chart(title: &str, y_format: &dyn Fn(f64) -> String, series: Vec<Series>) -> String {
    format!(
        "<h3>{}</h3>\n{}\n",
        escape_xml(title),
        render(&Chart {
            title,
            x_axis: XAxis::Seconds,
            y_format,
            series,
        })
    )
}

const NO_TIMESERIES: &str = "<p>No <code>timeseries.json</code> in this run directory.</p>\n";

fn plain(value: f64) -> String {
    format!("{value}")
}

fn latency_over_time_section(run: &RunData) -> String {
    let Some(series) = &run.timeseries else {
        return NO_TIMESERIES.to_string();
    };
    let mut out = String::new();
    let sampled = |name: &&String| run.summary.latency.get(*name).is_some_and(|s| s.count > 0);
    for name in run
        .summary
        .latency
        .keys()
        .filter(|n| !is_driver_latency(n))
        .filter(sampled)
    {
        out.push_str(&chart(name, &ms_label, latency_series(series, name)));
    }
    if out.is_empty() {
        out.push_str("<p>No latency metrics.</p>\n");
    }
    out
}

fn traffic_section(run: &RunData) -> String {
    let mut out = String::new();
    if let Some(series) = &run.timeseries {
        out.push_str(&chart(
            "Clients connected",
            &plain,
            gauge_series(series, |name| !name.starts_with("driver."), 1.0),
        ));
        out.push_str(&chart(
            "Sends and deliveries per second",
            &plain,
            counter_series(
                series,
                |name| {
                    ["emits", "deliveries"]
                        .iter()
                        .any(|family| name == *family || name.starts_with(&format!("{family}.")))
                },
                false,
            ),
        ));
        // The storm: present only in runs whose clients dropped or reconnect.
        let storm = counter_series(
            series,
            |name| name == STORM_DISCONNECTS || name == STORM_RECONNECTS,
            false,
        );
        if !storm.is_empty() {
            out.push_str(&chart(
                "Disconnects and reconnects per second",
                &plain,
                storm,
            ));
        }
    } else {
        out.push_str(NO_TIMESERIES);
    }
    out.push_str("<h3>Counters</h3>\n<table><tr><th>counter</th><th>total</th></tr>\n");
    for (name, total) in &run.summary.counters {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{total}</td></tr>",
            escape_xml(name)
        );
    }
    out.push_str("</table>\n");
    out
}

fn violations_section(run: &RunData) -> String {
    let summary = &run.summary;
    let total: u64 = summary.violations.values().sum();
    let mut out = String::new();
    if total == 0 && run.violations.is_empty() {
        out.push_str("<p>No violations.</p>\n");
    } else {
        out.push_str("<table><tr><th>kind</th><th>count</th></tr>\n");
        for (kind, n) in summary.violations.iter().filter(|(_, &n)| n > 0) {
            let _ = writeln!(out, "<tr><td>{}</td><td>{n}</td></tr>", escape_xml(kind));
        }
        out.push_str("</table>\n");
    }
    if let Some(series) = &run.timeseries {
        out.push_str(&chart(
            "Violations per interval",
            &plain,
            counter_series(series, |name| name.starts_with("violations."), true),
        ));
    }
    if !run.violations.is_empty() {
        let shown = run.violations.len().min(MAX_VIOLATION_ROWS);
        let _ = writeln!(
            out,
            "<h3>First violations</h3>\n<p class=\"muted\">{shown} of {} recorded.</p>\n<table><tr><th>t (s)</th><th>kind</th><th>client</th><th>event</th><th>expected</th><th>got</th></tr>",
            run.violations.len()
        );
        let json = |v: &serde_json::Value| escape_xml(&json_text(v));
        for v in &run.violations[..shown] {
            let _ = writeln!(
                out,
                "<tr><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                v.t_s,
                escape_xml(&v.kind),
                json(&v.client),
                escape_xml(v.event.as_deref().unwrap_or("")),
                json(&v.expected),
                json(&v.got)
            );
        }
        out.push_str("</table>\n");
    }
    out
}

fn driver_section(run: &RunData) -> String {
    let driver = &run.summary.driver;
    let mut out = format!(
        "<p>Bottleneck: {}. CPU max: {}. Runtime lag p99: {}.</p>\n",
        if driver.bottleneck {
            "<strong>yes</strong>"
        } else {
            "no"
        },
        driver
            .cpu_percent_max
            .map_or("not sampled".to_string(), |cpu| format!("{cpu:.1}%")),
        driver
            .runtime_lag_p99_us
            .map_or("not sampled".to_string(), |lag| ms_label(lag as f64)),
    );
    for note in &driver.notes {
        let _ = writeln!(out, "<p class=\"warn\">{}</p>", escape_xml(note));
    }
    let Some(series) = &run.timeseries else {
        out.push_str(NO_TIMESERIES);
        return out;
    };
    out.push_str(&chart(
        "CPU (percent of one core)",
        &plain,
        gauge_series(series, |name| name == CPU_PERCENT, 1.0),
    ));
    let mut lag = latency_series(series, RUNTIME_LAG);
    lag.retain(|s| s.name != "p50");
    for s in &mut lag {
        s.name = format!("runtime lag {}", s.name);
    }
    if run.summary.latency.contains_key(SCHEDULE_LAG) {
        lag.extend(
            latency_series(series, SCHEDULE_LAG)
                .into_iter()
                .filter(|s| s.name == "p99")
                .map(|mut s| {
                    s.name = "schedule lag p99".into();
                    s
                }),
        );
    }
    out.push_str(&chart("Runtime lag", &ms_label, lag));
    out.push_str(&chart(
        "Memory (resident, MB)",
        &plain,
        gauge_series(series, |name| name == RSS_BYTES, 1.0 / 1_048_576.0),
    ));
    out
}

fn scenario_section(run: &RunData) -> String {
    match &run.scenario {
        Some(text) => format!("<pre>{}</pre>\n", escape_xml(text)),
        None => "<p>No <code>scenario.yml</code> in this run directory.</p>\n".to_string(),
    }
}
