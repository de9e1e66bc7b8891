//! One node of the chat gateway of docs/protocol.md §2 on the official
//! socket.io 4 server (`tests/js/chat-gateway.mjs`), as a child process on
//! 127.0.0.1, optionally joined to others by `@socket.io/redis-adapter`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::WAIT;

/// A running chat gateway node. Dropping it kills the process.
pub struct ChatNode {
    /// Its base URL, `http://127.0.0.1:<port>` (`https://localhost:<port>` over TLS).
    pub url: String,
    child: Child,
}

impl ChatNode {
    /// Starts a node verifying tokens with `secret`, joined to the other
    /// nodes through the redis at `redis_url` when given, and waits (at most
    /// [`WAIT`]) for the port it prints once ready.
    pub fn start(secret: &str, redis_url: Option<&str>) -> Self {
        Self::spawn(secret, redis_url, None)
    }

    /// Starts a lone node serving HTTPS and WSS with the certificate and key
    /// of `pki` (Node's own TLS); its URL is `https://localhost:<port>`.
    pub fn start_tls(secret: &str, pki: &crate::pki::Pki) -> Self {
        Self::spawn(secret, None, Some(pki))
    }

    fn spawn(secret: &str, redis_url: Option<&str>, pki: Option<&crate::pki::Pki>) -> Self {
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
        if let Some(pki) = pki {
            command.env("TLS_CERT", &pki.cert).env("TLS_KEY", &pki.key);
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
        let url = match pki {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        Self { url, child }
    }
}

impl Drop for ChatNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
