//! The liveness watchdog: once a second, a connected client that stopped
//! receiving while others still receive, or a server that stopped answering,
//! is a violation, reported 5 to 6 s into the stall.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::clock::WallTime;
use super::context::Context;
use super::ledger::LEDGER_MARGIN;
use super::violations::Kind;
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
    /// Per tick: the newest delivery owed to everyone that any client had received.
    newest: VecDeque<(WallTime, WallTime)>,
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
    let margin = LEDGER_MARGIN.as_micros() as u64;
    let now = ctx.plan.clock.now();
    let live = ctx.clients.open_inboxes();
    let newest = live.iter().filter_map(|i| i.last_delivery.get()).max();
    if let Some(newest) = newest {
        watch.newest.push_back((now, newest));
    }
    while watch
        .newest
        .front()
        .is_some_and(|&(t, _)| t.plus_us(2 * bound) < now)
    {
        watch.newest.pop_front();
    }
    // Ticks come once a second, give or take: the one about `bound` ago.
    let half_tick = 500_000;
    let reference = watch
        .newest
        .iter()
        .rev()
        .find(|&&(t, _)| t.plus_us(bound) <= now.plus_us(half_tick))
        .map(|&(_, n)| n);
    if let Some(reference) = reference {
        let spread = DELIVERY_SPREAD.as_micros() as u64;
        for inbox in &live {
            let last = inbox.last_delivery.get();
            let Some(connected) = inbox.connected_at.get() else {
                continue;
            };
            let missed = connected.plus_us(margin) < reference
                && last.is_none_or(|l| l.plus_us(spread) < reference);
            if missed && !inbox.reported_stalled.swap(true, Relaxed) {
                let since = last.unwrap_or(connected);
                ctx.violation(
                    Kind::Liveness,
                    inbox.vu,
                    "",
                    "deliveries while others receive them".to_owned(),
                    format!(
                        "nothing for {:.1} s, while others got one {:.1} s ago",
                        now.micros_since(since) as f64 / 1e6,
                        now.micros_since(reference) as f64 / 1e6
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
                Kind::Liveness,
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
