//! What the integration tests of the chorus crates share (dev-only, never
//! published): the npm interop packages of `tests/js` ([`npm`]), a reference
//! gateway started in process ([`gateway`]) or as the `chorus-gateway` child
//! process ([`process`]), a one-shot HTTP/1.1 client ([`http`]), JWT minting
//! ([`tokens`]), TLS certificates made with rcgen ([`pki`]), a `redis-server`
//! ([`redis`]), nodes of the chat gateway on the official socket.io server
//! ([`chat_node`]) and bounded waits.

#![warn(missing_docs)]

use std::future::Future;
use std::time::Duration;

pub mod chat_node;
pub mod gateway;
pub mod http;
pub mod npm;
pub mod pki;
pub mod process;
pub mod redis;
pub mod tokens;

/// How long any single wait in a test may last before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

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
