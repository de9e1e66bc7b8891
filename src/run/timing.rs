//! Latency recording on the receive path: each delivery timed from its
//! intended and its actual send time, and unmarked deliveries (`userTyping`)
//! matched to their sends in order.

use crate::client::{RxSource, RxTime};
use crate::metrics::{CounterId, LatencyId, Recorder, Registry, READ_DELAY, RX_USER_FRAMES};

use super::clock::WallTime;
use super::fasthash::FastMap;
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
        recorder.record_pair((corrected, latency), (uncorrected, at.micros_since(sent)));
        if let Some(&by_node) = event.node_delivery.get(usize::from(node)) {
            recorder.record(by_node, latency);
        }
    }
}

/// Where each frame's receive time came from, and how late it was read.
#[derive(Debug, Clone, Copy)]
pub struct RxIds {
    /// `driver.read_delay`, for frames with a kernel time.
    read_delay: LatencyId,
    /// The user-time frame counters, indexed by `RxSource::index() - 1`.
    user: [CounterId; 3],
}

impl RxIds {
    /// Registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        Self {
            read_delay: registry.latency(READ_DELAY),
            user: RX_USER_FRAMES.map(|name| registry.counter(name)),
        }
    }

    /// Records one frame: its read delay when the kernel dated it, else
    /// one more frame dated by user-space time for its reason.
    #[inline]
    pub fn record(&self, recorder: &Recorder, rx: RxTime) {
        match rx.source {
            RxSource::Kernel => recorder.record_duration(self.read_delay, rx.read_delay()),
            other => recorder.add(self.user[other.index() - 1], 1),
        }
    }
}

/// Per sender: how many of its unmarked broadcasts one receiver has matched.
#[derive(Debug, Default)]
pub struct UnmarkedMatch {
    seen: FastMap<u32, usize>,
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
