//! Escaping and number formatting shared by the HTML, Markdown, JUnit and
//! text renderings.

use crate::metrics::{format_ms, Summary, ThresholdResult};

/// Escapes text for HTML and XML content and attribute values.
pub(crate) fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A JSON value as text: strings as they are, other values as JSON, `null` as nothing.
pub(crate) fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Makes text safe inside a Markdown table cell: pipes escaped, newlines flattened.
pub(crate) fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// Formats a plain number: integers without decimals, others to 4 places.
pub(crate) fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

/// The failed connects of a run by reason (`errors.connect.<reason>`
/// counters above 0), most frequent first, and their total.
pub(crate) fn connect_failures(summary: &Summary) -> (u64, Vec<(&str, u64)>) {
    let mut reasons: Vec<(&str, u64)> = summary
        .counters
        .iter()
        .filter_map(|(name, &n)| {
            let reason = name.strip_prefix("errors.connect.")?;
            (n > 0).then_some((reason, n))
        })
        .collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    (reasons.iter().map(|r| r.1).sum(), reasons)
}

/// The per-node table's column headers (see [`node_rows`]).
pub(crate) const NODE_HEADERS: [&str; 7] = [
    "node",
    "url",
    "connected",
    "connect p50 (ms)",
    "connect p99 (ms)",
    "delivery p99 (ms)",
    "received from other nodes",
];

/// One row per node of a run spread over several (none for one node):
/// connects, connect latency, the first `delivery.*` metric's p99, and the
/// correlated messages its clients got from senders on other nodes.
pub(crate) fn node_rows(summary: &Summary) -> Vec<[String; 7]> {
    if summary.nodes.len() < 2 {
        return Vec::new();
    }
    let ms = |s: Option<&crate::metrics::LatencyStats>, p99: bool| match s {
        Some(s) if s.count > 0 => format_ms((if p99 { s.p99_us } else { s.p50_us }) as f64),
        _ => "-".to_owned(),
    };
    summary
        .nodes
        .iter()
        .map(|n| {
            let connect = n.latency.get("connect");
            let delivery = n
                .latency
                .iter()
                .find(|(name, _)| name.starts_with("delivery."))
                .map(|(_, s)| s);
            let crossed: u64 = n
                .counters
                .iter()
                .filter(|(name, _)| {
                    name.strip_prefix("received_from.")
                        .is_some_and(|from| from != n.node.to_string())
                })
                .map(|(_, v)| v)
                .sum();
            [
                n.node.to_string(),
                n.url.clone(),
                n.counters
                    .get("connections.ok")
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
                ms(connect, false),
                ms(connect, true),
                ms(delivery, true),
                crossed.to_string(),
            ]
        })
        .collect()
}

/// One line about failed connects, e.g. `100 of 100 connects failed:
/// refused.INVALID_TOKEN 100`; `None` when none failed.
pub(crate) fn connect_failure_line(summary: &Summary) -> Option<String> {
    let (failed, reasons) = connect_failures(summary);
    if failed == 0 {
        return None;
    }
    let attempts = summary
        .counters
        .get("connections")
        .copied()
        .unwrap_or(failed);
    let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    Some(format!(
        "{failed} of {attempts} connects failed: {}",
        list.join(", ")
    ))
}

/// The reconnection storm in one line, for a run whose clients reconnect:
/// sessions dropped, tries, how many came back and gave up, and how long
/// coming back took.
pub(crate) fn reconnect_line(summary: &Summary) -> Option<String> {
    let count = |name: &str| summary.counters.get(name).copied().unwrap_or(0);
    let attempted = *summary.counters.get("reconnects.attempted")?;
    let dropped: u64 = summary
        .counters
        .iter()
        .filter(|(name, _)| {
            name.starts_with("disconnects.")
                && !matches!(
                    name.as_str(),
                    "disconnects.client" | "disconnects.server_namespace"
                )
        })
        .map(|(_, n)| n)
        .sum();
    let mut line = format!(
        "reconnection: {dropped} sessions dropped, {attempted} tries, {} back, {} gave up",
        count("reconnects.succeeded"),
        count("reconnects.exhausted")
    );
    if let Some(s) = summary.latency.get("reconnect").filter(|s| s.count > 0) {
        line.push_str(&format!(
            "; reconnect p50 {} ms, p99 {} ms",
            format_ms(s.p50_us as f64),
            format_ms(s.p99_us as f64)
        ));
    }
    Some(line)
}

/// The measured value of a threshold for display: milliseconds when the
/// threshold looks at a latency statistic (other than `count`), a plain
/// number otherwise, `no data` when the metric had no samples for it, `no
/// value` when it could not be resolved.
pub(crate) fn threshold_value(summary: &Summary, threshold: &ThresholdResult) -> String {
    if threshold.no_data {
        return "no data".to_string();
    }
    let Some(value) = threshold.value else {
        return "no value".to_string();
    };
    let target = threshold
        .expr
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap_or_default();
    let is_latency = summary.latency.keys().any(|metric| {
        target
            .strip_prefix(metric.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|stat| stat != "count")
    });
    if is_latency {
        format!("{} ms", format_ms(value))
    } else {
        format_number(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_table_cells() {
        assert_eq!(
            escape_xml(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(md_cell("a | b\nc"), "a \\| b c");
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.25), "0.2500");
        assert_eq!(json_text(&serde_json::json!("a\"b")), "a\"b");
        assert_eq!(json_text(&serde_json::json!({"k": 1})), "{\"k\":1}");
        assert_eq!(json_text(&serde_json::Value::Null), "");
    }

    #[test]
    fn node_metrics_make_one_row_per_node_and_stay_out_of_the_globals() {
        let registry = crate::metrics::Registry::new();
        let recorder = registry.recorder();
        for node in 0..2u64 {
            let connect = registry.latency(&format!("node.{node}.connect"));
            recorder.record(connect, 1_000 * (node + 1));
            recorder.add_by_name(&format!("node.{node}.connections.ok"), 3 + node);
            recorder.add_by_name(&format!("node.{node}.received_from.{}", 1 - node), 7);
            recorder.add_by_name(&format!("node.{node}.received_from.{node}"), 100);
        }
        registry.collect_interval(std::time::Instant::now());
        let mut summary = Summary::from_cumulative(
            &registry.cumulative(),
            crate::metrics::RunInfo {
                scenario: "t".into(),
                target: "a, b".into(),
                started_at: std::time::SystemTime::UNIX_EPOCH,
                duration: std::time::Duration::from_secs(1),
            },
            1,
        );
        assert!(summary.latency.is_empty() && summary.counters.is_empty());
        summary.name_nodes(&["http://a".into(), "http://b".into()]);
        let rows = node_rows(&summary);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].clone().map(|c| c.to_string()),
            ["1", "http://b", "4", "2.00", "2.00", "-", "7"].map(String::from)
        );
        // One node: no table.
        summary.nodes.truncate(1);
        assert!(node_rows(&summary).is_empty());
    }

    #[test]
    fn threshold_values_use_milliseconds_for_latency_stats_only() {
        let registry = crate::metrics::Registry::new();
        let recorder = registry.recorder();
        recorder.record(registry.latency("delivery.newMessage"), 4_250);
        registry.latency("connect");
        recorder.add_by_name("errors.ack", 2);
        registry.collect_interval(std::time::Instant::now());
        let mut summary = Summary::from_cumulative(
            &registry.cumulative(),
            crate::metrics::RunInfo {
                scenario: "t".into(),
                target: "t".into(),
                started_at: std::time::SystemTime::UNIX_EPOCH,
                duration: std::time::Duration::from_secs(1),
            },
            1,
        );
        let d = "delivery.newMessage";
        summary.evaluate("delivery.newMessage.p99 < 5ms", d, Some("p99"), |_| true);
        summary.evaluate("delivery.newMessage.count > 0", d, Some("count"), |_| true);
        summary.evaluate("errors: == 0", "errors", None, |_| false);
        summary.evaluate("nope == 0", "nope", None, |_| false);
        summary.evaluate("connect.p95 < 1ms", "connect", Some("p95"), |_| true);
        let shown: Vec<String> = summary
            .thresholds
            .iter()
            .map(|t| threshold_value(&summary, t))
            .collect();
        assert_eq!(shown, ["4.25 ms", "1", "2", "no value", "no data"]);
    }
}
