//! Latency recording on the receive path: each delivery timed from its
//! intended and its actual send time, and unmarked deliveries (`userTyping`)
//! matched to their sends in order.

use crate::metrics::Recorder;

use super::clock::WallTime;
use super::fasthash::FastMap;
use super::plan::Event;
use super::roster::SenderLog;

/// Records a delivery of `event` received `at`: `delivery.<event>` from the
/// intended send time (no coordinated omission), `delivery_uncorrected.<event>`
/// from the actual one. Events without delivery metrics are not timed.
#[inline]
pub fn record_delivery(
    recorder: &Recorder,
    event: &Event,
    at: WallTime,
    intended: WallTime,
    sent: WallTime,
) {
    if let Some((corrected, uncorrected)) = event.delivery {
        recorder.record_pair(
            (corrected, at.micros_since(intended)),
            (uncorrected, at.micros_since(sent)),
        );
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
