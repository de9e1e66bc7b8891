//! The liveness watchdog: once a second, a connected client that stopped
//! receiving while others still receive, or a server that stopped answering,
//! is a violation, reported 5 to 6 s into the stall.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::context::Context;
use super::ViolationKind;
use crate::metrics::IntervalSnapshot;

/// How long a client may go without a delivery owed to everyone while
/// others get them, or the whole run without any delivery while clients
/// send, before it is a liveness violation.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(4);

/// How far apart in time the receivers of one broadcast may read it and
/// still count as having read it together.
pub const DELIVERY_SPREAD: Duration = Duration::from_secs(1);

/// What the watchdog remembers between ticks.
#[derive(Debug, Default)]
pub struct Watch {
    /// Per tick (µs): the newest delivery owed to everyone that any client had received.
    newest: VecDeque<(u64, u64)>,
    /// Since when clients send but nothing is delivered.
    quiet_since: Option<Instant>,
}

/// Once a second: a connected client whose last delivery owed to everyone is
/// more than [`DELIVERY_SPREAD`] older than one that others had received at
/// least [`LIVENESS_BOUND`] ago (so reported 5 to 6 s into a stall), or a
/// server that stopped answering, is a violation. (Comparing with what others
/// got a bound ago, not with the newest delivery, keeps a client that is
/// merely milliseconds behind on a sparse broadcast from being flagged.)
pub fn watch_liveness(ctx: &Context, snapshot: &IntervalSnapshot, watch: &mut Watch) {
    let bound = LIVENESS_BOUND.as_micros() as u64;
    let margin = super::LEDGER_MARGIN.as_micros() as u64;
    let now = ctx.micros(Instant::now());
    let live: Vec<_> = {
        let mut inboxes = ctx.inboxes.lock().expect("inbox list lock");
        inboxes.retain(|w| w.upgrade().is_some_and(|i| !i.closed.load(Relaxed)));
        inboxes
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    };
    let newest = live
        .iter()
        .map(|i| i.last_delivery_us.load(Relaxed))
        .filter(|&t| t != u64::MAX)
        .max();
    if let Some(newest) = newest {
        watch.newest.push_back((now, newest));
    }
    while watch
        .newest
        .front()
        .is_some_and(|&(t, _)| t + 2 * bound < now)
    {
        watch.newest.pop_front();
    }
    // Ticks come once a second, give or take: the one about `bound` ago.
    let half_tick = 500_000;
    let reference = watch
        .newest
        .iter()
        .rev()
        .find(|&&(t, _)| t + bound <= now + half_tick)
        .map(|&(_, n)| n);
    if let Some(reference) = reference {
        for inbox in &live {
            let last = inbox.last_delivery_us.load(Relaxed);
            let connected = inbox.connected_at_us.load(Relaxed);
            let spread = DELIVERY_SPREAD.as_micros() as u64;
            let missed = connected != u64::MAX
                && connected + margin < reference
                && (last == u64::MAX || last + spread < reference);
            if missed && !inbox.reported_stalled.swap(true, Relaxed) {
                let since = if last == u64::MAX { connected } else { last };
                ctx.violation(
                    ViolationKind::Liveness,
                    inbox.vu,
                    "",
                    "deliveries while others receive them".to_owned(),
                    format!(
                        "nothing for {:.1} s, while others got one {:.1} s ago",
                        now.saturating_sub(since) as f64 / 1e6,
                        now.saturating_sub(reference) as f64 / 1e6
                    ),
                    now,
                );
            }
        }
    }
    let sent = snapshot.counter("emits").is_some_and(|c| c.delta > 0);
    let received = snapshot
        .counters
        .iter()
        .any(|c| c.name.starts_with("deliveries.received.") && c.delta > 0);
    if sent && !received {
        let since = *watch.quiet_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= LIVENESS_BOUND {
            ctx.violation(
                ViolationKind::Liveness,
                0,
                "",
                "deliveries for what clients send".to_owned(),
                format!("none for {} s", LIVENESS_BOUND.as_secs()),
                now,
            );
            watch.quiet_since = None;
        }
    } else {
        watch.quiet_since = None;
    }
}
