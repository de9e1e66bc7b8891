//! The per-second time series kept for the HTML report, written as
//! `<run_dir>/timeseries.json`:
//!
//! ```json
//! {"schema": 1, "started_at": "2025-03-01T12:00:00.000Z", "points": [
//!   {"t_s": 1.0, "duration_s": 1.0,
//!    "latency": {"delivery.newMessage": {"count": 950, "p50_us": 812, "p99_us": 4031, "max_us": 9000}},
//!    "rates": {"emits": 10.0, "deliveries.received": 950.0},
//!    "gauges": {"driver.cpu_percent": 37.5}}]}
//! ```
//!
//! A latency metric with no sample in an interval is absent from that
//! point (a gap, not a zero).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::error::MetricsError;
use super::json_file::{read_json, write_json};
use super::registry::IntervalSnapshot;
use super::rfc3339;

/// The rate of sessions lost without a goodbye (every `disconnects.<label>`
/// but `client` and `server_namespace`), in a point's `rates` once a run has
/// lost one or its clients reconnect: the storm's first half.
pub const STORM_DISCONNECTS: &str = "storm.disconnects";
/// The rate of clients back after a drop (`reconnects.succeeded`): the storm's second half.
pub const STORM_RECONNECTS: &str = "storm.reconnects";

/// Version of the `timeseries.json` shape.
const TIMESERIES_SCHEMA: u32 = 1;

/// One latency metric during one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointStats {
    /// Samples in the interval.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest sample, µs.
    pub max_us: u64,
}

impl PointStats {
    /// Statistics of a (non-empty) interval histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }
}

/// One second (one collection interval) of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    /// End of the interval, seconds since the start of the run.
    pub t_s: f64,
    /// Length of the interval in seconds.
    pub duration_s: f64,
    /// Latency metrics that had samples in the interval.
    pub latency: BTreeMap<String, PointStats>,
    /// Per-second rate of every counter over the interval.
    pub rates: BTreeMap<String, f64>,
    /// Value of every gauge at the end of the interval.
    pub gauges: BTreeMap<String, f64>,
}

/// The whole series, one point per collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// Shape version of `timeseries.json`.
    pub schema: u32,
    /// RFC 3339 wall-clock start of the run.
    pub started_at: String,
    /// The points, oldest first.
    pub points: Vec<TimePoint>,
}

impl TimeSeries {
    /// An empty series for a run started at `started_at`.
    pub fn new(started_at: SystemTime) -> Self {
        Self {
            schema: TIMESERIES_SCHEMA,
            started_at: rfc3339::format(started_at),
            points: Vec::new(),
        }
    }

    /// Appends the point of one collection interval.
    pub fn push(&mut self, snapshot: &IntervalSnapshot) {
        let duration_s = snapshot.duration.as_secs_f64();
        let latency = snapshot
            .latencies
            .iter()
            .filter(|l| !l.histogram.is_empty())
            .map(|l| (l.name.to_string(), PointStats::of(&l.histogram)))
            .collect();
        let mut rates: BTreeMap<String, f64> = snapshot
            .counters
            .iter()
            .map(|c| (c.name.to_string(), snapshot.rate(&c.name)))
            .collect();
        let dropped = |name: &str| {
            name.starts_with("disconnects.")
                && !matches!(name, "disconnects.client" | "disconnects.server_namespace")
        };
        let reconnects = rates.get("reconnects.succeeded").copied();
        if reconnects.is_some() || rates.keys().any(|n| dropped(n)) {
            let lost = rates
                .iter()
                .filter(|(n, _)| dropped(n))
                .fold(0.0, |sum, (_, r)| sum + r);
            rates.insert(STORM_DISCONNECTS.into(), lost);
            rates.insert(STORM_RECONNECTS.into(), reconnects.unwrap_or(0.0));
        }
        let gauges = snapshot
            .gauges
            .iter()
            .map(|g| (g.name.to_string(), g.last))
            .collect();
        self.points.push(TimePoint {
            t_s: (snapshot.start + snapshot.duration).as_secs_f64(),
            duration_s,
            latency,
            rates,
            gauges,
        });
    }

    /// Writes `<run_dir>/timeseries.json` and returns its path.
    pub fn write(&self, run_dir: &Path) -> Result<PathBuf, MetricsError> {
        let path = run_dir.join("timeseries.json");
        write_json(&path, self)?;
        Ok(path)
    }

    /// Reads a `timeseries.json` file.
    pub fn read(path: &Path) -> Result<Self, MetricsError> {
        read_json(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::registry::Registry;
    use std::time::Duration;

    #[test]
    fn points_carry_percentiles_rates_and_gauges_and_round_trip() {
        let registry = Registry::new();
        let delivery = registry.latency("delivery.newMessage");
        registry.latency("connect");
        let emits = registry.counter("emits");
        let cpu = registry.gauge("driver.cpu_percent");
        let recorder = registry.recorder();
        for v in 1..=100 {
            recorder.record(delivery, v * 10);
        }
        recorder.add(emits, 50);
        recorder.set_gauge(cpu, 12.5);
        let mut series = TimeSeries::new(registry.started_at());
        let t0 = registry.started();
        series.push(&registry.collect_interval(t0 + Duration::from_millis(500)));

        let point = &series.points[0];
        assert_eq!(point.t_s, 0.5);
        assert_eq!(
            point.latency["delivery.newMessage"],
            PointStats {
                count: 100,
                p50_us: 500,
                p99_us: 990,
                max_us: 1000
            }
        );
        assert!(
            !point.latency.contains_key("connect"),
            "empty interval is a gap"
        );
        assert_eq!(point.rates["emits"], 100.0);
        assert_eq!(point.gauges["driver.cpu_percent"], 12.5);

        let dir = std::env::temp_dir().join(format!("chorus-ts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = series.write(&dir).expect("write");
        assert_eq!(TimeSeries::read(&path).expect("read"), series);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_storm_is_in_the_rates_once_sessions_drop() {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let goodbyes = registry.counter("disconnects.client");
        recorder.add(goodbyes, 5);
        let mut series = TimeSeries::new(registry.started_at());
        let t0 = registry.started();
        series.push(&registry.collect_interval(t0 + Duration::from_secs(1)));
        assert!(
            !series.points[0].rates.contains_key(STORM_DISCONNECTS),
            "goodbyes are no storm"
        );
        recorder.add(registry.counter("disconnects.server_closed"), 6);
        recorder.add(registry.counter("disconnects.ping_timeout"), 2);
        recorder.add(registry.counter("reconnects.succeeded"), 4);
        series.push(&registry.collect_interval(t0 + Duration::from_secs(2)));
        let rates = &series.points[1].rates;
        assert_eq!(rates[STORM_DISCONNECTS], 8.0);
        assert_eq!(rates[STORM_RECONNECTS], 4.0);
    }
}
