//! Runs the official JavaScript socket.io-client (`tests/js/chat-client.mjs`)
//! against a test gateway and reads what it observed, one JSON line per event.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{within, within_for};
use chorus_test_support::npm::ensure_node_modules;

/// How long a JS client may take to start and connect (Node boots slowly on a busy machine).
pub const JS_WAIT: Duration = Duration::from_secs(20);

/// A plan for `chat-client.mjs` connecting to `/chat` on `addr`; `transports`
/// `None` keeps the client's default (polling, then upgrade to websocket).
pub fn plan(addr: SocketAddr, transports: Option<&[&str]>, steps: Value) -> Value {
    let mut plan = json!({
        "url": format!("http://{addr}"),
        "namespace": "/chat",
        "steps": steps,
    });
    if let Some(t) = transports {
        plan["transports"] = json!(t);
    }
    plan
}

/// A running `node` process; killed when dropped.
pub struct JsClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    // Held open: the script exits when its stdin closes.
    stdin: Option<ChildStdin>,
}

impl JsClient {
    /// Starts `chat-client.mjs` with `plan`.
    pub fn spawn(plan: &Value) -> Self {
        Self::spawn_script("chat-client.mjs", &[plan.to_string()], &[])
    }

    /// Starts the script `name` from `tests/js` with arguments and environment.
    pub fn spawn_script(name: &str, args: &[String], env: &[(&str, String)]) -> Self {
        let dir = ensure_node_modules();
        let mut child = Command::new("node")
            .arg(dir.join(name))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (Node.js must be installed)");
        let stdout = child.stdout.take().expect("piped stdout");
        JsClient {
            stdin: child.stdin.take(),
            lines: BufReader::new(stdout).lines(),
            child,
        }
    }

    /// The next raw output line, failing after `limit` or at EOF.
    pub async fn next_line_within(&mut self, limit: Duration) -> String {
        tokio::time::timeout(limit, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the JS client printed nothing for {limit:?}"))
            .expect("read the JS client's output")
            .expect("the JS client exited early")
    }

    /// The next observation, as JSON.
    pub async fn next(&mut self) -> Value {
        let line = self.next_line_within(JS_WAIT).await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Reads observations until one whose `event` is `event`; returns it.
    /// Fails on `wait_timeout` or `script_error` lines unless waited for.
    pub async fn wait_for(&mut self, event: &str) -> Value {
        self.collect_until(event)
            .await
            .pop()
            .expect("the last line is the event")
    }

    /// Every observation up to and including the first with `event`.
    pub async fn collect_until(&mut self, event: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.next().await;
            let name = line["event"].as_str().unwrap_or_default().to_owned();
            if ["wait_timeout", "script_error"].contains(&name.as_str()) && name != event {
                panic!("the JS client failed: {line} (after {seen:?})");
            }
            seen.push(line);
            if name == event {
                return seen;
            }
        }
    }

    /// Closes stdin and waits for the script to exit.
    pub async fn finish(mut self) {
        drop(self.stdin.take());
        within(self.child.wait())
            .await
            .expect("the JS client exits");
    }
}

/// The `args` of an observation line.
pub fn args(line: &Value) -> &Vec<Value> {
    line["args"].as_array().expect("an args array")
}

/// Waits for the tutorial-style output line starting with `prefix`.
pub async fn wait_line(client: &mut JsClient, prefix: &str) -> String {
    within_for(JS_WAIT, async {
        loop {
            let line = client.next_line_within(JS_WAIT).await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    })
    .await
}
