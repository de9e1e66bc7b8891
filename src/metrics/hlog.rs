//! HdrHistogram interval logs: `<run_dir>/hdr/<metric>.hlog`, one
//! V2-deflate histogram per collection interval, readable by
//! `HistogramLogProcessor`, HdrHistogram plotters and
//! `hdrhistogram::serialization::interval_log::IntervalLogIterator`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::error::MetricsError;
use super::registry::IntervalSnapshot;
use crate::error::FileError;

/// One open `.hlog` file.
/// The header comment naming a log's metric: `#chorus latency metric <name>, values in microseconds`.
const NAME_PREFIX: &str = "chorus latency metric ";
const NAME_SUFFIX: &str = ", values in microseconds";

/// One interval read back from a log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    /// Start, relative to the log's base time.
    pub start: Duration,
    /// Length.
    pub duration: Duration,
    /// The interval's histogram.
    pub histogram: Histogram<u64>,
}

/// An interval log read back: its metric, base time and intervals.
#[derive(Debug, Clone)]
pub struct IntervalLog {
    /// The metric (from the header comment, else the file name).
    pub name: String,
    /// The instant interval starts are relative to.
    pub base_time: SystemTime,
    /// Every interval, in file order.
    pub intervals: Vec<LoggedInterval>,
}

impl IntervalLog {
    /// Reads `<metric>.hlog`.
    pub fn read(path: &Path) -> Result<Self, MetricsError> {
        let bytes = std::fs::read(path).map_err(|e| FileError::new(path, e))?;
        let invalid = |reason: String| MetricsError::InvalidLog {
            path: path.to_path_buf(),
            reason,
        };
        let name = String::from_utf8_lossy(&bytes)
            .lines()
            .find_map(|line| {
                line.strip_prefix('#')?
                    .strip_prefix(NAME_PREFIX)?
                    .strip_suffix(NAME_SUFFIX)
                    .map(str::to_string)
            })
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let mut base_time = UNIX_EPOCH;
        let mut intervals = Vec::new();
        let mut deserializer = Deserializer::new();
        for entry in IntervalLogIterator::new(&bytes) {
            match entry.map_err(|e| invalid(format!("{e:?}")))? {
                LogEntry::BaseTime(t) => base_time = UNIX_EPOCH + t,
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(interval) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(interval.encoded_histogram())
                        .map_err(|e| invalid(e.to_string()))?;
                    let histogram = deserializer
                        .deserialize(&mut raw.as_slice())
                        .map_err(|e| invalid(format!("{e:?}")))?;
                    intervals.push(LoggedInterval {
                        start: interval.start_timestamp(),
                        duration: interval.duration(),
                        histogram,
                    });
                }
            }
        }
        Ok(Self {
            name,
            base_time,
            intervals,
        })
    }

    /// The sum of every interval.
    pub fn total(&self) -> Histogram<u64> {
        let mut total = super::registry::new_histogram();
        for i in &self.intervals {
            total
                .add(&i.histogram)
                .expect("histograms of one range add up");
        }
        total
    }
}

struct MetricLog {
    name: Arc<str>,
    path: PathBuf,
    writer: BufWriter<File>,
}

/// Writer of one interval log per latency metric. Logs use the registry's
/// start as `BaseTime`, so interval timestamps are seconds into the run.
pub struct IntervalLogs {
    dir: PathBuf,
    started_at: SystemTime,
    serializer: V2DeflateSerializer,
    /// In registry registration order, which is also snapshot order.
    logs: Vec<MetricLog>,
    file_names: HashSet<String>,
}

impl std::fmt::Debug for IntervalLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalLogs")
            .field("dir", &self.dir)
            .field("metrics", &self.logs.len())
            .finish()
    }
}

impl IntervalLogs {
    /// Creates `<run_dir>/hdr/`; files are created as metrics first appear.
    /// `started_at` should be [`Registry::started_at`](super::Registry::started_at).
    pub fn create(run_dir: &Path, started_at: SystemTime) -> Result<Self, MetricsError> {
        let dir = run_dir.join("hdr");
        std::fs::create_dir_all(&dir).map_err(|e| FileError::new(&dir, e))?;
        Ok(Self {
            dir,
            started_at,
            serializer: V2DeflateSerializer::new(),
            logs: Vec::new(),
            file_names: HashSet::new(),
        })
    }

    /// The log file of metric `name`, once it has been created.
    pub fn path_of(&self, name: &str) -> Option<&Path> {
        self.logs
            .iter()
            .find(|log| &*log.name == name)
            .map(|log| log.path.as_path())
    }

    /// Appends the snapshot's interval histogram of every latency metric
    /// (empty intervals included, so every log has the same time axis) and
    /// flushes, so the logs are readable while the run goes on.
    pub fn write(&mut self, snapshot: &IntervalSnapshot) -> Result<(), MetricsError> {
        for (i, latency) in snapshot.latencies.iter().enumerate() {
            if i == self.logs.len() {
                let log = self.open(&latency.name)?;
                self.logs.push(log);
            }
            let log = &mut self.logs[i];
            debug_assert_eq!(log.name, latency.name, "registration order is append-only");
            IntervalLogWriterBuilder::new()
                .begin_log_with(&mut log.writer, &mut self.serializer)
                .map_err(|e| FileError::new(&log.path, e))?
                .write_histogram(&latency.histogram, snapshot.start, snapshot.duration, None)
                .map_err(|source| MetricsError::IntervalLog {
                    path: log.path.clone(),
                    source,
                })?;
            log.writer
                .flush()
                .map_err(|e| FileError::new(&log.path, e))?;
        }
        Ok(())
    }

    /// Creates the log file of metric `name` and writes its header.
    fn open(&mut self, name: &Arc<str>) -> Result<MetricLog, MetricsError> {
        let file_name = self.unique_file_name(name);
        let path = self.dir.join(&file_name);
        let file = File::create(&path).map_err(|e| FileError::new(&path, e))?;
        let mut writer = BufWriter::new(file);
        IntervalLogWriterBuilder::new()
            .add_comment(&format!("{NAME_PREFIX}{name}{NAME_SUFFIX}"))
            .with_start_time(self.started_at)
            .with_base_time(self.started_at)
            .begin_log_with(&mut writer, &mut self.serializer)
            .map_err(|e| FileError::new(&path, e))?;
        Ok(MetricLog {
            name: Arc::clone(name),
            path,
            writer,
        })
    }

    /// `<metric>.hlog` with characters unsafe in file names replaced by `_`,
    /// made unique if two metric names sanitize to the same file name.
    fn unique_file_name(&mut self, name: &str) -> String {
        let stem: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut candidate = format!("{stem}.hlog");
        let mut n = 2;
        while !self.file_names.insert(candidate.clone()) {
            candidate = format!("{stem}~{n}.hlog");
            n += 1;
        }
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::registry::{new_histogram, Registry};
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;
    use std::time::Duration;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chorus-hlog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Reads an interval log back: (start offset, histogram) per interval.
    fn read_log(path: &Path) -> Vec<(Duration, Histogram<u64>)> {
        let bytes = std::fs::read(path).expect("read hlog");
        let mut deserializer = Deserializer::new();
        IntervalLogIterator::new(&bytes)
            .filter_map(|entry| match entry.expect("valid log entry") {
                LogEntry::Interval(interval) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(interval.encoded_histogram())
                        .expect("base64");
                    let histogram = deserializer
                        .deserialize(&mut raw.as_slice())
                        .expect("histogram");
                    Some((interval.start_timestamp(), histogram))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn interval_logs_read_back_to_the_cumulative_histogram() {
        let dir = temp_dir("roundtrip");
        let registry = Registry::new();
        let connect = registry.latency("connect");
        let delivery = registry.latency("delivery.new message/x");
        let recorder = registry.recorder();
        let mut logs = IntervalLogs::create(&dir, registry.started_at()).expect("create");
        let t0 = registry.started();
        for second in 1..=3u64 {
            for i in 0..(100 * second) {
                recorder.record(connect, 1_000 + i);
                recorder.record(delivery, 50 * i + second);
            }
            let snapshot = registry.collect_interval(t0 + Duration::from_secs(second));
            logs.write(&snapshot).expect("write");
        }
        // A metric registered mid-run gets its own log from then on.
        let late = registry.latency("ack.sendMessage");
        recorder.record(late, 7);
        logs.write(&registry.collect_interval(t0 + Duration::from_secs(4)))
            .expect("write");

        let cumulative = registry.cumulative();
        for name in ["connect", "delivery.new message/x", "ack.sendMessage"] {
            let path = logs.path_of(name).expect("log exists");
            let intervals = read_log(path);
            let mut total = new_histogram();
            for (_, histogram) in &intervals {
                total.add(histogram).expect("add");
            }
            assert_eq!(&total, cumulative.latency(name).expect("metric"), "{name}");
        }
        let connect_log = read_log(logs.path_of("connect").expect("log"));
        let starts: Vec<u64> = connect_log.iter().map(|(s, _)| s.as_secs()).collect();
        assert_eq!(starts, vec![0, 1, 2, 3]);
        assert_eq!(connect_log[1].1.len(), 200);
        assert_eq!(
            logs.path_of("delivery.new message/x")
                .and_then(Path::file_name)
                .and_then(|n| n.to_str()),
            Some("delivery.new_message_x.hlog")
        );
        let text = std::fs::read_to_string(logs.path_of("connect").expect("log")).expect("read");
        assert!(text.contains("#[BaseTime: "), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn colliding_file_names_are_made_unique() {
        let dir = temp_dir("collide");
        let mut logs = IntervalLogs::create(&dir, SystemTime::now()).expect("create");
        assert_eq!(logs.unique_file_name("a/b"), "a_b.hlog");
        assert_eq!(logs.unique_file_name("a b"), "a_b~2.hlog");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
