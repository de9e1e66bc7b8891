//! The HTTP/1.1 server under the engine: our own accept loop on hyper, so that
//! every connection gets the transport's limits, which `axum::serve` does not
//! expose:
//!
//! - a request head must be complete within `header_timeout_ms` of its first
//!   byte, and be at most `max_header_bytes` (HTTP 431);
//! - a connection with no request in flight that receives no byte for
//!   `idle_timeout_ms` (since its accept or its last response) is closed;
//! - (polling POST bodies are bounded in time by the POST handler itself.)
//!
//! With TLS configured the handshake comes first, bounded by
//! `header_timeout_ms` (a failure is counted, never fatal); then the same
//! HTTP service runs over the encrypted stream.
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
use tokio_rustls::TlsAcceptor;

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

/// Accepts connections until `stop` turns true, serving each on its own task
/// (over TLS when `tls` is set).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
        tokio::spawn(accept_connection(
            tcp,
            tls.clone(),
            engine.clone(),
            app.clone(),
            stop.clone(),
        ));
    }
}

/// Serves one accepted socket: plaintext, or after a TLS handshake that must
/// finish within the header timeout.
async fn accept_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    engine: Arc<Engine>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _task = engine.tasks.enter();
    engine.metrics.http_connection(1);
    let _gauge = Gauge(engine.clone());
    let Some(acceptor) = tls else {
        return serve_connection(tcp, &engine, app, stop).await;
    };
    let limit = Duration::from_millis(engine.config.header_timeout_ms);
    let handshake = tokio::select! {
        done = tokio::time::timeout(limit, acceptor.accept(tcp)) => done,
        _ = stop.wait_for(|stop| *stop) => return,
    };
    let reason = match handshake {
        Ok(Ok(stream)) => return serve_connection(stream, &engine, app, stop).await,
        Err(_) => "timeout",
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => "closed",
        Ok(Err(err)) => {
            tracing::debug!(%err, "TLS handshake failed");
            "error"
        }
    };
    engine.metrics.tls_failure(reason);
}

/// What limit ended a connection's wait for its next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// A request head was started and not finished in time.
    Header,
    /// Nothing arrived in time.
    Idle,
}

/// No head is being read.
const NO_HEAD: u64 = u64::MAX;

/// A connection's state between requests, in milliseconds since it was accepted.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// When the connection last became idle: accepted, or a response was ready.
    idle_since_ms: AtomicU64,
    /// When the first byte of the next request head arrived, or [`NO_HEAD`].
    head_since_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            idle_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(NO_HEAD),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NO_HEAD - 1)
    }

    /// Bytes arrived: between requests, they start the next head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let now = self.now_ms();
            let _ = self.head_since_ms.compare_exchange(
                NO_HEAD,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Resolves when the connection has waited too long for its next request:
    /// `header` after the first byte of a head, or `idle` with no byte at all
    /// since it became idle. Never while a request is in flight.
    async fn cut(&self, header: Duration, idle: Duration) -> Cut {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(header.min(idle)).await;
                continue;
            }
            let now = Duration::from_millis(self.now_ms());
            let head = self.head_since_ms.load(Ordering::Acquire);
            let (kind, since, limit) = if head == NO_HEAD {
                let idle_since = self.idle_since_ms.load(Ordering::Acquire);
                (Cut::Idle, Duration::from_millis(idle_since), idle)
            } else {
                (Cut::Header, Duration::from_millis(head), header)
            };
            let waited = now.saturating_sub(since);
            if waited >= limit {
                return kind;
            }
            tokio::time::sleep(limit.saturating_sub(waited)).await;
        }
    }
}

/// A request in flight on a connection; dropping it (the response is ready)
/// makes the connection idle again.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since_ms.store(NO_HEAD, Ordering::Release);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.idle_since_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream (TCP or TLS over TCP) that records when it last read a byte.
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// The stream itself: a websocket takes it over after the upgrade.
    pub(super) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
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
async fn serve_connection<S>(
    stream: S,
    engine: &Engine,
    app: Router,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &engine.config;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        inner: stream,
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
    // hyper's own header timeout also runs while a kept-alive connection
    // waits for its next request: the two limits are kept apart above instead.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(config.max_header_bytes)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF))
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let header = Duration::from_millis(config.header_timeout_ms);
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%err, "http connection ended");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            cut = activity.cut(header, idle), if !stopping => {
                engine.metrics.timeout(match cut {
                    Cut::Header => "header",
                    Cut::Idle => "idle",
                });
                return;
            }
        }
    }
}
