//! The HTTP endpoints: `/metrics`, `/healthz` (the process is alive) and `/readyz` (the
//! initial lists are done), over TLS with authentication ([`Security::Secure`]) or plain.
//!
//! `/healthz` and `/readyz` are always open (the kubelet probes them). `/metrics` is
//! available and bounded whatever the clients do:
//! - a scrape is rendered a chunk at a time, each chunk under one of [`scrape::RENDER_SLOTS`]
//!   given back before the chunk is sent, so a client that does not read holds no slot
//!   ([`scrape`]);
//! - at most [`open_scrapes::OPEN_PER_CLIENT`] scrapes per client address and
//!   [`open_scrapes::OPEN_IN_ALL`] in all are open; the excess is refused at once (429, 503),
//!   a client that has not read for a second gives its place up to a new scrape, and one
//!   that has not read for [`open_scrapes::WRITE_TIMEOUT`] is cut off ([`open_scrapes`]);
//! - with TLS, tokens are reviewed within a budget per client and in all, answered 429 when
//!   it is spent ([`auth`], [`budget`]).

mod auth;
mod budget;
mod open_scrapes;
mod scrape;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::leadership::RoleReceiver;
use crate::metrics::Metrics;
use auth::{Authorizer, Decision, KubeReviewer};
use budget::ReviewBudget;
use open_scrapes::OpenScrapes;
use tls::CertResolver;

/// A request head (or a TLS handshake) that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper stops asking a response body for more once this much is queued for the socket, so
/// that a client that does not read holds at most this and one chunk (hyper's default is
/// about 400 KiB; request heads are far smaller).
const CONNECTION_BUFFER: usize = 64 * 1024;

/// The ClusterRole a scraper's account needs (`config/rbac/metrics_reader_role.yaml`; the
/// chart prefixes it with the release name).
const METRICS_READER_ROLE: &str = "sidecar-watch-metrics-reader";

/// The answer to a request without a token the API server knows: what to send instead.
const UNAUTHORIZED: &str = "Unauthorized: send a bearer token of a ServiceAccount bound to the ClusterRole \
     sidecar-watch-metrics-reader (Authorization: Bearer $(kubectl create token NAME -n NAMESPACE)), \
     or run sidecar-watch with --metrics-secure=false for plain HTTP on a local run\n";

/// The answer to a token whose user may not read `/metrics`: which role grants it.
const FORBIDDEN: &str =
    "Forbidden: the user may not get /metrics; bind its ServiceAccount to the ClusterRole sidecar-watch-metrics-reader\n";

/// The answer to plain HTTP on the TLS listener (`curl http://…`, which would otherwise print
/// only "Received HTTP/0.9 when not allowed"), as Go's servers answer it: a plain 400 that
/// says what to do.
pub const PLAIN_HTTP_ON_TLS: &str = "Client sent an HTTP request to an HTTPS server: /metrics is served over TLS \
     to bearer tokens (curl -k -H \"Authorization: Bearer $(kubectl create token NAME -n NAMESPACE)\" https://…/metrics, \
     for a ServiceAccount bound to the ClusterRole sidecar-watch-metrics-reader), \
     or run sidecar-watch with --metrics-secure=false for plain HTTP on a local run\n";

/// Where `/metrics` is on `bound` and how to read it: the first line `sidecar-watch run`
/// logs. A wildcard address is read on the loopback address of its family.
pub fn how_to_read(bound: SocketAddr, secure: bool) -> String {
    let host = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let port = bound.port();
    if secure {
        format!(
            "/metrics on https://{host}:{port}/metrics (listening on {bound}; TLS, bearer token): \
             curl -k -H \"Authorization: Bearer $(kubectl create token NAME -n NAMESPACE)\" https://{host}:{port}/metrics \
             with a ServiceAccount bound to the ClusterRole {METRICS_READER_ROLE} \
             (kubectl create clusterrolebinding NAME --clusterrole={METRICS_READER_ROLE} --serviceaccount=NAMESPACE:NAME); \
             --metrics-secure=false serves plain HTTP for a local run; /healthz and /readyz are open"
        )
    } else {
        format!(
            "/metrics on http://{host}:{port}/metrics (listening on {bound}; plain HTTP, no authentication): \
             curl http://{host}:{port}/metrics; /healthz and /readyz too"
        )
    }
}

/// Binds the listener of [`serve_on`], naming the address when it cannot.
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another process listens there: pass --metrics-addr 127.0.0.1:0 for any free port)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {addr} for /metrics{hint}: {e}")
    })
}

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

/// The connection a request came on: who sent it, and how to end the connection.
#[derive(Clone, Debug)]
struct Connection {
    /// The client's address: scrapes and reviews are bounded per address.
    peer: SocketAddr,
    /// Cancelling it ends the connection (a stalled scrape is cut off this way).
    cut_off: CancellationToken,
}

#[derive(Clone)]
struct AppState {
    source: scrape::Source,
    auth: Option<Arc<Authorizer<KubeReviewer>>>,
    open_scrapes: Arc<OpenScrapes>,
    slots: Arc<Semaphore>,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

fn plain_response(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// `status` with `Retry-After` in whole seconds (at least 1).
fn retry_later(status: StatusCode, text: &'static str, after: Duration) -> Response {
    let mut response = plain_response(status, text);
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

async fn metrics_handler(
    State(state): State<AppState>,
    Extension(connection): Extension<Connection>,
    headers: HeaderMap,
) -> Response {
    let client = connection.peer.ip();
    if let Some(auth) = &state.auth {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match auth.decide(authorization, "/metrics", client).await {
            Ok(Decision::Allowed) => {}
            Ok(Decision::Unauthenticated) => {
                let mut response = plain_response(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            Ok(Decision::Forbidden { user }) => {
                tracing::debug!(%user, "/metrics refused: no get on the non-resource URL /metrics");
                return plain_response(StatusCode::FORBIDDEN, FORBIDDEN);
            }
            Ok(Decision::Throttled { retry_after }) => {
                return retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many unknown tokens: token reviews are rate limited\n",
                    retry_after,
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "reviewing a /metrics token failed");
                return plain_response(StatusCode::SERVICE_UNAVAILABLE, "authorization is unavailable\n");
            }
        }
    }
    let limited = &state.source.metrics.limited;
    let ticket = match state.open_scrapes.admit(client, connection.cut_off.clone()) {
        Ok((ticket, evicted)) => {
            if evicted > 0 {
                limited.with_label_values(&["stalled-scrapes"]).inc_by(evicted as u64);
            }
            ticket
        }
        Err(refused) => {
            limited.with_label_values(&[refused.limit()]).inc();
            let (status, text) = match refused {
                open_scrapes::Refused::Client => {
                    (StatusCode::TOO_MANY_REQUESTS, "too many scrapes open from this client\n")
                }
                open_scrapes::Refused::All => (StatusCode::SERVICE_UNAVAILABLE, "too many scrapes open\n"),
            };
            return retry_later(status, text, open_scrapes::STALLED_AFTER);
        }
    };
    let gzip = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(scrape::accepts_gzip);
    let body = scrape::body(state.source.clone(), gzip, state.slots.clone(), ticket);
    let mut response = Response::new(body);
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.source.role.borrow().synced {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "initial lists not done\n")
    }
}

/// Binds `addr` and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    security: Security,
    index: Arc<Index>,
    metrics: Metrics,
    role: RoleReceiver,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_on(bind(addr).await?, security, index, metrics, role, shutdown).await
}

/// Serves on `listener` until `shutdown` resolves.
pub(crate) async fn serve_on(
    listener: tokio::net::TcpListener,
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
            let authorizer = Authorizer::new(KubeReviewer(client), ReviewBudget::default(), &metrics);
            (Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))), Some(Arc::new(authorizer)))
        }
    };
    let open_scrapes = Arc::new(OpenScrapes::default());
    let state = AppState {
        source: scrape::Source { index, metrics: metrics.clone(), role },
        auth,
        open_scrapes: open_scrapes.clone(),
        slots: Arc::new(Semaphore::new(scrape::RENDER_SLOTS)),
    };
    let addr = listener.local_addr().map_err(|e| anyhow::anyhow!("the metrics listener has no address: {e}"))?;
    if tls.is_some() {
        tracing::debug!(%addr, "serving /metrics (TLS, bearer token), /healthz, /readyz");
    } else {
        tracing::debug!(%addr, "serving /metrics, /healthz, /readyz over plain HTTP without authentication");
    }
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let cut = open_scrapes.cut_off_stalled();
            if cut > 0 {
                metrics.limited.with_label_values(&["stalled-scrapes"]).inc_by(cut as u64);
            }
        }
    });
    let shutdown = std::pin::pin!(shutdown);
    accept(listener, tls, router(state), shutdown).await;
    sweeper.abort();
    Ok(())
}

/// Accepts connections until `shutdown`, each served on a task of its own (after a TLS
/// handshake with `tls`), its requests carrying their [`Connection`].
///
/// Hand-written over hyper rather than `axum-server` (0.9, `tls-rustls-no-provider`, which
/// would add 4 crates: itself, `arc-swap`, `fs-err`, `h2`): what this loop does beyond
/// accepting is [`Connection::cut_off`], by which the sweeper ends one stalled scrape's
/// connection, and axum-server can only shut every connection down at once (its `Handle`);
/// one connection's end would need a custom `Accept` wrapping each stream's reads and
/// writes, more code than these 40 lines. Crates counted with `cargo generate-lockfile` of a
/// crate depending on it against this workspace's `Cargo.lock` (2026-11-23).
async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let connection = Connection { peer, cut_off: CancellationToken::new() };
            let served = match tls {
                None => serve_connection(stream, app, connection).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, plain_http(&stream)).await {
                    Ok(true) => return refuse_plain_http(stream).await,
                    Ok(false) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, connection).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    },
                    Err(_) => return,
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

/// Whether a connection to the TLS listener starts with plain HTTP (an ASCII method) rather
/// than a TLS record (0x16, a handshake): looked at without consuming it.
async fn plain_http(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Answers plain HTTP on the TLS listener with [`PLAIN_HTTP_ON_TLS`] and closes.
async fn refuse_plain_http(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_HTTP_ON_TLS}",
        PLAIN_HTTP_ON_TLS.len()
    );
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves HTTP/1.1 on one connection until it closes or [`Connection::cut_off`] fires.
async fn serve_connection<S>(stream: S, app: Router, connection: Connection) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let cut_off = connection.cut_off.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(connection.clone());
        tower::Service::call(&mut app.clone(), request)
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(CONNECTION_BUFFER)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::select! {
        served = served => served,
        _ = cut_off.cancelled() => Ok(()),
    }
}

#[cfg(test)]
mod tests;
