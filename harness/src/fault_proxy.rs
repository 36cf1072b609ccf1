//! A fault-injecting HTTP proxy in front of kube-apiserver, for the failures a real server
//! gives only by chance: the next N requests answered 500 or 429 (with `Retry-After`), every
//! connection closed at once (a restart or a dropped link, as the client sees it), and
//! `/version` posing as an older minor release, and streaming lists whose `sendInitialEvents`
//! is dropped on the way (a proxy or server that ignores it), and named Pods relayed with a
//! string `restartCount` ([`FaultProxy::corrupt_restart_count`]), and requests held without
//! an answer ([`FaultProxy::hang`]: a peer that keeps the connection open and never answers).
//! Everything else reaches kube-apiserver as it
//! was sent: the client's bearer token, `User-Agent`, query and body, and the answer streams
//! back unchanged (watches included), so kube-apiserver's audit log sees the client's calls.
//! It notes the media types of every exchange passed on ([`FaultProxy::media_types`]), which
//! the audit log does not record.
//!
//! Clients speak plain HTTP to it on loopback; it speaks TLS to kube-apiserver. A client
//! certificate cannot pass through a proxy, so its clients authenticate with tokens (the
//! operator's ServiceAccount: [`FaultProxy::kubeconfig`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

use crate::env::{kubeconfig_via, HarnessError, Result};

mod corrupt;

// A concrete error type: with a boxed `dyn Error`, the compiler cannot prove the connection's
// future `Send` for every lifetime hyper's bounds ask about.
type ProxyBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A running proxy; stops (closing every connection) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

struct State {
    upstream: kube::Client,
    faults: Mutex<Faults>,
    connections: Mutex<Vec<AbortHandle>>,
    injected: AtomicU64,
    held: AtomicU64,
    media_types: Mutex<Vec<MediaTypes>>,
}

/// What one request passed on asked for and got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaTypes {
    /// `GET /api/v1/namespaces/a/pods`, without the query.
    pub request: String,
    /// The request's `Accept` ("" when none).
    pub accept: String,
    /// The answer's `Content-Type` ("" when none).
    pub content_type: String,
}

/// Exchanges noted at most, so that a long test's proxy does not grow without bound.
const MEDIA_TYPES_KEPT: usize = 100_000;

#[derive(Default)]
struct Faults {
    fail_remaining: u32,
    fail_code: u16,
    retry_after_secs: u64,
    minor_version: Option<u32>,
    drop_send_initial_events: bool,
    restart_counts_as_text: corrupt::RestartCounts,
    /// (method, a part of the path): requests to hold unanswered.
    hung: Vec<(http::Method, String)>,
}

impl FaultProxy {
    /// Starts a proxy on a loopback port in front of the server of `kubeconfig` (its CA is
    /// trusted; its credentials are not used: each request carries its client's).
    pub async fn start(kubeconfig: &Path) -> Result<Self> {
        let err = |message: String| HarnessError::Kubeconfig { path: kubeconfig.to_path_buf(), message };
        let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        config.auth_info = Default::default();
        // What the client asked is what kube-apiserver gets: no second try behind its back.
        config.default_retry = false;
        let upstream = kube::Client::try_from(config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| err(format!("proxy listener: {e}")))?;
        let addr = listener.local_addr().map_err(|e| err(format!("proxy address: {e}")))?;
        let state = Arc::new(State {
            upstream,
            faults: Mutex::default(),
            connections: Mutex::default(),
            injected: AtomicU64::new(0),
            held: AtomicU64::new(0),
            media_types: Mutex::default(),
        });
        let accepting = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let serving = accepting.clone();
                let service = hyper::service::service_fn(move |request| {
                    let state = serving.clone();
                    async move { state.answer(request).await }
                });
                let connection = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut connections = accepting.connections();
                connections.retain(|c| !c.is_finished());
                connections.push(connection.abort_handle());
            }
        });
        Ok(Self { addr, state, accept })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes to `dst` the kubeconfig `src` (a token's: see the module doc) pointed at this
    /// proxy.
    pub fn kubeconfig(&self, src: &Path, dst: &Path) -> Result<()> {
        kubeconfig_via(src, dst, &self.url())
    }

    /// Answers the next `count` requests ([`u32::MAX`]: until [`FaultProxy::heal`]) with `code`
    /// and a Status as kube-apiserver writes it, with `Retry-After: retry_after_secs` when
    /// the code is 429, without passing them on.
    pub fn fail_next(&self, count: u32, code: u16, retry_after_secs: u64) {
        let mut faults = self.state.faults();
        faults.fail_remaining = count;
        faults.fail_code = code;
        faults.retry_after_secs = retry_after_secs;
    }

    /// Passes every request on again.
    pub fn heal(&self) {
        self.fail_next(0, 0, 0);
    }

    /// Requests answered with an injected failure so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Closes every open connection, watches included, mid-response if need be; new ones are
    /// accepted as before.
    pub fn drop_connections(&self) {
        for connection in self.state.connections().drain(..) {
            connection.abort();
        }
    }

    /// The media types of the exchanges passed on so far (the first 100,000), in order.
    pub fn media_types(&self) -> Vec<MediaTypes> {
        self.state.media_types.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Passes on every streaming list without `sendInitialEvents`, the `resourceVersionMatch`
    /// that goes with it and `allowWatchBookmarks`, as a proxy or server that knows none of
    /// them does: kube-apiserver then answers a plain watch from the latest state, the objects
    /// as `ADDED` events and never the bookmark that ends an initial state. (Asked for
    /// bookmarks, kube-apiserver 1.37 ends the initial state of a plain watch too.)
    pub fn drop_send_initial_events(&self) {
        self.state.faults().drop_send_initial_events = true;
    }

    /// Relays every Pod named `pod` (in any namespace) in the Pod lists and watches passed on
    /// with each container's `restartCount` replaced by the string `text`, which
    /// kube-apiserver would refuse to store. While any Pod is named, those lists and watches
    /// are asked for in JSON (see `corrupt`'s module doc): protobuf has no room for a string
    /// there.
    pub fn corrupt_restart_count(&self, pod: &str, text: &str) {
        self.state.faults().restart_counts_as_text.insert(pod.to_string(), text.to_string());
    }

    /// Holds every `method` request whose path contains `path_part` without passing it on or
    /// answering it, until its client gives up or the connection is dropped.
    pub fn hang(&self, method: http::Method, path_part: &str) {
        self.state.faults().hung.push((method, path_part.to_string()));
    }

    /// Requests held by [`FaultProxy::hang`] so far.
    pub fn held(&self) -> u64 {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Answers `GET /version` as a 1.`minor` server would (the rest as kube-apiserver does).
    pub fn pose_as_minor(&self, minor: u32) {
        self.state.faults().minor_version = Some(minor);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

impl State {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn connections(&self) -> MutexGuard<'_, Vec<AbortHandle>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An injected failure, or kube-apiserver's answer. An unreachable kube-apiserver is an
    /// error, which closes the client's connection: what a client connected directly sees.
    async fn answer(&self, request: Request<Incoming>) -> std::io::Result<Response<ProxyBody>> {
        let (failure, minor, drop_initial_events, restart_counts) = {
            let mut faults = self.faults();
            let failure = (faults.fail_remaining > 0).then(|| {
                faults.fail_remaining -= 1;
                (faults.fail_code, faults.retry_after_secs)
            });
            let counts = faults.restart_counts_as_text.clone();
            (failure, faults.minor_version, faults.drop_send_initial_events, counts)
        };
        if let Some((code, retry_after_secs)) = failure {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Ok(injected_failure(code, retry_after_secs));
        }
        let hung = self
            .faults()
            .hung
            .iter()
            .any(|(method, part)| request.method() == method && request.uri().path().contains(part.as_str()));
        if hung {
            self.held.fetch_add(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
        let (mut parts, body) = request.into_parts();
        let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        // kube's client sets the scheme and authority of kube-apiserver.
        parts.headers.remove(header::HOST);
        if drop_initial_events {
            parts.uri = without_initial_events(&parts.uri);
        }
        let is_version = parts.uri.path() == "/version";
        let watch = corrupt::is_watch(&parts.uri);
        let mut forwarded = Request::from_parts(parts, kube::client::Body::from(body));
        let corrupting = !restart_counts.is_empty() && corrupt::reads_pod_collection(&forwarded);
        if corrupting {
            corrupt::ask_for_plain_json(&mut forwarded);
        }
        let request = format!("{} {}", forwarded.method(), forwarded.uri().path());
        let accept = text(forwarded.headers().get(header::ACCEPT));
        let response = self.upstream.send(forwarded).await.map_err(std::io::Error::other)?;
        let content_type = text(response.headers().get(header::CONTENT_TYPE));
        {
            let mut noted = self.media_types.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if noted.len() < MEDIA_TYPES_KEPT {
                noted.push(MediaTypes { request, accept, content_type });
            }
        }
        match minor {
            Some(minor) if is_version && response.status().is_success() => posing(response, minor).await,
            _ if corrupting => corrupt::corrupt_answer(response, watch, restart_counts).await,
            _ => Ok(response.map(|body| body.map_err(std::io::Error::other).boxed_unsync())),
        }
    }
}

/// `uri` without `sendInitialEvents`, `resourceVersionMatch` and `allowWatchBookmarks` when it
/// asks for initial events; as it is otherwise.
fn without_initial_events(uri: &http::Uri) -> http::Uri {
    let Some(query) = uri.query().filter(|q| q.split('&').any(|p| p == "sendInitialEvents=true")) else {
        return uri.clone();
    };
    let dropped = ["sendInitialEvents=", "resourceVersionMatch=", "allowWatchBookmarks="];
    let kept: Vec<&str> = query.split('&').filter(|p| !dropped.iter().any(|d| p.starts_with(d))).collect();
    let path_and_query =
        if kept.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), kept.join("&")) };
    http::Uri::builder().path_and_query(path_and_query).build().unwrap_or_else(|_| uri.clone())
}

fn text(value: Option<&header::HeaderValue>) -> String {
    value.and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn full(body: Vec<u8>) -> ProxyBody {
    Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync()
}

fn injected_failure(code: u16, retry_after_secs: u64) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = match status {
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("injected by the e2e fault proxy ({code})"), "reason": reason, "code": code,
    });
    let mut response = Response::builder().status(status).header(header::CONTENT_TYPE, "application/json");
    if status == StatusCode::TOO_MANY_REQUESTS {
        response = response.header(header::RETRY_AFTER, retry_after_secs.to_string());
    }
    response.body(full(body.to_string().into_bytes())).unwrap_or_else(|_| Response::new(full(Vec::new())))
}

/// kube-apiserver's `/version` with the minor release (and the `gitVersion` made from it)
/// replaced.
async fn posing(response: Response<kube::client::Body>, minor: u32) -> std::io::Result<Response<ProxyBody>> {
    let (mut parts, body) = response.into_parts();
    let mut version: serde_json::Value =
        serde_json::from_slice(&body.collect().await.map_err(std::io::Error::other)?.to_bytes())?;
    let major = version["major"].as_str().unwrap_or("1").to_string();
    version["minor"] = minor.to_string().into();
    version["gitVersion"] = format!("v{major}.{minor}.0").into();
    let body = serde_json::to_vec(&version)?;
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, full(body)))
}
