//! The reference gateway in this process, on 127.0.0.1 port 0.

use chorus_gateway::{GatewayConfig, Profile, RunningGateway};

use crate::within;

/// A configuration on 127.0.0.1 port 0 verifying tokens with `secret`, the
/// CLI defaults otherwise.
pub fn config(profile: Profile, secret: &str) -> GatewayConfig {
    GatewayConfig {
        addr: "127.0.0.1:0".parse().expect("a loopback address"),
        profile,
        jwt_secret: secret.to_owned(),
        ..GatewayConfig::default()
    }
}

/// Starts a gateway with `config`, failing the test if that takes longer than
/// [`crate::WAIT`].
pub async fn start(config: GatewayConfig) -> RunningGateway {
    within(chorus_gateway::start(config))
        .await
        .expect("the gateway starts")
}
