//! Gateway configuration: command-line flags with environment fallbacks.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

/// Which contract the gateway implements (see `shared/PROTOCOL.md`).
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

    /// Largest incoming packet in bytes (websocket: close 1009 above it; polling: HTTP 413).
    #[arg(long, env = "GATEWAY_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: u64,

    /// Largest `sendMessage` text in bytes (strict profile).
    #[arg(long, env = "GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Sustained `sendMessage` + `typing` events per second per socket (strict profile).
    #[arg(long, env = "GATEWAY_RATE_PER_SEC", default_value_t = 20.0)]
    pub rate_per_sec: f64,

    /// Burst size of the per-socket rate limit (strict profile).
    #[arg(long, env = "GATEWAY_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Outgoing packets queued per connection; a receiver whose queue overflows is
    /// disconnected (and counted), never left connected with a gap.
    #[arg(long, env = "GATEWAY_QUEUE_SIZE", default_value_t = 8192)]
    pub queue_size: usize,

    /// Milliseconds that graceful shutdown waits for queued frames to drain.
    #[arg(long, env = "GATEWAY_SHUTDOWN_DRAIN_MS", default_value_t = 5_000)]
    pub shutdown_drain_ms: u64,

    /// Log filter (`error`, `warn`, `info`, `debug` for one line per event, `trace`, or a tracing directive).
    #[arg(long, env = "GATEWAY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Faults to inject (tests only; none by default).
    #[cfg(feature = "faults")]
    #[arg(skip)]
    pub faults: crate::faults::Faults,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: GatewayConfig,
        }
        // Parse an empty command line so the defaults live in one place: the flags above.
        let mut config =
            <Defaults as clap::Parser>::try_parse_from(["gateway", "--jwt-secret", ""])
                .expect("the gateway's defaults parse")
                .config;
        config.jwt_secret.clear();
        config
    }
}
