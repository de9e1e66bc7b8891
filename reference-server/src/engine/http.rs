//! The HTTP/1.1 server under the engine: our own accept loop on hyper, so that
//! every connection gets the transport's limits, which `axum::serve` does not
//! expose:
//!
//! - a request head must be complete within `header_timeout_ms` of the accept
//!   or of the previous response, and be at most `max_header_bytes` (HTTP 431);
//! - a kept-alive connection with no request in flight and no incoming byte for
//!   `idle_timeout_ms` is closed;
//! - (polling POST bodies are bounded in time by the POST handler itself.)
//!
//! Every accepted socket gets `TCP_NODELAY`; websocket upgrades are served;
//! shutdown stops accepting, lets in-flight responses finish and waits for
//! the connection tasks (websockets included) through [`Tasks`].

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use super::Engine;

/// hyper's smallest allowed connection buffer.
const MIN_BUF: usize = 8192;

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, typically) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Counts running transport tasks (HTTP connections and websockets) so that
/// shutdown can wait for their last writes.
#[derive(Debug, Default)]
pub struct Tasks {
    live: AtomicUsize,
    idle: Notify,
}

/// One running task of [`Tasks`]; dropping it ends the task's count.
#[derive(Debug)]
pub struct TaskGuard(Arc<Tasks>);

impl Tasks {
    /// Counts a task until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> TaskGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        TaskGuard(self.clone())
    }

    /// How many tasks are running.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until no task runs, at most `limit`; whether they all ended.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.live() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live() == 0;
            }
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Accepts connections until `stop` turns true, serving each on its own task.
pub(crate) async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Without TCP_NODELAY small frames wait for Nagle's timer.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
        tokio::spawn(serve_connection(
            tcp,
            engine.clone(),
            app.clone(),
            stop.clone(),
        ));
    }
}

/// When a connection last read a byte or finished a response, and how many
/// requests it has in flight.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Release);
    }

    /// How long the connection has been idle, or `None` while a request is in flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        Some(self.start.elapsed().saturating_sub(last))
    }

    /// Resolves once the connection has been idle for `limit`.
    async fn idle_past(&self, limit: Duration) {
        loop {
            match self.idle_for() {
                Some(idle) if idle >= limit => return,
                Some(idle) => tokio::time::sleep(limit.saturating_sub(idle)).await,
                None => tokio::time::sleep(limit).await,
            }
        }
    }
}

/// A request in flight on a connection; dropping it (the response is ready) ends it.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that records when it last read a byte.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a connection in the `http_connections` gauge while it lives.
struct Gauge(Arc<Engine>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.metrics.http_connection(-1);
    }
}

/// Serves HTTP/1.1 on one accepted socket until it closes, is upgraded, times
/// out, or the server stops (in-flight responses finish first).
async fn serve_connection(
    tcp: TcpStream,
    engine: Arc<Engine>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _task = engine.tasks.enter();
    engine.metrics.http_connection(1);
    let _gauge = Gauge(engine.clone());
    let config = &engine.config;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: activity.clone(),
    });
    let tower = TowerToHyperService::new(app);
    let flights = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let flight = InFlight::begin(&flights);
        let response = hyper::service::Service::call(&tower, req);
        async move {
            let response = response.await;
            drop(flight);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_timeout_ms))
        .max_header_size(config.max_header_bytes)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF))
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    if err.is_timeout() {
                        engine.metrics.timeout("header");
                    }
                    tracing::debug!(%err, "http connection ended");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_past(idle), if !stopping => {
                engine.metrics.timeout("idle");
                return;
            }
        }
    }
}
