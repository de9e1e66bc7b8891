//! The chorus reference chat gateway: the tutorial's NestJS + socket.io chat
//! gateway rebuilt on axum, wire-identical in the `seed` profile and hardened
//! in the `strict` profile (see `docs/protocol.md`).
//!
//! Layers, bottom up: [`engine`] (Engine.IO v4: polling, websocket, upgrade,
//! heartbeat), `sio` (Socket.IO v5 namespaces and routing, on the
//! `chorus-protocol` codec), [`chat`] (the `/chat` namespace's rules). Each
//! layer calls only down; it hears from the one above through a trait. The
//! Engine.IO layer knows nothing of Socket.IO: it hands every connection's
//! messages to an [`engine::Handler`] (the Socket.IO server implements it).
//! The Socket.IO layer reaches a namespace's rules only through its
//! `Namespace` trait, which [`chat::Chat`] implements, and the chat rules
//! send every frame (broadcast or reply) through one delivery interface, the
//! namespace's `Adapter` ("this frame to these recipients": everyone, everyone
//! but the sender, one socket): the in-process adapter, or with `--cluster`
//! the Redis one (`sio::cluster`), which joins nodes in the wire format of
//! `@socket.io/redis-adapter`.
//!
//! Injected faults (the `faults` cargo feature, tests only) are wrappers
//! around these parts built by `faults::start`; the shipped layers do not
//! know of them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chorus_gateway::GatewayError> {
//! use chorus_gateway::{GatewayConfig, Profile};
//! let config = GatewayConfig { profile: Profile::Seed, jwt_secret: "s3cret".into(), ..GatewayConfig::default() };
//! let gateway = chorus_gateway::start(config).await?;
//! println!("listening on {}", gateway.addr());
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Every byte a client sends is untrusted, so outside tests the gateway may not
//! unwrap, expect, panic or index unchecked (SECURITY.md).
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod chat;
pub mod config;
pub mod engine;
pub mod metrics;
mod sio;
pub mod tls;

/// Marks items that exist only in builds with the `faults` feature (test
/// fixtures); the one place the shipped crate names that feature.
macro_rules! test_fixture {
    ($($item:item)*) => { $( #[cfg(feature = "faults")] $item )* };
}

test_fixture! {
    pub mod faults;
    pub use faults::Faults;
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{GatewayConfig, Profile};
use engine::{CloseReason, Engine};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No JWT secret was given.
    #[error("no JWT secret: pass --jwt-secret or set JWT_SECRET")]
    NoSecret,
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `--tls-cert` or `--tls-key` cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsFileError),
    /// `--cluster` is not a `redis://HOST:PORT` URL.
    #[error("{0}")]
    Cluster(String),
    /// The SIGINT / SIGTERM handlers could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signal(std::io::Error),
}

/// A gateway serving in the background.
pub struct RunningGateway {
    addr: SocketAddr,
    tls: bool,
    engine: Arc<Engine>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    cluster: Option<Arc<sio::cluster::ClusterAdapter>>,
}

/// How long shutdown waits, after closing every session, for the transport
/// tasks to write their last frames and end.
const TASKS_WAIT: Duration = Duration::from_secs(2);

/// Binds `config.addr` (port 0 picks a free port) and serves until shut down.
/// With `--cluster`, the node joins the cluster first (waiting at most
/// [`CLUSTER_WAIT`]; until its link is up it refuses sockets).
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    let metrics = Arc::new(metrics::Metrics::default());
    let cluster = match &config.cluster {
        Some(url) => {
            let cluster_config = sio::cluster::ClusterConfig {
                addr: sio::cluster::resp::host_port(url)
                    .map_err(|e| GatewayError::Cluster(e.to_string()))?,
                presence: config.profile == Profile::Strict,
                queue_size: config.cluster_queue_size,
                // A broadcast carries at most one client packet, plus the envelope.
                max_bytes: usize::try_from(config.max_payload)
                    .unwrap_or(usize::MAX)
                    .saturating_add(64 * 1024),
                timeout: Duration::from_millis(config.cluster_timeout_ms.max(1)),
            };
            let adapter = sio::cluster::ClusterAdapter::new(cluster_config, metrics.clone());
            adapter.spawn();
            if !adapter.wait_up(CLUSTER_WAIT).await {
                tracing::warn!(cluster = %url, "cluster link not up yet: refusing sockets until it is");
            }
            Some(adapter)
        }
        None => None,
    };
    let adapter: Option<Arc<dyn sio::adapter::Adapter>> =
        cluster.clone().map(|c| c as Arc<dyn sio::adapter::Adapter>);
    let ready = cluster.as_ref().map(|c| c.up());
    let mut gateway = start_with(config, ready, |config| {
        let chat = Arc::new(match adapter {
            Some(adapter) => chat::Chat::with_adapter(&config, metrics.clone(), adapter),
            None => chat::Chat::new(&config, metrics.clone()),
        });
        Engine::new(config, metrics, Arc::new(sio::Sio::new(chat)))
    })
    .await;
    match (&mut gateway, cluster) {
        (Ok(g), Some(c)) => g.cluster = Some(c),
        (Err(_), Some(c)) => c.stop(),
        _ => {}
    }
    gateway
}

/// How long [`start`] waits for a cluster node's link to come up.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(5);

/// [`start`] with the engine that `make` builds from the configuration;
/// `ready`, when given, is what `/healthz` reports (the cluster link).
pub(crate) async fn start_with(
    config: GatewayConfig,
    ready: Option<watch::Receiver<bool>>,
    make: impl FnOnce(GatewayConfig) -> Arc<Engine>,
) -> Result<RunningGateway, GatewayError> {
    if config.jwt_secret.is_empty() {
        return Err(GatewayError::NoSecret);
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
        addr: config.addr,
        source,
    })?;
    let engine = make(config);
    let app = router(engine.clone(), ready);
    let (stop, stopped) = watch::channel(false);
    let secure = tls.is_some();
    let server = tokio::spawn(engine::http::serve(
        listener,
        tls,
        engine.clone(),
        app,
        stopped,
    ));
    tracing::info!(%addr, tls = secure, profile = ?engine.config.profile, "chat gateway listening");
    Ok(RunningGateway {
        addr,
        tls: secure,
        engine,
        stop,
        server,
        cluster: None,
    })
}

fn router(engine: Arc<Engine>, ready: Option<watch::Receiver<bool>>) -> Router {
    let healthz = move || {
        let up = ready.as_ref().is_none_or(|r| *r.borrow());
        async move {
            if up {
                (StatusCode::OK, "ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "cluster link down")
            }
        }
    };
    Router::new()
        .route("/socket.io/", get(engine::endpoint).post(engine::endpoint))
        .route("/healthz", get(healthz))
        .route(
            "/metrics",
            get(
                |axum::extract::State(engine): axum::extract::State<Arc<Engine>>| async move {
                    engine.metrics.render()
                },
            ),
        )
        .with_state(engine)
}

impl RunningGateway {
    /// The address the gateway listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients connect to: `https://addr` when serving TLS, else `http://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The Prometheus text that `GET /metrics` serves.
    pub fn metrics_text(&self) -> String {
        self.engine.metrics.render()
    }

    /// Graceful shutdown: refuse new Engine.IO sessions, send `41/chat,` to
    /// every socket, let queued frames drain (at most the configured drain
    /// time; polling sessions may still fetch theirs meanwhile), close every
    /// session (each flushes what is left), stop accepting, let in-flight
    /// responses and websocket close frames go out, and return: at most the
    /// drain time plus 6 s in all.
    pub async fn shutdown(self) {
        self.engine.begin_shutdown();
        let connections = self.engine.connections();
        for conn in &connections {
            conn.server_disconnect();
        }
        let deadline = Instant::now() + Duration::from_millis(self.engine.config.shutdown_drain_ms);
        while Instant::now() < deadline
            && connections
                .iter()
                .any(|c| c.close_reason().is_none() && !c.queue_is_empty())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for conn in &connections {
            conn.close(CloseReason::ServerShutdown);
        }
        // A closed session with frames left stays reachable briefly (a polling
        // client fetches them with one more GET): keep accepting until then.
        let lingering = Instant::now() + TASKS_WAIT;
        while Instant::now() < lingering && !self.engine.connections().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.stop.send(true);
        if let Some(cluster) = &self.cluster {
            cluster.stop();
        }
        let _ = tokio::time::timeout(TASKS_WAIT, self.server).await;
        if !self.engine.tasks.wait_idle(TASKS_WAIT).await {
            tracing::warn!(
                tasks = self.engine.tasks.live(),
                "transport tasks still running at shutdown"
            );
        }
        tracing::info!("chat gateway stopped");
    }
}

/// Installs a `tracing` subscriber for a log filter such as `info` or `debug`.
/// A bare level applies to the gateway; the libraries under it stay at `info`
/// so that `debug` shows one line per chat event, not every websocket frame.
pub fn init_logging(filter: &str) {
    let directive = if ["error", "warn", "info", "debug", "trace"].contains(&filter) {
        format!("info,chorus_gateway={filter}")
    } else {
        filter.to_owned()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
}

/// Runs a gateway until SIGINT or SIGTERM, then shuts it down gracefully:
/// what `chorus-gateway` and `chorus serve` do.
pub async fn serve_until_signal(config: GatewayConfig) -> Result<(), GatewayError> {
    // The handlers are installed before the gateway listens (and logs its
    // address), so a signal sent as soon as it is reachable is never fatal.
    let signal = shutdown_signal()?;
    let gateway = start(config).await?;
    signal.await;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers; the future resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, GatewayError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).map_err(GatewayError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(GatewayError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Installs the Ctrl-C handler; the future resolves on it.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, GatewayError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
