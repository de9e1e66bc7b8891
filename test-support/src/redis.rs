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
    /// no`: nothing is written to disk) and waits until it answers `PING`.
    pub fn start() -> Self {
        // A port the OS just handed out, released for redis to take.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// Like [`RedisServer::start`], on `port` (to bring a killed one back
    /// where its clients were).
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (the Debian package redis-server must be installed)");
        let mut server = Self { port, child };
        let deadline = Instant::now() + WAIT;
        while !server.answers_ping() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server on port {port} exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The process id (to stop it with `SIGSTOP`, as a Redis that has stalled).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
