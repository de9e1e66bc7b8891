//! Regression tolerances for `chorus compare`: per metric pattern, how much
//! worse a value may get, relatively and absolutely, before it counts as a
//! regression. Written `PATTERN=REL%:ABS`, e.g. `delivery.*.p99=10%:1ms`,
//! `errors*=0%:0`, or `PATTERN=off` to show a metric without gating it.

use std::fmt;
use std::str::FromStr;

use super::error::ReportError;
use crate::metrics::format_ms;
use crate::scenario::parse_duration;

/// Relative tolerance of latency percentiles by default (+25%).
pub const DEFAULT_LATENCY_RELATIVE: f64 = 0.25;
/// Absolute tolerance of latency percentiles by default (+2 ms), µs.
pub const DEFAULT_LATENCY_ABSOLUTE_US: f64 = 2_000.0;
/// Counter patterns gated at +0 by default: any increase is a regression.
pub const DEFAULT_GATED_COUNTERS: [&str; 3] = ["errors*", "deliveries.lost", "violations.*"];

/// Whether a metric is a latency statistic (µs) or a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// `<metric>.<stat>` of a latency metric, in microseconds.
    Latency,
    /// A counter total (violations as `violations.<kind>`).
    Counter,
}

/// How much worse a metric may get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    /// Shown, never a regression.
    Off,
    /// A regression when the value grew by more than both limits.
    Limit {
        /// Allowed growth as a fraction of the baseline (0.25 = +25%).
        relative: f64,
        /// Allowed growth in the metric's unit (µs for latencies).
        absolute: f64,
    },
}

impl Gate {
    /// Whether going from `baseline` to `current` breaks this gate: the
    /// value grew by more than the absolute limit *and* by more than the
    /// relative limit (any growth from a zero baseline is infinitely relative).
    pub fn is_regression(self, baseline: f64, current: f64) -> bool {
        let Gate::Limit { relative, absolute } = self else {
            return false;
        };
        let growth = current - baseline;
        if growth <= absolute || growth <= 0.0 {
            return false;
        }
        baseline <= 0.0 || growth / baseline > relative
    }

    /// The gate in words, with the absolute limit in the metric's unit.
    pub fn describe(self, kind: MetricKind) -> String {
        match self {
            Gate::Off => "not gated".to_string(),
            Gate::Limit { relative, absolute } => {
                let absolute = match kind {
                    MetricKind::Latency => format!("{}ms", format_ms(absolute)),
                    MetricKind::Counter => format!("{absolute}"),
                };
                format!("+{}%:+{absolute}", relative * 100.0)
            }
        }
    }
}

/// One `PATTERN=REL%:ABS` rule. In the pattern `*` matches any run of
/// characters (dots included), everything else matches itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ToleranceRule {
    /// Metric pattern, matched against `<latency metric>.<stat>` or a counter name.
    pub pattern: String,
    /// The gate applied to matching metrics.
    pub gate: Gate,
}

impl FromStr for ToleranceRule {
    type Err = ReportError;

    /// Parses `PATTERN=off`, `PATTERN=REL%`, `PATTERN=:ABS` or
    /// `PATTERN=REL%:ABS`. ABS is a duration (`1ms`, `500us`) for latencies
    /// or a plain number (µs for latencies, a count for counters).
    fn from_str(rule: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ReportError::Tolerance {
            rule: rule.to_string(),
            reason: reason.to_string(),
        };
        let (pattern, limits) = rule
            .split_once('=')
            .ok_or_else(|| fail("expected PATTERN=REL%:ABS, e.g. delivery.*.p99=10%:1ms"))?;
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(fail("empty metric pattern"));
        }
        let limits = limits.trim();
        if matches!(limits, "off" | "none") {
            return Ok(Self {
                pattern: pattern.to_string(),
                gate: Gate::Off,
            });
        }
        let (relative, absolute) = limits.split_once(':').unwrap_or((limits, ""));
        let relative = match relative.trim() {
            "" => 0.0,
            text => {
                let number = text
                    .strip_suffix('%')
                    .ok_or_else(|| fail("the relative tolerance must end with `%`, e.g. 10%"))?;
                number
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| fail("the relative tolerance is not a number"))?
                    / 100.0
            }
        };
        let absolute = parse_absolute(absolute.trim()).map_err(|reason| fail(&reason))?;
        if !(relative.is_finite() && relative >= 0.0 && absolute.is_finite() && absolute >= 0.0) {
            return Err(fail("tolerances must be non-negative"));
        }
        Ok(Self {
            pattern: pattern.to_string(),
            gate: Gate::Limit { relative, absolute },
        })
    }
}

/// An absolute limit: empty is 0, a plain number is taken as is, anything
/// else must be a duration and becomes microseconds.
fn parse_absolute(text: &str) -> Result<f64, String> {
    if text.is_empty() {
        return Ok(0.0);
    }
    if let Ok(number) = text.parse::<f64>() {
        return Ok(number);
    }
    parse_duration(text).map(|d| d.as_secs_f64() * 1e6)
}

impl fmt::Display for ToleranceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gate {
            Gate::Off => write!(f, "{}=off", self.pattern),
            Gate::Limit { relative, absolute } => {
                write!(f, "{}={}%:{absolute}", self.pattern, relative * 100.0)
            }
        }
    }
}

/// User rules over the built-in defaults; the last matching user rule wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tolerances {
    rules: Vec<ToleranceRule>,
}

impl Tolerances {
    /// The defaults alone: latency p50/p90/p99/p99.9 at +25% and +2 ms, max
    /// not gated; `errors*`, `deliveries.lost` and `violations.*` at +0;
    /// every other counter not gated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defaults plus the rules parsed from `rules` (CLI strings or a
    /// scenario's list), in order.
    pub fn parse<'a>(rules: impl IntoIterator<Item = &'a str>) -> Result<Self, ReportError> {
        let mut tolerances = Self::new();
        for rule in rules {
            tolerances.push(rule.parse()?);
        }
        Ok(tolerances)
    }

    /// Adds a rule that overrides every earlier one it matches.
    pub fn push(&mut self, rule: ToleranceRule) {
        self.rules.push(rule);
    }

    /// The gate of metric `key`.
    pub fn gate(&self, key: &str, kind: MetricKind) -> Gate {
        if let Some(rule) = self
            .rules
            .iter()
            .rev()
            .find(|rule| glob_match(&rule.pattern, key))
        {
            return rule.gate;
        }
        match kind {
            MetricKind::Latency if key.ends_with(".max") => Gate::Off,
            // They measure chorus itself, not the gateway.
            MetricKind::Latency
                if key.starts_with("driver.") || key.starts_with("schedule_lag.") =>
            {
                Gate::Off
            }
            MetricKind::Latency => Gate::Limit {
                relative: DEFAULT_LATENCY_RELATIVE,
                absolute: DEFAULT_LATENCY_ABSOLUTE_US,
            },
            MetricKind::Counter
                if DEFAULT_GATED_COUNTERS
                    .iter()
                    .any(|pattern| glob_match(pattern, key)) =>
            {
                Gate::Limit {
                    relative: 0.0,
                    absolute: 0.0,
                }
            }
            MetricKind::Counter => Gate::Off,
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(relative: f64, absolute: f64) -> Gate {
        Gate::Limit { relative, absolute }
    }

    #[test]
    fn parses_rules() {
        let rule: ToleranceRule = "delivery.*.p99=10%:1ms".parse().expect("rule");
        assert_eq!(rule.pattern, "delivery.*.p99");
        assert_eq!(rule.gate, limit(0.1, 1000.0));
        assert_eq!(
            "x=50%".parse::<ToleranceRule>().expect("rel").gate,
            limit(0.5, 0.0)
        );
        assert_eq!(
            "x=:250us".parse::<ToleranceRule>().expect("abs").gate,
            limit(0.0, 250.0)
        );
        assert_eq!(
            "errors*=0%:3".parse::<ToleranceRule>().expect("count").gate,
            limit(0.0, 3.0)
        );
        assert_eq!(
            "connect.max=off"
                .parse::<ToleranceRule>()
                .expect("off")
                .gate,
            Gate::Off
        );
        assert_eq!(rule.to_string(), "delivery.*.p99=10%:1000");
    }

    #[test]
    fn rejects_bad_rules() {
        for (rule, reason) in [
            ("delivery.p99", "expected PATTERN=REL%:ABS"),
            ("=10%", "empty metric pattern"),
            ("x=10:1ms", "must end with `%`"),
            ("x=abc%", "not a number"),
            ("x=10%:5 parsecs", "unknown duration unit"),
            ("x=-5%", "non-negative"),
        ] {
            let err = rule.parse::<ToleranceRule>().expect_err(rule).to_string();
            assert!(err.contains(reason), "{rule}: {err}");
            assert!(
                err.starts_with(&format!("invalid tolerance `{rule}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn regression_needs_both_limits_exceeded() {
        let gate = limit(0.25, 2_000.0);
        // +25% exactly and +2 ms exactly are still fine.
        assert!(!gate.is_regression(10_000.0, 12_500.0));
        assert!(!gate.is_regression(1_000.0, 3_000.0));
        // Just past both.
        assert!(gate.is_regression(10_000.0, 12_501.0));
        assert!(gate.is_regression(1_000.0, 3_001.0));
        // Past one only.
        assert!(!gate.is_regression(1_000.0, 2_900.0)); // +190% but +1.9 ms
        assert!(!gate.is_regression(100_000.0, 120_000.0)); // +20 ms but +20%
                                                            // Improvements never regress; Off never does.
        assert!(!gate.is_regression(10_000.0, 1_000.0));
        assert!(!Gate::Off.is_regression(1.0, 1e9));
        // +0 gate: any increase, including from zero.
        let zero = limit(0.0, 0.0);
        assert!(zero.is_regression(0.0, 1.0));
        assert!(zero.is_regression(5.0, 6.0));
        assert!(!zero.is_regression(5.0, 5.0));
        assert!(!zero.is_regression(5.0, 4.0));
    }

    #[test]
    fn defaults_and_overrides() {
        let defaults = Tolerances::new();
        let latency = limit(DEFAULT_LATENCY_RELATIVE, DEFAULT_LATENCY_ABSOLUTE_US);
        assert_eq!(
            defaults.gate("delivery.newMessage.p99", MetricKind::Latency),
            latency
        );
        assert_eq!(defaults.gate("connect.p99.9", MetricKind::Latency), latency);
        assert_eq!(defaults.gate("connect.max", MetricKind::Latency), Gate::Off);
        for gated in [
            "errors",
            "errors.connect",
            "deliveries.lost",
            "violations.bad_ack",
        ] {
            assert_eq!(
                defaults.gate(gated, MetricKind::Counter),
                limit(0.0, 0.0),
                "{gated}"
            );
        }
        assert_eq!(defaults.gate("emits", MetricKind::Counter), Gate::Off);
        assert_eq!(
            defaults.gate("deliveries.received", MetricKind::Counter),
            Gate::Off
        );

        let custom = Tolerances::parse([
            "delivery.*.p99=10%:1ms",
            "*.max=50%:5ms",
            "delivery.chat.p99=off",
        ])
        .expect("rules");
        assert_eq!(
            custom.gate("delivery.newMessage.p99", MetricKind::Latency),
            limit(0.1, 1000.0)
        );
        assert_eq!(
            custom.gate("delivery.chat.p99", MetricKind::Latency),
            Gate::Off
        );
        assert_eq!(
            custom.gate("connect.max", MetricKind::Latency),
            limit(0.5, 5000.0)
        );
        assert_eq!(
            custom.gate("delivery.newMessage.p90", MetricKind::Latency),
            latency
        );
        assert!(Tolerances::parse(["oops"]).is_err());
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("delivery.*.p99", "delivery.newMessage.p99"));
        assert!(!glob_match("delivery.*.p99", "delivery.newMessage.p99.9"));
        assert!(glob_match("errors*", "errors"));
        assert!(glob_match("errors*", "errors.ack"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact.not"));
    }

    #[test]
    fn describes_gates() {
        assert_eq!(
            limit(0.25, 2000.0).describe(MetricKind::Latency),
            "+25%:+2.00ms"
        );
        assert_eq!(limit(0.0, 0.0).describe(MetricKind::Counter), "+0%:+0");
        assert_eq!(Gate::Off.describe(MetricKind::Counter), "not gated");
    }
}
