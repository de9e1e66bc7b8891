//! Latency recording on the receive path: each delivery timed from its
//! intended and its actual send time, and unmarked deliveries (`userTyping`)
//! matched to their sends in order.

use std::collections::HashMap;

use crate::metrics::Recorder;

use super::clock::WallTime;
use super::plan::Event;
use super::roster::SenderLog;

/// Records a delivery of `event` received `at`: `delivery.<event>` from the
/// intended send time (no coordinated omission), `delivery_uncorrected.<event>`
/// from the actual one, and `node.<node>.delivery.<event>` by the
/// receiver's node when the run has several. Events without delivery
/// metrics are not timed.
#[inline]
pub fn record_delivery(
    recorder: &Recorder,
    event: &Event,
    node: u8,
    at: WallTime,
    (intended, sent): (WallTime, WallTime),
) {
    if let Some((corrected, uncorrected)) = event.delivery {
        let latency = at.micros_since(intended);
        recorder.record(corrected, latency);
        recorder.record(uncorrected, at.micros_since(sent));
        if let Some(&by_node) = event.node_delivery.get(usize::from(node)) {
            recorder.record(by_node, latency);
        }
    }
}

/// Per sender: how many of its unmarked broadcasts one receiver has matched.
#[derive(Debug, Default)]
pub struct UnmarkedMatch {
    seen: HashMap<u32, usize>,
}

impl UnmarkedMatch {
    /// The intended and actual send time of the next unmarked broadcast
    /// cause of sender `vu` owed to a receiver that entered the namespace at
    /// `joined`: the k-th seen from a sender is its k-th sent after then.
    pub fn next(
        &mut self,
        vu: u32,
        log: &SenderLog,
        joined: Option<WallTime>,
    ) -> Option<(WallTime, WallTime)> {
        let sent = log.typing.lock().expect("log lock");
        let seen = self.seen.entry(vu).or_insert_with(|| {
            joined.map_or(sent.len(), |j| sent.partition_point(|&(_, s)| s < j))
        });
        let times = sent.get(*seen).copied();
        *seen += 1;
        times
    }
}
