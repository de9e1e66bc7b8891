//! Driver self-health: is chorus itself keeping up?
//!
//! [`HealthSampler`] is a tokio task that measures, on the runtime that
//! drives the load, how late a 100 ms `tokio::time::interval` tick fires
//! (`driver.runtime_lag`, a latency metric), and every second the process's
//! CPU use in percent of one core (`driver.cpu_percent`, from the utime and
//! stime of `/proc/self/stat`) and resident memory (`driver.rss_bytes`,
//! `VmRSS` of `/proc/self/status`, which unlike `statm` needs no page size).
//! [`assess`] turns those, plus the senders' `schedule_lag` and the
//! receivers' `driver.read_delay` and timestamp sources, into the summary's
//! `driver` section.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::format::format_ms;
use super::registry::{Cumulative, GaugeId, LatencyId, Recorder, Registry};

/// Latency metric: how late the sampler's ticks fire, µs.
pub const RUNTIME_LAG: &str = "driver.runtime_lag";
/// Latency metric recorded by the run engine: how late sends go out
/// relative to their schedule, µs, whatever the cause (a flow that waits for
/// answers falls behind by design).
pub const SCHEDULE_LAG: &str = "schedule_lag";
/// Latency metric recorded by the run engine: how late a sender that was
/// waiting for its slot woke up, µs — the part of falling behind that is
/// chorus's own.
pub const WAKEUP_LAG: &str = "driver.wakeup_lag";
/// Latency metric recorded by the receivers, per frame: how long its bytes
/// waited in the kernel before chorus read them (read time minus the
/// kernel's receive time), µs. Only frames with a kernel time are recorded.
pub const READ_DELAY: &str = "driver.read_delay";
/// Counters recorded by the receivers: frames dated by user-space time
/// instead of the kernel's, by reason (this OS has no receive timestamps;
/// the kernel refused `SO_TIMESTAMPING`; a read came without the control
/// message), in this order.
pub const RX_USER_FRAMES: [&str; 3] = [
    "driver.rx_user.unsupported",
    "driver.rx_user.refused",
    "driver.rx_user.no_control_message",
];
/// Gauge: process CPU use over the last second, percent of one core.
pub const CPU_PERCENT: &str = "driver.cpu_percent";
/// Gauge: resident memory, bytes.
pub const RSS_BYTES: &str = "driver.rss_bytes";

/// CPU use, as a fraction of all cores, from which chorus counts as the bottleneck.
pub const CPU_BOTTLENECK_FRACTION: f64 = 0.9;
/// Runtime lag p99 above which chorus counts as the bottleneck, µs.
pub const RUNTIME_LAG_P99_LIMIT_US: u64 = 10_000;
/// Wake-up lag p99 above which the senders count as held back by chorus, µs.
pub const WAKEUP_LAG_P99_LIMIT_US: u64 = 10_000;
/// Read delay p99 above which the summary says chorus read late, µs (5 ms).
/// A broadcast makes all its receivers readable at once and they are read
/// one after another, so a run that keeps up still shows the time one
/// fan-out takes to drain: 1.3–1.4 ms at p99 for `scenarios/smoke.yml`'s
/// 100 clients on an idle 2-core machine (1 ms, the first line, was crossed
/// by every such run). Far behind, it is tens of ms (72–100 ms in a storm of
/// 500,000 frames/s). Latencies stay timed from the kernel's receive time,
/// so this alone does not make chorus the bottleneck; it says the readers
/// fell behind.
pub const READ_DELAY_P99_LIMIT_US: u64 = 5_000;

/// Why frames were dated by user-space time, for each of [`RX_USER_FRAMES`].
const RX_USER_REASONS: [&str; 3] = [
    "this OS gives no kernel receive timestamps",
    "the kernel refused SO_TIMESTAMPING",
    "reads came without a timestamp control message",
];

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, which
/// Linux fixes at 100 on every architecture's user ABI).
const USER_HZ: f64 = 100.0;

/// How often the sampler measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Period of the runtime-lag tick.
    pub lag_period: Duration,
    /// CPU and memory are sampled every this many ticks.
    pub ticks_per_resource_sample: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            lag_period: Duration::from_millis(100),
            ticks_per_resource_sample: 10,
        }
    }
}

/// The running sampler task. Stop it with [`HealthSampler::stop`];
/// dropping it aborts the task.
#[derive(Debug)]
pub struct HealthSampler {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HealthSampler {
    /// Spawns the sampler with the default periods (100 ms, 1 s) on the
    /// current tokio runtime.
    pub fn spawn(registry: &Registry) -> Self {
        Self::spawn_with(registry, HealthConfig::default())
    }

    /// Spawns the sampler with explicit periods on the current tokio runtime.
    pub fn spawn_with(registry: &Registry, config: HealthConfig) -> Self {
        let ids = HealthIds {
            lag: registry.latency(RUNTIME_LAG),
            cpu: registry.gauge(CPU_PERCENT),
            rss: registry.gauge(RSS_BYTES),
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sample(registry.recorder(), ids, config, stopped));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the sampler and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the task already ended; nothing to stop.
            let _ = stop.send(());
        }
        // Awaiting a task we do not abort can only fail if it panicked, and
        // the sampler has no panicking path worth propagating at shutdown.
        let _ = (&mut self.task).await;
    }
}

impl Drop for HealthSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ids the sampler records into.
struct HealthIds {
    lag: LatencyId,
    cpu: GaugeId,
    rss: GaugeId,
}

async fn sample(
    recorder: Recorder,
    ids: HealthIds,
    config: HealthConfig,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(config.lag_period);
    // Measure each tick's own lateness instead of bursting to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cpu = CpuMeter::start();
    let every = config.ticks_per_resource_sample.max(1);
    let mut ticks_to_resource_sample = every;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            scheduled = ticker.tick() => {
                let lag = Instant::now().saturating_duration_since(scheduled.into_std());
                recorder.record_duration(ids.lag, lag);
                ticks_to_resource_sample -= 1;
                if ticks_to_resource_sample == 0 {
                    ticks_to_resource_sample = every;
                    if let Some(percent) = cpu.as_mut().and_then(CpuMeter::sample) {
                        recorder.set_gauge(ids.cpu, percent);
                    }
                    if let Some(rss) = read_rss_bytes() {
                        recorder.set_gauge(ids.rss, rss as f64);
                    }
                }
            }
        }
    }
}

/// CPU time consumed by the process between two samples.
struct CpuMeter {
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    /// `None` where `/proc/self/stat` is unavailable (not Linux).
    fn start() -> Option<Self> {
        Some(Self {
            ticks: read_cpu_ticks()?,
            at: Instant::now(),
        })
    }

    /// Percent of one core used since the previous sample.
    fn sample(&mut self) -> Option<f64> {
        let ticks = read_cpu_ticks()?;
        let now = Instant::now();
        let wall = now.saturating_duration_since(self.at).as_secs_f64();
        let used = ticks.saturating_sub(self.ticks) as f64 / USER_HZ;
        self.ticks = ticks;
        self.at = now;
        (wall > 0.0).then(|| 100.0 * used / wall)
    }
}

fn read_cpu_ticks() -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn read_rss_bytes() -> Option<u64> {
    parse_rss_bytes(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS:  12345 kB` of `/proc/<pid>/status`, in bytes.
fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The summary's `driver` section: did chorus itself keep up?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverReport {
    /// True when the numbers say chorus, not the target, limited the run.
    pub bottleneck: bool,
    /// Highest one-second CPU use, percent of one core (`null` if never sampled).
    pub cpu_percent_max: Option<f64>,
    /// p99 of `driver.runtime_lag`, µs (`null` if never sampled).
    pub runtime_lag_p99_us: Option<u64>,
    /// Where the receive times of frames came from: `kernel` (at least
    /// [`RX_KERNEL_SHARE`] of the frames), `user` (none from the kernel) or
    /// `mixed`.
    #[serde(default)]
    pub rx_timestamps: String,
    /// Why frames were dated by user-space time, with how many; absent when
    /// every frame had a kernel time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_timestamps_reason: Option<String>,
    /// p99 of `driver.read_delay`, µs (`null` without kernel times).
    #[serde(default)]
    pub read_delay_p99_us: Option<u64>,
    /// Plain-words explanations.
    pub notes: Vec<String>,
}

/// The share of frames with a kernel time from which a run counts as timed
/// by the kernel. A few reads can come without the control message (the
/// kernel turns its receive stamping on lazily, after the first socket asks).
pub const RX_KERNEL_SHARE: f64 = 0.99;

/// `kernel`, `user` or `mixed`, and why not every frame had a kernel time,
/// from the number of frames with a kernel time and the user-time frames by
/// reason.
fn rx_source(kernel: u64, user: [u64; 3]) -> (String, Option<String>) {
    let total_user: u64 = user.iter().sum();
    if total_user == 0 {
        return match kernel {
            0 => ("user".into(), Some("no frame was received".into())),
            _ => ("kernel".into(), None),
        };
    }
    let reasons: Vec<String> = user
        .iter()
        .zip(RX_USER_REASONS)
        .filter(|(&n, _)| n > 0)
        .map(|(&n, why)| format!("{why} ({n} of {} frames)", kernel + total_user))
        .collect();
    let share = kernel as f64 / (kernel + total_user) as f64;
    let source = match kernel {
        0 => "user",
        _ if share >= RX_KERNEL_SHARE => "kernel",
        _ => "mixed",
    };
    (source.into(), Some(reasons.join("; ")))
}

/// Applies the bottleneck rule to what was collected, for a machine with
/// `cores` cores: chorus was the bottleneck if its CPU use reached
/// [`CPU_BOTTLENECK_FRACTION`] of all cores, or the runtime lag p99 exceeded
/// [`RUNTIME_LAG_P99_LIMIT_US`], or senders waiting for their slot woke up
/// late ([`WAKEUP_LAG`] p99 over [`WAKEUP_LAG_P99_LIMIT_US`]).
pub fn assess(cumulative: &Cumulative, cores: usize) -> DriverReport {
    let cpu_percent_max = cumulative.gauge(CPU_PERCENT).map(|g| g.max);
    let p99 = |name| {
        cumulative
            .latency(name)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99))
    };
    let runtime_lag_p99_us = p99(RUNTIME_LAG);
    let wakeup_lag_p99_us = p99(WAKEUP_LAG);
    let read_delay_p99_us = p99(READ_DELAY);
    let kernel_frames = cumulative.latency(READ_DELAY).map_or(0, |h| h.len());
    let user_frames = RX_USER_FRAMES.map(|name| cumulative.counter(name).unwrap_or(0));
    let (rx_timestamps, rx_timestamps_reason) = rx_source(kernel_frames, user_frames);

    let mut reasons = Vec::new();
    if let Some(cpu) = cpu_percent_max {
        if cpu >= CPU_BOTTLENECK_FRACTION * 100.0 * cores as f64 {
            reasons.push(format!("CPU at {cpu:.0}% of {cores} cores"));
        }
    }
    if let Some(lag) = runtime_lag_p99_us.filter(|&lag| lag > RUNTIME_LAG_P99_LIMIT_US) {
        reasons.push(format!("runtime lag p99 {} ms", format_ms(lag as f64)));
    }
    if let Some(lag) = wakeup_lag_p99_us.filter(|&lag| lag > WAKEUP_LAG_P99_LIMIT_US) {
        reasons.push(format!(
            "senders woke up late for their schedule (wake-up lag p99 {} ms)",
            format_ms(lag as f64)
        ));
    }

    let mut notes = Vec::new();
    if !reasons.is_empty() {
        notes.push(format!(
            "chorus itself was the bottleneck: {}; latencies above are not trustworthy",
            reasons.join(", ")
        ));
    }
    if let Some(delay) = read_delay_p99_us.filter(|&d| d > READ_DELAY_P99_LIMIT_US) {
        notes.push(format!(
            "chorus read late: frames waited in the kernel {} ms at p99 before chorus read them \
             (limit {} ms); latencies are timed from the kernel's receive time",
            format_ms(delay as f64),
            format_ms(READ_DELAY_P99_LIMIT_US as f64)
        ));
    }
    if cpu_percent_max.is_none() && runtime_lag_p99_us.is_none() {
        notes.push("no driver health samples were taken: chorus's own load is unknown".into());
    }
    DriverReport {
        bottleneck: !reasons.is_empty(),
        cpu_percent_max,
        runtime_lag_p99_us,
        rx_timestamps,
        rx_timestamps_reason,
        read_delay_p99_us,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 8 0 12345 1000000 2500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        let status = "Name:\tchorus\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_bytes(status), Some(2048 * 1024));
        assert_eq!(parse_rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn bottleneck_rule() {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let lag = registry.latency(RUNTIME_LAG);
        let cpu = registry.gauge(CPU_PERCENT);
        for _ in 0..100 {
            recorder.record(lag, 200);
        }
        recorder.set_gauge(cpu, 40.0);
        registry.collect_interval(Instant::now());
        let healthy = assess(&registry.cumulative(), 2);
        assert!(!healthy.bottleneck);
        assert!(healthy.notes.is_empty(), "{:?}", healthy.notes);
        assert_eq!(healthy.cpu_percent_max, Some(40.0));

        recorder.set_gauge(cpu, 198.0);
        recorder.set_gauge(cpu, 50.0);
        for _ in 0..10 {
            recorder.record(lag, 42_000);
        }
        // Falling behind schedule is the flow's doing unless the wake-ups were late.
        let schedule = registry.latency(SCHEDULE_LAG);
        let wakeup = registry.latency(WAKEUP_LAG);
        for _ in 0..10 {
            recorder.record(schedule, 120_000);
            recorder.record(wakeup, 25_000);
        }
        registry.collect_interval(Instant::now());
        let busy = assess(&registry.cumulative(), 2);
        assert!(busy.bottleneck);
        assert_eq!(busy.cpu_percent_max, Some(198.0));
        assert_eq!(busy.notes.len(), 1);
        let note = &busy.notes[0];
        assert!(note.starts_with("chorus itself was the bottleneck: CPU at 198% of 2 cores, runtime lag p99 42.0 ms, senders woke up late"), "{note}");
        assert!(
            note.ends_with("latencies above are not trustworthy"),
            "{note}"
        );
        // The same CPU on a bigger machine is not a bottleneck by itself.
        assert!(!assess(&registry.cumulative(), 8).notes[0].contains("CPU"));
    }

    #[test]
    fn timestamp_source_and_late_reads() {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let delay = registry.latency(READ_DELAY);
        let [_, _, no_cmsg] = RX_USER_FRAMES.map(|n| registry.counter(n));
        registry.collect_interval(Instant::now());
        let none = assess(&registry.cumulative(), 2);
        assert_eq!(none.rx_timestamps, "user");
        assert_eq!(
            none.rx_timestamps_reason.as_deref(),
            Some("no frame was received")
        );
        assert_eq!(none.read_delay_p99_us, None);

        for _ in 0..99 {
            recorder.record(delay, 40);
        }
        registry.collect_interval(Instant::now());
        let kernel = assess(&registry.cumulative(), 2);
        assert_eq!(kernel.rx_timestamps, "kernel");
        assert_eq!(kernel.rx_timestamps_reason, None);
        assert_eq!(kernel.read_delay_p99_us, Some(40));
        assert!(
            kernel.notes.iter().all(|n| !n.contains("read late")),
            "{:?}",
            kernel.notes
        );

        // Late reads are said, with by how much; they do not make chorus the bottleneck.
        for _ in 0..10 {
            recorder.record(delay, 7_500);
        }
        recorder.add(no_cmsg, 1);
        registry.collect_interval(Instant::now());
        let late = assess(&registry.cumulative(), 2);
        assert!(!late.bottleneck);
        // Under 1% without a kernel time: still kernel, and said.
        assert_eq!(late.rx_timestamps, "kernel");
        assert_eq!(
            late.rx_timestamps_reason.as_deref(),
            Some("reads came without a timestamp control message (1 of 110 frames)")
        );
        let note = late
            .notes
            .iter()
            .find(|n| n.contains("read late"))
            .expect("a note");
        assert!(
            note.contains("7.50 ms at p99") && note.contains("limit 5.00 ms"),
            "{note}"
        );
        recorder.add(no_cmsg, 1);
        registry.collect_interval(Instant::now());
        assert_eq!(assess(&registry.cumulative(), 2).rx_timestamps, "mixed");

        let other = Registry::new();
        other.recorder().add(other.counter(RX_USER_FRAMES[0]), 7);
        other.collect_interval(Instant::now());
        let user = assess(&other.cumulative(), 2);
        assert_eq!(user.rx_timestamps, "user");
        assert_eq!(
            user.rx_timestamps_reason.as_deref(),
            Some("this OS gives no kernel receive timestamps (7 of 7 frames)")
        );
    }

    #[test]
    fn missing_samples_are_reported() {
        let report = assess(&Registry::new().cumulative(), 2);
        assert!(!report.bottleneck);
        assert_eq!(report.runtime_lag_p99_us, None);
        assert_eq!(report.notes.len(), 1);
    }

    #[test]
    fn sampler_measures_a_blocked_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let registry = Registry::new();
        runtime.block_on(async {
            let sampler = HealthSampler::spawn_with(
                &registry,
                HealthConfig {
                    lag_period: Duration::from_millis(10),
                    ticks_per_resource_sample: 5,
                },
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Block the only worker thread: the next tick must fire late.
            std::thread::sleep(Duration::from_millis(80));
            tokio::time::sleep(Duration::from_millis(100)).await;
            sampler.stop().await;
        });
        registry.collect_interval(Instant::now());
        let cumulative = registry.cumulative();
        let lag = cumulative.latency(RUNTIME_LAG).expect("lag metric");
        assert!(lag.len() >= 5, "only {} ticks", lag.len());
        assert!(lag.max() >= 50_000, "max lag {} µs", lag.max());
        if cfg!(target_os = "linux") {
            assert!(cumulative.gauge(CPU_PERCENT).is_some());
            assert!(cumulative.gauge(RSS_BYTES).expect("rss").last > 1_000_000.0);
        }
    }
}
