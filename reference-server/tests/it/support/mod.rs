//! The shared fixture of the gateway's integration tests: a gateway per test on
//! 127.0.0.1 port 0, JWTs of every kind, raw Engine.IO clients (websocket and
//! HTTP long-polling) and a runner for the official JavaScript client.

// Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod binary;
pub mod js;
pub mod raw;
pub mod tokens;

#[path = "../../../tests/support/npm.rs"]
pub mod npm;

use std::future::Future;
use std::time::Duration;

use chorus_gateway::{GatewayConfig, Profile, RunningGateway};

/// The secret every test gateway verifies tokens with.
pub const SECRET: &str = "test-secret";

/// How long any single wait in a test may last before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test watches for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// The `joined` message text of the seed profile.
pub const JOINED_TEXT: &str = "成功加入聊天室";

/// The exception message when no token was found.
pub const NO_TOKEN: &str = "未提供认证令牌";

/// The exception message when the token failed verification.
pub const INVALID_TOKEN: &str = "无效的认证令牌";

/// A configuration on 127.0.0.1 port 0 with the test secret and the CLI defaults.
pub fn config(profile: Profile) -> GatewayConfig {
    GatewayConfig {
        addr: "127.0.0.1:0".parse().expect("a loopback address"),
        profile,
        jwt_secret: SECRET.into(),
        ..GatewayConfig::default()
    }
}

/// Starts a gateway with the default test configuration of `profile`.
pub async fn start(profile: Profile) -> RunningGateway {
    start_with(config(profile)).await
}

/// Starts a gateway with `cfg`, bounded in time.
pub async fn start_with(cfg: GatewayConfig) -> RunningGateway {
    within(chorus_gateway::start(cfg))
        .await
        .expect("the gateway starts")
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    within_for(WAIT, fut).await
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within_for<F: Future>(limit: Duration, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}"))
}
