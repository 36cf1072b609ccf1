//! The HTTP endpoints: `/metrics`, `/healthz` (the process is alive) and `/readyz` (the
//! initial lists are done).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::controller::index::Index;
use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    index: Arc<Index>,
    metrics: Metrics,
}

/// Builds the router.
pub fn router(index: Arc<Index>, metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { index, metrics })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    // Rendering walks the whole index; keep it off the async workers.
    let body = tokio::task::spawn_blocking(move || state.metrics.render(&state.index)).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.index.is_synced() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "initial lists not done\n")
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    index: Arc<Index>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(index, metrics)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
