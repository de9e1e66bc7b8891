//! Pass/fail thresholds: `connect.p95: "<= 200ms"`, `errors: "== 0"`.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::units::parse_scalar;

/// The statistic of a metric a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// A percentile, e.g. `p99` is `Percentile(99.0)`, `p99.9` is `Percentile(99.9)`.
    Percentile(f64),
    /// The largest sample.
    Max,
    /// The smallest sample.
    Min,
    /// The arithmetic mean.
    Mean,
    /// The number of samples.
    Count,
    /// Samples per second over the run.
    Rate,
}

impl Stat {
    const NAMES: &'static str = "p50, p90, p95, p99, p99.9, max, min, mean, count, rate";

    fn parse(text: &str) -> Option<Stat> {
        Some(match text {
            "p50" => Stat::Percentile(50.0),
            "p90" => Stat::Percentile(90.0),
            "p95" => Stat::Percentile(95.0),
            "p99" => Stat::Percentile(99.0),
            "p99.9" => Stat::Percentile(99.9),
            "max" => Stat::Max,
            "min" => Stat::Min,
            "mean" => Stat::Mean,
            "count" => Stat::Count,
            "rate" => Stat::Rate,
            _ => return None,
        })
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stat::Percentile(p) => write!(f, "p{p}"),
            Stat::Max => f.write_str("max"),
            Stat::Min => f.write_str("min"),
            Stat::Mean => f.write_str("mean"),
            Stat::Count => f.write_str("count"),
            Stat::Rate => f.write_str("rate"),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// What the number of a threshold is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueUnit {
    /// A plain number (counts, rates).
    Plain,
    /// A latency, in microseconds (written with `us`, `ms` or `s`).
    Micros,
    /// A ratio in 0..=1 (written as a percentage, `1%` is 0.01).
    Ratio,
}

/// One threshold: `<metric>[.<stat>] <op> <value>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The metric name, e.g. `delivery.newMessage` or `errors`.
    pub metric: String,
    /// The statistic, when one was given.
    pub stat: Option<Stat>,
    /// The comparison.
    pub op: CmpOp,
    /// The bound: microseconds for latencies, a ratio for percentages.
    pub value: f64,
    /// How `value` was written.
    pub unit: ValueUnit,
}

impl Threshold {
    /// Parses a key (`connect.p95`) and an expression (`<= 200ms`).
    pub fn parse(key: &str, expr: &str) -> Result<Threshold, String> {
        let (metric, stat) = parse_key(key)?;
        let (op, value, unit) = parse_expr(expr)?;
        Ok(Threshold {
            metric,
            stat,
            op,
            value,
            unit,
        })
    }

    /// Whether `actual` passes (latencies in microseconds, ratios in 0..=1).
    pub fn check(&self, actual: f64) -> bool {
        match self.op {
            CmpOp::Lt => actual < self.value,
            CmpOp::Le => actual <= self.value,
            CmpOp::Gt => actual > self.value,
            CmpOp::Ge => actual >= self.value,
            CmpOp::Eq => actual == self.value,
            CmpOp::Ne => actual != self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if let Some(stat) = self.stat {
            write!(f, ".{stat}")?;
        }
        write!(f, " {} ", self.op.symbol())?;
        match self.unit {
            ValueUnit::Plain => write!(f, "{}", self.value),
            ValueUnit::Micros if self.value >= 1000.0 => write!(f, "{}ms", self.value / 1000.0),
            ValueUnit::Micros => write!(f, "{}us", self.value),
            ValueUnit::Ratio => write!(f, "{}%", self.value * 100.0),
        }
    }
}

fn parse_key(key: &str) -> Result<(String, Option<Stat>), String> {
    let key = key.trim();
    // `p99.9` holds a dot, so try the longest stat suffix first.
    let (metric, stat) = match key.strip_suffix(".p99.9") {
        Some(m) => (m, Stat::parse("p99.9")),
        None => match key.rsplit_once('.') {
            Some((m, s)) => match Stat::parse(s) {
                Some(stat) => (m, Some(stat)),
                None if s.starts_with('p') && s[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                    return Err(format!(
                        "unknown statistic `{s}` in `{key}`, expected one of {}",
                        Stat::NAMES
                    ))
                }
                None => (key, None),
            },
            None => (key, None),
        },
    };
    let valid = !metric.is_empty()
        && metric.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
    if !valid {
        return Err(format!(
            "invalid metric name `{key}`, expected `<metric>[.<stat>]` like `connect.p95`"
        ));
    }
    Ok((metric.to_owned(), stat))
}

fn parse_expr(expr: &str) -> Result<(CmpOp, f64, ValueUnit), String> {
    let bad = |why: &str| {
        format!("invalid threshold `{expr}`: {why} (expected e.g. `< 50ms`, `== 0`, `< 1%`)")
    };
    let text = expr.trim();
    let (op, rest) = [
        ("<=", CmpOp::Le),
        (">=", CmpOp::Ge),
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
    ]
    .iter()
    .find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest.trim())))
    .ok_or_else(|| bad("it must start with one of < <= > >= == !="))?;
    let num_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(rest.len());
    let (num, unit) = rest.split_at(num_len);
    let number: f64 = num.parse().map_err(|_| bad("missing number"))?;
    if !number.is_finite() || number.abs() > 1e15 {
        return Err(bad("the number is out of range (at most 1e15)"));
    }
    let (scale, unit) = match unit.trim() {
        "" | "/s" => (1.0, ValueUnit::Plain),
        "us" | "µs" => (1.0, ValueUnit::Micros),
        "ms" => (1e3, ValueUnit::Micros),
        "s" => (1e6, ValueUnit::Micros),
        "%" => (0.01, ValueUnit::Ratio),
        other => {
            return Err(bad(&format!(
                "unknown unit `{other}`, expected us, ms, s or %"
            )))
        }
    };
    Ok((op, number * scale, unit))
}

/// The `thresholds:` mapping: each key takes one expression or a list.
pub(crate) fn thresholds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Threshold>, D::Error> {
    d.deserialize_map(ThresholdsVisitor)
}

struct ThresholdsVisitor;

impl<'de> Visitor<'de> for ThresholdsVisitor {
    type Value = Vec<Threshold>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of metric to threshold expression")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = a.next_key::<ThresholdKey>()? {
            for expr in a.next_value::<Exprs>()?.0 {
                let (op, value, unit) = expr;
                out.push(Threshold {
                    metric: key.0.clone(),
                    stat: key.1,
                    op,
                    value,
                    unit,
                });
            }
        }
        Ok(out)
    }
}

/// A threshold key parsed where it is read, so errors point at the key.
struct ThresholdKey(String, Option<Stat>);

impl<'de> Deserialize<'de> for ThresholdKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, "a metric name", parse_key).map(|(m, s)| ThresholdKey(m, s))
    }
}

/// One expression or a list of them, each parsed at its own position.
struct Exprs(Vec<(CmpOp, f64, ValueUnit)>);

struct Expr((CmpOp, f64, ValueUnit));

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, "a threshold expression", parse_expr).map(Expr)
    }
}

impl<'de> Deserialize<'de> for Exprs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Exprs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a threshold expression like \"< 50ms\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Exprs, E> {
                parse_expr(v).map(|e| Exprs(vec![e])).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Exprs, A::Error> {
                let mut out = Vec::new();
                while let Some(Expr(e)) = a.next_element()? {
                    out.push(e);
                }
                Ok(Exprs(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_expressions() {
        let t = Threshold::parse("delivery.newMessage.p99", "< 50ms").unwrap();
        assert_eq!(t.metric, "delivery.newMessage");
        assert_eq!(t.stat, Some(Stat::Percentile(99.0)));
        assert_eq!(
            (t.op, t.value, t.unit),
            (CmpOp::Lt, 50_000.0, ValueUnit::Micros)
        );
        let t = Threshold::parse("connect.p99.9", "<= 1.5s").unwrap();
        assert_eq!(
            (t.metric.as_str(), t.stat),
            ("connect", Some(Stat::Percentile(99.9)))
        );
        assert_eq!(t.value, 1_500_000.0);
        let t = Threshold::parse("deliveries.lost", "== 0").unwrap();
        assert_eq!(
            (t.metric.as_str(), t.stat, t.op),
            ("deliveries.lost", None, CmpOp::Eq)
        );
        let t = Threshold::parse("errors.rate", "< 1%").unwrap();
        assert_eq!(
            (t.stat, t.value, t.unit),
            (Some(Stat::Rate), 0.01, ValueUnit::Ratio)
        );
        assert_eq!(t.to_string(), "errors.rate < 1%");
    }

    #[test]
    fn check_compares_in_microseconds() {
        let t = Threshold::parse("connect.p95", "<= 200ms").unwrap();
        assert!(t.check(200_000.0));
        assert!(!t.check(200_001.0));
        let ne = Threshold::parse("errors", "!= 3").unwrap();
        assert!(ne.check(2.0) && !ne.check(3.0));
        let gt = Threshold::parse("messages.rate", "> 100/s").unwrap();
        assert!(gt.check(101.0) && !gt.check(100.0));
        let ge = Threshold::parse("x.count", ">= 1").unwrap();
        assert!(ge.check(1.0) && !ge.check(0.0));
    }

    #[test]
    fn rejects_bad_thresholds() {
        assert!(Threshold::parse("connect.p97", "< 1ms")
            .unwrap_err()
            .contains("unknown statistic"));
        assert!(Threshold::parse("connect..x", "< 1ms").is_err());
        assert!(Threshold::parse("connect", "about 5ms")
            .unwrap_err()
            .contains("must start"));
        assert!(Threshold::parse("connect", "< 5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(Threshold::parse("connect", "<")
            .unwrap_err()
            .contains("missing number"));
        let huge = format!("< {}ms", "9".repeat(400));
        assert!(Threshold::parse("connect", &huge)
            .unwrap_err()
            .contains("out of range"));
    }
}
