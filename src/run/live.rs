//! `--metrics-addr`: the driver's counters and latency gauges in the
//! Prometheus text format while a run goes on, for dashboards on long soaks.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;

use crate::metrics::{render_prometheus, Registry};

use super::error::RunError;

/// Serves `GET /metrics` on `addr` until the returned task is aborted.
/// Values are those of the latest once-a-second collection.
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<JoinHandle<()>, RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::MetricsAddr { addr, source })?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { render_prometheus(&registry.cumulative()) }
        }),
    );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}
