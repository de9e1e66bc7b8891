//! Prometheus text exposition (format 0.0.4) of the cumulative metrics, for
//! a live `--metrics-addr` endpoint. Metric names of chorus are dynamic and
//! contain dots, so they travel as label values of three fixed families
//! (exact, and free of name-sanitising collisions):
//!
//! ```text
//! # TYPE chorus_latency_microseconds summary
//! chorus_latency_microseconds{metric="connect",quantile="0.5"} 812
//! chorus_latency_microseconds_sum{metric="connect"} 95000
//! chorus_latency_microseconds_count{metric="connect"} 100
//! # TYPE chorus_counter_total counter
//! chorus_counter_total{name="errors.connect"} 2
//! # TYPE chorus_gauge gauge
//! chorus_gauge{name="driver.cpu_percent"} 37.5
//! ```

use std::fmt::Write as _;

use super::registry::Cumulative;

/// Quantiles exported per latency metric.
const QUANTILES: [(f64, &str); 2] = [(0.5, "0.5"), (0.99, "0.99")];

/// Renders counters, gauges and latency p50/p99 (cumulative, as of the last
/// collection) in the Prometheus text format.
pub fn render_prometheus(cumulative: &Cumulative) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP chorus_elapsed_seconds Time from the start of the run to the last collection.\n",
    );
    out.push_str("# TYPE chorus_elapsed_seconds gauge\n");
    let _ = writeln!(
        out,
        "chorus_elapsed_seconds {}",
        cumulative.elapsed.as_secs_f64()
    );

    out.push_str(
        "# HELP chorus_latency_microseconds Latency since the start of the run, by metric.\n",
    );
    out.push_str("# TYPE chorus_latency_microseconds summary\n");
    for latency in &cumulative.latencies {
        let metric = escape_label(&latency.name);
        let histogram = &latency.histogram;
        for (quantile, label) in QUANTILES {
            let value = if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(quantile)
            };
            let _ = writeln!(
                out,
                "chorus_latency_microseconds{{metric=\"{metric}\",quantile=\"{label}\"}} {value}"
            );
        }
        let sum = (histogram.mean() * histogram.len() as f64).round();
        let _ = writeln!(
            out,
            "chorus_latency_microseconds_sum{{metric=\"{metric}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "chorus_latency_microseconds_count{{metric=\"{metric}\"}} {}",
            histogram.len()
        );
    }

    out.push_str("# HELP chorus_counter_total Counters since the start of the run, by name.\n");
    out.push_str("# TYPE chorus_counter_total counter\n");
    for counter in &cumulative.counters {
        let _ = writeln!(
            out,
            "chorus_counter_total{{name=\"{}\"}} {}",
            escape_label(&counter.name),
            counter.total
        );
    }

    out.push_str("# HELP chorus_gauge Last value of each gauge, by name.\n");
    out.push_str("# TYPE chorus_gauge gauge\n");
    for gauge in &cumulative.gauges {
        let _ = writeln!(
            out,
            "chorus_gauge{{name=\"{}\"}} {}",
            escape_label(&gauge.name),
            gauge.last
        );
    }
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::registry::Registry;
    use std::collections::{BTreeMap, HashMap};
    use std::time::Instant;

    /// One parsed sample line.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses `{k="v",...}` with escapes; returns the labels and the rest.
    fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
        let mut labels = BTreeMap::new();
        let mut rest = text.strip_prefix('{').expect("{");
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                return (labels, after);
            }
            let (key, after) = rest.split_once("=\"").expect("label=\"");
            assert!(valid_name(key), "label name {key}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("closing quote");
                match c {
                    '"' => break i,
                    '\\' => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            };
            labels.insert(key.to_string(), value);
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// Parses the exposition line by line, checking every line's syntax and
    /// that each sample belongs to a family declared by a TYPE line.
    fn parse(text: &str) -> Vec<Sample> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut parts = comment.splitn(3, ' ');
                let keyword = parts.next().expect("keyword");
                let name = parts.next().expect("name");
                let rest = parts.next().expect("text");
                assert!(valid_name(name), "{line}");
                match keyword {
                    "HELP" => {}
                    "TYPE" => {
                        assert!(["counter", "gauge", "summary"].contains(&rest), "{line}");
                        types.insert(name.to_string(), rest.to_string());
                    }
                    other => panic!("unknown comment {other}: {line}"),
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("sample");
            let name = &line[..name_end];
            assert!(valid_name(name), "{line}");
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let value: f64 = rest.trim().parse().expect("numeric value");
            let family = name
                .strip_suffix("_sum")
                .or_else(|| name.strip_suffix("_count"))
                .filter(|f| types.get(*f).is_some_and(|t| t == "summary"))
                .unwrap_or(name);
            assert!(types.contains_key(family), "no TYPE for {name}");
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        samples
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    #[test]
    fn exposition_parses_line_by_line() {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let connect = registry.latency("connect");
        registry.latency("ack.\"odd\"\\name");
        for v in 1..=100 {
            recorder.record(connect, v * 100);
        }
        recorder.add_by_name("errors.connect", 2);
        recorder.set_gauge(registry.gauge("driver.cpu_percent"), 37.5);
        registry.collect_interval(Instant::now());

        let text = render_prometheus(&registry.cumulative());
        let samples = parse(&text);
        let latency = "chorus_latency_microseconds";
        // HdrHistogram reports the highest value equivalent to the sample
        // (3 significant digits): 5000 -> 5003, 9900 -> 9903.
        let p50 = find(
            &samples,
            latency,
            &[("metric", "connect"), ("quantile", "0.5")],
        )
        .value;
        assert!((5000.0..=5004.0).contains(&p50), "{p50}");
        let p99 = find(
            &samples,
            latency,
            &[("metric", "connect"), ("quantile", "0.99")],
        )
        .value;
        assert!((9900.0..=9908.0).contains(&p99), "{p99}");
        assert_eq!(
            find(
                &samples,
                "chorus_latency_microseconds_count",
                &[("metric", "connect")]
            )
            .value,
            100.0
        );
        let sum = find(
            &samples,
            "chorus_latency_microseconds_sum",
            &[("metric", "connect")],
        )
        .value;
        assert!((504_000.0..=506_000.0).contains(&sum), "{sum}");
        // The escaped label value survives the round trip.
        assert_eq!(
            find(
                &samples,
                "chorus_latency_microseconds_count",
                &[("metric", "ack.\"odd\"\\name")]
            )
            .value,
            0.0
        );
        assert_eq!(
            find(
                &samples,
                "chorus_counter_total",
                &[("name", "errors.connect")]
            )
            .value,
            2.0
        );
        assert_eq!(
            find(&samples, "chorus_gauge", &[("name", "driver.cpu_percent")]).value,
            37.5
        );
        assert!(text.ends_with('\n'));
    }
}
