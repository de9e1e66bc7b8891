//! Benchmark: how many authenticated idle clients one chorus process holds,
//! and the resident memory each one costs.
//!
//! Connects `chorus::client::Client`s (websocket, 4 KiB buffers, a JWT in the
//! `token` query) to a separately started gateway in batches, spreading them
//! over 127.0.0.x source addresses, until the cap is reached or a batch mostly
//! fails; holds them idle, then reports how many are still connected and the
//! RSS growth per client. Driven by `bench/run.sh`; see `bench/README.md`.
//!
//! ```text
//! cargo run --release --example bench_idle_clients -- --target http://127.0.0.1:3000 --secret s3cret
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::task::JoinSet;

use chorus::client::{Client, ClientConfig, CloseReason, Handler, Incoming};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// A system call or `/proc` read failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A token could not be signed.
    #[error("cannot sign a token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// A connect task panicked.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// `/proc/self/status` has no readable `VmRSS` line.
    #[error("no VmRSS in /proc/self/status")]
    NoRss,
    /// More clients than 127.0.0.1 to 127.0.0.255 can carry.
    #[error("out of 127.0.0.x source addresses")]
    OutOfSourceAddresses,
    /// Not a single client connected.
    #[error("no client connected: {0:?}")]
    NoneConnected(Vec<String>),
}

/// File descriptors kept free for the runtime, stdio and the like.
const FD_RESERVE: u64 = 32;

/// Idle-client capacity and memory benchmark against a running gateway.
#[derive(Parser)]
struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    target: String,
    /// The namespace to join.
    #[arg(long, default_value = "/chat")]
    namespace: String,
    /// The gateway's JWT secret (HS256).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Stop after this many connected clients.
    #[arg(long, default_value_t = 30_000)]
    cap: u64,
    /// Clients connected concurrently per batch.
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// Clients per 127.0.0.x source address before the next one is used. A
    /// client binds its source address before connecting, so the kernel picks
    /// its port at bind time and cannot reuse ports still in TIME_WAIT from an
    /// earlier run: keep this well under the ~28,000 ephemeral ports.
    #[arg(long, default_value_t = 10_000)]
    per_source_ip: u64,
    /// Seconds to hold the clients idle before counting them.
    #[arg(long, default_value_t = 10)]
    hold_s: u64,
}

/// What every client's handler counts, shared by all.
#[derive(Default)]
struct Counts {
    events: AtomicU64,
    closed: AtomicU64,
}

/// The smallest useful handler: counts events and closes.
struct IdleHandler(Arc<Counts>);

impl Handler for IdleHandler {
    fn on_message(&mut self, _at: Instant, _message: Incoming<'_>) {
        self.0.events.fetch_add(1, Relaxed);
    }

    fn on_closed(&mut self, _at: Instant, _reason: CloseReason) {
        self.0.closed.fetch_add(1, Relaxed);
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

/// An HS256 token for client `i`, valid for two hours.
fn token(key: &jsonwebtoken::EncodingKey, i: u64) -> Result<String, BenchError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "sub": format!("idle-{i}"),
        "username": format!("idle-{i}"),
        "iat": now,
        "exp": now + 7200,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        key,
    )?)
}

#[tokio::main]
async fn main() -> Result<(), BenchError> {
    let args = Args::parse();
    let fd_limit = rlimit::increase_nofile_limit(u64::MAX)?;
    let cap = args.cap.min(fd_limit.saturating_sub(FD_RESERVE));
    let key = jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes());
    let counts = Arc::new(Counts::default());
    let base_config = ClientConfig::new(&args.target).namespace(&args.namespace);
    println!(
        "fd limit {fd_limit}, cap {cap} (asked {}), batch {}",
        args.cap, args.batch
    );

    let rss_before = rss_bytes()?;
    let started = Instant::now();
    let mut clients: Vec<Client> = Vec::with_capacity(cap as usize);
    let mut failed_total = 0u64;
    let mut failures: Vec<String> = Vec::new();
    while (clients.len() as u64) < cap {
        let first = clients.len() as u64;
        let size = args.batch.min(cap - first);
        let mut batch = JoinSet::new();
        for i in first..first + size {
            let mut config = base_config.clone().query("token", token(&key, i)?);
            let host = u8::try_from(1 + i / args.per_source_ip)
                .map_err(|_| BenchError::OutOfSourceAddresses)?;
            config.local_ip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)));
            let handler = IdleHandler(counts.clone());
            batch.spawn(async move { Client::connect(&config, handler).await });
        }
        let mut failed = 0u64;
        while let Some(joined) = batch.join_next().await {
            match joined? {
                Ok((client, _)) => clients.push(client),
                Err(err) => {
                    failed += 1;
                    failed_total += 1;
                    if failures.len() < 5 {
                        failures.push(err.to_string());
                    }
                }
            }
        }
        if failed * 2 > size {
            println!("batch from {first}: {failed} of {size} failed; stopping");
            break;
        }
    }
    let connect_time = started.elapsed();
    let connected = clients.len() as u64;
    if connected == 0 {
        return Err(BenchError::NoneConnected(failures));
    }
    // Let the post-connect packets (onlineUsers) arrive before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = rss_bytes()?;
    tokio::time::sleep(Duration::from_secs(args.hold_s)).await;
    let still_open = clients.iter().filter(|c| !c.is_closed()).count();
    let rss_held = rss_bytes()?;
    let per_client = |rss: u64| rss.saturating_sub(rss_before) as f64 / connected as f64 / 1024.0;

    println!(
        "connected:            {connected} in {:.1} s",
        connect_time.as_secs_f64()
    );
    println!("failed connects:      {failed_total} (first: {failures:?})");
    println!("still open after {} s: {still_open}", args.hold_s);
    println!("closed by server:     {}", counts.closed.load(Relaxed));
    println!("events received:      {}", counts.events.load(Relaxed));
    println!(
        "rss before:           {:.1} MiB",
        rss_before as f64 / 1048576.0
    );
    println!(
        "rss connected:        {:.1} MiB ({:.2} KiB/client)",
        rss_connected as f64 / 1048576.0,
        per_client(rss_connected)
    );
    println!(
        "rss after hold:       {:.1} MiB ({:.2} KiB/client)",
        rss_held as f64 / 1048576.0,
        per_client(rss_held)
    );
    // Drop without a goodbye: the gateway sees the sockets close.
    drop(clients);
    Ok(())
}
