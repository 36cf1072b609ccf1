//! The HTTP endpoints: `/metrics`, `/healthz` (the process is alive) and `/readyz` (the
//! initial lists are done), over TLS with authentication ([`Security::Secure`]) or plain.
//!
//! `/healthz` and `/readyz` are always open (the kubelet probes them). `/metrics` is
//! streamed from the index, gzip-compressed when the client accepts it, and bounded
//! whatever the clients do: chunks have a byte cap, a client that stops reading is cut off
//! after [`WRITE_TIMEOUT`], and at most [`MAX_RENDERS`] renders run at once.

pub mod auth;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;
use tower_http::compression::CompressionLayer;

use crate::index::Index;
use crate::metrics::Metrics;
use crate::role::RoleReceiver;
use auth::{Authorizer, Decision, KubeReviewer};
use tls::CertResolver;

/// Renders running at once; more scrapes wait up to [`RENDER_WAIT`], then get 503.
pub const MAX_RENDERS: usize = 4;
/// How long a scrape waits for a render slot.
const RENDER_WAIT: Duration = Duration::from_secs(10);
/// A client that has not taken the next chunk within this is cut off.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest chunk handed to the connection: what one slow client can hold of a render.
pub const CHUNK_CAP: usize = 64 * 1024;
/// Chunks rendered ahead of the client: enough to keep the socket busy.
const CHUNKS_IN_FLIGHT: usize = 4;
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the listener is protected.
pub enum Security {
    /// Plain HTTP, no authentication (`--metrics-secure=false`: local runs, tests).
    Plain,
    /// TLS, and `/metrics` only for bearer tokens the API server authorises.
    Secure {
        /// `tls.crt`/`tls.key` to serve (reloaded on change); a self-signed certificate if `None`.
        cert_dir: Option<PathBuf>,
        /// The client for `TokenReview` and `SubjectAccessReview`.
        client: kube::Client,
    },
}

#[derive(Clone)]
struct AppState {
    index: Arc<Index>,
    metrics: Metrics,
    role: RoleReceiver,
    auth: Option<Arc<Authorizer<KubeReviewer>>>,
    renders: Arc<Semaphore>,
}

fn router(state: AppState) -> Router {
    let metrics = Router::new().route("/metrics", get(metrics_handler)).layer(CompressionLayer::new().gzip(true));
    Router::new()
        .merge(metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

fn plain_response(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &state.auth {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match auth.decide(authorization, "/metrics").await {
            Ok(Decision::Allowed) => {}
            Ok(Decision::Unauthenticated) => {
                let mut response = plain_response(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                return response;
            }
            Ok(Decision::Forbidden { user }) => {
                tracing::debug!(%user, "/metrics refused: no get on the non-resource URL /metrics");
                return plain_response(StatusCode::FORBIDDEN, "Forbidden: the user may not get /metrics\n");
            }
            Err(e) => {
                tracing::warn!(error = %e, "reviewing a /metrics token failed");
                return plain_response(StatusCode::SERVICE_UNAVAILABLE, "authorization is unavailable\n");
            }
        }
    }
    let Ok(Ok(permit)) = tokio::time::timeout(RENDER_WAIT, state.renders.clone().acquire_owned()).await else {
        return plain_response(StatusCode::SERVICE_UNAVAILABLE, "too many scrapes at once\n");
    };
    // Rendering walks the whole index: keep it off the async workers, and stream it chunk
    // by chunk so that no copy of every series piles up in the response.
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(CHUNKS_IN_FLIGHT);
    let runtime = tokio::runtime::Handle::current();
    let render = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // A standby would duplicate the leader's per-Pod series: only the leader exports them.
        let leader = state.role.borrow().leader;
        state.metrics.render(&state.index, leader, |chunk| {
            // A client gone or not reading for WRITE_TIMEOUT: rendering stops there.
            split_at_lines(chunk, CHUNK_CAP)
                .into_iter()
                .all(|piece| runtime.block_on(tx.send_timeout(piece, WRITE_TIMEOUT)).is_ok())
        });
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
    // Fused: the gzip encoder polls the body once more after its end.
    let chunks = futures::StreamExt::fuse(chunks);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], Body::from_stream(chunks)).into_response()
}

/// `text` in pieces of at most `cap` bytes, cut after a newline where there is one.
fn split_at_lines(text: String, cap: usize) -> Vec<String> {
    if text.len() <= cap {
        return vec![text];
    }
    let mut pieces = Vec::with_capacity(text.len() / cap + 1);
    let mut rest = text.as_str();
    while rest.len() > cap {
        let mut end = rest[..cap].rfind('\n').map_or(cap, |i| i + 1);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end.max(1));
        pieces.push(piece.to_string());
        rest = tail;
    }
    pieces.push(rest.to_string());
    pieces
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
    security: Security,
    index: Arc<Index>,
    metrics: Metrics,
    role: RoleReceiver,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (tls, auth) = match security {
        Security::Plain => (None, None),
        Security::Secure { cert_dir, client } => {
            let resolver = Arc::new(CertResolver::new(cert_dir.as_deref())?);
            let config = resolver.server_config()?;
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(Arc::new(Authorizer::new(KubeReviewer(client)))),
            )
        }
    };
    let state = AppState { index, metrics, role, auth, renders: Arc::new(Semaphore::new(MAX_RENDERS)) };
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let app = router(state);
    let Some(acceptor) = tls else {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz over plain HTTP without authentication");
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        return Ok(());
    };
    tracing::info!(%addr, "serving /metrics (TLS, bearer token), /healthz, /readyz");
    let shutdown = std::pin::pin!(shutdown);
    serve_tls(listener, acceptor, app, shutdown).await;
    Ok(())
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    mut shutdown: std::pin::Pin<&mut (impl std::future::Future<Output = ()> + Send)>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_at_lines_within_the_cap() {
        let text: String = (0..100).map(|i| format!("series_{i} 1\n")).collect();
        let pieces = split_at_lines(text.clone(), 40);
        assert!(pieces.iter().all(|p| p.len() <= 40 && p.ends_with('\n')), "{pieces:?}");
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_at_lines("short\n".into(), 40), ["short\n"]);
        let long_line = "x".repeat(100);
        assert_eq!(split_at_lines(long_line.clone(), 40).concat(), long_line);
    }
}
