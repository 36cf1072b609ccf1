//! The HTTP endpoints: `/metrics`, `/healthz` (the process is alive) and `/readyz` (the
//! initial lists are done).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::index::Index;
use crate::metrics::Metrics;
use crate::role::RoleReceiver;

#[derive(Clone)]
struct AppState {
    index: Arc<Index>,
    metrics: Metrics,
    role: RoleReceiver,
}

/// Builds the router.
pub fn router(index: Arc<Index>, metrics: Metrics, role: RoleReceiver) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { index, metrics, role })
}

/// Chunks rendered ahead of the client: enough to keep the socket busy, few enough that a
/// slow scrape holds only a small share of the series.
const CHUNKS_IN_FLIGHT: usize = 4;

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    // Rendering walks the whole index: keep it off the async workers, and stream it chunk
    // by chunk so that no copy of every series piles up in the response.
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(CHUNKS_IN_FLIGHT);
    let render = tokio::task::spawn_blocking(move || {
        // A send fails once the client is gone: rendering stops there.
        // A standby would duplicate the leader's per-Pod series: only the leader exports them.
        let leader = state.role.borrow().leader;
        state.metrics.render(&state.index, leader, |chunk| tx.blocking_send(chunk).is_ok());
    });
    let chunks = futures::stream::unfold((rx, Some(render)), |(mut rx, render)| async move {
        if let Some(chunk) = rx.recv().await {
            return Some((Ok(chunk), (rx, render)));
        }
        // The channel closes when rendering ends. If it panicked, fail the body so that the
        // scrape fails instead of looking complete with series missing.
        match render?.await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "rendering metrics failed");
                Some((Err(e), (rx, None)))
            }
        }
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], Body::from_stream(chunks))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.role.borrow().synced {
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
    role: RoleReceiver,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(index, metrics, role)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
