//! The delivery ledger for correlated broadcasts (`newMessage`): which
//! messages each receiver had to get, which it got, and in what order.
//!
//! Every correlated message carries its sender and a per-sender sequence
//! number. A receiver keeps, per sender, the sequence numbers it got as sorted
//! runs (`[0..=41]`, usually a single run), so the record stays a few words
//! whatever the traffic. When the receiver's session ends, its runs are
//! compared with the senders' logs: a message was owed to the receiver when it
//! was sent while the receiver was surely in the namespace (after it had
//! joined plus a margin, and at least the delivery deadline before it left).

use std::collections::HashMap;

/// Sequence numbers received from one sender, as sorted, disjoint, inclusive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRuns {
    runs: Vec<(u64, u64)>,
}

/// What inserting one sequence number found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one expected, or the first from this sender.
    InOrder,
    /// Later than the next expected: some numbers were skipped (lost or late).
    Gap,
    /// Earlier than one already received: delivered out of order.
    OutOfOrder,
    /// Already received.
    Duplicate,
}

impl SeqRuns {
    /// Records `seq`.
    pub fn insert(&mut self, seq: u64) -> Arrival {
        let Some(&(_, last_end)) = self.runs.last() else {
            self.runs.push((seq, seq));
            return Arrival::InOrder;
        };
        if seq == last_end + 1 {
            self.runs.last_mut().expect("a run").1 = seq;
            return Arrival::InOrder;
        }
        if seq > last_end + 1 {
            self.runs.push((seq, seq));
            return Arrival::Gap;
        }
        // An older number: find where it belongs.
        let i = self.runs.partition_point(|&(_, end)| end < seq);
        let (start, _) = self.runs[i];
        if seq >= start {
            return Arrival::Duplicate;
        }
        let joins_prev = i > 0 && self.runs[i - 1].1 + 1 == seq;
        let joins_next = seq + 1 == start;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.runs[i - 1].1 = self.runs[i].1;
                self.runs.remove(i);
            }
            (true, false) => self.runs[i - 1].1 = seq,
            (false, true) => self.runs[i].0 = seq,
            (false, false) => self.runs.insert(i, (seq, seq)),
        }
        Arrival::OutOfOrder
    }

    /// How many received numbers lie in `lo..=hi`.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        self.runs
            .iter()
            .map(|&(s, e)| {
                let (s, e) = (s.max(lo), e.min(hi));
                if s <= e {
                    e - s + 1
                } else {
                    0
                }
            })
            .sum()
    }
}

/// Send times (µs since the run epoch) of one sender's correlated messages, by sequence number.
pub type SendLog = Vec<u64>;

/// One receiver's record, handed in when its session ends.
#[derive(Debug, Clone, Default)]
pub struct ReceiverRecord {
    /// When the receiver entered the namespace (µs since the run epoch).
    pub joined_at_us: u64,
    /// When its session ended (µs since the run epoch).
    pub left_at_us: u64,
    /// Received sequence numbers per sender.
    pub from: HashMap<u32, SeqRuns>,
}

/// What the ledger concluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Deliveries owed to receivers.
    pub expected: u64,
    /// Of those, delivered.
    pub received: u64,
    /// Of those, never delivered.
    pub lost: u64,
}

/// Adds up what each receiver was owed and got. `margin_us` is how long after
/// joining a receiver may still miss messages sent concurrently (in flight),
/// `deadline_us` how long before leaving a message must have been sent to be owed.
pub fn settle(
    receivers: &[ReceiverRecord],
    senders: &HashMap<u32, SendLog>,
    margin_us: u64,
    deadline_us: u64,
) -> LedgerTotals {
    let mut totals = LedgerTotals::default();
    for r in receivers {
        let from = r.joined_at_us.saturating_add(margin_us);
        let until = r.left_at_us.saturating_sub(deadline_us);
        if from >= until {
            continue;
        }
        for (sender, log) in senders {
            // The log is in send order, so the owed messages form one range of seqs.
            let lo = log.partition_point(|&t| t < from) as u64;
            let hi_exclusive = log.partition_point(|&t| t <= until) as u64;
            if lo >= hi_exclusive {
                continue;
            }
            let owed = hi_exclusive - lo;
            let got = r
                .from
                .get(sender)
                .map_or(0, |runs| runs.count_in(lo, hi_exclusive - 1));
            totals.expected += owed;
            totals.received += got;
            totals.lost += owed - got;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_classify_arrivals() {
        let mut r = SeqRuns::default();
        assert_eq!(r.insert(5), Arrival::InOrder);
        assert_eq!(r.insert(6), Arrival::InOrder);
        assert_eq!(r.insert(9), Arrival::Gap);
        assert_eq!(r.insert(8), Arrival::OutOfOrder);
        assert_eq!(r.insert(7), Arrival::OutOfOrder);
        assert_eq!(r, SeqRuns { runs: vec![(5, 9)] });
        assert_eq!(r.insert(7), Arrival::Duplicate);
        assert_eq!(r.insert(2), Arrival::OutOfOrder);
        assert_eq!(r.count_in(0, 100), 6);
        assert_eq!(r.count_in(3, 6), 2);
    }

    #[test]
    fn settle_counts_only_what_was_owed() {
        // Sender 1 sent seqs 0..10 at t = 0, 100, …, 900 µs.
        let senders = HashMap::from([(1, (0..10).map(|i| i * 100).collect::<SendLog>())]);
        let mut runs = SeqRuns::default();
        for seq in [3, 4, 6] {
            runs.insert(seq);
        }
        // In the namespace from 250 to 950, margin 50, deadline 150: owed seqs 3..=8.
        let r = ReceiverRecord {
            joined_at_us: 250,
            left_at_us: 950,
            from: HashMap::from([(1, runs)]),
        };
        let totals = settle(&[r], &senders, 50, 150);
        assert_eq!(
            totals,
            LedgerTotals {
                expected: 6,
                received: 3,
                lost: 3
            }
        );
    }

    #[test]
    fn a_receiver_that_heard_nothing_lost_everything_owed() {
        let senders = HashMap::from([(7, vec![10, 20, 30])]);
        let r = ReceiverRecord {
            joined_at_us: 0,
            left_at_us: 1_000,
            from: HashMap::new(),
        };
        assert_eq!(settle(&[r], &senders, 0, 0).lost, 3);
    }
}
