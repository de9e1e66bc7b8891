//! Spreading one scenario over several processes: shard `I` of `N` plays the
//! virtual users whose number `k` has `k % N == I`, at the times a single
//! process would, and all shards share a wall-clock start (`--start-at`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// This process's part of a distributed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// The whole run in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether virtual user `k` is played here.
    pub fn owns(self, k: u32) -> bool {
        k % self.count == self.index
    }

    /// Shard `JOB_COMPLETION_INDEX` of `count` (a Kubernetes Indexed Job).
    pub fn from_job_index(count: u32) -> Result<Shard, String> {
        let index = std::env::var("JOB_COMPLETION_INDEX")
            .map_err(|_| "--shards needs JOB_COMPLETION_INDEX in the environment (a Kubernetes Indexed Job sets it)".to_owned())?;
        format!("{index}/{count}").parse()
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `I/N`, with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `--start-at`: an RFC 3339 UTC instant (`2026-11-26T05:00:00Z`,
/// fractions allowed) or `@<unix seconds>`.
pub fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    if let Some(secs) = s.strip_prefix('@') {
        return secs
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| UNIX_EPOCH + Duration::from_secs_f64(s))
            .ok_or_else(|| format!("invalid --start-at {s:?}: expected @<unix seconds>"));
    }
    // Normalise to exactly milliseconds, the one form the timestamp parser reads.
    let body = s
        .strip_suffix('Z')
        .ok_or_else(|| format!("invalid --start-at {s:?}: expected a UTC time ending in Z"))?;
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    let millis: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(3)
        .collect();
    chorus_protocol::timestamp::parse_iso(&format!("{whole}.{millis}Z"))
        .ok_or_else(|| format!("invalid --start-at {s:?}: expected e.g. 2026-11-26T05:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shards() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1/0", "x/2", "1"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let s = Shard { index: 1, count: 3 };
        assert_eq!((0..9).filter(|k| s.owns(*k)).collect::<Vec<_>>(), [1, 4, 7]);
    }

    #[test]
    fn parses_start_times() {
        let t = parse_start_at("2026-11-26T05:00:00Z").unwrap();
        assert_eq!(t, parse_start_at("2026-11-26T05:00:00.000Z").unwrap());
        assert_eq!(parse_start_at("@1795669200").unwrap(), t);
        assert!(parse_start_at("2026-11-26T05:00:00.5Z").unwrap() > t);
        assert!(parse_start_at("tomorrow").is_err());
    }
}
