//! An in-memory Kubernetes API-server simulator speaking plain HTTP.
//!
//! Start it with [`Simulator::start`]; point clients at [`Simulator::url`] or the kubeconfig
//! written by [`Simulator::write_kubeconfig`]. The handle ends, expires and cuts watches and
//! compacts the history, for the benchmarks' churn; the faults of the operator's tests are
//! injected in front of a real kube-apiserver (`fault_proxy`).

pub mod api;
pub mod authn;
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
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// State shared by the server tasks and the handle.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<api::State>,
    /// Bumped to end every open watch.
    watch_epoch: watch::Sender<u64>,
    /// Bumped to expire every open watch (a 410 ERROR event, then the end).
    expire_epoch: watch::Sender<u64>,
    /// Bumped to close every connection.
    conn_epoch: watch::Sender<u64>,
    config: SimConfig,
    addr: SocketAddr,
    expired_watches: std::sync::atomic::AtomicU64,
    /// Tokens and grants for TokenReview and SubjectAccessReview.
    reviews: Mutex<authn::Reviews>,
    /// Requests and bytes served, per client, verb and resource.
    traffic: traffic::Traffic,
}

impl Shared {
    /// Number of watches answered with a 410 Expired ERROR event so far.
    pub fn expired_watches(&self) -> u64 {
        self.expired_watches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests and response bytes served so far, per client, verb and resource.
    pub fn traffic(&self) -> &traffic::Traffic {
        &self.traffic
    }

    pub(crate) fn note_expired_watch(&self) {
        self.expired_watches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The TokenReview/SubjectAccessReview tables, for a test to fill.
    pub fn reviews(&self) -> std::sync::MutexGuard<'_, authn::Reviews> {
        self.reviews.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the object state (recovering from poisoning).
    pub fn state(&self) -> MutexGuard<'_, api::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
            watch_epoch: watch::channel(0).0,
            expire_epoch: watch::channel(0).0,
            conn_epoch: watch::channel(0).0,
            config,
            addr,
            expired_watches: Default::default(),
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

    /// Shared state (watch controls, state inspection, traffic).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The `gitVersion` its `/version` reports.
    pub fn git_version(&self) -> String {
        version()["gitVersion"].as_str().unwrap_or_default().to_string()
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

/// `/version`: the release whose behaviour the simulator follows (kube-apiserver 1.37). The
/// operator reads it at start; no other discovery document is served (no client that runs on
/// the simulator discovers: the operator and the benchmarks name their resources).
pub fn version() -> serde_json::Value {
    serde_json::json!({
        "major": "1", "minor": "37", "gitVersion": "v1.37.0-sidecar-watch-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    })
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
