//! Engine.IO v3 / socket.io 2.x: chorus's client against the official
//! socket.io 2.5 server running the chat gateway of docs/protocol.md §2
//! (`tests/js/v2/chat-gateway.mjs`), with the official socket.io-client 2.5
//! (`tests/js/v2/chat-client.mjs`) as a second, independent client.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use chorus::client::{
    Client, ClientConfig, ClientError, CloseReason, Handler, Incoming, Transport,
};
use chorus_protocol::Version;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SECRET: &str = "eio3-secret";
const WAIT: Duration = Duration::from_secs(10);
const TRANSPORTS: [Transport; 3] = [
    Transport::Websocket,
    Transport::Polling,
    Transport::PollingUpgrade,
];

/// A node child process, killed on drop.
struct Node {
    child: Child,
}

impl Node {
    fn spawn(script: &str, env: &[(&str, String)]) -> (Self, Lines<BufReader<ChildStdout>>) {
        let dir = chorus_test_support::npm::ensure_v2_node_modules();
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start node");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (Self { child }, lines)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The socket.io 2.5 chat gateway on 127.0.0.1, port 0.
struct Gateway {
    _node: Node,
    url: String,
}

impl Gateway {
    fn start(ping_ms: Option<u64>) -> Self {
        let mut env = vec![("JWT_SECRET", SECRET.to_owned())];
        if let Some(ms) = ping_ms {
            env.push(("PING_INTERVAL", ms.to_string()));
            env.push(("PING_TIMEOUT", ms.to_string()));
        }
        let (node, mut lines) = Node::spawn("chat-gateway.mjs", &env);
        let port: u16 = lines
            .next()
            .expect("the gateway prints its port")
            .unwrap()
            .trim()
            .parse()
            .expect("a port");
        Self {
            _node: node,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn config(&self, transport: Transport, sub: &str) -> ClientConfig {
        ClientConfig::new(&self.url)
            .version(Version::V2)
            .namespace("/chat")
            .transport(transport)
            .query(
                "token",
                chorus_test_support::tokens::valid_for_an_hour(SECRET, sub),
            )
    }
}

#[derive(Debug)]
enum Got {
    Event(String, Vec<Value>),
    Closed(CloseReason),
}

struct Recorder(mpsc::UnboundedSender<Got>);

impl Handler for Recorder {
    fn on_message(&mut self, _: Instant, message: Incoming<'_>) {
        if let Incoming::Event { name, args, .. } = message {
            let args = args
                .iter()
                .map(|a| serde_json::from_str(a.get()).unwrap())
                .collect();
            let _ = self.0.send(Got::Event(name.to_owned(), args));
        }
    }

    fn on_closed(&mut self, _: Instant, reason: CloseReason) {
        let _ = self.0.send(Got::Closed(reason));
    }
}

type Inbox = mpsc::UnboundedReceiver<Got>;

async fn connect(config: &ClientConfig) -> (Client, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (client, _) = Client::connect(config, Recorder(tx))
        .await
        .unwrap_or_else(|e| panic!("{:?} connect: {e}", config.transport));
    (client, rx)
}

/// The first argument of the next event called `name`, skipping others.
async fn event(rx: &mut Inbox, name: &str) -> Value {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Got::Event(n, mut args))) if n == name => {
                return args.drain(..).next().unwrap_or(Value::Null)
            }
            Ok(Some(Got::Closed(r))) => panic!("closed ({r}) while waiting for {name}"),
            Ok(Some(_)) => {}
            other => panic!("no {name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn chorus_joins_and_chats_over_every_transport() {
    let gateway = Gateway::start(None);
    for transport in TRANSPORTS {
        let (alice, mut rx) = connect(&gateway.config(transport, "alice")).await;
        // socket.io 2.x names a namespace socket `<nsp>#<Engine.IO sid>`.
        assert!(alice.sid().starts_with("/chat#"), "{}", alice.sid());
        event(&mut rx, "onlineUsers").await;
        let name = format!("alice-{transport:?}");
        alice
            .emit("joinChat", &[&json!({ "username": name }).to_string()])
            .await
            .unwrap();
        let online = event(&mut rx, "userOnline").await;
        assert_eq!(online, json!({ "username": name, "clientId": alice.sid() }));
        let joined = event(&mut rx, "joined").await;
        assert_eq!(
            joined,
            json!({ "username": name, "message": "成功加入聊天室" })
        );
        // Non-ASCII text, counted in UTF-16 code units by v3's polling framing.
        let text = format!("héllo 😀 over {transport:?}");
        alice
            .emit("sendMessage", &[&json!({ "message": text }).to_string()])
            .await
            .unwrap();
        let message = event(&mut rx, "newMessage").await;
        assert_eq!(message["username"], json!(name));
        assert_eq!(message["message"], json!(text));
        alice.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn the_official_2x_client_sees_what_chorus_sends() {
    let gateway = Gateway::start(None);
    for transport in TRANSPORTS {
        let token = chorus_test_support::tokens::valid_for_an_hour(SECRET, "js");
        let (_js, mut lines) = Node::spawn(
            "chat-client.mjs",
            &[
                ("CHAT_URL", format!("{}/chat", gateway.url)),
                ("CHAT_TOKEN", token),
                ("CHAT_NAME", "js".into()),
            ],
        );
        let (reader_tx, mut reader_rx) = mpsc::unbounded_channel::<Value>();
        std::thread::spawn(move || {
            for line in lines.by_ref().map_while(Result::ok) {
                if reader_tx
                    .send(serde_json::from_str(&line).unwrap())
                    .is_err()
                {
                    break;
                }
            }
        });
        let js_event = |rx: &mut mpsc::UnboundedReceiver<Value>, name: &'static str| {
            let deadline = Instant::now() + WAIT;
            loop {
                let line = rx.try_recv();
                match line {
                    Ok(v) if v["event"] == name => return v,
                    Ok(_) => {}
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("the JS client saw no {name}: {e}"),
                }
            }
        };
        js_event(&mut reader_rx, "joined");

        let (bob, mut rx) = connect(&gateway.config(transport, "bob")).await;
        let snapshot = event(&mut rx, "onlineUsers").await;
        assert!(
            snapshot
                .as_array()
                .unwrap()
                .iter()
                .any(|pair| pair[1] == "js"),
            "{snapshot}"
        );
        bob.emit("joinChat", &[r#"{"username":"bob"}"#])
            .await
            .unwrap();
        event(&mut rx, "joined").await;
        let text = format!("from chorus over {transport:?} ✓");
        bob.emit("sendMessage", &[&json!({ "message": text }).to_string()])
            .await
            .unwrap();
        bob.emit("typing", &[r#"{"isTyping":true}"#]).await.unwrap();
        let seen = js_event(&mut reader_rx, "newMessage");
        assert_eq!(seen["args"][0]["username"], "bob");
        assert_eq!(seen["args"][0]["message"], json!(text));
        let typing = js_event(&mut reader_rx, "userTyping");
        assert_eq!(
            typing["args"][0],
            json!({ "username": "bob", "isTyping": true })
        );
        let sid = bob.sid().to_owned();
        bob.disconnect().await.unwrap();
        let offline = js_event(&mut reader_rx, "userOffline");
        assert_eq!(
            offline["args"][0],
            json!({ "username": "bob", "clientId": sid })
        );
    }
}

#[tokio::test]
async fn client_pings_keep_a_v3_session_alive() {
    // socket.io 2.x closes a session whose client does not ping within
    // pingInterval + pingTimeout; here 300 + 300 ms, watched for 2 s.
    let gateway = Gateway::start(Some(300));
    for transport in [Transport::Websocket, Transport::Polling] {
        let (client, mut rx) = connect(&gateway.config(transport, "pinger")).await;
        event(&mut rx, "onlineUsers").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!client.is_closed(), "{transport:?}: {:?}", rx.try_recv());
        client
            .emit("joinChat", &[r#"{"username":"still-here"}"#])
            .await
            .unwrap();
        event(&mut rx, "joined").await;
        client.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn a_v4_client_against_the_2x_server_is_told_in_one_line() {
    let gateway = Gateway::start(None);
    for transport in TRANSPORTS {
        let config = gateway.config(transport, "v4").version(Version::V4);
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = Client::connect(&config, Recorder(tx)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Version {
                    server: Version::V2
                }
            ),
            "{transport:?}: {err:?}"
        );
        assert_eq!(err.reason(), "version");
        assert_eq!(
            err.to_string(),
            "the server speaks Engine.IO v3 (socket.io 2.x): set `socketio.version: 2`"
        );
    }
}

#[tokio::test]
async fn a_v2_client_against_a_v4_server_is_told_in_one_line() {
    let gateway = chorus_test_support::gateway::start(chorus_test_support::gateway::config(
        chorus_gateway::Profile::Seed,
        SECRET,
    ))
    .await;
    let url = format!("http://{}", gateway.addr());
    for transport in TRANSPORTS {
        let config = ClientConfig::new(&url)
            .version(Version::V2)
            .namespace("/chat")
            .transport(transport);
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = Client::connect(&config, Recorder(tx)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Version {
                    server: Version::V4
                }
            ),
            "{transport:?}: {err:?}"
        );
    }
}

/// The environment variable holding the gateway's secret for `chorus conform`.
const SECRET_ENV: &str = "CHORUS_TEST_SECRET_EIO3";

#[tokio::test]
async fn chorus_run_with_socketio_version_2_passes_its_thresholds() {
    use crate::support::harness::{
        assert_exit, chorus, counter, finish, read_summary, run_args, temp_dir,
    };
    let gateway = Gateway::start(None);
    for transport in ["websocket", "polling-upgrade"] {
        let out = temp_dir(&format!("eio3-run-{transport}"));
        let mut args = run_args("tests/scenarios/interop.yml", &gateway.url, &out);
        args.extend(
            [
                "--set",
                "socketio.version=2",
                "--set",
                &format!("socketio.transport={transport}"),
            ]
            .map(String::from),
        );
        let output = finish(chorus(&args, ("JWT_SECRET", SECRET))).await;
        assert_exit(&output, 0, transport);
        let summary = read_summary(&out);
        assert!(counter(&summary, "deliveries.received") > 0);
        assert_eq!(counter(&summary, "deliveries.lost"), 0);
    }
    // The same scenario left at version 4: one line, and a counted reason.
    let out = temp_dir("eio3-run-v4");
    let args = run_args("tests/scenarios/interop.yml", &gateway.url, &out);
    let output = finish(chorus(&args, ("JWT_SECRET", SECRET))).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("the server speaks Engine.IO v3 (socket.io 2.x): set `socketio.version: 2`"),
        "{stderr}"
    );
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(counter(&read_summary(&out), "errors.connect.version"), 10);
}

/// The seed suite against the socket.io 2.x `gateway`, speaking `version`.
fn conform_options(gateway: &Gateway, version: Version) -> chorus::conform::ConformOptions {
    // Only the conformance tests of this module read this variable, and they
    // all set it to the same secret.
    std::env::set_var(SECRET_ENV, SECRET);
    chorus::conform::ConformOptions {
        jwt_secret_env: SECRET_ENV.to_owned(),
        version,
        ..chorus::conform::ConformOptions::new(
            Some(gateway.url.clone()),
            chorus_gateway::Profile::Seed,
        )
    }
}

#[tokio::test]
async fn the_seed_conformance_cases_that_apply_pass_against_socketio_2() {
    let gateway = Gateway::start(None);
    let options = conform_options(&gateway, Version::V2);
    let report = chorus::conform::run(&options, |r| eprintln!("{}", r.render()))
        .await
        .expect("the suite runs");
    let (mut passed, mut skipped) = (0, 0);
    for result in &report.results {
        match &result.verdict {
            chorus::conform::Verdict::Pass => passed += 1,
            // One target: the cluster cases are skipped, as against any gateway.
            chorus::conform::Verdict::Skip(_)
                if result.category == chorus::conform::Category::Cluster => {}
            chorus::conform::Verdict::Skip(_) => skipped += 1,
            chorus::conform::Verdict::Fail(evidence) => panic!("{}: {evidence}", result.name),
        }
    }
    // Skipped: the raw Engine.IO v4 cases, the CONNECT `auth` case and the
    // three §1.5 closes that socket.io 2.x does not make.
    assert!(passed >= 40, "{passed} passed, {skipped} skipped");
    for v3 in [
        "engineio3.open.polling-fields",
        "engineio3.heartbeat.client-pings",
    ] {
        assert!(report.results.iter().any(|r| r.name == v3), "{v3} ran");
    }
    assert_eq!(skipped, 12);
}

#[tokio::test]
async fn conform_at_version_4_against_socketio_2_stops_with_the_one_line() {
    let gateway = Gateway::start(None);
    let options = conform_options(&gateway, Version::V4);
    let err = chorus::conform::run(&options, |_| {}).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the server speaks Engine.IO v3 (socket.io 2.x): set `socketio.version: 2`"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}
