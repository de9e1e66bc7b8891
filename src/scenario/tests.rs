//! Loader-level tests: parsing every construct, error positions, overrides,
//! and the shipped scenario files.

use super::*;
use crate::client::Transport;
use rand::rngs::StdRng;
use rand::SeedableRng;

const FULL: &str = r#"# every construct
name: full
description: all of it
target: http://127.0.0.1:3000
socketio:
  path: /socket.io/
  namespace: /chat
  transport: polling-upgrade
  query: { v: 1, who: "{{username}}" }
  headers: { X-Client: "{{vu}}" }
  auth: { token: "{{token}}" }
auth:
  jwt:
    secret_env: MY_SECRET
    algorithm: HS512
    claims: { sub: "user-{{vu}}", name: "{{username}}" }
    lifetime: 30m
  place: header
vars: { username: "user-{{vu}}", greeting: "hi {{username}}" }
groups:
  - name: writers
    weight: 5
    flow:
      - connect
      - emit: { event: joinChat, data: { username: "{{username}}" } }
      - expect: { event: joined, timeout: 5s, match: { username: "{{username}}" }, capture: { me: clientId } }
      - loop:
          duration: 20s
          count: 100
          rate: 2/s
          arrival: poisson
          steps:
            - emit: { event: sendMessage, data: { message: "{{greeting}} {{seq}} {{me}}" }, ack: true, ack_timeout: 2s }
            - think: 200ms
            - think: { uniform: [100ms, 500ms] }
            - think: { exponential: 300ms }
      - emit: { event: typing, data: { isTyping: true } }
      - listen: 5s
      - disconnect
  - name: readers
    count: 10
    flow: [connect, { listen: 30s }, disconnect]
load:
  phases:
    - ramp: { to: 100, over: 10s }
    - hold: 20s
    - arrive: { rate: 600/m, duration: 30s, max: 500, arrival: poisson }
  messages: { rate: 200/s, arrival: poisson }
max_duration: 5m
thresholds:
  delivery.newMessage.p99: "< 50ms"
  errors: "== 0"
  connect.p95: ["<= 200ms", "> 0us"]
abort_on_fail: true
"#;

fn load(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_str(text, "x.yml")
}

/// The `file:line:col: message` of a failing load.
fn error_of(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

const MINIMAL: &str =
    "name: m\ngroups:\n  - name: g\n    flow: [connect]\nload:\n  phases:\n    - hold: 1s\n";

#[test]
fn every_construct_parses() {
    let s = load(FULL).unwrap();
    assert_eq!(s.name, "full");
    assert_eq!(s.target, ["http://127.0.0.1:3000"]);
    assert_eq!(s.socketio.namespace, "/chat");
    assert_eq!(s.socketio.transport, Transport::PollingUpgrade);
    assert_eq!(s.socketio.query.len(), 2);
    let auth = s.auth.as_ref().unwrap();
    assert_eq!(auth.place, TokenPlace::Header);
    let jwt = auth.jwt.as_ref().unwrap();
    assert_eq!(
        (jwt.secret_env.as_str(), jwt.algorithm),
        ("MY_SECRET", JwtAlgorithm::HS512)
    );
    assert_eq!(jwt.lifetime, Duration::from_secs(1800));
    assert_eq!(
        s.vars.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        ["username", "greeting"]
    );

    let writers = &s.groups[0];
    assert_eq!(writers.weight, Some(5.0));
    assert!(matches!(writers.flow[0], Step::Connect));
    let Step::Expect(expect) = &writers.flow[2] else {
        panic!("expect")
    };
    assert_eq!(expect.timeout, Duration::from_secs(5));
    assert_eq!(
        expect.capture,
        [Capture {
            var: "me".into(),
            path: vec!["clientId".into()]
        }]
    );
    let Step::Loop(body) = &writers.flow[3] else {
        panic!("loop")
    };
    assert_eq!(
        (body.duration, body.count, body.rate),
        (Some(Duration::from_secs(20)), Some(100), Some(2.0))
    );
    assert_eq!(body.arrival, Arrival::Poisson);
    let Step::Emit(emit) = &body.steps[0] else {
        panic!("emit")
    };
    assert!(emit.ack);
    assert_eq!(emit.ack_timeout, Duration::from_secs(2));
    assert_eq!(
        body.steps[1..]
            .iter()
            .map(|s| match s {
                Step::Think(t) => *t,
                _ => panic!(),
            })
            .collect::<Vec<_>>(),
        [
            Think::Fixed(Duration::from_millis(200)),
            Think::Uniform(Duration::from_millis(100), Duration::from_millis(500)),
            Think::Exponential(Duration::from_millis(300)),
        ]
    );
    assert!(matches!(writers.flow[5], Step::Listen(d) if d == Duration::from_secs(5)));
    assert!(matches!(writers.flow[6], Step::Disconnect));
    assert_eq!(s.groups[1].count, Some(10));

    assert_eq!(
        s.load.phases,
        [
            Phase::Ramp {
                to: 100,
                over: Duration::from_secs(10)
            },
            Phase::Hold(Duration::from_secs(20)),
            Phase::Arrive {
                rate: 10.0,
                duration: Duration::from_secs(30),
                max: Some(500),
                arrival: Arrival::Poisson
            },
        ]
    );
    assert_eq!(s.phases_duration(), Duration::from_secs(60));
    assert_eq!(
        s.load.messages,
        Some(MessageSchedule {
            rate: 200.0,
            arrival: Arrival::Poisson
        })
    );
    assert_eq!(s.max_duration, Some(Duration::from_secs(300)));
    assert_eq!(s.thresholds.len(), 4);
    assert_eq!(s.thresholds[3].to_string(), "connect.p95 > 0us");
    assert!(s.abort_on_fail);
}

#[test]
fn defaults_apply() {
    let s = load(MINIMAL).unwrap();
    assert_eq!(s.socketio.path, "/socket.io/");
    assert_eq!(s.socketio.namespace, "/");
    assert_eq!(s.socketio.transport, Transport::Websocket);
    assert!(s.auth.is_none() && s.thresholds.is_empty() && !s.abort_on_fail);
    let s = load(&MINIMAL.replace("[connect]", "[connect, {expect: {event: x}}]")).unwrap();
    let Step::Expect(e) = &s.groups[0].flow[1] else {
        panic!("expect")
    };
    assert_eq!(e.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn unknown_field_points_at_the_key() {
    let text = MINIMAL.replace("[connect]", "\n      - connect\n      - emit: { emitt: x }");
    assert_eq!(
        error_of(&text),
        "x.yml:6:17: unknown field `emitt`, expected one of `event`, `data`, `ack`, `ack_timeout`, `room`"
    );
    assert_eq!(
        error_of(&format!("{MINIMAL}colour: red\n")),
        "x.yml:8:1: unknown field `colour`, expected one of `name`, `description`, `target`, `weights`, `socketio`, `tls`, `protocol`, \
         `auth`, `reconnect`, `rooms`, `vars`, `groups`, `load`, `max_duration`, `thresholds`, `abort_on_fail`"
    );
}

#[test]
fn bad_values_point_at_the_value() {
    let bad_duration = MINIMAL.replace("hold: 1s", "hold: 5 parsecs");
    assert_eq!(
        error_of(&bad_duration),
        "x.yml:7:13: unknown duration unit `parsecs` in `5 parsecs`, expected one of us, ms, s, m, h"
    );
    let bad_rate = MINIMAL.replace("hold: 1s", "arrive: { rate: 10/fortnight, duration: 1s }");
    assert!(error_of(&bad_rate).starts_with("x.yml:7:23: invalid rate `10/fortnight`"));
    let bad_threshold = format!("{MINIMAL}thresholds:\n  connect.p95: \"about 3ms\"\n");
    assert!(error_of(&bad_threshold).starts_with("x.yml:9:16: invalid threshold `about 3ms`"));
    let bad_stat = format!("{MINIMAL}thresholds:\n  connect.p97: \"< 3ms\"\n");
    assert!(error_of(&bad_stat).starts_with("x.yml:9:3: unknown statistic `p97`"));
    let bad_step = MINIMAL.replace("[connect]", "[connect, shout]");
    assert!(
        error_of(&bad_step).starts_with("x.yml:4:21: unknown variant `shout`"),
        "{}",
        error_of(&bad_step)
    );
    let bad_think = MINIMAL.replace("[connect]", "[connect, {think: {uniform: [1s, 2x]}}]");
    assert!(
        error_of(&bad_think).starts_with("x.yml:4:44: unknown duration unit `x`"),
        "{}",
        error_of(&bad_think)
    );
}

#[test]
fn syntax_and_missing_field_errors_have_positions() {
    assert!(
        error_of("name: [x\n").starts_with("x.yml:1:7: "),
        "{}",
        error_of("name: [x\n")
    );
    let missing = "name: m\ngroups:\n  - name: g\n    flow: [connect]\n";
    assert_eq!(error_of(missing), "x.yml:1:1: missing field `load`");
}

#[test]
fn semantic_errors_point_at_the_culprit() {
    let expect_first = MINIMAL.replace("[connect]", "[{expect: {event: joined}}]");
    assert_eq!(
        error_of(&expect_first),
        "x.yml:4:12: `expect` must follow a `connect`"
    );
    let unknown_var = MINIMAL.replace(
        "[connect]",
        "[connect, {emit: {event: e, data: {u: \"{{usernme}}\"}}}]",
    );
    let err = error_of(&unknown_var);
    assert!(
        err.starts_with("x.yml:4:49: unknown template variable `usernme`"),
        "{err}"
    );
    let token_without_auth = MINIMAL.replace(
        "[connect]",
        "[connect, {emit: {event: e, data: \"{{token}}\"}}]",
    );
    assert!(error_of(&token_without_auth).contains("`token` needs an `auth` section"));
    let zero_weights = MINIMAL.replace("- name: g", "- name: g\n    weight: 0");
    assert_eq!(error_of(&zero_weights), "x.yml:3:3: group weights sum to 0");
    let dup = MINIMAL.replace("load:", "  - name: g\n    flow: [connect]\nload:");
    assert_eq!(
        error_of(&dup),
        "x.yml:5:11: group name `g` is empty or used twice"
    );
    let no_phases = MINIMAL.replace("\n    - hold: 1s", " []");
    assert_eq!(
        error_of(&no_phases),
        "x.yml:6:11: at least one phase is needed"
    );
    let zero = MINIMAL.replace("hold: 1s", "hold: 0s");
    assert_eq!(
        error_of(&zero),
        "x.yml:7:13: duration `0s` must be greater than zero"
    );
    let endless = MINIMAL.replace("[connect]", "[connect, {loop: {steps: [{listen: 1s}]}}]");
    assert!(error_of(&endless).ends_with("a loop needs `duration`, `count` or both"));
}

#[test]
fn captures_and_vars_are_in_scope_in_order() {
    let later_capture = MINIMAL.replace(
        "[connect]",
        "[connect, {emit: {event: e, data: \"{{me}}\"}}, {expect: {event: x, capture: {me: id}}}]",
    );
    assert!(error_of(&later_capture).contains("unknown template variable `me`"));
    let vars_out_of_order = format!("{MINIMAL}vars: {{ a: \"{{{{b}}}}\", b: x }}\n");
    assert!(error_of(&vars_out_of_order).starts_with("x.yml:8:12: unknown template variable `b`"));
}

#[test]
fn overrides_apply_before_typing() {
    let set = |k: &str, v: &str| Override::parse(&format!("{k}={v}")).unwrap();
    let s = Scenario::from_str_with_overrides(
        FULL,
        "x.yml",
        &[
            set("load.phases.0.ramp.to", "50"),
            set("load.phases.3", "{hold: 1m}"),
            set("socketio.namespace", "/other"),
            set("vars.username", "bob-{{vu}}"),
            set("abort_on_fail", "false"),
        ],
    )
    .unwrap();
    assert_eq!(
        s.load.phases[0],
        Phase::Ramp {
            to: 50,
            over: Duration::from_secs(10)
        }
    );
    assert_eq!(s.load.phases[3], Phase::Hold(Duration::from_secs(60)));
    assert_eq!(s.socketio.namespace, "/other");
    assert!(!s.abort_on_fail);
    let mut rng = StdRng::seed_from_u64(0);
    assert_eq!(
        s.vu_state(3, None, &mut rng).unwrap().get("username"),
        Some("bob-3")
    );

    let err =
        Scenario::from_str_with_overrides(FULL, "x.yml", &[set("load.phases.1.hold", "soon")])
            .unwrap_err()
            .to_string();
    assert_eq!(err, "--set load.phases.1.hold:1:1: invalid duration `soon`, expected e.g. `5s`, `250ms`, `1m30s`");
    let err =
        Scenario::from_str_with_overrides(FULL, "x.yml", &[set("name.first", "x")]).unwrap_err();
    assert!(matches!(err, ScenarioError::Override { .. }), "{err}");
    assert!(Override::parse("novalue").is_err());
    assert!(Override::parse("a..b=1").is_err());
}

#[test]
fn vu_state_renders_vars_and_token() {
    let s = load(&FULL.replace("MY_SECRET", "CHORUS_TEST_UNSET_SECRET")).unwrap();
    let jwt = s.auth.as_ref().unwrap().jwt.as_ref().unwrap();
    let tokens = TokenSource::jwt(jwt, &s.vars, b"k");
    let mut rng = StdRng::seed_from_u64(0);
    let state = s.vu_state(9, Some(&tokens), &mut rng).unwrap();
    assert_eq!(state.get("greeting"), Some("hi user-9"));
    let token = state.get("token").unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS512);
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(b"k"),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["name"], "user-9");
    assert!(
        matches!(s.token_source(), Err(ScenarioError::MissingSecret(v)) if v == "CHORUS_TEST_UNSET_SECRET")
    );
}

#[test]
fn group_picker_honours_counts_then_weights() {
    let text = "name: m\ngroups:\n  - {name: a, weight: 1, flow: [connect]}\n  - {name: b, count: 2, flow: [connect]}\n  - {name: c, weight: 3, flow: [connect]}\nload: {phases: [{hold: 1s}]}\n";
    let mut picker = load(text).unwrap().group_picker();
    let picks: Vec<usize> = (0..10).map(|_| picker.next_group().unwrap()).collect();
    assert_eq!(&picks[..2], [1, 1]);
    let rest = &picks[2..];
    assert_eq!(rest.iter().filter(|&&g| g == 2).count(), 6);
    assert_eq!(rest.iter().filter(|&&g| g == 0).count(), 2);
}

#[test]
fn csv_tokens_load_relative_to_the_scenario() {
    let dir = std::env::temp_dir().join(format!("chorus-scenario-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokens.csv"), "token\nt1\nt2\n").unwrap();
    let text = format!("{MINIMAL}auth:\n  csv: {{ file: tokens.csv }}\n");
    std::fs::write(dir.join("s.yml"), &text).unwrap();
    let s = Scenario::load(dir.join("s.yml")).unwrap();
    let tokens = s.token_source().unwrap().unwrap();
    assert_eq!(tokens.token_for(3).unwrap(), "t2");
    std::fs::write(dir.join("tokens.csv"), "token\n\"t1\n").unwrap();
    let err = Scenario::load(dir.join("s.yml")).unwrap_err().to_string();
    assert!(
        err.ends_with("tokens.csv:2: unterminated quoted field"),
        "{err}"
    );
}

#[test]
fn tls_files_load_relative_to_the_scenario_and_errors_point_at_the_field() {
    let dir = std::env::temp_dir().join(format!("chorus-scenario-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
    let path = dir.join("s.yml");
    let with = |tls: &str| {
        std::fs::write(&path, format!("{MINIMAL}tls:\n{tls}")).unwrap();
        Scenario::load(&path)
    };
    let s = with("  ca: ca.pem\n  server_name: localhost\n").unwrap();
    assert_eq!(
        s.tls.as_ref().unwrap().ca.as_deref(),
        Some(&*dir.join("ca.pem"))
    );
    assert!(s.tls_client.is_some());
    let origin = path.display();
    let err = with("  ca: nope.pem\n").unwrap_err().to_string();
    assert!(err.starts_with(&format!("{origin}:9:7: tls.ca: ")), "{err}");
    assert!(err.contains("nope.pem"), "{err}");
    let err = with("  insecure: true\n  client_cert: ca.pem\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("{origin}:10:16: tls.client_cert: client_cert needs client_key")
    );
    let err = with("  cafile: ca.pem\n").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{origin}:9:3: unknown field `cafile`")),
        "{err}"
    );
    // Without a `tls:` block nothing is built: secure targets use the system's roots.
    assert!(load(MINIMAL).unwrap().tls_client.is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| {
            let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.socketio.namespace, "/chat", "{}", p.display());
            assert_eq!(s.auth.as_ref().map(|a| a.place), Some(TokenPlace::Query));
            s.name
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "chat-load",
            "cluster",
            "presence-churn",
            "restart-storm",
            "rooms",
            "smoke",
            "soak",
            "typing-storm"
        ]
    );
}

#[test]
fn readme_example_loads() {
    let readme = include_str!("../../README.md");
    let section = readme
        .find("## The scenario language")
        .expect("the language section");
    let start =
        section + readme[section..].find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + readme[start..].find("```").expect("closed block");
    let s = load(&readme[start..end]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.groups.len(), 2);
    assert_eq!(s.thresholds.len(), 5);
}

#[test]
fn numbers_out_of_range_are_load_errors_with_positions() {
    let phase = |p: &str| MINIMAL.replace("hold: 1s", p);
    // The rate that used to panic the run and exit 0.
    let err = error_of(&phase("arrive: { rate: 1e-300/s, duration: 10s }"));
    assert!(
        err.starts_with("x.yml:7:23: rate `1e-300/s` is out of range"),
        "{err}"
    );
    let err = error_of(&phase("arrive: { rate: 1/m, duration: 10s }"));
    assert!(
        err.starts_with("x.yml:7:23: rate 0.016") && err.contains("starts no client"),
        "{err}"
    );
    let err = error_of(&phase("arrive: { rate: 1e7/s, duration: 10s }"));
    assert!(
        err.starts_with("x.yml:7:23: rate `1e7/s` is out of range"),
        "{err}"
    );
    let err = error_of(&phase(
        "arrive: { rate: 10/s, duration: 1s, max: 99999999999 }",
    ));
    assert!(
        err.starts_with("x.yml:7:48: max 99999999999 is over the limit"),
        "{err}"
    );
    let err = error_of(&phase("ramp: { to: 20000000, over: 1s }"));
    assert!(
        err.starts_with("x.yml:7:19: ramp to 20000000 is over"),
        "{err}"
    );
    let err = error_of(&phase("ramp: { to: 18446744073709551616, over: 1s }"));
    assert!(err.starts_with("x.yml:7:"), "{err}");
    let err = error_of(&phase("ramp: { to: -1, over: 1s }"));
    assert!(err.starts_with("x.yml:7:"), "{err}");
    let err = error_of(&phase("hold: 100000000000000000000h"));
    assert!(
        err.starts_with("x.yml:7:13: duration `100000000000000000000h` is out of range"),
        "{err}"
    );
    let two = MINIMAL.replace("hold: 1s", "hold: 8000h\n    - hold: 8000h");
    assert!(
        error_of(&two).starts_with("x.yml:7:5: the phases last more than 366 days"),
        "{}",
        error_of(&two)
    );
    let many = MINIMAL.replace(
        "hold: 1s",
        "arrive: { rate: 1000000/s, duration: 6s }\n    - arrive: { rate: 1000000/s, duration: 6s }",
    );
    let err = error_of(&many);
    assert!(
        err.starts_with("x.yml:8:15: the phases up to this one start 12000000 clients"),
        "{err}"
    );
    let count = MINIMAL.replace("- name: g", "- name: g\n    count: 20000000");
    assert!(
        error_of(&count).starts_with("x.yml:4:12: count is over the limit"),
        "{}",
        error_of(&count)
    );
    let loop_rate = MINIMAL.replace(
        "[connect]",
        "[connect, {loop: {count: 2, rate: 0.0000000001/s, steps: [{think: 1s}]}}]",
    );
    assert!(
        error_of(&loop_rate).contains("is out of range"),
        "{}",
        error_of(&loop_rate)
    );
    let schedule = format!("{MINIMAL}  messages: {{ rate: 1e-300/s }}\n");
    assert!(
        error_of(&schedule).starts_with("x.yml:8:"),
        "{}",
        error_of(&schedule)
    );
    let threshold = format!(
        "{MINIMAL}thresholds:\n  connect.p95: \"< 1{}ms\"\n",
        "0".repeat(30)
    );
    assert!(
        error_of(&threshold).contains("out of range"),
        "{}",
        error_of(&threshold)
    );
    let lifetime = format!("{MINIMAL}auth: {{ jwt: {{ lifetime: 9999999h }} }}\n");
    assert!(
        error_of(&lifetime).contains("out of range"),
        "{}",
        error_of(&lifetime)
    );
    let weight = MINIMAL.replace("- name: g", "- name: g\n    weight: 1e308");
    assert!(
        error_of(&weight)
            .starts_with("x.yml:4:13: weight 1e308 must be a number from 0 to 1000000"),
        "{}",
        error_of(&weight)
    );
    // The limits themselves load.
    assert!(load(&phase("arrive: { rate: 1/h, duration: 1h }")).is_ok());
    assert!(load(&phase(
        "arrive: { rate: 20/s, duration: 10s, max: 10000000 }"
    ))
    .is_ok());
}

#[test]
fn an_expected_refusal_must_follow_a_connect_and_leaves_the_flow_unconnected() {
    let refused = "[connect, {expect: {event: connect_error, match: {data: {code: INVALID_TOKEN}}}}, {think: 1s}]";
    assert!(load(&MINIMAL.replace("[connect]", refused)).is_ok());
    let again = "[connect, {expect: {event: connect_error}}, connect, disconnect]";
    assert!(load(&MINIMAL.replace("[connect]", again)).is_ok());
    let emit_after = "[connect, {expect: {event: connect_error}}, {emit: {event: e}}]";
    assert_eq!(
        error_of(&MINIMAL.replace("[connect]", emit_after)),
        "x.yml:4:55: `emit` must follow a `connect`"
    );
    let alone = "[connect, {listen: 1s}, {expect: {event: connect_error}}]";
    assert!(error_of(&MINIMAL.replace("[connect]", alone))
        .ends_with("`expect: { event: connect_error }` must come right after a `connect`"));
}

#[test]
fn a_target_list_with_weights_loads_and_mismatches_point_at_the_value() {
    let two = format!(
        "target: [http://127.0.0.1:3001, http://127.0.0.1:3002]\nweights: [3, 1]\n{MINIMAL}"
    );
    let s = load(&two).unwrap();
    assert_eq!(s.target, ["http://127.0.0.1:3001", "http://127.0.0.1:3002"]);
    assert_eq!(s.weights, Some(vec![3.0, 1.0]));
    assert!(
        load(MINIMAL).unwrap().target.is_empty(),
        "no target: embedded"
    );
    assert_eq!(
        error_of(&two.replace("[3, 1]", "[3, 1, 1]")),
        "x.yml:2:10: weights has 3 entries for 2 targets: give one per target"
    );
    assert_eq!(
        error_of(&two.replace("[3, 1]", "[3, -1]")),
        "x.yml:2:14: a weight is a number from 0 to 1000000, not -1"
    );
    assert_eq!(
        error_of(&two.replace("http://127.0.0.1:3002", "ftp://x")),
        "x.yml:1:33: target `ftp://x` must start with http://, https://, ws:// or wss://"
    );
}

#[test]
fn reconnect_parses_per_scenario_and_group_and_errors_point_at_the_field() {
    let text = MINIMAL.replace(
        "groups:",
        "reconnect: { attempts: 5, delay: 200ms, max_delay: 2s, jitter: 0.25 }\ngroups:",
    );
    let s = load(&text).unwrap();
    let r = s.reconnect.expect("reconnect");
    assert_eq!(r.attempts, 5);
    assert_eq!(r.delay, Duration::from_millis(200));
    assert_eq!(r.max_delay, Duration::from_secs(2));
    assert!(r.enabled());
    let defaults = load(&MINIMAL.replace("groups:", "reconnect: {}\ngroups:")).unwrap();
    let d = defaults.reconnect.unwrap();
    assert!(!d.enabled(), "attempts default to 0: no reconnect");
    assert_eq!(
        (d.delay, d.max_delay, d.jitter),
        (Duration::from_secs(1), Duration::from_secs(5), 0.5)
    );
    let group =
        load(&MINIMAL.replace("- name: g", "- name: g\n    reconnect: { attempts: 2 }")).unwrap();
    assert_eq!(group.groups[0].reconnect.map(|r| r.attempts), Some(2));

    let bad = |block: &str| {
        error_of(&MINIMAL.replace("groups:", &format!("reconnect: {block}\ngroups:")))
    };
    assert_eq!(
        bad("{ attempts: 2, jitter: 1.5 }"),
        "x.yml:2:35: jitter 1.5 must be between 0 and 1"
    );
    assert_eq!(
        bad("{ attempts: 2, delay: 3s, max_delay: 1s }"),
        "x.yml:2:49: max_delay 1s is shorter than delay 3s"
    );
    assert_eq!(
        bad("{ attempts: 5000 }"),
        "x.yml:2:24: attempts 5000 is over the limit of 1000"
    );
    assert!(bad("{ atempts: 2 }").contains("unknown field `atempts`"));
    let in_group = error_of(&MINIMAL.replace(
        "- name: g",
        "- name: g\n    reconnect: { attempts: 1, jitter: -1 }",
    ));
    assert_eq!(in_group, "x.yml:4:39: jitter -1 must be between 0 and 1");
}

#[test]
fn reconnect_backoff_doubles_up_to_the_cap_within_the_jitter() {
    let r = Reconnect {
        attempts: 10,
        delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
        jitter: 0.0,
    };
    let mut rng = StdRng::seed_from_u64(7);
    let waits: Vec<u128> = (0..6).map(|k| r.backoff(k, &mut rng).as_millis()).collect();
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    let jittery = Reconnect { jitter: 0.5, ..r };
    let samples: Vec<Duration> = (0..200).map(|_| jittery.backoff(1, &mut rng)).collect();
    assert!(
        samples.iter().all(|d| (100..=300).contains(&d.as_millis())),
        "{samples:?}"
    );
    assert!(
        samples.iter().any(|d| d.as_millis() < 180) && samples.iter().any(|d| d.as_millis() > 220),
        "randomised both ways"
    );
    assert!((0..200).all(|_| jittery.backoff(9, &mut rng) <= Duration::from_millis(1000)));
}

#[test]
fn room_steps_and_the_spread_load_and_their_errors_are_located() {
    let flow = "\n      - connect\n      - join_room: \"{{room}}\"\n      - emit: { event: sendMessage, data: { message: hi }, room: \"{{room}}\" }\n      - leave_room: \"{{room}}\"";
    let text = format!(
        "{}rooms: {{ count: 10, spread: zipf, per_client: 2 }}\n",
        MINIMAL.replace("[connect]", flow)
    );
    let s = load(&text).unwrap();
    assert!(matches!(s.groups[0].flow[1], Step::JoinRoom(_)));
    let Step::Emit(emit) = &s.groups[0].flow[2] else {
        panic!("emit")
    };
    assert!(emit.room.is_some());
    let mut rng = StdRng::seed_from_u64(0);
    let state = s.vu_state(3, None, &mut rng).unwrap();
    let (a, b) = (state.get("room").unwrap(), state.get("room_1").unwrap());
    assert!(
        a.starts_with("room-") && b.starts_with("room-") && a != b,
        "{a} {b}"
    );
    // `{{room}}` needs the spread.
    let no_spread = MINIMAL.replace("[connect]", flow);
    assert!(
        error_of(&no_spread).starts_with("x.yml:6:20: unknown template variable `room`"),
        "{}",
        error_of(&no_spread)
    );
    // Room steps need a connection.
    let unconnected = format!(
        "{}rooms: {{ count: 10 }}\n",
        MINIMAL.replace("[connect]", "\n      - join_room: a")
    );
    assert_eq!(
        error_of(&unconnected),
        "x.yml:5:9: `join_room` must follow a `connect`"
    );
    let bad = format!("{MINIMAL}rooms: {{ count: 0 }}\n");
    assert_eq!(
        error_of(&bad),
        "x.yml:8:17: rooms.count must be 1 to 1000000, not 0"
    );
    let bad = format!("{MINIMAL}rooms: {{ count: 5, per_client: 6 }}\n");
    assert!(error_of(&bad).starts_with("x.yml:8:32: rooms.per_client must be 1 to 5"));
}
