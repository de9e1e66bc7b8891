//! Several nodes of one gateway: which node each virtual user connects to,
//! and the per-node metrics (`node.<i>.connect`, `node.<i>.delivery.<event>`,
//! `node.<i>.connections.ok`, `node.<r>.received_from.<s>`).
//!
//! A virtual user's node is a pure function of its number, so every shard
//! of a distributed run agrees on it and nothing per client or per message
//! stores it: round-robin by default, or by `weights` (the golden-ratio
//! sequence of the number, a low-discrepancy spread that follows the weights
//! closely for any count of clients).

use crate::metrics::{CounterId, LatencyId, Registry};

/// The prefix of every per-node metric.
pub const NODE_PREFIX: &str = "node.";

/// How a run's clients are spread over its nodes.
#[derive(Debug, Clone)]
pub struct Nodes {
    urls: Vec<String>,
    /// Cumulative weight fractions, ending at 1.0; `None`: round-robin.
    cumulative: Option<Vec<f64>>,
}

impl Nodes {
    /// Nodes at `urls` (at least one), with optional relative `weights`
    /// (one per URL, validated by the scenario).
    pub fn new(urls: Vec<String>, weights: Option<&[f64]>) -> Self {
        let cumulative = weights.filter(|w| w.len() == urls.len()).map(|w| {
            let total: f64 = w.iter().sum();
            let mut sum = 0.0;
            let mut out: Vec<f64> = w
                .iter()
                .map(|x| {
                    sum += x;
                    sum / total
                })
                .collect();
            if let Some(last) = out.last_mut() {
                *last = 1.0;
            }
            out
        });
        Self { urls, cumulative }
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
        let n = self.urls.len().max(1);
        let index = match &self.cumulative {
            None => vu as usize % n,
            Some(cumulative) => {
                // The fractional part of vu / φ: evenly spread over [0, 1).
                let x = (f64::from(vu) * 0.618_033_988_749_894_9).fract();
                cumulative.iter().position(|&c| x < c).unwrap_or(n - 1)
            }
        };
        index as u8
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
        (0..n).map(|i| format!("http://127.0.0.1:{}", 3000 + i)).collect()
    }

    #[test]
    fn round_robin_by_number() {
        let nodes = Nodes::new(urls(3), None);
        let spread: Vec<u8> = (0..6).map(|vu| nodes.node_of(vu)).collect();
        assert_eq!(spread, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_followed_and_deterministic() {
        let nodes = Nodes::new(urls(3), Some(&[3.0, 1.0, 0.0]));
        let mut counts = [0u32; 3];
        for vu in 0..4_000 {
            counts[usize::from(nodes.node_of(vu))] += 1;
        }
        assert_eq!(counts[2], 0, "a weight of 0 gets nobody");
        assert!((2_950..=3_050).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[0] + counts[1], 4_000);
        let again = Nodes::new(urls(3), Some(&[3.0, 1.0, 0.0]));
        assert!((0..100).all(|vu| nodes.node_of(vu) == again.node_of(vu)));
    }
}
