//! The live view of a run: an indicatif bar on a terminal, a plain line every
//! few seconds otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::{format_ms, IntervalSnapshot};

/// Seconds between plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    last_plain: Option<Instant>,
    /// The newest plain line not printed yet (printed by [`Progress::finish`]).
    pending: Option<String>,
}

/// One second of a run, as the progress display shows it.
pub struct Tick<'a> {
    /// The current phase, e.g. `ramp 2/3`.
    pub phase: &'a str,
    /// Clients connected now.
    pub connected: i64,
    /// Clients the scenario plans at most.
    pub planned: u64,
    /// What the last second collected.
    pub snapshot: &'a IntervalSnapshot,
    /// Errors and timeouts so far.
    pub errors: u64,
    /// The latency metric whose p99 is shown.
    pub p99_of: &'a str,
    /// Connects that failed so far, and the most frequent reason with its count.
    pub connect_failures: (u64, Option<(String, u64)>),
}

impl Tick<'_> {
    /// `  connect failures 100 (refused.INVALID_TOKEN 100)`, or nothing
    /// when every connect so far succeeded.
    fn failures(&self) -> String {
        match &self.connect_failures {
            (0, _) => String::new(),
            (n, Some((reason, k))) => format!("  connect failures {n} ({reason} {k})"),
            (n, None) => format!("  connect failures {n}"),
        }
    }
}

impl Progress {
    /// A display for standard error; `quiet` shows nothing.
    pub fn new(quiet: bool, planned: u64) -> Self {
        if quiet {
            return Self {
                bar: None,
                plain: false,
                last_plain: None,
                pending: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(planned);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:10} [{bar:30}] {pos}/{len} clients  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Self {
                bar: Some(bar),
                plain: false,
                last_plain: None,
                pending: None,
            }
        } else {
            Self {
                bar: None,
                plain: true,
                last_plain: None,
                pending: None,
            }
        }
    }

    /// Shows one second of the run.
    pub fn tick(&mut self, tick: &Tick<'_>) {
        let sends = tick.snapshot.rate("emits");
        let deliveries: f64 = tick
            .snapshot
            .counters
            .iter()
            .filter(|c| c.name.starts_with("deliveries.received."))
            .map(|c| tick.snapshot.rate(&c.name))
            .sum();
        let p99 = tick
            .snapshot
            .latency(tick.p99_of)
            .filter(|h| !h.is_empty())
            .map_or_else(
                || "-".to_owned(),
                |h| format_ms(h.value_at_quantile(0.99) as f64),
            );
        let msg = format!(
            "{sends:.0} sends/s  {deliveries:.0} deliveries/s  p99 {p99}  errors {}{}",
            tick.errors,
            tick.failures()
        );
        if let Some(bar) = &self.bar {
            bar.set_prefix(tick.phase.to_owned());
            bar.set_length(tick.planned.max(tick.connected.max(0) as u64));
            bar.set_position(tick.connected.max(0) as u64);
            bar.set_message(msg);
        } else if self.plain {
            let line = format!(
                "[{}] clients {}/{}  {msg}",
                tick.phase, tick.connected, tick.planned
            );
            if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                self.last_plain = Some(Instant::now());
                self.pending = None;
                eprintln!("{line}");
            } else {
                self.pending = Some(line);
            }
        }
    }

    /// Clears the bar; without one, prints the last line not printed yet,
    /// so the final counts (connect failures included) are always shown.
    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(line) = self.pending.take() {
            eprintln!("{line}");
        }
    }
}
