//! The verdict of a run or a merge: the scenario's thresholds and the
//! built-in checks, evaluated on a summary.

use crate::metrics::Summary;
use crate::scenario::Scenario;

use super::failure::PANIC_COUNTER;

/// Evaluates the scenario's thresholds and the built-in checks: no
/// delivery rule was violated, every client that was meant to connect did
/// (`errors.connect`: failed connects of any reason, CONNECT_ERROR refusals
/// included), every send reached the socket (`errors.emit`: a gateway that
/// stops reading or drops connections under its clients has not held), and
/// no virtual user panicked (`errors.panic`). Returns whether all held.
pub fn evaluate(summary: &mut Summary, scenario: &Scenario) -> bool {
    let mut pass = true;
    for t in &scenario.thresholds {
        let stat = t.stat.map(|s| s.to_string());
        pass &= summary.evaluate(t.to_string(), &t.metric, stat.as_deref(), |v| t.check(v));
    }
    for (expr, metric) in [
        ("violations == 0 (built-in check)", "violations"),
        ("errors.connect == 0 (built-in check)", "errors.connect"),
        ("errors.emit == 0 (built-in check)", "errors.emit"),
        ("errors.panic == 0 (built-in check)", PANIC_COUNTER),
    ] {
        pass &= summary.evaluate(expr, metric, None, |v| v == 0.0);
    }
    pass
}

/// The live check of `abort_on_fail`: the first threshold or check that
/// failed on a value. A threshold without data yet is not a breach (early
/// in a run most latencies have no sample); it fails at the end if it
/// still has none.
pub fn breached(summary: &mut Summary, scenario: &Scenario) -> Option<String> {
    evaluate(summary, scenario);
    summary
        .thresholds
        .iter()
        .find(|t| !t.pass && !t.no_data)
        .map(|t| t.expr.clone())
}
