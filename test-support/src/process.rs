//! The real `chorus-gateway` binary as a child process: spawned on 127.0.0.1
//! port 0, watched through `/proc`, `/healthz` and `/metrics`, and stopped
//! with a signal. Tests that need the process (signals, resource bounds,
//! shutdown) use this instead of an in-process gateway.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::try_http;
use crate::{within, WAIT};

/// How many of the gateway's last log lines are kept for failure messages.
const LOG_LINES: usize = 200;

/// How long [`GatewayProcess::terminate`] waits for the process to exit.
pub const EXIT_WAIT: Duration = Duration::from_secs(15);

/// A running `chorus-gateway` process. Dropping it kills the process.
pub struct GatewayProcess {
    /// The address the gateway logged that it listens on.
    pub addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl GatewayProcess {
    /// Spawns the binary `bin` (a test's `env!("CARGO_BIN_EXE_chorus-gateway")`:
    /// only the gateway crate's own tests have it built) with
    /// `--addr 127.0.0.1:0 --jwt-secret secret` plus `args` (e.g.
    /// `["--profile", "strict", "--connect-timeout-ms", "500"]`), and waits
    /// for the address it logs.
    pub fn spawn(bin: &Path, secret: &str, args: &[&str]) -> Self {
        Self::spawn_at(bin, &[], "127.0.0.1:0", secret, args)
    }

    /// Like [`GatewayProcess::spawn`], on `addr` (a fixed port, to restart a
    /// gateway where its clients were), with `leading` arguments before the
    /// gateway's (`["serve"]` runs it as `chorus serve`).
    pub fn spawn_at(bin: &Path, leading: &[&str], addr: &str, secret: &str, args: &[&str]) -> Self {
        Self::spawn_env(bin, leading, addr, secret, &[], args)
    }

    /// Like [`GatewayProcess::spawn_at`], with the environment variables
    /// `env` set (flags in `args` still win over them, as in clap).
    pub fn spawn_env(
        bin: &Path,
        leading: &[&str],
        addr: &str,
        secret: &str,
        env: &[(String, String)],
        args: &[&str],
    ) -> Self {
        let mut child = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(leading)
            .args(["--addr", addr, "--jwt-secret", secret])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chorus-gateway");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES)));
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let Some(line) = lines.next() else {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut err);
                let _ = child.wait();
                panic!("chorus-gateway {args:?} exited before listening:\n{seen:#?}\n{err}");
            };
            let line = line.expect("utf-8 log");
            if let Some(rest) = line.split("addr=").nth(1) {
                let addr = rest.split_whitespace().next().expect("an address");
                break addr.parse().expect("a socket address");
            }
            seen.push(line);
        };
        // Keep draining both pipes so the gateway never blocks on a full one.
        for reader in [
            Box::new(lines.map_while(Result::ok)) as Box<dyn Iterator<Item = String> + Send>,
            Box::new(BufReader::new(stderr).lines().map_while(Result::ok)),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in reader {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        Self {
            addr,
            child: Some(child),
            log,
        }
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("the gateway process")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// The gateway's last log lines (stdout and stderr), for failure messages.
    pub fn log(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }

    /// The resident set size (`VmRSS` of `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a VmRSS line in kB");
        kib * 1024
    }

    /// The body of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = within(try_http(self.addr, "GET", "/metrics", &[], b""))
            .await
            .expect("connect for /metrics");
        assert_eq!(response.status, 200, "GET /metrics");
        response.text()
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("the gateway process");
        matches!(child.try_wait(), Ok(None))
    }

    /// Whether `GET /healthz` answers `ok` within [`WAIT`].
    pub async fn healthy(&self) -> bool {
        let probe = try_http(self.addr, "GET", "/healthz", &[], b"");
        match tokio::time::timeout(WAIT, probe).await {
            Ok(Ok(response)) => response.status == 200 && response.body == b"ok",
            _ => false,
        }
    }

    /// Sends the signal `name` (`TERM`, `INT`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits at most `limit` for the process to exit; past that, kills it and panics.
    pub fn wait_exit(mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the gateway process");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the gateway") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the gateway did not exit within {limit:?}; last log lines:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits at most [`EXIT_WAIT`] for the exit status (kills
    /// and panics past that).
    pub fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(EXIT_WAIT)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of the Prometheus sample `name` in `text`: the sum over every
/// label set when there are several. Panics when there is no such sample.
pub fn metric(text: &str, name: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            l.rsplit(' ').next()?.parse().ok()
        })
        .collect();
    assert!(!values.is_empty(), "no sample {name} in:\n{text}");
    values.iter().sum()
}
