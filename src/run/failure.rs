//! Why clients did not connect, and why a run stopped: connect failures
//! counted by reason (`errors.connect.<reason>`), the one line that says why
//! no client at all could connect and what to check, and the supervisor that
//! turns a panicking virtual user into a counted error (`errors.panic`).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;

use crate::client::ClientError;
use crate::metrics::{CounterId, Recorder};
use crate::scenario::Scenario;

/// The counter a panicking virtual user is counted in.
pub const PANIC_COUNTER: &str = "errors.panic";

/// The prefix of the per-reason connect failure counters.
pub const CONNECT_PREFIX: &str = "errors.connect.";

/// What one failed connect said, kept for the first failure of each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A CONNECT_ERROR answer: its `data.code` (if any) and `message`.
    Refused {
        /// `data.code`, e.g. `INVALID_TOKEN`.
        code: Option<String>,
        /// `message`, e.g. `无效的认证令牌`.
        message: Option<String>,
    },
    /// The connect timeout ran out during `phase`.
    Timeout {
        /// The connect phase that was running, e.g. `transport handshake`.
        phase: &'static str,
        /// The connect timeout.
        after: Duration,
    },
    /// The handshake got this HTTP status.
    Status(u16),
    /// Anything else, as the client said it.
    Other(String),
}

/// The metric label of a failed connect: `refused.<data.code>` for a
/// CONNECT_ERROR (`refused.invalid_namespace` or `refused.other` without a
/// code), otherwise the client's own reason (`timeout`, `tcp_connect`, …).
pub fn reason_label(err: &ClientError) -> (String, Detail) {
    match err {
        ClientError::ConnectRefused { data, .. } => {
            let json: Option<serde_json::Value> = serde_json::from_str(data).ok();
            let field =
                |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
            let code = field(json.as_ref().and_then(|j| j.get("data")?.get("code")))
                .filter(|c| is_label(c));
            let message = field(json.as_ref().and_then(|j| j.get("message")));
            let label = match (&code, message.as_deref()) {
                (Some(code), _) => format!("refused.{code}"),
                (None, Some("Invalid namespace")) => "refused.invalid_namespace".to_owned(),
                (None, _) => "refused.other".to_owned(),
            };
            (label, Detail::Refused { code, message })
        }
        ClientError::Timeout { phase, after } => (
            err.reason().to_owned(),
            Detail::Timeout {
                phase,
                after: *after,
            },
        ),
        ClientError::Handshake { status, .. } => (err.reason().to_owned(), Detail::Status(*status)),
        other => (other.reason().to_owned(), Detail::Other(other.to_string())),
    }
}

/// Whether `text` may be part of a metric name (threshold keys allow
/// letters, digits, `_` and `-`), and is not absurdly long.
fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Failed connects of a run: counted in the registry by reason, and the
/// first [`Detail`] of each reason kept for the one-line explanation.
pub struct ConnectFailures {
    recorder: Recorder,
    seen: Mutex<BTreeMap<String, (u64, Detail)>>,
}

impl ConnectFailures {
    /// Failures counted through `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one failed connect in `errors.connect.<reason>`.
    pub fn record(&self, err: &ClientError) {
        let (label, detail) = reason_label(err);
        self.recorder
            .add_by_name(&format!("{CONNECT_PREFIX}{label}"), 1);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.entry(label).or_insert((0, detail)).0 += 1;
    }

    /// How many connects failed so far.
    pub fn total(&self) -> u64 {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().map(|(n, _)| n).sum()
    }

    /// The most frequent reason so far and its count, for the progress line.
    pub fn top(&self) -> Option<(String, u64)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
            .map(|(label, (n, _))| (label.clone(), *n))
    }

    /// Every reason with its count and first detail, most frequent first.
    pub fn reasons(&self) -> Vec<(String, u64, Detail)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = seen
            .iter()
            .map(|(label, (n, detail))| (label.clone(), *n, detail.clone()))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// The `host:port` of a URL, for messages; of each, for the `, `-joined
/// URLs of several nodes.
fn authority(urls: &str) -> String {
    let one = |url: &str| {
        url.split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or(url)
            .to_owned()
    };
    urls.split(", ").map(one).collect::<Vec<_>>().join(", ")
}

/// What a user should check about a CONNECT_ERROR code.
fn refusal_hint(code: &str, scenario: &Scenario) -> String {
    let auth = scenario.auth.as_ref();
    match code {
        "INVALID_TOKEN" => match (
            auth.and_then(|a| a.jwt.as_ref()),
            auth.and_then(|a| a.csv.as_ref()),
        ) {
            (Some(jwt), _) => format!("is {} the gateway's secret?", jwt.secret_env),
            (None, Some(csv)) => format!(
                "are the tokens in {} signed with the gateway's secret and unexpired?",
                csv.file.display()
            ),
            (None, None) => "is the token signed with the gateway's secret?".to_owned(),
        },
        "NO_TOKEN" => {
            "the gateway wants a token: does the scenario's `auth:` send one where it looks (place: auth, query or header)?"
                .to_owned()
        }
        _ => "see the gateway's log for why it refuses".to_owned(),
    }
}

/// The one line that says why no client at all could connect, and what to
/// check: e.g. `all 100 clients refused with INVALID_TOKEN: is JWT_SECRET
/// the gateway's secret?`.
pub fn no_client_line(
    reasons: &[(String, u64, Detail)],
    target: &str,
    scenario: &Scenario,
) -> String {
    let total: u64 = reasons.iter().map(|r| r.1).sum();
    let at = authority(target);
    let Some((label, n, detail)) = reasons.first() else {
        return format!("no client connected to {at}");
    };
    let everyone = if *n == total {
        format!("all {total} clients")
    } else {
        format!("{n} of {total} clients")
    };
    let line = match detail {
        Detail::Refused {
            code: Some(code), ..
        } => format!(
            "{everyone} refused with {code}: {}",
            refusal_hint(code, scenario)
        ),
        Detail::Refused { message, .. } if label == "refused.invalid_namespace" => format!(
            "{everyone} refused by {at} with {:?}: does the gateway serve the namespace {}?",
            message.as_deref().unwrap_or_default(),
            scenario.socketio.namespace
        ),
        Detail::Refused { message, .. } => format!(
            "{everyone} refused by {at} (message {:?}): see the gateway's log",
            message.as_deref().unwrap_or_default()
        ),
        Detail::Timeout { phase, after } => {
            let secs = after.as_secs_f64();
            match *phase {
                "tcp connect" => format!(
                    "{everyone}: no TCP connection to {at} within {secs} s: is the gateway up and reachable?"
                ),
                "namespace connect" => format!(
                    "{everyone}: no answer to the namespace CONNECT to {} within {secs} s from {at}: does the gateway serve that namespace?",
                    scenario.socketio.namespace
                ),
                _ => format!(
                    "no client got an Engine.IO open packet within {secs} s from {at} ({everyone} timed out during the {phase}): is it a Socket.IO server at path {}?",
                    scenario.socketio.path
                ),
            }
        }
        Detail::Status(status) => format!(
            "{everyone}: the Engine.IO handshake got HTTP {status} from {at}: is it a Socket.IO server at path {}?",
            scenario.socketio.path
        ),
        Detail::Other(text) => format!("{everyone} could not connect to {at}: {text}"),
    };
    if *n == total {
        return line;
    }
    let others: Vec<String> = reasons[1..]
        .iter()
        .map(|(label, n, _)| format!("{label} {n}"))
        .collect();
    format!(
        "no client connected; {line} (others: {})",
        others.join(", ")
    )
}

/// Runs one virtual user's future; a panic in it is caught, counted in
/// `panics` (`errors.panic`) and logged, and never takes the run down.
/// Returns whether the future ended without panicking.
pub async fn supervise<F: Future<Output = ()>>(
    vu: u32,
    future: F,
    recorder: Recorder,
    panics: CounterId,
) -> bool {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(()) => true,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            recorder.add(panics, 1);
            tracing::error!(vu, "virtual user panicked: {what}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;

    fn scenario() -> Scenario {
        Scenario::from_str(
            "name: t\nsocketio: { namespace: /chat }\nauth: { jwt: { secret_env: MY_SECRET } }\n\
             groups:\n  - name: g\n    flow: [connect]\nload:\n  phases:\n    - hold: 1s\n",
            "t.yml",
        )
        .expect("the scenario loads")
    }

    fn refused(data: &str) -> ClientError {
        ClientError::ConnectRefused {
            nsp: "/chat".into(),
            data: data.into(),
        }
    }

    #[test]
    fn refusals_are_labelled_by_their_code() {
        let (label, _) = reason_label(&refused(
            r#"{"message":"无效的认证令牌","data":{"code":"INVALID_TOKEN"}}"#,
        ));
        assert_eq!(label, "refused.INVALID_TOKEN");
        let (label, _) = reason_label(&refused(r#"{"message":"Invalid namespace"}"#));
        assert_eq!(label, "refused.invalid_namespace");
        // A code that cannot be a metric name is not used as one.
        let (label, _) = reason_label(&refused(r#"{"data":{"code":"a b.c"}}"#));
        assert_eq!(label, "refused.other");
        let (label, _) = reason_label(&refused("not json"));
        assert_eq!(label, "refused.other");
        let (label, detail) = reason_label(&ClientError::Timeout {
            phase: "transport handshake",
            after: Duration::from_secs(10),
        });
        assert_eq!(label, "timeout");
        assert!(matches!(detail, Detail::Timeout { .. }));
    }

    #[test]
    fn failures_are_counted_by_reason_and_explained_in_one_line() {
        let registry = Registry::new();
        let failures = ConnectFailures::new(registry.recorder());
        for _ in 0..100 {
            failures.record(&refused(
                r#"{"message":"无效的认证令牌","data":{"code":"INVALID_TOKEN"}}"#,
            ));
        }
        assert_eq!(failures.total(), 100);
        assert_eq!(failures.top(), Some(("refused.INVALID_TOKEN".into(), 100)));
        let line = no_client_line(&failures.reasons(), "http://127.0.0.1:4000", &scenario());
        assert_eq!(
            line,
            "all 100 clients refused with INVALID_TOKEN: is MY_SECRET the gateway's secret?"
        );
        registry.collect_interval(std::time::Instant::now());
        let total = registry
            .cumulative()
            .counters
            .iter()
            .find(|c| c.name.as_ref() == "errors.connect.refused.INVALID_TOKEN")
            .map(|c| c.total);
        assert_eq!(total, Some(100));

        let failures = ConnectFailures::new(registry.recorder());
        for _ in 0..3 {
            failures.record(&ClientError::Timeout {
                phase: "transport handshake",
                after: Duration::from_secs(10),
            });
        }
        failures.record(&ClientError::Closed);
        let line = no_client_line(&failures.reasons(), "http://127.0.0.1:4000/x", &scenario());
        assert!(
            line.contains("no client got an Engine.IO open packet within 10 s from 127.0.0.1:4000")
                && line.contains("is it a Socket.IO server")
                && line.contains("(others: closed 1)")
                && !line.contains('\n'),
            "{line}"
        );
        // Several nodes are named by their host and port, each.
        let nodes = "http://127.0.0.1:4000/x, http://127.0.0.1:4001";
        let line = no_client_line(&failures.reasons(), nodes, &scenario());
        assert!(
            line.contains("from 127.0.0.1:4000, 127.0.0.1:4001 ("),
            "{line}"
        );
    }

    #[test]
    fn a_panic_a_failed_connect_or_a_failed_send_fails_the_built_in_checks() {
        let summary_with = |counter: &str| {
            let registry = Registry::new();
            registry.counter(PANIC_COUNTER);
            if !counter.is_empty() {
                registry.recorder().add_by_name(counter, 1);
            }
            registry.collect_interval(std::time::Instant::now());
            crate::metrics::Summary::from_registry(
                &registry,
                crate::metrics::RunInfo {
                    scenario: "t".into(),
                    target: "t".into(),
                    started_at: std::time::SystemTime::UNIX_EPOCH,
                    duration: Duration::from_secs(1),
                },
            )
        };
        let mut clean = summary_with("");
        assert!(super::super::verdict::evaluate(&mut clean, &scenario()));
        for (counter, check) in [
            (PANIC_COUNTER, "errors.panic == 0 (built-in check)"),
            (
                "errors.connect.timeout",
                "errors.connect == 0 (built-in check)",
            ),
            ("errors.emit", "errors.emit == 0 (built-in check)"),
        ] {
            let mut summary = summary_with(counter);
            assert!(
                !super::super::verdict::evaluate(&mut summary, &scenario()),
                "{counter}"
            );
            let failed: Vec<&str> = summary
                .thresholds
                .iter()
                .filter(|t| !t.pass)
                .map(|t| t.expr.as_str())
                .collect();
            assert_eq!(failed, [check]);
        }
    }

    #[tokio::test]
    async fn a_panicking_virtual_user_is_caught_and_counted() {
        let registry = Registry::new();
        let panics = registry.counter(PANIC_COUNTER);
        let calm = supervise(1, async {}, registry.recorder(), panics).await;
        assert!(calm);
        // The same supervisor the run spawns every virtual user under, on a
        // task of its own as the run does.
        let recorder = registry.recorder();
        let task = tokio::spawn(supervise(
            2,
            async {
                tokio::task::yield_now().await;
                let empty: Vec<u8> = Vec::new();
                let _ = empty[usize::from(empty.is_empty())];
            },
            recorder,
            panics,
        ));
        let ended_well = task.await.expect("the supervisor itself does not panic");
        assert!(!ended_well);
        registry.collect_interval(std::time::Instant::now());
        let total = registry
            .cumulative()
            .counters
            .iter()
            .find(|c| c.name.as_ref() == PANIC_COUNTER)
            .map(|c| c.total);
        assert_eq!(total, Some(1));
    }
}
