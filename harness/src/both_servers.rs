//! What the simulator's own tests (`harness/tests/simulator_*`) share: they run each
//! behaviour against both servers, the simulator and kube-apiserver (the control plane of
//! `harness/control-plane`), so that the simulator claims nothing kube-apiserver does not do.
//! [`on_both_servers!`](crate::on_both_servers) makes the two test functions of each behaviour.
//!
//! Test helpers: they panic, with what failed, when the server does not do what they need.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::control_plane::Options;
use crate::env::TestEnv;
use crate::sim::SimConfig;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::Value;

/// Directory of the test fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// The server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The in-process simulator (a fresh one per test).
    Simulator,
    /// kube-apiserver and etcd.
    KubeApiserver,
}

impl Server {
    /// A server the test may share with the other tests of its binary, working in namespaces
    /// of its own ([`namespace`]): a fresh simulator, or the shared control plane (or the
    /// cluster of `E2E_KUBECONFIG`).
    pub async fn env(self) -> TestEnv {
        let env = match self {
            Server::Simulator => TestEnv::start_simulator(Default::default()).await.expect("simulator starts"),
            Server::KubeApiserver => TestEnv::start().await.expect("the shared control plane starts"),
        };
        env.assert_reached_server().await.expect("the server answers /version");
        env
    }

    /// A server of this test's own, for what would disturb other tests (compacting etcd,
    /// restarting kube-apiserver, deleting a CRD). Its simulator sends periodic bookmarks once
    /// an hour, not every second: a bookmark between a write and a compaction would carry a
    /// watcher to the latest resourceVersion, and its resume would then not expire (the race
    /// that failed CI once). kube-apiserver sends them about once a minute.
    pub async fn own_env(self) -> TestEnv {
        let env = match self {
            Server::Simulator => {
                let config = SimConfig { bookmark_interval: Duration::from_secs(3600), ..SimConfig::default() };
                TestEnv::start_simulator(config).await.expect("simulator starts")
            }
            Server::KubeApiserver => {
                TestEnv::start_control_plane(Options::default()).await.expect("a control plane of its own starts")
            }
        };
        env.assert_reached_server().await.expect("the server answers /version");
        env
    }
}

/// Makes the two test functions `<name>::simulator` and `<name>::kube_apiserver` of each
/// `async fn <name>(server: Server)` (the test file imports it:
/// `use sidecar_watch_harness::on_both_servers;`).
#[macro_export]
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simulator() {
                super::$name($crate::both_servers::Server::Simulator).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kube_apiserver() {
                super::$name($crate::both_servers::Server::KubeApiserver).await
            }
        }
    )*};
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Creates a namespace of the test's own: `<prefix>-<pid>-<n>` (unique on a shared server).
pub async fn namespace(env: &TestEnv, prefix: &str) -> String {
    let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    env.create_namespace(&name).await.expect("namespace created");
    name
}

/// Compacts the history and ends every watch, so that resuming from any resourceVersion seen
/// so far gives 410 Gone: etcd is compacted at its current revision and kube-apiserver started
/// again, since its watch cache would otherwise still serve the older versions; the simulator
/// drops its history and its watches. `env` must be the test's own ([`Server::own_env`]).
pub async fn compact(env: &TestEnv) {
    if let Some(sim) = env.sim() {
        sim.compact();
        sim.drop_watches();
        return;
    }
    let cp = env.own_control_plane().expect("compaction needs a server of the test's own");
    cp.compact_etcd().await.expect("etcd compacted");
    cp.restart_apiserver().await.expect("kube-apiserver started again");
}

/// The resourceVersion a consistent list of Pods in `ns` reports: the server's latest, not
/// older than any write made before.
pub async fn latest_resource_version(client: &Client, ns: &str) -> u64 {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().limit(1)).await.expect("pods listed");
    list.metadata.resource_version.expect("a list has a resourceVersion").parse().expect("a number")
}

/// A client of `env` that does not retry (kube's default client retries 429, 503 and 504).
pub async fn client_without_retries(env: &TestEnv) -> Client {
    let kubeconfig = Kubeconfig::read_from(&env.kubeconfig).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("client config");
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

/// A raw request through the kube client; returns the JSON body or the API error.
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Value, kube::Error> {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        b = b.header("content-type", "application/json");
    }
    let body = body.map(|v| serde_json::to_vec(&v).expect("serializable")).unwrap_or_default();
    client.request::<Value>(b.body(body).expect("valid request")).await
}

/// HTTP status code of an API error (panics for other errors).
pub fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}
