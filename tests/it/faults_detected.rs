//! Every fault the reference gateway can inject (`chorus_gateway::Faults`)
//! is caught: a short run against the faulty gateway fails, and its report
//! names the kind of violation that matches the fault, with evidence in
//! `violations.json`; the same runs against a fault-free gateway pass with no
//! violation at all. A strict gateway admitting any token cannot show in a
//! run: it fails the conformance auth cases instead; unjoined sockets'
//! messages being handled fail both a conformance case and a run.
//!
//! The faults are one table ([`Row`], one `#[test]` per row, named after
//! it): the fault, the run or conformance cases that must catch it, the
//! violation kind it must produce and the check of its evidence.
//!
//! `stall_once` and `delay_all` only slow the gateway down; they are
//! measurement fixtures, covered by `run_accuracy.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chorus::conform::{self, ConformOptions};
use chorus::metrics::{Summary, Verdict};
use chorus::run::run;
use chorus_gateway::{Faults, Profile, RunningGateway};
use serde_json::Value;

use crate::support::harness::{self, SERIAL};

/// The environment variable the fault scenarios read their JWT secret from.
const SECRET_ENV: &str = "CHORUS_TEST_SECRET_FAULTS";
const SECRET: &str = "secret-for-the-fault-tests";

const CHAT: &str = "tests/scenarios/faults-chat.yml";
const PRESENCE: &str = "tests/scenarios/faults-presence.yml";
const LOAD: &str = "tests/scenarios/faults-load.yml";

/// Every violation kind, as named in `summary.json` and `violations.json`.
const KINDS: [&str; 9] = [
    "loss",
    "duplicate",
    "order",
    "recipient",
    "presence",
    "payload",
    "reply",
    "liveness",
    "leak",
];

/// A gateway of `profile` on 127.0.0.1 port 0 injecting `faults`.
async fn gateway(profile: Profile, faults: Faults) -> RunningGateway {
    std::env::set_var(SECRET_ENV, SECRET);
    harness::start_gateway_in(profile, faults, SECRET).await
}

/// What a run against a faulty gateway left behind.
struct Outcome {
    summary: Summary,
    evidence: Vec<Value>,
    run_dir: PathBuf,
    took: Duration,
}

impl Outcome {
    fn violations(&self, kind: &str) -> u64 {
        self.summary.violations.get(kind).copied().unwrap_or(0)
    }

    fn counter(&self, name: &str) -> u64 {
        self.summary.counters.get(name).copied().unwrap_or(0)
    }

    /// The evidence entries of one kind.
    fn evidence_of(&self, kind: &str) -> Vec<&Value> {
        self.evidence.iter().filter(|e| e["kind"] == kind).collect()
    }

    /// The run failed, counted violations of `kind` and kept evidence of
    /// them, and counted none of the kinds in `unrelated`.
    fn assert_caught(&self, kind: &str, unrelated: &[&str]) {
        let v = &self.summary.violations;
        assert_eq!(self.summary.verdict, Verdict::Fail, "{v:?}");
        assert!(self.violations(kind) > 0, "no {kind} violation: {v:?}");
        assert!(
            !self.evidence_of(kind).is_empty(),
            "no {kind} evidence in violations.json: {:?}",
            self.evidence
        );
        for other in unrelated {
            assert_eq!(self.violations(other), 0, "{other} counted too: {v:?}");
        }
    }

    /// Like [`Outcome::assert_caught`], with every other kind but liveness
    /// counted at zero (liveness is left to the liveness tests: a faulty
    /// gateway on a loaded machine may also slow some receiver).
    fn assert_only(&self, kind: &str) {
        let others: Vec<&str> = KINDS
            .iter()
            .copied()
            .filter(|k| *k != kind && *k != "liveness")
            .collect();
        self.assert_caught(kind, &others);
    }

    /// The run passed with no violation of any kind and no evidence.
    fn assert_clean(&self) {
        for kind in KINDS {
            assert_eq!(self.violations(kind), 0, "{:?}", self.evidence);
        }
        assert!(self.evidence.is_empty(), "{:?}", self.evidence);
        assert_eq!(
            self.summary.verdict,
            Verdict::Pass,
            "{:?}",
            self.summary.thresholds
        );
    }
}

/// Plays `scenario` (with `overrides`) against a seed gateway injecting
/// `faults`, and reads back what the run wrote.
async fn run_against(faults: Faults, scenario: &str, overrides: &[&str]) -> Outcome {
    let gw = gateway(Profile::Seed, faults).await;
    let tag = scenario.rsplit('/').next().unwrap_or(scenario);
    let run_dir = harness::temp_dir(&format!(
        "faults-{}-{:08x}",
        tag.trim_end_matches(".yml"),
        rand::random::<u32>()
    ));
    let options = harness::run_options(scenario, Some(harness::url_of(&gw)), run_dir, overrides);
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(90), run(options))
        .await
        .expect("the run ends in time")
        .expect("the run completes");
    let took = started.elapsed();
    gw.shutdown().await;
    let evidence = read_json(&report.run_dir.join("violations.json"));
    eprintln!(
        "{tag}: {:.1} s, verdict {:?}, violations {:?}",
        took.as_secs_f64(),
        report.summary.verdict,
        report.summary.violations
    );
    Outcome {
        summary: report.summary,
        evidence: evidence.as_array().cloned().unwrap_or_default(),
        run_dir: report.run_dir,
        took,
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Runs the conformance cases matching `only` of `profile` against a gateway
/// injecting `faults`; returns each case's name and whether it passed.
async fn conform_against(profile: Profile, faults: Faults, only: &str) -> Vec<(String, bool)> {
    let gw = gateway(profile, faults).await;
    let options = ConformOptions {
        only: Some(only.to_owned()),
        jwt_secret_env: SECRET_ENV.to_owned(),
        ..ConformOptions::new(Some(format!("http://{}", gw.addr())), profile)
    };
    let report = conform::run(&options, |r| eprintln!("{}", r.render()))
        .await
        .expect("the suite runs");
    gw.shutdown().await;
    report
        .results
        .into_iter()
        .map(|r| (r.name, r.verdict == conform::Verdict::Pass))
        .collect()
}

// ---- fault-free baselines -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_scenario_is_clean_against_a_fault_free_gateway() {
    let _serial = SERIAL.lock().await;
    let out = run_against(Faults::default(), CHAT, &[]).await;
    out.assert_clean();
    // Every check had something to look at.
    assert!(out.counter("deliveries.expected") > 0);
    assert!(out.counter("deliveries.unmarked.expected") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_scenario_is_clean_against_a_fault_free_gateway() {
    let _serial = SERIAL.lock().await;
    run_against(Faults::default(), PRESENCE, &[])
        .await
        .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scenario_is_clean_against_a_fault_free_gateway() {
    let _serial = SERIAL.lock().await;
    let out = run_against(Faults::default(), LOAD, &[]).await;
    out.assert_clean();
    assert!(out.counter("deliveries.expected") > 50_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cases_pass_against_fault_free_gateways() {
    let _serial = SERIAL.lock().await;
    for (profile, only) in [
        (Profile::Strict, "strict.auth.*-token-refused"),
        (Profile::Seed, "events.unjoined.send-and-typing-ignored"),
    ] {
        let results = conform_against(profile, Faults::default(), only).await;
        assert!(!results.is_empty(), "{only}");
        assert!(results.iter().all(|(_, pass)| *pass), "{results:?}");
    }
}

// ---- the table -------------------------------------------------------------

/// One injected fault and how it must be caught.
struct Row {
    /// What the gateway does wrong.
    faults: Faults,
    /// The conformance cases that must fail against it, if any (checked first).
    conform: Option<ConformCheck>,
    /// The run that must catch it, if a run can.
    run: Option<RunCheck>,
}

/// A run of a scenario against the faulty gateway.
struct RunCheck {
    /// The scenario (relative to the crate root).
    scenario: &'static str,
    /// `--set` style overrides of the scenario.
    overrides: &'static [&'static str],
    /// The violation kind the run must count, with evidence.
    kind: &'static str,
    /// The kinds it must count at zero.
    unrelated: Unrelated,
    /// What the evidence (and the rest of the outcome) must show.
    evidence: fn(&Outcome),
}

/// The violation kinds a faulty run must not count.
enum Unrelated {
    /// These.
    These(&'static [&'static str]),
    /// Every kind but the caught one and liveness ([`Outcome::assert_only`]).
    AllButLiveness,
}

/// The conformance cases matching `only` of `profile` against the faulty gateway.
struct ConformCheck {
    /// The profile of the gateway and of the suite.
    profile: Profile,
    /// The case-name pattern (`--only`).
    only: &'static str,
    /// What each case's name and verdict (passed or not) must be.
    results: fn(&[(String, bool)]),
}

impl Row {
    async fn check(self) {
        let _serial = SERIAL.lock().await;
        if let Some(c) = self.conform {
            let results = conform_against(c.profile, self.faults.clone(), c.only).await;
            (c.results)(&results);
        }
        if let Some(r) = self.run {
            let out = run_against(self.faults, r.scenario, r.overrides).await;
            match r.unrelated {
                Unrelated::These(kinds) => out.assert_caught(r.kind, kinds),
                Unrelated::AllButLiveness => out.assert_only(r.kind),
            }
            (r.evidence)(&out);
        }
    }
}

/// One `#[test]` per row, named after it, so that a failure names its fault.
macro_rules! fault_table {
    ($($(#[$meta:meta])* $name:ident => $row:expr,)*) => {$(
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $row.check().await;
        }
    )*};
}

/// The run of `scenario` as it is, which must count `kind` with evidence that passes `evidence`.
const fn by_run(
    scenario: &'static str,
    kind: &'static str,
    unrelated: Unrelated,
    evidence: fn(&Outcome),
) -> Option<RunCheck> {
    Some(RunCheck {
        scenario,
        overrides: &[],
        kind,
        unrelated,
        evidence,
    })
}

use Unrelated::{AllButLiveness, These};

fault_table! {
    // ---- broadcast delivery ------------------------------------------------

    dropped_deliveries_are_loss => Row {
        faults: Faults { drop_fraction: 0.05, ..Faults::default() },
        conform: None,
        // A dropped announcement is a presence violation too, and a joiner's own
        // dropped `userOnline` leaves its `joined` without it (order).
        run: by_run(CHAT, "loss", These(&["duplicate", "recipient", "payload", "reply"]), |out| {
            assert!(out.counter("deliveries.lost") > 0);
        }),
    },

    one_percent_drop_is_caught_by_a_thirty_second_load => Row {
        faults: Faults { drop_fraction: 0.01, ..Faults::default() },
        conform: None,
        // As above: presence and order may show the dropped announcements too.
        run: by_run(LOAD, "loss", These(&["duplicate", "recipient", "payload", "reply"]), |out| {
            let (expected, lost) = (
                out.counter("deliveries.expected"),
                out.counter("deliveries.lost"),
            );
            // About 1 % of some 70,000 owed deliveries.
            assert!(expected > 50_000, "{expected}");
            assert!(
                lost * 200 > expected && lost * 50 < expected,
                "{lost} of {expected}"
            );
            // The load lasts 30 s: twice that leaves a busy machine room and
            // still fails a run that does not stop on time.
            assert!(out.took < Duration::from_secs(60), "{:?}", out.took);
        }),
    },

    duplicated_deliveries_are_duplicate => Row {
        faults: Faults { duplicate_fraction: 0.05, ..Faults::default() },
        conform: None,
        run: by_run(CHAT, "duplicate", AllButLiveness, |_| {}),
    },

    reordered_messages_are_order => Row {
        faults: Faults { reorder: true, ..Faults::default() },
        conform: None,
        run: by_run(
            CHAT,
            "order",
            These(&["loss", "duplicate", "recipient", "presence", "payload"]),
            |_| {},
        ),
    },

    deliveries_delayed_past_the_deadline_are_loss => Row {
        // 10 s is past the 2 s delivery deadline and past the receivers' stay:
        // the late copies arrive after everyone left, so they are lost.
        faults: Faults {
            delay_fraction: 0.05,
            delay: Duration::from_secs(10),
            ..Faults::default()
        },
        conform: None,
        run: by_run(CHAT, "loss", These(&["duplicate", "recipient", "payload"]), |out| {
            assert!(out.counter("deliveries.lost") > 0);
        }),
    },

    deliveries_delayed_within_the_deadline_fail_the_latency_threshold => Row {
        // 1.5 s is within the 2 s deadline and the receivers' stay: nothing is
        // lost, but the scenario's `delivery.newMessage.max < 1s` fails, and a
        // late message arrives after its sender's later ones (order).
        faults: Faults {
            delay_fraction: 0.05,
            delay: Duration::from_millis(1500),
            ..Faults::default()
        },
        conform: None,
        run: by_run(CHAT, "order", These(&["loss", "duplicate", "recipient", "payload"]), |out| {
            let threshold = out
                .summary
                .thresholds
                .iter()
                .find(|t| t.expr.starts_with("delivery.newMessage.max"))
                .expect("the latency threshold");
            assert!(!threshold.pass, "{threshold:?}");
            assert!(
                threshold.value.is_some_and(|us| us >= 1_500_000.0),
                "{threshold:?}"
            );
        }),
    },

    receiver_that_stops_getting_broadcasts_is_liveness_within_bound => Row {
        // The first socket gets nothing from its connection on; the others keep
        // receiving for 6 s (180 messages at 30/s), longer than the 5 s bound.
        faults: Faults { stall_socket: Some(1), ..Faults::default() },
        conform: None,
        // Its own `userOnline` never reaches it either, so its `joined` comes
        // "before" it (order), and what it misses is loss and presence as well.
        run: Some(RunCheck {
            scenario: CHAT,
            overrides: &[
                "groups.0.flow.6.loop.count=180",
                "groups.0.flow.8.listen=500ms",
            ],
            kind: "liveness",
            unrelated: These(&["duplicate", "recipient", "payload"]),
            evidence: |out| {
                // The stall starts as the run's first socket connects, near t = 0:
                // the watchdog (5 s bound, checked once a second) reports it by
                // ~6 s; 10 s leaves a busy machine room and still fails a
                // watchdog that waits for the run's end (~7 s of sending, then
                // the 2 s delivery deadline).
                let first = out.evidence_of("liveness")[0]["t_s"]
                    .as_f64()
                    .expect("a time");
                eprintln!("liveness first reported at {first} s");
                assert!(first < 10.0, "liveness reported at {first} s");
            },
        }),
    },

    crashed_gateway_is_liveness_and_the_run_ends_with_partial_results => Row {
        faults: Faults { crash_after: Some(Duration::from_secs(2)), ..Faults::default() },
        conform: None,
        run: by_run(
            CHAT,
            "liveness",
            These(&["duplicate", "order", "recipient", "payload"]),
            |out| {
                // Every client's session was ended by the gateway, not by the client.
                let ended: u64 = ["server_closed", "transport_error", "io_error"]
                    .iter()
                    .map(|how| out.counter(&format!("disconnects.{how}")))
                    .sum();
                assert_eq!(ended, 6, "{:?}", out.summary.counters);
                // The run stops early: well before the scenario's 30 s
                // `max_duration`, with room for a busy machine.
                assert!(out.took < Duration::from_secs(25), "{:?}", out.took);
                let written = read_json(&out.run_dir.join("summary.json"));
                assert_eq!(written["verdict"], "fail", "{written}");
                assert!(written["counters"]["emits"].as_u64().unwrap_or(0) > 0);
            },
        ),
    },

    // ---- typing --------------------------------------------------------------

    typing_echoed_to_its_sender_is_recipient => Row {
        faults: Faults { echo_typing: true, ..Faults::default() },
        conform: None,
        run: by_run(
            CHAT,
            "recipient",
            These(&["loss", "duplicate", "order", "presence", "payload"]),
            |out| {
                assert!(out.evidence_of("recipient")[0]["event"] == "userTyping");
            },
        ),
    },

    dropped_typing_is_loss_of_user_typing => Row {
        faults: Faults { drop_typing: true, ..Faults::default() },
        conform: None,
        run: by_run(
            CHAT,
            "loss",
            These(&["duplicate", "order", "recipient", "presence", "payload"]),
            |out| {
                assert_eq!(out.counter("deliveries.lost"), 0);
                assert!(out.counter("deliveries.unmarked.lost") > 0);
                assert!(out
                    .evidence_of("loss")
                    .iter()
                    .all(|e| e["event"] == "userTyping"));
            },
        ),
    },

    // ---- presence ------------------------------------------------------------

    missing_user_offline_is_presence => Row {
        faults: Faults { skip_user_offline: true, ..Faults::default() },
        conform: None,
        run: by_run(
            PRESENCE,
            "presence",
            These(&["loss", "duplicate", "order", "recipient", "payload"]),
            |out| {
                assert!(out
                    .evidence_of("presence")
                    .iter()
                    .any(|e| e["event"] == "userOffline"));
            },
        ),
    },

    user_offline_for_a_socket_that_never_joined_is_presence => Row {
        faults: Faults { offline_for_unjoined: true, ..Faults::default() },
        conform: None,
        // Its `username` is null, which the payload check flags as well.
        run: by_run(
            PRESENCE,
            "presence",
            These(&["loss", "duplicate", "order", "recipient"]),
            |out| {
                assert!(out.evidence_of("presence").iter().any(|e| e["got"]
                    .as_str()
                    .is_some_and(|g| g.contains("never joined"))));
            },
        ),
    },

    snapshot_without_the_newest_user_is_presence => Row {
        faults: Faults { snapshot_missing_newest: true, ..Faults::default() },
        conform: None,
        run: by_run(
            CHAT,
            "presence",
            These(&["loss", "duplicate", "order", "recipient", "payload"]),
            |out| {
                assert!(out
                    .evidence_of("presence")
                    .iter()
                    .all(|e| e["event"] == "onlineUsers"));
            },
        ),
    },

    // ---- payloads and replies ------------------------------------------------

    joined_without_username_is_payload => Row {
        faults: Faults { wrong_joined: true, ..Faults::default() },
        conform: None,
        run: by_run(CHAT, "payload", AllButLiveness, |out| {
            assert!(out
                .evidence_of("payload")
                .iter()
                .all(|e| e["event"] == "joined"));
        }),
    },

    joined_sent_as_an_ack_is_a_missing_reply => Row {
        // The seed model wants the `joined` event; the faulty gateway only acks
        // joins that ask for an ack, and these do not: `joined` never comes.
        faults: Faults { joined_as_ack: true, ..Faults::default() },
        conform: None,
        run: by_run(CHAT, "reply", AllButLiveness, |out| {
            assert!(out.counter("timeouts.expect") > 0);
        }),
    },

    numeric_timestamp_is_payload => Row {
        faults: Faults { bad_timestamp: true, ..Faults::default() },
        conform: None,
        run: by_run(CHAT, "payload", AllButLiveness, |out| {
            assert!(out
                .evidence_of("payload")
                .iter()
                .all(|e| e["event"] == "newMessage"));
        }),
    },

    message_under_another_users_name_is_payload => Row {
        faults: Faults { wrong_username: true, ..Faults::default() },
        conform: None,
        run: by_run(CHAT, "payload", AllButLiveness, |out| {
            assert!(out.evidence_of("payload").iter().all(|e| e["expected"]
                .as_str()
                .is_some_and(|x| x.contains("sender's name"))));
        }),
    },

    // ---- conformance ---------------------------------------------------------

    strict_gateway_admitting_any_token_fails_the_auth_cases => Row {
        faults: Faults { accept_any_token: true, ..Faults::default() },
        conform: Some(ConformCheck {
            profile: Profile::Strict,
            only: "strict.auth.*-token-refused",
            results: |results| {
                // no-token, garbage, expired, nbf, wrong secret, alg none, hs384,
                // hs512, string payload, no exp: every one is admitted, so every
                // case fails.
                assert_eq!(results.len(), 10, "{results:?}");
                assert!(results.iter().all(|(_, pass)| !pass), "{results:?}");
            },
        }),
        run: None,
    },

    messages_of_unjoined_sockets_fail_the_unjoined_case => Row {
        faults: Faults { unjoined_messages: true, ..Faults::default() },
        conform: Some(ConformCheck {
            profile: Profile::Seed,
            only: "events.unjoined.send-and-typing-ignored",
            results: |results| {
                assert_eq!(
                    results,
                    [("events.unjoined.send-and-typing-ignored".to_owned(), false)]
                );
            },
        }),
        // In a run, the presence scenario's lurkers send without joining: their
        // broadcasts carry `username: null`, which the payload check flags.
        run: by_run(PRESENCE, "payload", AllButLiveness, |out| {
            let events: Vec<&Value> = out
                .evidence_of("payload")
                .iter()
                .map(|e| &e["event"])
                .collect();
            assert!(events.contains(&&Value::from("newMessage")), "{events:?}");
            assert!(events.contains(&&Value::from("userTyping")), "{events:?}");
        }),
    },
}
