//! The fixture of the gateway's integration tests: a gateway per test on
//! 127.0.0.1 port 0 (in process, or the binary as a child process), JWTs of
//! every kind, raw Engine.IO clients (websocket and HTTP long-polling) and a
//! runner for the official JavaScript client. What the chorus crate's tests
//! need too lives in `chorus-test-support`.

pub mod js;
pub mod raw;
pub mod tokens;

use std::path::Path;
use std::time::Duration;

use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use chorus_test_support::process::GatewayProcess;
pub use chorus_test_support::{within, within_for, WAIT};

/// The secret every test gateway verifies tokens with.
pub const SECRET: &str = "test-secret";

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
    chorus_test_support::gateway::config(profile, SECRET)
}

/// Starts a gateway with the default test configuration of `profile`.
pub async fn start(profile: Profile) -> RunningGateway {
    start_with(config(profile)).await
}

/// Starts a gateway with `cfg`, bounded in time.
pub async fn start_with(cfg: GatewayConfig) -> RunningGateway {
    chorus_test_support::gateway::start(cfg).await
}

/// This crate's `chorus-gateway` binary as a child process verifying tokens
/// with [`SECRET`], with `args` added to `--addr 127.0.0.1:0`.
pub fn gateway_process(args: &[&str]) -> GatewayProcess {
    GatewayProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_chorus-gateway")),
        SECRET,
        args,
    )
}
