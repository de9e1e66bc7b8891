//! Several nodes of one gateway: which node each virtual user connects to,
//! and the per-node metrics (`node.<i>.connect`, `node.<i>.delivery.<event>`,
//! `node.<i>.connections.ok`, `node.<r>.received_from.<s>`).
//!
//! A virtual user's node is a pure function of its number, so every shard
//! of a distributed run agrees on it and nothing per client or per message
//! stores it: round-robin by default, or by `weights`: a cycle computed at
//! load time by smooth weighted round-robin (as nginx spreads requests), so
//! every stretch of consecutive numbers is split as the weights say, within
//! one client per node.

use crate::metrics::{CounterId, LatencyId, Registry, NODE_PREFIX};

/// The longest weighted cycle (weights are scaled down to fit).
const MAX_CYCLE: u64 = 1 << 16;

/// How a run's clients are spread over its nodes.
#[derive(Debug, Clone)]
pub struct Nodes {
    urls: Vec<String>,
    /// Node by virtual-user number modulo its length; empty: round-robin.
    cycle: Vec<u8>,
}

impl Nodes {
    /// Nodes at `urls` (at least one, at most 256), with optional relative
    /// `weights` (one per URL, validated by the scenario).
    pub fn new(urls: Vec<String>, weights: Option<&[f64]>) -> Self {
        let cycle = weights
            .filter(|w| w.len() == urls.len() && urls.len() > 1)
            .map(weighted_cycle)
            .unwrap_or_default();
        Self { urls, cycle }
    }

    /// How many nodes.
    pub fn count(&self) -> usize {
        self.urls.len()
    }

    /// The URLs, by node index.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The node virtual user `vu` connects to.
    #[inline]
    pub fn node_of(&self, vu: u32) -> u8 {
        if self.cycle.is_empty() {
            return (vu as usize % self.urls.len().max(1)) as u8;
        }
        self.cycle[vu as usize % self.cycle.len()]
    }
}

/// The smooth weighted round-robin cycle of `weights`: integer weights
/// (three decimals kept, divided by their gcd, scaled down to at most
/// [`MAX_CYCLE`] in all), each node in it as often as its weight, spread out.
fn weighted_cycle(weights: &[f64]) -> Vec<u8> {
    let mut ints: Vec<u64> = weights
        .iter()
        .map(|w| (w * 1000.0).round() as u64)
        .collect();
    let total: u64 = ints.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    if total > MAX_CYCLE {
        ints = ints
            .iter()
            .map(|&w| match w {
                0 => 0,
                w => (w * MAX_CYCLE / total).max(1),
            })
            .collect();
    }
    let g = ints.iter().copied().fold(0, gcd);
    let ints: Vec<i64> = ints.iter().map(|&w| (w / g) as i64).collect();
    let total: i64 = ints.iter().sum();
    let mut current = vec![0i64; ints.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(&ints) {
                *c += w;
            }
            let (pick, _) = current
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                .expect("at least one node");
            current[pick] -= total;
            pick as u8
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The per-node metric ids of a run with more than one node (none with one).
#[derive(Debug, Default)]
pub struct NodeIds {
    /// `node.<i>.connect`, by node.
    pub connect: Vec<LatencyId>,
    /// `node.<i>.connections.ok`, by node.
    pub connected: Vec<CounterId>,
    /// `node.<r>.received_from.<s>` at `r * count + s`: correlated messages
    /// received by clients of node `r` from senders on node `s`.
    pub crossed: Vec<CounterId>,
    count: usize,
}

impl NodeIds {
    /// Registers the per-node metrics of `nodes` (nothing for one node).
    pub fn register(nodes: &Nodes, registry: &Registry) -> Self {
        let count = nodes.count();
        if count < 2 {
            return Self::default();
        }
        let connect = (0..count)
            .map(|i| registry.latency(&format!("{NODE_PREFIX}{i}.connect")))
            .collect();
        let connected = (0..count)
            .map(|i| registry.counter(&format!("{NODE_PREFIX}{i}.connections.ok")))
            .collect();
        let crossed = (0..count * count)
            .map(|k| {
                let (r, s) = (k / count, k % count);
                registry.counter(&format!("{NODE_PREFIX}{r}.received_from.{s}"))
            })
            .collect();
        Self {
            connect,
            connected,
            crossed,
            count,
        }
    }

    /// The counter of deliveries to node `receiver` from node `sender`.
    #[inline]
    pub fn crossed(&self, receiver: u8, sender: u8) -> Option<CounterId> {
        let k = usize::from(receiver) * self.count + usize::from(sender);
        self.crossed.get(k).copied()
    }
}

/// `node.<i>.delivery.<event>` of a timed event, by node (empty with one node).
pub fn delivery_ids(nodes: &Nodes, registry: &Registry, event: &str) -> Vec<LatencyId> {
    if nodes.count() < 2 {
        return Vec::new();
    }
    (0..nodes.count())
        .map(|i| registry.latency(&format!("{NODE_PREFIX}{i}.delivery.{event}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 3000 + i))
            .collect()
    }

    #[test]
    fn round_robin_by_number() {
        let nodes = Nodes::new(urls(3), None);
        let spread: Vec<u8> = (0..6).map(|vu| nodes.node_of(vu)).collect();
        assert_eq!(spread, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_followed_exactly_per_cycle() {
        let nodes = Nodes::new(urls(3), Some(&[3.0, 1.0, 0.0]));
        let spread: Vec<u8> = (0..8).map(|vu| nodes.node_of(vu)).collect();
        assert_eq!(
            spread,
            [0, 0, 1, 0, 0, 0, 1, 0],
            "3:1, spread out; 0 gets nobody"
        );
        let tenths = Nodes::new(urls(2), Some(&[0.7, 0.3]));
        let first: usize = (0..10).filter(|&vu| tenths.node_of(vu) == 0).count();
        assert_eq!(first, 7);
        // Huge weights are scaled down to a bounded cycle, keeping the ratio.
        let huge = Nodes::new(urls(2), Some(&[1_000_000.0, 1.0]));
        assert!(huge.cycle.len() as u64 <= MAX_CYCLE);
        assert!(huge.cycle.contains(&1));
    }
}
