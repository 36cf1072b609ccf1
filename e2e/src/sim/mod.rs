//! An in-memory Kubernetes API-server simulator speaking plain HTTP.
//!
//! Start it with [`Simulator::start`]; point clients at [`Simulator::url`] or the kubeconfig
//! written by [`Simulator::write_kubeconfig`]. Faults are injected through the handle or
//! through the `/__sim/...` HTTP control endpoints (see [`http`]).

pub mod api;
pub mod authn;
pub mod discovery;
pub mod error;
pub mod http;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod store;
pub mod traffic;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Errors starting or controlling the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or accepting failed.
    #[error("simulator I/O error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind (use port 0 for a free port).
    pub bind: SocketAddr,
    /// Number of watch events kept for resuming watches.
    pub history_limit: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Whether the WatchList feature gate is on. Off, a watch with `sendInitialEvents` is
    /// rejected with 422 Invalid, as kube-apiserver rejects it with the gate off.
    pub watch_list: bool,
    /// The minor version `/version` reports. Below 27 (no streaming lists yet), a watch with
    /// `resourceVersionMatch` is rejected with 422 Invalid, as 1.19 to 1.26 reject it.
    pub minor_version: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            watch_list: true,
            minor_version: 37,
        }
    }
}

/// Faults injected through the handle or the `/__sim/...` endpoints.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Number of upcoming API requests that fail.
    pub fail_remaining: u32,
    /// HTTP code of the failures (500 or 429).
    pub fail_code: u16,
    /// `Retry-After` seconds for 429 failures.
    pub retry_after_secs: u64,
    /// Added latency per API request.
    pub latency: Duration,
}

/// State shared by the server tasks and the handle.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<api::State>,
    faults: Mutex<Faults>,
    /// Bumped to end every open watch.
    watch_epoch: watch::Sender<u64>,
    /// Bumped to expire every open watch (a 410 ERROR event, then the end).
    expire_epoch: watch::Sender<u64>,
    /// Bumped to close every connection.
    conn_epoch: watch::Sender<u64>,
    config: SimConfig,
    addr: SocketAddr,
    expired_watches: std::sync::atomic::AtomicU64,
    failed_requests: std::sync::atomic::AtomicU64,
    /// Every distinct kind of resource request served, by user agent.
    calls: Mutex<std::collections::BTreeSet<ApiCall>>,
    /// Watches asked for initial events (`sendInitialEvents=true`), by resource and outcome.
    streaming_watches: Mutex<std::collections::BTreeMap<(String, StreamingWatch), u64>>,
    /// Tokens and grants for TokenReview and SubjectAccessReview.
    reviews: Mutex<authn::Reviews>,
    /// Requests and bytes served, per client, verb and resource.
    traffic: traffic::Traffic,
}

/// A kind of resource request: who asked for which verb on which resource (by plural; the
/// RBAC view, group and namespace, is taken from kube-apiserver's audit log instead:
/// `e2e/tests/operator/rbac.rs`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// The RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// The resource, with a subresource as `resource/subresource`.
    pub resource: String,
}

/// What became of a watch that asked for initial events (`sendInitialEvents=true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamingWatch {
    /// Served: the objects as ADDED events, then the `k8s.io/initial-events-end` bookmark.
    Served,
    /// Rejected with 422 Invalid ([`SimConfig::watch_list`] off, or a server before 1.27).
    Rejected,
}

impl Shared {
    /// Number of watches of `resource` (plural, e.g. `pods`) that asked for initial events
    /// and were served or rejected as `outcome` says.
    pub fn streaming_watches(&self, resource: &str, outcome: StreamingWatch) -> u64 {
        let counts = self.streaming_watches.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&(resource.to_string(), outcome)).copied().unwrap_or(0)
    }

    pub(crate) fn note_streaming_watch(&self, resource: &str, outcome: StreamingWatch) {
        let mut counts = self.streaming_watches.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((resource.to_string(), outcome)).or_default() += 1;
    }

    /// Number of watches answered with a 410 Expired ERROR event so far.
    pub fn expired_watches(&self) -> u64 {
        self.expired_watches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of requests failed by fault injection so far.
    pub fn failed_requests(&self) -> u64 {
        self.failed_requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests and response bytes served so far, per client, verb and resource.
    pub fn traffic(&self) -> &traffic::Traffic {
        &self.traffic
    }

    pub(crate) fn note_expired_watch(&self) {
        self.expired_watches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every distinct kind of resource request served so far whose user agent starts with
    /// `user_agent`.
    pub fn calls_by(&self, user_agent: &str) -> Vec<ApiCall> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.iter().filter(|c| c.user_agent.starts_with(user_agent)).cloned().collect()
    }

    /// The TokenReview/SubjectAccessReview tables, for a test to fill.
    pub fn reviews(&self) -> std::sync::MutexGuard<'_, authn::Reviews> {
        self.reviews.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn note_call(&self, call: ApiCall) {
        // A set: a client that calls the same way a million times costs one entry.
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).insert(call);
    }

    pub(crate) fn note_failed_request(&self) {
        self.failed_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Locks the object state (recovering from poisoning).
    pub fn state(&self) -> MutexGuard<'_, api::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the fault settings.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every open watch stream.
    pub fn drop_watches(&self) {
        self.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Expires every open watch: each gets a 410 Expired ERROR event ("too old resource
    /// version") and ends, as kube-apiserver ends a watch its cache can no longer serve; the
    /// client must list again. Counted in [`Shared::expired_watches`].
    pub fn expire_watches(&self) {
        self.expire_epoch.send_modify(|e| *e += 1);
    }

    /// Closes all connections and watches; state and port are kept.
    pub fn restart(&self) {
        self.drop_watches();
        self.conn_epoch.send_modify(|e| *e += 1);
    }

    /// Makes the next `count` API requests fail with `code` (500 or 429).
    pub fn fail_next(&self, count: u32, code: u16, retry_after_secs: u64) {
        let mut f = self.faults();
        f.fail_remaining = count;
        f.fail_code = code;
        f.retry_after_secs = retry_after_secs;
    }

    /// Sets the latency added to every API request.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// Drops the watch history: resuming from any older resourceVersion yields 410.
    pub fn compact(&self) {
        self.state().store.compact();
    }

    pub fn resource_version(&self) -> u64 {
        self.state().store.rv()
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn watch_epoch(&self) -> watch::Receiver<u64> {
        self.watch_epoch.subscribe()
    }

    pub(crate) fn expire_epoch(&self) -> watch::Receiver<u64> {
        self.expire_epoch.subscribe()
    }
}

/// Handle to a running simulator; dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(api::State::new(config.history_limit)),
            faults: Mutex::new(Faults::default()),
            watch_epoch: watch::channel(0).0,
            expire_epoch: watch::channel(0).0,
            conn_epoch: watch::channel(0).0,
            config,
            addr,
            expired_watches: Default::default(),
            failed_requests: Default::default(),
            calls: Default::default(),
            streaming_watches: Default::default(),
            reviews: Default::default(),
            traffic: Default::default(),
        });
        let router = http::router(shared.clone());
        let accept_shared = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(router.clone());
                let mut epoch = accept_shared.conn_epoch.subscribe();
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = epoch.changed() => {}
                    }
                });
            }
        });
        let reap_shared = shared.clone();
        let reaper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                reap_shared.state().reap();
            }
        });
        Ok(Self { shared, tasks: vec![accept, reaper] })
    }

    /// Shared state (fault injection, state inspection).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The `gitVersion` its `/version` reports.
    pub fn git_version(&self) -> String {
        discovery::version(self.shared.config().minor_version)["gitVersion"].as_str().unwrap_or_default().to_string()
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Ends every open watch stream.
    pub fn drop_watches(&self) {
        self.shared.drop_watches()
    }

    /// Expires every open watch (a 410 ERROR event, then the end); see [`Shared::expire_watches`].
    pub fn expire_watches(&self) {
        self.shared.expire_watches()
    }

    /// Makes the next `count` API requests fail with HTTP 500.
    pub fn fail_next_500(&self, count: u32) {
        self.shared.fail_next(count, 500, 0)
    }

    /// Makes the next `count` API requests fail with HTTP 429 and `Retry-After`.
    pub fn fail_next_429(&self, count: u32, retry_after_secs: u64) {
        self.shared.fail_next(count, 429, retry_after_secs)
    }

    /// Sets the latency added to every API request.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.set_latency(latency)
    }

    /// Drops the watch history (old resourceVersions give 410 Expired).
    pub fn compact(&self) {
        self.shared.compact()
    }

    /// Closes all connections and watches; keeps state and port.
    pub fn restart(&self) {
        self.shared.restart()
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.resource_version()
    }

    /// Writes a kubeconfig (no auth, namespace `default`) pointing at this simulator.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        write_kubeconfig(path, &self.url())
    }
}

/// Writes a kubeconfig for `server` with context `sim` and no credentials.
pub fn write_kubeconfig(path: &Path, server: &str) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {server}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\nusers:\n- name: sim\n  user: {{}}\npreferences: {{}}\n"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shared.restart();
        for t in &self.tasks {
            t.abort();
        }
    }
}
