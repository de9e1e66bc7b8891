//! The gateway's operational counters, rendered for `GET /metrics` in the
//! Prometheus text format. Plain atomics: recording never takes a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A label value and its counter.
type Labelled<const N: usize> = [(&'static str, AtomicU64); N];

/// Client events the gateway tells apart in `chorus_gateway_events_received_total`.
pub const EVENT_NAMES: [&str; 4] = ["joinChat", "sendMessage", "typing", "other"];
/// Server events that are broadcast.
pub const BROADCAST_NAMES: [&str; 4] = ["userOnline", "newMessage", "userTyping", "userOffline"];
/// Why a handshake (namespace CONNECT) was refused.
pub const HANDSHAKE_REFUSALS: [&str; 4] = [
    "no_token",
    "invalid_token",
    "invalid_namespace",
    "cluster_unavailable",
];
/// Why a cluster node disconnected its sockets, in `chorus_gateway_cluster_disconnects_total`.
pub const CLUSTER_DISCONNECTS: [&str; 5] = [
    "subscription_lost",
    "publish_queue_full",
    "publish_failed",
    "heartbeat_lost",
    "redis_lost",
];
/// Why the transport layer closed an HTTP connection or an Engine.IO session
/// on a time limit, in `chorus_gateway_timeouts_total`.
pub const TIMEOUTS: [&str; 4] = ["header", "body", "idle", "connect"];
/// Why a TLS handshake failed, in `chorus_gateway_tls_handshake_failures_total`:
/// not done within the header timeout, the peer closed first (a plaintext
/// probe or a client that gave up), or refused by either side.
pub const TLS_FAILURES: [&str; 3] = ["timeout", "closed", "error"];
/// Where an incoming packet over `max_payload` arrived.
pub const OVERSIZE_TRANSPORTS: [&str; 2] = ["websocket", "polling"];
/// Why the engine refused a request on a live session.
pub const REFUSED_REQUESTS: [&str; 3] = ["overlapping_get", "overlapping_post", "post_buffer_full"];
/// Why the Socket.IO layer closed a connection as abusive, in `chorus_gateway_abuse_total`.
pub const ABUSE_REASONS: [&str; 4] = [
    "too_many_attachments",
    "attachment_bytes",
    "json_depth",
    "connect_cycles",
];
/// Why an event was refused.
pub const EVENT_REFUSALS: [&str; 5] = [
    "no_token",
    "invalid_token",
    "invalid_payload",
    "internal_error",
    "rate_limited",
];

fn labelled<const N: usize>(names: [&'static str; N]) -> Labelled<N> {
    names.map(|n| (n, AtomicU64::new(0)))
}

fn bump<const N: usize>(set: &Labelled<N>, name: &str) {
    if let Some((_, c)) = set.iter().find(|(n, _)| *n == name) {
        c.fetch_add(1, Relaxed);
    }
}

/// All counters and gauges of one gateway.
#[derive(Debug)]
pub struct Metrics {
    connections: AtomicI64,
    sockets: AtomicI64,
    joined: AtomicI64,
    events: Labelled<4>,
    broadcasts: Labelled<4>,
    deliveries: AtomicU64,
    refused_handshakes: Labelled<4>,
    refused_events: Labelled<5>,
    slow_consumer_disconnects: AtomicU64,
    protocol_errors: AtomicU64,
    http_connections: AtomicI64,
    sessions_opened: AtomicU64,
    refused_connections: AtomicU64,
    timeouts: Labelled<4>,
    tls_failures: Labelled<3>,
    oversized: Labelled<2>,
    refused_requests: Labelled<3>,
    abuse: Labelled<4>,
    ws_read_buffers: AtomicI64,
    ws_write_buffers: AtomicI64,
    cluster_disconnects: Labelled<5>,
    cluster_dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections: AtomicI64::new(0),
            sockets: AtomicI64::new(0),
            joined: AtomicI64::new(0),
            events: labelled(EVENT_NAMES),
            broadcasts: labelled(BROADCAST_NAMES),
            deliveries: AtomicU64::new(0),
            refused_handshakes: labelled(HANDSHAKE_REFUSALS),
            refused_events: labelled(EVENT_REFUSALS),
            slow_consumer_disconnects: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            http_connections: AtomicI64::new(0),
            sessions_opened: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            timeouts: labelled(TIMEOUTS),
            tls_failures: labelled(TLS_FAILURES),
            oversized: labelled(OVERSIZE_TRANSPORTS),
            refused_requests: labelled(REFUSED_REQUESTS),
            abuse: labelled(ABUSE_REASONS),
            ws_read_buffers: AtomicI64::new(0),
            ws_write_buffers: AtomicI64::new(0),
            cluster_disconnects: labelled(CLUSTER_DISCONNECTS),
            cluster_dropped: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// An Engine.IO connection opened (+1) or closed (-1).
    pub fn connection(&self, delta: i64) {
        self.connections.fetch_add(delta, Relaxed);
        if delta > 0 {
            self.sessions_opened
                .fetch_add(delta.unsigned_abs(), Relaxed);
        }
    }
    /// A `/chat` socket connected (+1) or left (-1).
    pub fn socket(&self, delta: i64) {
        self.sockets.fetch_add(delta, Relaxed);
    }
    /// The number of joined users changed.
    pub fn joined(&self, delta: i64) {
        self.joined.fetch_add(delta, Relaxed);
    }
    /// A client event arrived on `/chat`.
    pub fn event(&self, name: &str) {
        let known = EVENT_NAMES.iter().take(3).any(|n| *n == name);
        bump(&self.events, if known { name } else { "other" });
    }
    /// A broadcast of `name` went to `receivers` sockets.
    pub fn broadcast(&self, name: &str, receivers: usize) {
        bump(&self.broadcasts, name);
        self.deliveries.fetch_add(receivers as u64, Relaxed);
    }
    /// A frame was queued for one receiver outside a broadcast.
    pub fn delivery(&self) {
        self.deliveries.fetch_add(1, Relaxed);
    }
    /// A namespace CONNECT was refused.
    pub fn refused_handshake(&self, reason: &str) {
        bump(&self.refused_handshakes, reason);
    }
    /// An event was refused.
    pub fn refused_event(&self, reason: &str) {
        bump(&self.refused_events, reason);
    }
    /// A receiver was disconnected because its outgoing queue overflowed.
    pub fn slow_consumer(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Relaxed);
    }
    /// A connection was closed for a protocol error.
    pub fn protocol_error(&self) {
        self.protocol_errors.fetch_add(1, Relaxed);
    }

    /// The websocket read buffers (incoming frames not yet handled) grew (+)
    /// or shrank (-) by `delta` bytes of allocated capacity.
    pub fn ws_read_buffer(&self, delta: i64) {
        self.ws_read_buffers.fetch_add(delta, Relaxed);
    }

    /// The websocket write buffers (frames coalesced for one write) grew (+)
    /// or shrank (-) by `delta` bytes of allocated capacity.
    pub fn ws_write_buffer(&self, delta: i64) {
        self.ws_write_buffers.fetch_add(delta, Relaxed);
    }

    /// An accepted TCP connection started (+1) or stopped (-1) being served as HTTP
    /// (a websocket upgrade stops it).
    pub fn http_connection(&self, delta: i64) {
        self.http_connections.fetch_add(delta, Relaxed);
    }
    /// An Engine.IO handshake was refused because `max_connections` sessions were open.
    pub fn refused_connection(&self) {
        self.refused_connections.fetch_add(1, Relaxed);
    }
    /// A time limit closed something: `header`, `body`, `idle` or `connect` (see [`TIMEOUTS`]).
    pub fn timeout(&self, kind: &str) {
        bump(&self.timeouts, kind);
    }
    /// A TLS handshake failed (see [`TLS_FAILURES`]).
    pub fn tls_failure(&self, reason: &str) {
        bump(&self.tls_failures, reason);
    }
    /// An incoming packet over `max_payload` arrived on `transport` (see [`OVERSIZE_TRANSPORTS`]).
    pub fn oversized(&self, transport: &str) {
        bump(&self.oversized, transport);
    }
    /// A request on a live session was refused (see [`REFUSED_REQUESTS`]).
    pub fn refused_request(&self, reason: &str) {
        bump(&self.refused_requests, reason);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let gauge = |out: &mut String, name: &str, help: &str, v: &AtomicI64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        };
        fn family<const N: usize>(
            out: &mut String,
            name: &str,
            label: &str,
            help: &str,
            set: &Labelled<N>,
        ) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (value, c) in set {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", c.load(Relaxed));
            }
        }
        gauge(
            &mut out,
            "chorus_gateway_connections",
            "Open Engine.IO connections.",
            &self.connections,
        );
        gauge(
            &mut out,
            "chorus_gateway_sockets",
            "Sockets connected to /chat.",
            &self.sockets,
        );
        gauge(
            &mut out,
            "chorus_gateway_joined_users",
            "Entries in the online-users map.",
            &self.joined,
        );
        family(
            &mut out,
            "chorus_gateway_events_received_total",
            "event",
            "Client events received on /chat.",
            &self.events,
        );
        family(
            &mut out,
            "chorus_gateway_broadcasts_total",
            "event",
            "Broadcasts sent, by event.",
            &self.broadcasts,
        );
        counter(
            &mut out,
            "chorus_gateway_deliveries_total",
            "Frames queued to receivers by broadcasts and replies.",
            &self.deliveries,
        );
        family(
            &mut out,
            "chorus_gateway_refused_handshakes_total",
            "reason",
            "Namespace CONNECTs refused.",
            &self.refused_handshakes,
        );
        family(
            &mut out,
            "chorus_gateway_refused_events_total",
            "reason",
            "Client events refused (rate_limited included).",
            &self.refused_events,
        );
        counter(
            &mut out,
            "chorus_gateway_slow_consumer_disconnects_total",
            "Receivers disconnected because their queue overflowed.",
            &self.slow_consumer_disconnects,
        );
        counter(
            &mut out,
            "chorus_gateway_protocol_errors_total",
            "Connections closed for a protocol error.",
            &self.protocol_errors,
        );
        counter(
            &mut out,
            "chorus_gateway_sessions_opened_total",
            "Engine.IO sessions opened since start.",
            &self.sessions_opened,
        );
        gauge(
            &mut out,
            "chorus_gateway_ws_read_buffer_bytes",
            "Allocated capacity of the websocket read buffers, over all connections.",
            &self.ws_read_buffers,
        );
        gauge(
            &mut out,
            "chorus_gateway_ws_write_buffer_bytes",
            "Allocated capacity of the websocket write buffers, over all connections.",
            &self.ws_write_buffers,
        );
        gauge(
            &mut out,
            "chorus_gateway_http_connections",
            "TCP connections being served as HTTP (websockets not included).",
            &self.http_connections,
        );
        counter(
            &mut out,
            "chorus_gateway_refused_connections_total",
            "Engine.IO handshakes refused because max_connections sessions were open.",
            &self.refused_connections,
        );
        family(
            &mut out,
            "chorus_gateway_timeouts_total",
            "kind",
            "HTTP connections, requests and sessions closed by a time limit.",
            &self.timeouts,
        );
        family(
            &mut out,
            "chorus_gateway_tls_handshake_failures_total",
            "reason",
            "TLS handshakes that failed, by reason.",
            &self.tls_failures,
        );
        family(
            &mut out,
            "chorus_gateway_oversized_packets_total",
            "transport",
            "Incoming packets over max_payload.",
            &self.oversized,
        );
        family(
            &mut out,
            "chorus_gateway_refused_requests_total",
            "reason",
            "Polling requests refused on a live session.",
            &self.refused_requests,
        );
        family(
            &mut out,
            "chorus_gateway_abuse_total",
            "reason",
            "Connections closed by a Socket.IO-layer limit (attachments, JSON depth, CONNECT cycles).",
            &self.abuse,
        );
        family(
            &mut out,
            "chorus_gateway_cluster_disconnects_total",
            "reason",
            "Sockets a cluster node disconnected because it could no longer serve them, by reason.",
            &self.cluster_disconnects,
        );
        counter(
            &mut out,
            "chorus_gateway_cluster_dropped_total",
            "Messages from the cluster's Redis dropped as malformed or unsupported.",
            &self.cluster_dropped,
        );
        out
    }

    /// A cluster node disconnected a socket it could no longer serve (see [`CLUSTER_DISCONNECTS`]).
    pub fn cluster_disconnect(&self, reason: &str) {
        bump(&self.cluster_disconnects, reason);
    }

    /// A message from the cluster's Redis was dropped.
    pub fn cluster_dropped(&self) {
        self.cluster_dropped.fetch_add(1, Relaxed);
    }

    /// The Socket.IO layer closed a connection on a limit (see [`ABUSE_REASONS`]).
    pub fn abuse(&self, reason: &str) {
        bump(&self.abuse, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let m = Metrics::default();
        m.event("sendMessage");
        m.event("bogus");
        m.broadcast("newMessage", 3);
        m.refused_event("rate_limited");
        let text = m.render();
        assert!(text.contains("chorus_gateway_events_received_total{event=\"sendMessage\"} 1"));
        assert!(text.contains("chorus_gateway_events_received_total{event=\"other\"} 1"));
        assert!(text.contains("chorus_gateway_deliveries_total 3"));
        assert!(text.contains("chorus_gateway_refused_events_total{reason=\"rate_limited\"} 1"));
    }
}
