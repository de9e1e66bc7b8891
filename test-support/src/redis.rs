//! A real `redis-server` (Debian's package) on a free loopback port, without
//! persistence, killed on drop: what the cluster tests join socket.io nodes
//! with (`@socket.io/redis-adapter`).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::WAIT;

/// A running `redis-server`. Dropping it kills the process.
pub struct RedisServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` on a free 127.0.0.1 port (`--save "" --appendonly
    /// no`: nothing is written to disk) and waits until it answers. A port
    /// another test's redis took meanwhile is retried with another one.
    pub fn start() -> Self {
        for _ in 0..5 {
            // A port the OS just handed out, released for redis to take.
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(server) = Self::try_start_on(port) {
                return server;
            }
        }
        panic!("redis-server found no free port in 5 tries");
    }

    /// Like [`RedisServer::start`], on `port` (to bring a killed one back
    /// where its clients were); panics when that port is taken.
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port)
            .unwrap_or_else(|| panic!("redis-server could not listen on port {port}"))
    }

    /// Starts redis on `port` and waits until this very process answers
    /// there (`INFO server` names its pid: a redis of another test on the
    /// same port does not count); `None` when it exits first.
    fn try_start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (the Debian package redis-server must be installed)");
        let mut server = Self { port, child };
        let deadline = Instant::now() + WAIT;
        while !server.answers() {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The process id (to stop it with `SIGSTOP`, as a Redis that has stalled).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether this process answers on the port (its `process_id` in `INFO server`).
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"INFO server\r\n").is_err() {
            return false;
        }
        let want = format!("process_id:{}\r\n", self.child.id());
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        while reply.len() < 64 * 1024 {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&reply);
            if text.contains(&want) {
                return true;
            }
            if text.contains("process_id:") && text.ends_with("\r\n\r\n") {
                return false;
            }
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
