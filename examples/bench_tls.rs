//! Benchmark: what TLS costs the driver. Against a TLS gateway (and a
//! plaintext one for comparison), both started separately:
//!
//! 1. connects per second, one after another through `concurrency` tasks,
//!    each a whole `Client::connect` (TCP, TLS, Engine.IO open, namespace)
//!    followed by a disconnect: once with full handshakes (`resume: false`),
//!    once with one shared setup that resumes sessions; and the mean TLS
//!    handshake time of each;
//! 2. resident memory per idle client: `idle` clients held over TLS, then
//!    `idle` plaintext clients, each set's RSS growth divided by its count.
//!
//! Driven by `bench/tls.sh`.
//!
//! ```text
//! cargo run --release --example bench_tls -- --tls-target https://127.0.0.1:3443 \
//!     --plain-target http://127.0.0.1:3000 --ca cert.pem --secret s3cret
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::task::JoinSet;

use chorus::client::{
    Client, ClientConfig, ClientError, CloseReason, Handler, Incoming, Tls, TlsConfig,
    TlsSetupError,
};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// A `/proc` read failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A token could not be signed.
    #[error("cannot sign a token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// The TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// A client could not connect.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A connect task panicked.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// `/proc/self/status` has no readable `VmRSS` line.
    #[error("no VmRSS in /proc/self/status")]
    NoRss,
}

/// What one process of the benchmark measures (memory is measured in a
/// process of its own, so that one set's freed memory does not hide the other's).
#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// Connects per second, full and resumed.
    Rate,
    /// RSS per idle TLS client.
    MemoryTls,
    /// RSS per idle plaintext client.
    MemoryPlain,
}

/// TLS connect-rate and idle-memory benchmark against running gateways.
#[derive(Parser, Clone)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The TLS gateway's base URL.
    #[arg(long)]
    tls_target: String,
    /// The plaintext gateway's base URL, for the memory comparison.
    #[arg(long)]
    plain_target: String,
    /// The CA (or self-signed certificate) the TLS gateway's certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// The gateways' JWT secret (HS256).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Connects per handshake measurement.
    #[arg(long, default_value_t = 2000)]
    connects: u64,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// Idle clients per transport for the memory measurement.
    #[arg(long, default_value_t = 2000)]
    idle: u64,
}

/// The smallest useful handler: counts closes.
struct Quiet(Arc<AtomicU64>);

impl Handler for Quiet {
    fn on_message(&mut self, _at: Instant, _message: Incoming<'_>) {}

    fn on_closed(&mut self, _at: Instant, _reason: CloseReason) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// The process's resident memory in bytes (`VmRSS` of `/proc/self/status`).
fn rss_bytes() -> Result<u64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or(BenchError::NoRss)?;
    Ok(kib * 1024)
}

fn config(url: &str, tls: Option<&Tls>, secret: &str, i: u64) -> Result<ClientConfig, BenchError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({ "sub": format!("tls-{i}"), "iat": now, "exp": now + 7200 });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?;
    let mut config = ClientConfig::new(url)
        .namespace("/chat")
        .query("token", token);
    config.tls = tls.cloned();
    Ok(config)
}

/// `connects` connect-and-disconnect cycles through `concurrency` tasks:
/// connects per second and the mean TLS handshake.
async fn connect_rate(args: &Args, tls: &Tls) -> Result<(f64, Duration), BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let tls_total = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency {
        let (next, tls_total, closed) = (next.clone(), tls_total.clone(), closed.clone());
        let (url, secret, tls, connects) = (
            args.tls_target.clone(),
            args.secret.clone(),
            tls.clone(),
            args.connects,
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= connects {
                    return Ok::<(), BenchError>(());
                }
                let config = config(&url, Some(&tls), &secret, i)?;
                let (client, timings) = Client::connect(&config, Quiet(closed.clone())).await?;
                tls_total.fetch_add(timings.tls.unwrap_or_default().as_micros() as u64, Relaxed);
                client.disconnect().await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mean = Duration::from_micros(tls_total.load(Relaxed) / args.connects.max(1));
    Ok((args.connects as f64 / elapsed, mean))
}

/// Connects `args.idle` clients to `url`, lets them sit, and returns the
/// RSS growth per client; the clients are dropped afterwards.
async fn idle_memory(args: &Args, url: &str, tls: Option<&Tls>) -> Result<f64, BenchError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes()?;
    let closed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::with_capacity(args.idle as usize);
    for chunk in 0..args.idle.div_ceil(100) {
        let mut batch = JoinSet::new();
        for i in chunk * 100..((chunk + 1) * 100).min(args.idle) {
            let config = config(url, tls, &args.secret, 1_000_000 + i)?;
            let closed = closed.clone();
            batch.spawn(async move { Client::connect(&config, Quiet(closed)).await });
        }
        while let Some(done) = batch.join_next().await {
            clients.push(done??.0);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_bytes()?;
    let still = clients.iter().filter(|c| !c.is_closed()).count();
    println!("  {still} of {} idle clients connected", args.idle);
    for client in clients {
        let _ = client.disconnect().await;
    }
    Ok(after.saturating_sub(before) as f64 / args.idle.max(1) as f64)
}

#[tokio::main]
async fn main() -> Result<(), BenchError> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let settings = |resume| TlsConfig {
        ca: Some(args.ca.clone()),
        resume,
        ..TlsConfig::default()
    };
    let full = Tls::new(&settings(false))?;
    let resumed = Tls::new(&settings(true))?;
    match args.mode {
        Mode::Rate => {
            println!(
                "connect + disconnect (websocket), {} connects, {} at once:",
                args.connects, args.concurrency
            );
            // A warm-up fills the resuming setup's ticket cache.
            let warm_up = Args {
                connects: 50,
                ..args.clone()
            };
            connect_rate(&warm_up, &resumed).await?;
            for (name, tls) in [("full handshakes", &full), ("resumed sessions", &resumed)] {
                let (rate, mean) = connect_rate(&args, tls).await?;
                println!("  {name}: {rate:.0} connects/s, TLS handshake mean {mean:?}");
            }
        }
        Mode::MemoryTls => {
            let rss = idle_memory(&args, &args.tls_target, Some(&resumed)).await?;
            println!("  RSS per idle TLS client: {:.2} KiB", rss / 1024.0);
        }
        Mode::MemoryPlain => {
            let rss = idle_memory(&args, &args.plain_target, None).await?;
            println!("  RSS per idle plaintext client: {:.2} KiB", rss / 1024.0);
        }
    }
    Ok(())
}
