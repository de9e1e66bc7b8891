//! The driver over TLS, against the reference gateway serving TLS with
//! certificates made by the test: a message round trip over `wss://`,
//! `https://` polling and polling-then-upgrade; an unknown CA refused with a
//! named reason and accepted with the CA or `insecure`; plaintext against
//! TLS and TLS against plaintext failing cleanly and quickly; the handshake
//! bounded by the connect timeout; and `chorus run` over TLS (`tls.ca` in the
//! scenario, `--ca`, `--insecure`, a missing CA file, an unknown CA); and
//! the driver against the official socket.io 4 server serving HTTPS and WSS
//! with Node's own TLS (`tests/js/chat-gateway.mjs`).

use std::path::Path;
use std::time::{Duration, Instant};

use chorus::client::{
    Client, ClientConfig, ClientError, CloseReason, Handler, Incoming, Tls, TlsConfig, TlsReason,
    Transport,
};
use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use chorus_test_support::pki::Pki;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::support::harness;
use crate::support::hostile::{Hostile, Mode};

const SECRET: &str = "tls-secret";
const WAIT: Duration = Duration::from_secs(5);
const TRANSPORTS: [Transport; 3] = [
    Transport::Websocket,
    Transport::Polling,
    Transport::PollingUpgrade,
];

/// A seed gateway verifying tokens with `SECRET`, serving TLS with `pki`'s certificate when given.
async fn gateway(pki: Option<&Pki>) -> RunningGateway {
    chorus_test_support::gateway::start(GatewayConfig {
        tls_cert: pki.map(|p| p.cert.clone()),
        tls_key: pki.map(|p| p.key.clone()),
        ..chorus_test_support::gateway::config(Profile::Seed, SECRET)
    })
    .await
}

fn token(sub: &str) -> String {
    chorus_test_support::tokens::valid_for_an_hour(SECRET, sub)
}

fn trusting(ca: &Path) -> Tls {
    Tls::new(&TlsConfig {
        ca: Some(ca.to_owned()),
        ..TlsConfig::default()
    })
    .expect("the CA loads")
}

/// Event names (and first arguments) as they arrive.
struct Events(mpsc::UnboundedSender<(String, Value)>);

impl Handler for Events {
    fn on_message(&mut self, _at: Instant, message: Incoming<'_>) {
        if let Incoming::Event { name, args, .. } = message {
            let first = args
                .first()
                .and_then(|a| serde_json::from_str(a.get()).ok())
                .unwrap_or(Value::Null);
            let _ = self.0.send((name.to_owned(), first));
        }
    }

    fn on_closed(&mut self, _at: Instant, _reason: CloseReason) {}
}

async fn connect(
    config: &ClientConfig,
) -> Result<(Client, mpsc::UnboundedReceiver<(String, Value)>), ClientError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (client, timings) = Client::connect(config, Events(tx)).await?;
    if config.url.starts_with("https") {
        assert!(
            timings.tls.is_some_and(|t| t > Duration::ZERO),
            "{timings:?}"
        );
    }
    Ok((client, rx))
}

async fn next_named(rx: &mut mpsc::UnboundedReceiver<(String, Value)>, name: &str) -> Value {
    loop {
        let (got, arg) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {name} within {WAIT:?}"))
            .expect("the client is open");
        if got == name {
            return arg;
        }
    }
}

#[tokio::test]
async fn every_transport_round_trips_a_message_over_tls() {
    let pki = Pki::new("driver-roundtrip");
    let gw = gateway(Some(&pki)).await;
    let tls = trusting(&pki.ca);
    for transport in TRANSPORTS {
        let config = ClientConfig::new(gw.url())
            .namespace("/chat")
            .transport(transport)
            .query("token", token("alice"))
            .tls(tls.clone());
        let (client, mut rx) = connect(&config).await.expect("connects over TLS");
        next_named(&mut rx, "onlineUsers").await;
        client
            .emit("joinChat", &[r#"{"username":"alice"}"#])
            .await
            .expect("send");
        next_named(&mut rx, "joined").await;
        client
            .emit("sendMessage", &[r#"{"message":"over tls"}"#])
            .await
            .expect("send");
        let message = next_named(&mut rx, "newMessage").await;
        assert_eq!(message["message"], "over tls", "{transport:?}");
        client.disconnect().await.expect("disconnect");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn every_transport_chats_with_the_official_socketio_server_over_https() {
    let pki = Pki::new("driver-official");
    let node = chorus_test_support::chat_node::ChatNode::start_tls(SECRET, &pki);
    assert!(node.url.starts_with("https://"), "{}", node.url);
    for transport in TRANSPORTS {
        let config = ClientConfig::new(node.url.clone())
            .namespace("/chat")
            .transport(transport)
            .query("token", token("alice"))
            .tls(trusting(&pki.ca));
        let (client, mut rx) = connect(&config).await.expect("connects over TLS");
        next_named(&mut rx, "onlineUsers").await;
        client
            .emit("joinChat", &[r#"{"username":"alice"}"#])
            .await
            .expect("send");
        next_named(&mut rx, "joined").await;
        client
            .emit("sendMessage", &[r#"{"message":"over node tls"}"#])
            .await
            .expect("send");
        let message = next_named(&mut rx, "newMessage").await;
        assert_eq!(message["message"], "over node tls", "{transport:?}");
        client.disconnect().await.expect("disconnect");
    }
    // Node's certificate is checked as ours is: an unrelated CA is refused by name.
    let untrusted = ClientConfig::new(node.url.clone())
        .namespace("/chat")
        .tls(trusting(&pki.other_ca));
    let err = connect(&untrusted)
        .await
        .map(|_| ())
        .expect_err("an untrusted certificate");
    assert_eq!(err.reason(), "tls.unknown_ca", "{err}");
}

#[tokio::test]
async fn an_unknown_ca_is_refused_by_name_and_accepted_with_the_ca_or_insecure() {
    let pki = Pki::new("driver-ca");
    let gw = gateway(Some(&pki)).await;
    let base = ClientConfig::new(format!("wss://{}", gw.addr())).namespace("/chat");
    let err = connect(&base.clone().tls(trusting(&pki.other_ca)))
        .await
        .map(|_| ())
        .expect_err("an untrusted certificate");
    assert_eq!(err.reason(), "tls.unknown_ca", "{err}");
    assert!(
        matches!(&err, ClientError::Tls(f) if f.reason == TlsReason::UnknownCa),
        "{err}"
    );
    assert!(err.to_string().contains("--ca"), "{err}");

    assert!(connect(&base.clone().tls(trusting(&pki.ca))).await.is_ok());
    let insecure = Tls::new(&TlsConfig {
        insecure: true,
        ..TlsConfig::default()
    })
    .expect("insecure");
    assert!(connect(&base.clone().tls(insecure)).await.is_ok());

    // The certificate names localhost and 127.0.0.1: another name is refused
    // by name, and `server_name` picks the one checked.
    let named = |name: &str| {
        Tls::new(&TlsConfig {
            ca: Some(pki.ca.clone()),
            server_name: Some(name.to_owned()),
            ..TlsConfig::default()
        })
        .expect("the CA loads")
    };
    let err = connect(&base.clone().tls(named("chat.example.com")))
        .await
        .map(|_| ())
        .expect_err("another name");
    assert_eq!(err.reason(), "tls.name_mismatch", "{err}");
    assert!(connect(&base.clone().tls(named("localhost"))).await.is_ok());
    gw.shutdown().await;
}

#[tokio::test]
async fn plaintext_against_tls_and_tls_against_plaintext_fail_cleanly() {
    let pki = Pki::new("driver-mixed");
    let secure = gateway(Some(&pki)).await;
    let plain = gateway(None).await;
    for transport in TRANSPORTS {
        let started = Instant::now();
        let config = ClientConfig::new(format!("http://{}", secure.addr()))
            .namespace("/chat")
            .transport(transport);
        let err = connect(&config)
            .await
            .map(|_| ())
            .expect_err("plaintext to TLS");
        assert!(started.elapsed() < WAIT, "{transport:?}: {err}");
        assert!(!matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("https://"), "{transport:?}: {err}");

        let started = Instant::now();
        let config = ClientConfig::new(format!("https://{}", plain.addr()))
            .namespace("/chat")
            .transport(transport)
            .tls(trusting(&pki.ca));
        let err = connect(&config)
            .await
            .map(|_| ())
            .expect_err("TLS to plaintext");
        assert!(started.elapsed() < WAIT, "{transport:?}: {err}");
        assert_eq!(err.reason(), "tls.not_tls", "{transport:?}: {err}");
    }
    secure.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn the_tls_handshake_is_bounded_by_the_connect_timeout() {
    let pki = Pki::new("driver-timeout");
    let silent = Hostile::start(Mode::Silent).await;
    let addr = silent.addr();
    let mut config = ClientConfig::new(format!("https://{addr}")).tls(trusting(&pki.ca));
    config.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = connect(&config)
        .await
        .map(|_| ())
        .expect_err("no TLS answer");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                phase: "tls handshake",
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A small chat scenario against `target` with a `tls:` block (or none).
fn scenario(dir: &Path, target: &str, tls: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"name: tls
target: {target}
{tls}
socketio:
  namespace: /chat
  transport: polling-upgrade
auth:
  jwt:
    secret_env: CHORUS_TLS_SECRET
    claims: {{ sub: "user-{{{{vu}}}}" }}
  place: query
groups:
  - name: chatters
    flow:
      - connect
      - expect: {{ event: onlineUsers, timeout: 5s }}
      - emit: {{ event: joinChat, data: {{ username: "u{{{{vu}}}}" }} }}
      - expect: {{ event: joined, timeout: 5s }}
      - emit: {{ event: sendMessage, data: {{ message: "hi" }} }}
      - think: 500ms
      - disconnect
load:
  phases:
    - ramp: {{ to: 3, over: 200ms }}
    - hold: 1s
max_duration: 1m
thresholds:
  errors: "== 0"
  connections.ok: "== 3"
"#
    );
    let path = dir.join("tls.yml");
    std::fs::write(&path, yaml).expect("write the scenario");
    path
}

async fn chorus_run(scenario: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run".to_owned(),
        scenario.display().to_string(),
        "--out".to_owned(),
        out.display().to_string(),
        "--quiet".to_owned(),
        "--no-report".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    harness::finish(harness::chorus(args, ("CHORUS_TLS_SECRET", SECRET))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_run_passes_over_tls_with_the_scenario_ca_the_flag_or_insecure() {
    let pki = Pki::new("driver-run");
    let gw = gateway(Some(&pki)).await;
    std::fs::copy(&pki.ca, pki.dir.join("scenario-ca.pem")).expect("copy the CA");
    let target = gw.url();
    let cases: [(&str, &str, &[&str]); 3] = [
        ("scenario-ca", "tls: { ca: scenario-ca.pem }", &[]),
        (
            "flag-ca",
            "",
            &["--ca", pki.ca.to_str().expect("a UTF-8 path")],
        ),
        (
            "insecure",
            "tls: { server_name: localhost }",
            &["--insecure"],
        ),
    ];
    for (name, tls, extra) in cases {
        let scenario = scenario(&pki.dir, &target, tls);
        let out = pki.dir.join(name);
        let output = chorus_run(&scenario, &out, extra).await;
        harness::assert_exit(&output, 0, name);
        let summary = harness::read_summary(&out);
        assert_eq!(harness::counter(&summary, "connections.ok"), 3, "{name}");
        // Every connect's phases are timed, the TLS handshake among them.
        for phase in [
            "connect",
            "connect.tcp",
            "connect.tls",
            "connect.handshake",
            "connect.namespace",
        ] {
            assert_eq!(
                harness::latency_count(&summary, phase),
                3,
                "{name}: {phase}"
            );
        }
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_run_names_an_unknown_ca_and_a_missing_ca_file() {
    let pki = Pki::new("driver-run-bad");
    let gw = gateway(Some(&pki)).await;
    // No CA given: the system's roots do not know the test CA.
    let scenario_path = scenario(&pki.dir, &gw.url(), "");
    let out = pki.dir.join("unknown");
    let output = chorus_run(&scenario_path, &out, &[]).await;
    harness::assert_exit(&output, 3, "no client connects");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("chorus: "))
        .unwrap_or_else(|| panic!("no reason line: {stderr}"));
    assert!(
        line.contains("all 3 clients") && line.contains("tls.unknown_ca") && line.contains("--ca"),
        "{line}"
    );
    let summary = harness::read_summary(&out);
    assert_eq!(
        harness::counter(&summary, "errors.connect.tls.unknown_ca"),
        3
    );

    // A CA file that is not there: a load error with its position, exit 2.
    let scenario_path = scenario(&pki.dir, &gw.url(), "tls:\n  ca: missing.pem");
    let output = chorus_run(&scenario_path, &pki.dir.join("missing"), &[]).await;
    harness::assert_exit(&output, 2, "a missing CA file");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at = format!("{}:4:7:", scenario_path.display());
    assert!(
        stderr.contains(&at) && stderr.contains("missing.pem"),
        "{stderr}"
    );
    // The same through `--ca`: the flag is named.
    let scenario_path = scenario(&pki.dir, &gw.url(), "");
    let missing = pki.dir.join("absent.pem");
    let output = chorus_run(
        &scenario_path,
        &pki.dir.join("flag"),
        &["--ca", missing.to_str().expect("a UTF-8 path")],
    )
    .await;
    harness::assert_exit(&output, 2, "a missing --ca file");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chorus: --ca:") && stderr.contains("absent.pem"),
        "{stderr}"
    );
    gw.shutdown().await;
}

/// `chorus conform --target <url> --profile seed` plus `extra`; its stdout and exit code.
async fn chorus_conform(target: &str, extra: &[&str]) -> (String, Option<i32>) {
    let mut args = vec!["conform", "--target", target, "--profile", "seed"];
    args.extend_from_slice(extra);
    let output = harness::finish(harness::chorus(args, ("JWT_SECRET", SECRET))).await;
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_conform_gives_the_same_verdicts_over_tls() {
    let pki = Pki::new("driver-conform");
    let secure = gateway(Some(&pki)).await;
    let plain = gateway(None).await;
    let ca = pki.ca.to_str().expect("a UTF-8 path");
    let (over_tls, code) = chorus_conform(&secure.url(), &["--ca", ca]).await;
    assert_eq!(code, Some(0), "{over_tls}");
    let (plaintext, _) = chorus_conform(&plain.url(), &[]).await;
    let verdicts = |out: &str| -> Vec<String> {
        let mut lines: Vec<String> = out
            .lines()
            .filter(|l| ["PASS ", "FAIL ", "SKIP "].iter().any(|p| l.starts_with(p)))
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(verdicts(&over_tls), verdicts(&plaintext));
    assert!(verdicts(&over_tls).iter().any(|l| l.starts_with("PASS ")));
    // Without the CA: refused in one line, exit 3 (the target is unreachable as TLS).
    let (_, code) = chorus_conform(&secure.url(), &[]).await;
    assert_eq!(code, Some(3));
    secure.shutdown().await;
    plain.shutdown().await;
}
