//! Gateway configuration: command-line flags with environment fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Which contract the gateway implements (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Wire-identical to the tutorial's NestJS + socket.io 4.8 gateway, quirks included.
    Seed,
    /// The hardened contract: handshake authentication, validation, acks, limits.
    Strict,
}

/// Everything the gateway can be told. The defaults are the command-line defaults.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Protocol profile: `seed` (the tutorial's stack, wire-identical) or `strict` (hardened).
    #[arg(long, env = "GATEWAY_PROFILE", value_enum, default_value = "strict")]
    pub profile: Profile,

    /// Secret for verifying HMAC-signed JWTs.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// JWT algorithms accepted in the strict profile (the seed profile accepts HS256, HS384 and HS512).
    #[arg(
        long,
        env = "GATEWAY_JWT_ALGORITHMS",
        value_delimiter = ',',
        default_value = "HS256"
    )]
    pub jwt_algorithms: Vec<String>,

    /// Clock leeway in seconds for `exp` / `nbf` checks (strict profile).
    #[arg(long, env = "GATEWAY_JWT_LEEWAY_S", default_value_t = 5)]
    pub jwt_leeway_s: u64,

    /// Milliseconds between the server's Engine.IO pings.
    #[arg(long, env = "GATEWAY_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,

    /// Milliseconds the server waits for a pong before closing the connection.
    #[arg(long, env = "GATEWAY_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,

    /// Largest incoming packet in bytes (websocket: close 1009 above it; polling: the
    /// POST gets HTTP 413 and, as in socket.io, the session stays open).
    #[arg(long, env = "GATEWAY_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: u64,

    /// Largest `sendMessage` text in bytes (strict profile).
    #[arg(long, env = "GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Sustained `sendMessage` + `typing` + `joinChat` events per second, for each token
    /// subject (`sub`, else the token) and each Engine.IO connection: reconnecting does not
    /// refill it (strict profile, docs/protocol.md section 7.4).
    #[arg(long, env = "GATEWAY_RATE_PER_SEC", default_value_t = 20.0)]
    pub rate_per_sec: f64,

    /// Burst size of the event rate limit (strict profile).
    #[arg(long, env = "GATEWAY_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Outgoing packets queued per connection; a receiver whose queue overflows is
    /// disconnected (and counted), never left connected with a gap.
    #[arg(long, env = "GATEWAY_QUEUE_SIZE", default_value_t = 8192)]
    pub queue_size: usize,

    /// Milliseconds that graceful shutdown waits for queued frames to drain (the whole
    /// shutdown takes at most this plus 6 s).
    #[arg(long, env = "GATEWAY_SHUTDOWN_DRAIN_MS", default_value_t = 5_000)]
    pub shutdown_drain_ms: u64,

    /// Outgoing bytes queued per connection (a broadcast frame counts its length for
    /// each receiver); a receiver over it is disconnected as a slow consumer.
    #[arg(long, env = "GATEWAY_QUEUE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub queue_bytes: usize,

    /// Milliseconds an Engine.IO session may stay without any namespace CONNECT
    /// before it is closed (socket.io's `connectTimeout`).
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,

    /// Most Engine.IO sessions open at once; further handshakes get HTTP 503
    /// (counted in `chorus_gateway_refused_connections_total`).
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Milliseconds within which an HTTP request head must be complete once its
    /// first byte has arrived.
    #[arg(long, env = "GATEWAY_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Bytes of polling POST bodies being read at once, over all sessions; a POST
    /// that would take more gets HTTP 503 (its session stays open).
    #[arg(long, env = "GATEWAY_POST_BUFFER_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub post_buffer_bytes: usize,

    /// Milliseconds within which a polling POST body must arrive in full (else HTTP 408).
    #[arg(long, env = "GATEWAY_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,

    /// Milliseconds an HTTP connection may sit with no request and no incoming
    /// byte (after its accept or its last response) before it is closed. Keep it
    /// above the ping interval: a polling client's POST connection may carry
    /// nothing but one pong per interval.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Largest HTTP request head (request line and headers) in bytes; larger
    /// heads get HTTP 431 (Node's default is 16 KiB).
    #[arg(long, env = "GATEWAY_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Namespace CONNECTs one Engine.IO connection may make in its lifetime (every
    /// namespace, both profiles); the next one closes the connection as abuse (counted in
    /// `chorus_gateway_abuse_total{reason="connect_cycles"}`). socket.io-client connects a
    /// namespace once per connection and reconnects over a new connection.
    #[arg(long, env = "GATEWAY_MAX_CONNECTS_PER_CONN", default_value_t = 100)]
    pub max_connects_per_conn: u32,

    /// An extra, tighter limit on valid `joinChat` events (joins and renames, each broadcast
    /// to everyone) per second, for each token subject and each Engine.IO connection, on top
    /// of the event rate limit; 0 (the default) sets none (strict profile).
    #[arg(long, env = "GATEWAY_JOIN_RATE_PER_SEC", default_value_t = 0.0)]
    pub join_rate_per_sec: f64,

    /// Burst size of the extra `joinChat` rate limit, when `--join-rate-per-sec` sets one.
    #[arg(long, env = "GATEWAY_JOIN_BURST", default_value_t = 5)]
    pub join_burst: u32,

    /// Token subjects whose rate-limit buckets the gateway remembers (strict profile);
    /// when full, buckets that have refilled are forgotten first, then the oldest.
    #[arg(long, env = "GATEWAY_MAX_RATE_SUBJECTS", default_value_t = 100_000)]
    pub max_rate_subjects: usize,

    /// Rooms one socket may be a member of at once (strict profile, docs/protocol.md section 8).
    #[arg(long, env = "GATEWAY_MAX_ROOMS_PER_SOCKET", default_value_t = 50)]
    pub max_rooms_per_socket: usize,

    /// PEM certificate chain to serve HTTPS and WSS with (with `--tls-key`); without
    /// both the gateway serves plaintext. `/healthz` and `/metrics` share the listener.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Join other gateway nodes over the Redis at `redis://HOST:PORT`, in the wire format
    /// of `@socket.io/redis-adapter` (docs/protocol.md section 9); without it the gateway
    /// is a single node.
    #[arg(long, env = "GATEWAY_CLUSTER")]
    pub cluster: Option<String>,

    /// Broadcasts waiting to be published to the cluster; when it is full the node has
    /// fallen behind and disconnects its sockets (counted), never leaving a gap.
    #[arg(long, env = "GATEWAY_CLUSTER_QUEUE_SIZE", default_value_t = 16_384)]
    pub cluster_queue_size: usize,

    /// Milliseconds that connecting to the cluster's Redis, or one request to it (the
    /// heartbeat), may take before the node counts its link as lost.
    #[arg(long, env = "GATEWAY_CLUSTER_TIMEOUT_MS", default_value_t = 2_000)]
    pub cluster_timeout_ms: u64,

    /// Log filter (`error`, `warn`, `info`, `debug` for one line per event, `trace`, or a tracing directive).
    #[arg(long, env = "GATEWAY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: GatewayConfig,
        }
        // Parse an empty command line so the defaults live in one place: the flags above.
        // The command line is a constant, never client input: it parses or no test passes.
        #[allow(clippy::expect_used)]
        let mut config =
            <Defaults as clap::Parser>::try_parse_from(["gateway", "--jwt-secret", ""])
                .expect("the gateway's defaults parse")
                .config;
        config.jwt_secret.clear();
        config
    }
}
