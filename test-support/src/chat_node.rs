//! One node of the chat gateway of docs/protocol.md §2 on the official
//! socket.io 4 server (`tests/js/chat-gateway.mjs`), as a child process on
//! 127.0.0.1, optionally joined to others by `@socket.io/redis-adapter`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::WAIT;

/// A running chat gateway node. Dropping it kills the process.
pub struct ChatNode {
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
}

impl ChatNode {
    /// Starts a node verifying tokens with `secret`, joined to the other
    /// nodes through the redis at `redis_url` when given, and waits (at most
    /// [`WAIT`]) for the port it prints once ready.
    pub fn start(secret: &str, redis_url: Option<&str>) -> Self {
        let dir = crate::npm::ensure_node_modules();
        let mut command = Command::new("node");
        command
            .arg("chat-gateway.mjs")
            .current_dir(dir)
            .env("JWT_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = redis_url {
            command.env("REDIS_URL", url);
        }
        let mut child = command
            .spawn()
            .expect("start node (Node.js must be installed)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let port: u16 = match rx.recv_timeout(WAIT) {
            Ok(Some(line)) => line.trim().parse().expect("the node prints its port"),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chat-gateway.mjs did not print its port within {WAIT:?}");
            }
        };
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for ChatNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
