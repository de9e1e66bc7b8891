//! `summary.json`: the versioned end-of-run contract that CI jobs parse.
//!
//! ```json
//! {"schema": 1, "scenario": "smoke", "target": "http://127.0.0.1:3000",
//!  "verdict": "pass", "duration_s": 30.0, "started_at": "2025-03-01T12:00:00.000Z",
//!  "thresholds": [{"expr": "delivery.newMessage.p99 < 50ms", "value": 4031.0, "pass": true}],
//!  "latency": {"delivery.newMessage": {"count": 1, "min_us": 1, "p50_us": 1, "p90_us": 1,
//!              "p99_us": 1, "p999_us": 1, "max_us": 1, "mean_us": 1.0}},
//!  "counters": {"emits": 10}, "violations": {"ack_without_id": 0},
//!  "driver": {"bottleneck": false, "cpu_percent_max": 35.0, "runtime_lag_p99_us": 120,
//!             "rx_timestamps": "kernel", "read_delay_p99_us": 85, "notes": []}}
//! ```
//!
//! Counters named `violations.<kind>` appear under `violations` (as
//! `<kind>`), every other counter under `counters`, zeros included. The
//! per-node metrics of a run over several nodes (`node.<i>.<name>`) appear
//! under `nodes`, one entry per node, and nowhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::error::MetricsError;
use super::health::{assess, DriverReport};
use super::json_file::{read_json, write_json};
use super::registry::{Cumulative, Registry};
use super::rfc3339;
use crate::error::JsonFileError;

/// The `schema` number this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// File name of the summary inside a run directory.
const SUMMARY_FILE: &str = "summary.json";

/// Prefix of the counters reported under `violations`.
const VIOLATION_PREFIX: &str = "violations.";

/// Counter families that resolve to 0 in [`Summary::value`] when no counter
/// of the family was ever registered (errors are registered lazily, on the
/// first error); any other unknown name resolves to nothing.
const COUNTER_FAMILIES: &[&str] = &[
    "connections",
    "emits",
    "deliveries",
    "errors",
    "timeouts",
    "disconnects",
    "violations",
];

/// Denominator of a `rate`/`ratio` lookup, by the metric's first segment.
const RATIO_DENOMINATORS: &[(&str, &str)] = &[
    ("deliveries", "deliveries.expected"),
    ("connections", "connections"),
    ("errors", "emits"),
    ("timeouts", "emits"),
];

/// Whether every threshold held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// All thresholds held (or there were none).
    Pass,
    /// At least one threshold failed or could not be evaluated.
    Fail,
}

/// One evaluated threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The threshold as written, e.g. `delivery.newMessage.p99 < 50ms`.
    pub expr: String,
    /// The measured value (µs for latencies); `null` if it could not be resolved.
    pub value: Option<f64>,
    /// Whether the threshold held.
    pub pass: bool,
    /// The metric exists but had no samples to compute the statistic from
    /// (see [`Lookup::NoData`]): the threshold failed with "no data".
    #[serde(default)]
    pub no_data: bool,
}

/// What a threshold lookup found (see [`Summary::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup {
    /// A number to compare.
    Value(f64),
    /// The metric is known but the statistic has no samples to come from: a
    /// percentile, `min`, `max` or `mean` of a latency with no sample, or a
    /// `rate`/`ratio` whose denominator is 0. Such a threshold fails.
    NoData,
    /// No such metric or statistic.
    Unknown,
}

impl Lookup {
    /// The number, if there is one.
    pub fn value(self) -> Option<f64> {
        match self {
            Lookup::Value(v) => Some(v),
            Lookup::NoData | Lookup::Unknown => None,
        }
    }
}

/// Statistics of one latency metric over the whole run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample.
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl LatencyStats {
    /// Statistics of a histogram (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            min_us: histogram.min(),
            p50_us: histogram.value_at_quantile(0.5),
            p90_us: histogram.value_at_quantile(0.9),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

/// Facts about the run that the registry does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Scenario name.
    pub scenario: String,
    /// Target URL, or a description of the embedded gateway.
    pub target: String,
    /// Wall-clock start of the run.
    pub started_at: SystemTime,
    /// How long the run lasted.
    pub duration: Duration,
}

/// One node of a run spread over several (see [`Summary::nodes`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// Its index in the target list.
    pub node: u8,
    /// Its URL.
    pub url: String,
    /// Its latency metrics (`connect`, `delivery.<event>`).
    pub latency: BTreeMap<String, LatencyStats>,
    /// Its counters (`connections.ok`, `received_from.<node>`).
    pub counters: BTreeMap<String, u64>,
}

/// `node.<i>.<rest>`: the node index and the rest.
fn node_metric(name: &str) -> Option<(u8, &str)> {
    let (index, rest) = name.strip_prefix(NODE_PREFIX)?.split_once('.')?;
    Some((index.parse().ok()?, rest))
}

/// The prefix of the per-node metrics (`node.<i>.<name>`).
pub const NODE_PREFIX: &str = "node.";

/// The end-of-run summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Scenario name.
    pub scenario: String,
    /// Target URL.
    pub target: String,
    /// `pass` when every threshold held.
    pub verdict: Verdict,
    /// Run length in seconds.
    pub duration_s: f64,
    /// RFC 3339 start of the run.
    pub started_at: String,
    /// Evaluated thresholds, in evaluation order.
    pub thresholds: Vec<ThresholdResult>,
    /// Every latency metric.
    pub latency: BTreeMap<String, LatencyStats>,
    /// Every counter except violations.
    pub counters: BTreeMap<String, u64>,
    /// Protocol violations by kind.
    pub violations: BTreeMap<String, u64>,
    /// Driver self-health.
    pub driver: DriverReport,
    /// Why the run was stopped or could not be carried out, in one line
    /// (interrupted by a signal, no client could connect, a threshold
    /// breached with `abort_on_fail`, the target unreachable); absent for a
    /// run that went to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// Per node, for a run spread over several nodes: the `node.<i>.*`
    /// metrics (`connect`, `delivery.<event>`, `connections.ok`,
    /// `received_from.<j>`), kept out of `latency` and `counters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeSummary>,
    /// Full histograms when built from a registry, for quantiles that the
    /// JSON does not store (e.g. p95). Absent after [`Summary::read`].
    #[serde(skip)]
    histograms: BTreeMap<String, Histogram<u64>>,
}

impl Summary {
    /// Summarises everything the registry collected (call
    /// [`Registry::collect_interval`] one last time first, so the final
    /// partial interval is included), with the driver section assessed for
    /// this machine's core count. The verdict is `pass` until a threshold
    /// fails (see [`Summary::evaluate`]).
    pub fn from_registry(registry: &Registry, info: RunInfo) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::from_cumulative(&registry.cumulative(), info, cores)
    }

    /// Like [`Summary::from_registry`], from an already taken cumulative
    /// view and an explicit core count.
    pub fn from_cumulative(cumulative: &Cumulative, info: RunInfo, cores: usize) -> Self {
        let mut counters = BTreeMap::new();
        let mut violations = BTreeMap::new();
        let mut nodes: BTreeMap<u8, NodeSummary> = BTreeMap::new();
        for counter in &cumulative.counters {
            if let Some((index, rest)) = node_metric(&counter.name) {
                let node = nodes.entry(index).or_default();
                node.counters.insert(rest.to_owned(), counter.total);
                continue;
            }
            match counter.name.strip_prefix(VIOLATION_PREFIX) {
                Some(kind) => violations.insert(kind.to_string(), counter.total),
                None => counters.insert(counter.name.to_string(), counter.total),
            };
        }
        let mut histograms: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        for l in &cumulative.latencies {
            match node_metric(&l.name) {
                Some((index, rest)) => {
                    let node = nodes.entry(index).or_default();
                    node.latency
                        .insert(rest.to_owned(), LatencyStats::of(&l.histogram));
                }
                None => {
                    histograms.insert(l.name.to_string(), l.histogram.clone());
                }
            }
        }
        let nodes = nodes
            .into_iter()
            .map(|(index, mut node)| {
                node.node = index;
                node
            })
            .collect();
        Self {
            schema: SCHEMA_VERSION,
            scenario: info.scenario,
            target: info.target,
            verdict: Verdict::Pass,
            duration_s: info.duration.as_secs_f64(),
            started_at: rfc3339::format(info.started_at),
            thresholds: Vec::new(),
            latency: histograms
                .iter()
                .map(|(name, h)| (name.clone(), LatencyStats::of(h)))
                .collect(),
            counters,
            violations,
            driver: assess(cumulative, cores),
            aborted: None,
            nodes,
            histograms,
        }
    }

    /// Names the nodes of [`Summary::nodes`] by their URLs (`urls[i]` for node `i`).
    pub fn name_nodes(&mut self, urls: &[String]) {
        for node in &mut self.nodes {
            if let Some(url) = urls.get(usize::from(node.node)) {
                node.url.clone_from(url);
            }
        }
    }

    /// Evaluates one threshold: resolves `(metric, stat)` with
    /// [`Summary::lookup`], applies `check` to the value (no data, or a
    /// value that cannot be resolved, fails), records the result and updates
    /// the verdict. Returns whether it held.
    pub fn evaluate(
        &mut self,
        expr: impl Into<String>,
        metric: &str,
        stat: Option<&str>,
        check: impl FnOnce(f64) -> bool,
    ) -> bool {
        let found = self.lookup(metric, stat);
        let value = found.value();
        let pass = value.is_some_and(check);
        self.thresholds.push(ThresholdResult {
            expr: expr.into(),
            value,
            pass,
            no_data: found == Lookup::NoData,
        });
        if !pass {
            self.verdict = Verdict::Fail;
        }
        pass
    }

    /// Resolves a threshold lookup to a number.
    ///
    /// 1. `metric` naming a latency metric: `stat` is one of `count`, `min`,
    ///    `max`, `mean`, `p50`/`median`, `p90`, `p99`, `p99.9`/`p999`, in µs
    ///    (count as a number); any other `p<percentile>` (e.g. `p95`,
    ///    `p99.99`) is computed from the full histogram, available only on a
    ///    summary built from a registry. A latency without a stat is `None`.
    /// 2. Otherwise `metric` is a counter or a counter prefix: the exact
    ///    counter plus every counter below it (`errors` sums `errors.*`,
    ///    `violations` sums every violation kind). Unknown names are `None`,
    ///    except those of the families `connections`, `emits`, `deliveries`,
    ///    `errors`, `timeouts`, `disconnects`, `violations`, which are 0.
    ///    - no stat or `count`: that sum;
    ///    - `rate` or `ratio`: that sum divided by the family's denominator:
    ///      `deliveries.*` by `deliveries.expected`, `connections.*` by
    ///      `connections` (attempts), `errors*` and `timeouts*` by `emits`.
    ///      n/0 (0/0 included) and families without a denominator are `None`.
    ///
    /// [`Summary::lookup`] tells a statistic without samples from an unknown one.
    pub fn value(&self, metric: &str, stat: Option<&str>) -> Option<f64> {
        self.lookup(metric, stat).value()
    }

    /// Resolves a threshold lookup as [`Summary::value`] does, saying why
    /// there is no number: the no-data rule. A threshold about a count
    /// itself always has data (a counter, with or without `count`, and a
    /// latency's `count`: 0 is a measurement). Every other statistic needs
    /// samples: a latency's percentiles, `min`, `max` and `mean` are
    /// [`Lookup::NoData`] when it has none, and so is a `rate`/`ratio`
    /// whose denominator is 0.
    pub fn lookup(&self, metric: &str, stat: Option<&str>) -> Lookup {
        if let Some(stats) = self.latency.get(metric) {
            let Some(stat) = stat else {
                return Lookup::Unknown;
            };
            return match self.latency_value(metric, stats, stat) {
                None => Lookup::Unknown,
                Some(v) if stat == "count" => Lookup::Value(v),
                Some(_) if stats.count == 0 => Lookup::NoData,
                Some(v) => Lookup::Value(v),
            };
        }
        let Some(count) = self.counter_sum(metric) else {
            return Lookup::Unknown;
        };
        match stat {
            None | Some("count") => Lookup::Value(count as f64),
            Some("rate" | "ratio") => {
                let family = metric.split('.').next().unwrap_or(metric);
                let Some((_, denominator)) = RATIO_DENOMINATORS.iter().find(|(f, _)| *f == family)
                else {
                    return Lookup::Unknown;
                };
                match self.counter_sum(denominator) {
                    None => Lookup::Unknown,
                    Some(0) => Lookup::NoData,
                    Some(total) => Lookup::Value(count as f64 / total as f64),
                }
            }
            Some(_) => Lookup::Unknown,
        }
    }

    fn latency_value(&self, metric: &str, stats: &LatencyStats, stat: &str) -> Option<f64> {
        let value = match stat {
            "count" => stats.count,
            "min" => stats.min_us,
            "max" => stats.max_us,
            "mean" => return Some(stats.mean_us),
            "p50" | "median" => stats.p50_us,
            "p90" => stats.p90_us,
            "p99" => stats.p99_us,
            "p99.9" | "p999" => stats.p999_us,
            other => {
                let percentile: f64 = other.strip_prefix('p')?.parse().ok()?;
                if !(0.0..=100.0).contains(&percentile) {
                    return None;
                }
                self.histograms
                    .get(metric)?
                    .value_at_quantile(percentile / 100.0)
            }
        };
        Some(value as f64)
    }

    /// Sum of counter `name` and every counter below it, including violations.
    fn counter_sum(&self, name: &str) -> Option<u64> {
        let below = format!("{name}.");
        let mut found = false;
        let mut sum = 0u64;
        let counters = self.counters.iter().map(|(k, &v)| (k.clone(), v));
        let violations = self
            .violations
            .iter()
            .map(|(k, &v)| (format!("{VIOLATION_PREFIX}{k}"), v));
        for (counter, value) in counters.chain(violations) {
            if counter == name || counter.starts_with(&below) {
                found = true;
                sum = sum.saturating_add(value);
            }
        }
        let family = name.split('.').next().unwrap_or(name);
        (found || COUNTER_FAMILIES.contains(&family)).then_some(sum)
    }

    /// Writes the summary to `path`, or to `<path>/summary.json` when `path`
    /// is a directory, and returns the file written.
    pub fn write(&self, path: &Path) -> Result<PathBuf, MetricsError> {
        let file = summary_file(path);
        write_json(&file, self)?;
        Ok(file)
    }

    /// Reads a summary from a `summary.json` file or a run directory,
    /// refusing other schema versions.
    pub fn read(path: &Path) -> Result<Self, MetricsError> {
        let file = summary_file(path);
        let document: serde_json::Value = read_json(&file)?;
        let found = document.get("schema").and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(SCHEMA_VERSION)) {
            return Err(MetricsError::UnsupportedSchema {
                path: file,
                found: found.and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
                expected: SCHEMA_VERSION,
            });
        }
        serde_json::from_value(document).map_err(|e| JsonFileError::new(file, e).into())
    }
}

fn summary_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(SUMMARY_FILE)
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::registry::Registry;
    use std::collections::BTreeSet;
    use std::time::{Instant, UNIX_EPOCH};

    /// A summary over known data, shared with the table tests.
    pub(crate) fn sample_summary() -> Summary {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let delivery = registry.latency("delivery.newMessage");
        for v in 1..=1000u64 {
            recorder.record(delivery, v * 10); // 10 µs .. 10 ms
        }
        registry.latency("connect");
        for (name, n) in [
            ("deliveries.expected", 1000),
            ("deliveries.received", 990),
            ("deliveries.lost", 10),
            ("emits", 200),
            ("errors.connect", 2),
            ("errors.ack", 3),
            ("timeouts.ack", 0),
            ("violations.bad_packet", 4),
        ] {
            recorder.add_by_name(name, n);
        }
        registry.collect_interval(Instant::now());
        Summary::from_cumulative(
            &registry.cumulative(),
            RunInfo {
                scenario: "smoke".into(),
                target: "http://127.0.0.1:3000".into(),
                started_at: UNIX_EPOCH + Duration::from_secs(1_735_689_599),
                duration: Duration::from_millis(30_500),
            },
            2,
        )
    }

    fn keys(value: &serde_json::Value) -> BTreeSet<&str> {
        value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn summary_json_has_the_contract_shape_and_round_trips() {
        let mut summary = sample_summary();
        summary.evaluate("errors == 0", "errors", None, |v| v == 0.0);
        let dir = std::env::temp_dir().join(format!("chorus-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = summary.write(&dir).expect("write");
        assert_eq!(file, dir.join("summary.json"));

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        let top: BTreeSet<&str> = [
            "schema",
            "scenario",
            "target",
            "verdict",
            "duration_s",
            "started_at",
            "thresholds",
            "latency",
            "counters",
            "violations",
            "driver",
        ]
        .into();
        assert_eq!(keys(&json), top);
        assert_eq!(json["schema"], 1);
        assert_eq!(json["verdict"], "fail");
        assert_eq!(json["started_at"], "2024-12-31T23:59:59.000Z");
        assert_eq!(json["duration_s"], 30.5);
        assert_eq!(
            keys(&json["thresholds"][0]),
            ["expr", "value", "pass", "no_data"].into()
        );
        assert_eq!(json["thresholds"][0]["value"], 5.0);
        assert_eq!(
            keys(&json["latency"]["delivery.newMessage"]),
            ["count", "min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"]
                .into()
        );
        assert_eq!(json["latency"]["delivery.newMessage"]["count"], 1000);
        assert_eq!(json["counters"]["errors.connect"], 2);
        assert_eq!(json["counters"]["timeouts.ack"], 0);
        assert_eq!(json["violations"]["bad_packet"], 4);
        assert!(json["counters"].get("violations.bad_packet").is_none());
        assert_eq!(
            keys(&json["driver"]),
            [
                "bottleneck",
                "cpu_percent_max",
                "runtime_lag_p99_us",
                "rx_timestamps",
                "rx_timestamps_reason",
                "read_delay_p99_us",
                "notes"
            ]
            .into()
        );

        let back = Summary::read(&file).expect("read file");
        let again = Summary::read(&dir).expect("read dir");
        assert_eq!(serde_json::to_value(&back).expect("v"), json);
        assert_eq!(serde_json::to_value(&again).expect("v"), json);

        std::fs::write(&file, r#"{"schema": 2, "anything": true}"#).expect("write");
        assert!(matches!(
            Summary::read(&dir),
            Err(MetricsError::UnsupportedSchema { found: 2, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn value_resolution_rules() {
        let summary = sample_summary();
        let d = "delivery.newMessage";
        let p99 = summary.value(d, Some("p99")).expect("p99");
        assert!((9_900.0..=9_910.0).contains(&p99), "{p99}");
        assert_eq!(summary.value(d, Some("count")), Some(1000.0));
        assert_eq!(summary.value(d, Some("min")), Some(10.0));
        // p95 comes from the full histogram.
        let p95 = summary.value(d, Some("p95")).expect("p95");
        assert!((9_490.0..=9_510.0).contains(&p95), "{p95}");
        assert_eq!(summary.value(d, None), None);
        assert_eq!(summary.value(d, Some("p101")), None);
        assert_eq!(summary.value(d, Some("bogus")), None);

        // Counters, prefixes and families.
        assert_eq!(summary.value("errors", None), Some(5.0));
        assert_eq!(summary.value("errors", Some("count")), Some(5.0));
        assert_eq!(summary.value("errors.ack", None), Some(3.0));
        assert_eq!(summary.value("violations", None), Some(4.0));
        assert_eq!(summary.value("violations.bad_packet", None), Some(4.0));
        assert_eq!(summary.value("disconnects", None), Some(0.0));
        assert_eq!(summary.value("nonsense", None), None);

        // Ratios.
        assert_eq!(summary.value("deliveries.lost", Some("rate")), Some(0.01));
        assert_eq!(
            summary.value("deliveries.received", Some("ratio")),
            Some(0.99)
        );
        assert_eq!(summary.value("errors", Some("rate")), Some(5.0 / 200.0));
        // 0/0 has no data (it used to be 0, which let a run without any
        // connection pass `connections.refused.rate < 1%`).
        assert_eq!(summary.value("connections", Some("rate")), None);
        assert_eq!(summary.lookup("connections", Some("rate")), Lookup::NoData);
        assert_eq!(summary.value("violations", Some("rate")), None);
        assert_eq!(summary.lookup("violations", Some("rate")), Lookup::Unknown);

        // After a read from JSON, stored stats still resolve; p95 does not.
        let json = serde_json::to_string(&summary).expect("json");
        let read: Summary = serde_json::from_str(&json).expect("parse");
        assert_eq!(read.value(d, Some("p99")), Some(p99));
        assert_eq!(read.value(d, Some("p95")), None);
    }

    #[test]
    fn a_statistic_without_samples_has_no_data_but_a_count_has() {
        let mut summary = sample_summary();
        // `connect` was registered and saw no sample.
        for stat in ["p95", "p99", "max", "min", "mean", "p50"] {
            assert_eq!(
                summary.lookup("connect", Some(stat)),
                Lookup::NoData,
                "{stat}"
            );
        }
        assert_eq!(summary.lookup("connect", Some("count")), Lookup::Value(0.0));
        assert_eq!(summary.lookup("connect", None), Lookup::Unknown);
        assert_eq!(summary.lookup("connect", Some("bogus")), Lookup::Unknown);
        assert_eq!(summary.lookup("timeouts.ack", None), Lookup::Value(0.0));
        assert_eq!(
            summary.lookup("disconnects", Some("count")),
            Lookup::Value(0.0)
        );
        assert_eq!(summary.lookup("nonsense", None), Lookup::Unknown);
        // The smoke scenario's thresholds when nothing connected.
        assert!(
            !summary.evaluate("connect.p95 <= 200ms", "connect", Some("p95"), |v| {
                v <= 200_000.0
            })
        );
        let result = summary.thresholds.last().expect("recorded").clone();
        assert_eq!(
            (result.value, result.pass, result.no_data),
            (None, false, true)
        );
        assert_eq!(summary.verdict, Verdict::Fail);
        assert!(summary.evaluate("connect.count == 0", "connect", Some("count"), |v| v == 0.0));
        assert!(!summary.thresholds.last().expect("recorded").no_data);
        let json = serde_json::to_value(&summary).expect("json");
        assert_eq!(json["thresholds"][0]["no_data"], true);
        assert_eq!(json["thresholds"][1]["no_data"], false);
        assert!(
            json.get("aborted").is_none(),
            "absent when the run ran to its end"
        );
    }

    #[test]
    fn verdict_follows_thresholds() {
        let mut summary = sample_summary();
        assert_eq!(summary.verdict, Verdict::Pass);
        assert!(summary.evaluate(
            "delivery.newMessage.p99 < 50ms",
            "delivery.newMessage",
            Some("p99"),
            |v| v < 50_000.0
        ));
        assert_eq!(summary.verdict, Verdict::Pass);
        assert!(!summary.evaluate("nonsense == 0", "nonsense", None, |v| v == 0.0));
        assert_eq!(summary.verdict, Verdict::Fail);
        assert_eq!(summary.thresholds[1].value, None);
    }
}
