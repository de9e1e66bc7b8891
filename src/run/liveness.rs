//! The liveness watchdog: once a second, a connected client that stopped
//! receiving while others still receive, or a server that stopped answering,
//! is a violation, reported within [`LIVENESS_BOUND`].

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::context::Context;
use super::ViolationKind;
use crate::metrics::IntervalSnapshot;

/// How long a client may go without a delivery owed to everyone while
/// others get them, or the whole run without any delivery while clients
/// send, before it is a liveness violation.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(5);

/// Once a second: a connected client that stopped receiving while others
/// still receive, or a server that stopped answering, is a violation.
pub fn watch_liveness(
    ctx: &Context,
    snapshot: &IntervalSnapshot,
    quiet_since: &mut Option<Instant>,
) {
    let bound = LIVENESS_BOUND.as_micros() as u64;
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
    if let Some(newest) = newest.filter(|&n| n + bound >= now) {
        for inbox in &live {
            let last = inbox.last_delivery_us.load(Relaxed);
            let connected = inbox.connected_at_us.load(Relaxed);
            let since = if last == u64::MAX { connected } else { last };
            if connected != u64::MAX
                && since + bound < newest
                && !inbox.reported_stalled.swap(true, Relaxed)
            {
                ctx.violation(
                    ViolationKind::Liveness,
                    inbox.vu,
                    "",
                    "deliveries while others receive them".to_owned(),
                    format!("nothing for {:.1} s", (newest - since) as f64 / 1e6),
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
        let since = *quiet_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= LIVENESS_BOUND {
            ctx.violation(
                ViolationKind::Liveness,
                0,
                "",
                "deliveries for what clients send".to_owned(),
                format!("none for {} s", LIVENESS_BOUND.as_secs()),
                now,
            );
            *quiet_since = None;
        }
    } else {
        *quiet_since = None;
    }
}
