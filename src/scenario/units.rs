//! Durations (`250ms`, `1m30s`) and rates (`10/s`, `600/m`), as text and as
//! serde field helpers used by the model.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// The longest duration a scenario may write anywhere: 366 days. Longer
/// ones are refused at load time, so no deadline computed from them can
/// overflow a clock.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The smallest rate a scenario may write: one per 366 days, the longest
/// duration (slower rates could never fire within a run).
pub const MIN_RATE: f64 = 1.0 / (366.0 * 24.0 * 3600.0);

/// The largest rate a scenario may write: 1,000,000 per second (one event
/// per microsecond, the resolution of every clock chorus reads).
pub const MAX_RATE: f64 = 1_000_000.0;

/// Parses a duration made of one or more `<number><unit>` parts, units being
/// `us` (or `µs`), `ms`, `s`, `m` and `h`: `250ms`, `5s`, `1m30s`, `1.5h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration, expected e.g. `5s` or `250ms`".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| {
            format!("invalid duration `{text}`, expected e.g. `5s`, `250ms`, `1m30s`")
        })?;
        let seconds_per_unit = match unit.trim() {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "duration `{text}` has no unit, expected e.g. `{num}s` or `{num}ms`"
                ))
            }
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}`, expected one of us, ms, s, m, h"
                ))
            }
        };
        total += value * seconds_per_unit;
        rest = tail;
    }
    if !total.is_finite() || total > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "duration `{text}` is out of range: at most 366 days (8784h)"
        ));
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("duration `{text}` is out of range"))
}

/// Parses a rate `<number>/<unit>` (`10/s`, `600/m`, `2.5/s`, `100/h`) into
/// events per second; it must be finite and within `MIN_RATE` (one per
/// 366 days) and `MAX_RATE` (1,000,000/s).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("invalid rate `{text}`, expected e.g. `10/s` or `600/m`");
    let (num, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let value: f64 = num.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("rate `{text}` must be greater than zero"));
    }
    let rate = value / per;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(format!(
            "rate `{text}` is out of range: between one per 366 days and 1000000/s"
        ));
    }
    Ok(rate)
}

/// Parses a scalar (strings, and numbers as written) inside the visitor, so
/// that a parse error is tagged with the scalar's own position.
pub(crate) fn parse_scalar<'de, D, T, F>(
    d: D,
    expecting: &'static str,
    parse: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct ScalarParse<F> {
        expecting: &'static str,
        parse: F,
    }
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for ScalarParse<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
    }
    d.deserialize_any(ScalarParse { expecting, parse })
}

/// Serde helper: a positive duration.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_scalar(d, "a duration like `5s`", |text| {
        let value = parse_duration(text)?;
        if value.is_zero() {
            return Err(format!("duration `{text}` must be greater than zero"));
        }
        Ok(value)
    })
}

/// Serde helper: an optional positive duration.
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Serde helper: a rate in events per second.
pub(crate) fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    parse_scalar(d, "a rate like `10/s`", parse_rate)
}

/// Serde helper: an optional rate in events per second.
pub(crate) fn opt_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    rate(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
    }

    #[test]
    fn bad_durations_are_explained() {
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown duration unit `parsecs`"));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("10/s"), Ok(10.0));
        assert_eq!(parse_rate("600/m"), Ok(10.0));
        assert_eq!(parse_rate("0.5/s"), Ok(0.5));
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/s").unwrap_err().contains("greater than zero"));
        assert!(parse_rate("10/day").is_err());
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        for rate in [
            "1e-300/s",
            "0.00000001/s",
            "1e7/s",
            "1e400/s",
            "NaN/s",
            "inf/s",
            "-1/s",
        ] {
            assert!(parse_rate(rate).is_err(), "{rate}");
        }
        assert_eq!(parse_rate("1/h"), Ok(1.0 / 3600.0));
        assert_eq!(parse_rate("1000000/s"), Ok(1e6));
        for d in ["8785h", "99999999999999999999999s", "1000000000m"] {
            assert!(
                parse_duration(d).unwrap_err().contains("out of range"),
                "{d}"
            );
        }
        assert_eq!(parse_duration("8784h"), Ok(MAX_DURATION));
    }
}
