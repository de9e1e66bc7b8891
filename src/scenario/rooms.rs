//! The `rooms:` load shape: N clients spread over M rooms by a
//! distribution, decided from the client's number and a seed alone, so
//! that every shard of a distributed run puts a client in the same rooms.

use serde::Deserialize;

/// The most rooms one spread may name.
pub const MAX_ROOMS: u64 = 1_000_000;
/// The most rooms one client may be given (the reference gateway's cap).
pub const MAX_PER_CLIENT: u64 = 50;

/// How client numbers map to rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Client `vu` gets rooms `vu·k`, …, `vu·k + k − 1` modulo the count
    /// (rotated by the seed): every room gets the same number, ±1.
    #[default]
    Uniform,
    /// Room `r` (from 0) is drawn with probability ∝ `1/(r+1)^s`: a few large rooms, many small.
    Zipf,
}

/// `rooms: { count, spread, zipf_s, per_client, prefix, seed }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSpread {
    /// How many rooms (`{prefix}0` … `{prefix}{count-1}`).
    pub count: u64,
    /// The distribution.
    #[serde(default)]
    pub spread: Spread,
    /// Zipf's exponent `s` (default 1).
    #[serde(default = "default_s")]
    pub zipf_s: f64,
    /// Rooms per client, all different (default 1): `{{room}}`, then
    /// `{{room_1}}`, `{{room_2}}`, ….
    #[serde(default = "one")]
    pub per_client: u64,
    /// The room names' prefix (default `room-`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Seeds the assignment (default 0); the same seed gives the same rooms.
    #[serde(default)]
    pub seed: u64,
    /// Zipf's cumulative weights, normalised to end at 1 (built at load).
    #[serde(skip)]
    cdf: Vec<f64>,
    /// The template names of a client's rooms: `room`, `room_1`, ….
    #[serde(skip)]
    pub vars: Vec<String>,
}

fn default_s() -> f64 {
    1.0
}

fn one() -> u64 {
    1
}

fn default_prefix() -> String {
    "room-".into()
}

impl RoomSpread {
    /// What is wrong with the block (field, message), if anything.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.count == 0 || self.count > MAX_ROOMS {
            return Some((
                "count",
                format!("rooms.count must be 1 to {MAX_ROOMS}, not {}", self.count),
            ));
        }
        if self.per_client == 0 || self.per_client > MAX_PER_CLIENT.min(self.count) {
            return Some((
                "per_client",
                format!(
                    "rooms.per_client must be 1 to {} (at most the count, at most {MAX_PER_CLIENT}), not {}",
                    MAX_PER_CLIENT.min(self.count),
                    self.per_client
                ),
            ));
        }
        if !(self.zipf_s > 0.0 && self.zipf_s <= 10.0) {
            return Some((
                "zipf_s",
                format!(
                    "rooms.zipf_s must be above 0 and at most 10, not {}",
                    self.zipf_s
                ),
            ));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
        if !self.prefix.chars().all(valid) || self.prefix.len() > 40 {
            return Some((
                "prefix",
                "rooms.prefix must be at most 40 characters of A-Z a-z 0-9 _ . : -".into(),
            ));
        }
        None
    }

    /// Builds what the assignment reads (call once, after [`RoomSpread::problem`]).
    pub fn compile(&mut self) {
        self.vars = (0..self.per_client)
            .map(|i| match i {
                0 => "room".to_owned(),
                i => format!("room_{i}"),
            })
            .collect();
        if self.spread == Spread::Zipf {
            let mut total = 0.0;
            self.cdf = (0..self.count)
                .map(|r| {
                    total += 1.0 / ((r + 1) as f64).powf(self.zipf_s);
                    total
                })
                .collect();
            for w in &mut self.cdf {
                *w /= total;
            }
        }
    }

    /// The room indices of client `vu`, all different, in the order of its
    /// template names.
    pub fn rooms_of(&self, vu: u64) -> Vec<u64> {
        let k = self.per_client;
        match self.spread {
            Spread::Uniform => (0..k)
                .map(|i| (vu.wrapping_mul(k).wrapping_add(i).wrapping_add(self.seed)) % self.count)
                .collect(),
            Spread::Zipf => {
                let mut rooms = Vec::with_capacity(k as usize);
                let mut draw = 0u64;
                while rooms.len() < k as usize {
                    let room = if draw < 64 * k {
                        let u = unit(splitmix(self.seed ^ splitmix(vu) ^ draw.rotate_left(32)));
                        let r = self.cdf.partition_point(|&c| c < u) as u64;
                        r.min(self.count - 1)
                    } else {
                        // Unlikely: take the most popular room not yet taken.
                        (0..self.count).find(|r| !rooms.contains(r)).unwrap_or(0)
                    };
                    draw += 1;
                    if !rooms.contains(&room) {
                        rooms.push(room);
                    }
                }
                rooms
            }
        }
    }

    /// The name of room `index`.
    pub fn name(&self, index: u64) -> String {
        format!("{}{index}", self.prefix)
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash as a number in `[0, 1)`.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(count: u64, spread: Spread, per_client: u64) -> RoomSpread {
        let mut s = RoomSpread {
            count,
            spread,
            zipf_s: 1.0,
            per_client,
            prefix: default_prefix(),
            seed: 7,
            cdf: Vec::new(),
            vars: Vec::new(),
        };
        assert!(s.problem().is_none());
        s.compile();
        s
    }

    fn sizes(s: &RoomSpread, clients: u64) -> Vec<u64> {
        let mut sizes = vec![0u64; s.count as usize];
        for vu in 0..clients {
            for r in s.rooms_of(vu) {
                sizes[r as usize] += 1;
            }
        }
        sizes
    }

    #[test]
    fn uniform_gives_every_room_the_same_number() {
        let s = spread(100, Spread::Uniform, 1);
        let sizes = sizes(&s, 1000);
        assert!(sizes.iter().all(|&n| n == 10), "{sizes:?}");
        let s = spread(10, Spread::Uniform, 3);
        assert_eq!(s.rooms_of(4), [9, 0, 1], "(4·3 + 7) mod 10, and on");
        assert_eq!(s.vars, ["room", "room_1", "room_2"]);
    }

    #[test]
    fn zipf_is_deterministic_distinct_and_skewed() {
        let s = spread(1000, Spread::Zipf, 1);
        assert_eq!(
            s.rooms_of(42),
            s.rooms_of(42),
            "the same client, the same room"
        );
        let sizes = sizes(&s, 10_000);
        assert_eq!(sizes.iter().sum::<u64>(), 10_000);
        // P(room 0) = 1/H(1000) ≈ 0.134: about 1,340 of 10,000.
        assert!((1_150..1_550).contains(&sizes[0]), "room 0: {}", sizes[0]);
        assert!(sizes[0] > 5 * sizes[9], "{} vs {}", sizes[0], sizes[9]);
        let small = sizes.iter().filter(|&&n| n <= 3).count();
        assert!(small > 200, "the tail is small: {small} rooms of at most 3");
        let s = spread(5, Spread::Zipf, 5);
        for vu in 0..50 {
            let mut rooms = s.rooms_of(vu);
            rooms.sort_unstable();
            assert_eq!(rooms, [0, 1, 2, 3, 4], "all different");
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        let mut s = spread(10, Spread::Zipf, 1);
        s.per_client = 11;
        assert_eq!(s.problem().map(|p| p.0), Some("per_client"));
        s.per_client = 1;
        s.zipf_s = 0.0;
        assert_eq!(s.problem().map(|p| p.0), Some("zipf_s"));
        s.zipf_s = 1.0;
        s.count = 0;
        assert_eq!(s.problem().map(|p| p.0), Some("count"));
    }
}
