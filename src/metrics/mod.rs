//! Latency histograms, counters, thresholds and the run summary.
//!
//! # Recording design
//!
//! Tens of thousands of tokio tasks on a couple of worker threads record
//! latencies and bump counters, at ≥ 500,000 samples a second. A shared
//! histogram behind one lock would make the worker threads contend on every
//! sample, and a lock-free `SyncHistogram` still needs a per-recorder buffer
//! and a blocking refresh. So each OS thread gets its own **stripe** (lock
//! striping; a distributed run's shard is another thing): a thread-local, lazily created on the thread's first record and registered
//! with the [`Registry`]. A stripe holds one plain `Histogram<u64>` per
//! latency metric and one plain `u64` per counter behind a `Mutex` that only
//! its own thread and the once-a-second collector ever take, so the lock is
//! uncontended (an atomic swap in and out, no syscall) and the hot path is
//! "look up the thread's stripe, lock, index by id, record, unlock".
//! Counters live in the same stripe (instead of global atomics) so that a
//! collection drains histograms and counters consistently, and so no cache
//! line bounces between the worker threads.
//!
//! Metric names are interned once at setup ([`Registry::latency`],
//! [`Registry::counter`]); the hot path works on integer ids, hashes no
//! string and, once a thread has recorded each metric once, allocates
//! nothing (checked by a counting global allocator in the unit tests).
//!
//! [`Registry::collect_interval`] swaps each stripe's non-empty histograms
//! with a pre-reset spare (double buffering: the lock is held for pointer
//! swaps only), then merges the drained ones outside the lock into one
//! interval histogram per metric and into the cumulative histograms. Stripes
//! of exited threads are drained one last time and dropped.
//!
//! # Outputs
//!
//! - [`IntervalLogs`]: one HdrHistogram interval log per latency metric,
//!   `<run_dir>/hdr/<metric>.hlog`, one V2-deflate histogram per interval.
//! - [`TimeSeries`]: per-second p50/p99/max, counter rates and gauges,
//!   written as `<run_dir>/timeseries.json` for the HTML report.
//! - [`Summary`]: the versioned `summary.json` contract, with threshold
//!   lookups ([`Summary::value`]).
//! - [`format_ms`]: latencies for people (the terminal table that uses it
//!   is rendered by the report module, which metrics does not import).
//! - [`render_prometheus`]: Prometheus text exposition of the live totals.
//! - [`HealthSampler`] and [`assess`]: chorus's own runtime lag, CPU and
//!   memory, and the "chorus itself was the bottleneck" rule.

mod error;
mod format;
mod health;
mod hlog;
mod json_file;
mod prometheus;
mod registry;
mod rfc3339;
mod summary;
mod timeseries;

pub use error::MetricsError;
pub use format::format_ms;
pub use health::{
    assess, DriverReport, HealthConfig, HealthSampler, CPU_BOTTLENECK_FRACTION, CPU_PERCENT,
    READ_DELAY, READ_DELAY_P99_LIMIT_US, RSS_BYTES, RUNTIME_LAG, RUNTIME_LAG_P99_LIMIT_US,
    RX_KERNEL_SHARE, RX_USER_FRAMES, SCHEDULE_LAG, WAKEUP_LAG, WAKEUP_LAG_P99_LIMIT_US,
};
pub use hlog::{IntervalLog, IntervalLogs, LoggedInterval};
pub use prometheus::render_prometheus;
pub use registry::{
    new_histogram, CounterId, CounterTotal, Cumulative, GaugeId, GaugeReading, IntervalCounter,
    IntervalSnapshot, LatencyId, NamedHistogram, Recorder, Registry, HIGHEST_TRACKABLE_US,
    SIGNIFICANT_DIGITS,
};
pub use summary::{
    LatencyStats, Lookup, NodeSummary, RunInfo, Summary, ThresholdResult, Verdict, NODE_PREFIX,
    SCHEMA_VERSION,
};
pub use timeseries::{PointStats, TimePoint, TimeSeries, STORM_DISCONNECTS, STORM_RECONNECTS};

#[cfg(test)]
pub(crate) use summary::tests::sample_summary;
