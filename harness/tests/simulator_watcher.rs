//! A kube-runtime watcher + reflector over Pods survives the server's faults and ends with
//! exactly the right set of objects: a restart and a compaction on both servers, and on the
//! simulator the watch disruptions the benchmarks use.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use sidecar_watch_harness::both_servers::{compact, namespace, Server};
use sidecar_watch_harness::env::{wait_until, TestEnv};
use sidecar_watch_harness::kubelet::test_pod;
use sidecar_watch_harness::on_both_servers;

on_both_servers!(reflector_survives_restarts_and_compaction);

async fn retry<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut last = None;
    for _ in 0..50 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request kept failing: {last:?}");
}

async fn create(api: &Api<Pod>, expected: &mut BTreeSet<String>, name: &str) {
    let pod: Pod = serde_json::from_value(test_pod(name, &[("app", "fault")], &["c"], &[])).unwrap();
    retry(|| async {
        match api.create(&PostParams::default(), &pod).await {
            Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await,
            other => other,
        }
    })
    .await;
    expected.insert(name.to_string());
}

async fn delete(api: &Api<Pod>, expected: &mut BTreeSet<String>, name: &str) {
    retry(|| async {
        match api.delete(name, &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    })
    .await;
    expected.remove(name);
}

async fn converge(store: &Store<Pod>, expected: &BTreeSet<String>, what: &str) {
    wait_until(Duration::from_secs(60), what, || async {
        let got: BTreeSet<String> = store.state().iter().filter_map(|p| p.metadata.name.clone()).collect();
        if got == *expected {
            Ok(())
        } else {
            Err(format!("reflector has {got:?}, expected {expected:?}"))
        }
    })
    .await
    .unwrap();
}

/// A reflector over the Pods of a namespace of its own (five to start with; a Pod in another
/// namespace must never leak into it), once it has listed them.
struct Watched {
    api: Api<Pod>,
    expected: BTreeSet<String>,
    reader: Store<Pod>,
    errors: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    async fn start(env: &TestEnv) -> Self {
        let ns = namespace(env, "reflector").await;
        let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
        let mut expected = BTreeSet::new();
        for i in 0..5 {
            create(&api, &mut expected, &format!("p{i}")).await;
        }
        let outside = namespace(env, "outside").await;
        create(&Api::namespaced(env.client.clone(), &outside), &mut BTreeSet::new(), "outsider").await;
        let (reader, writer) = reflector::store::<Pod>();
        let errors = Arc::new(AtomicUsize::new(0));
        let errs = errors.clone();
        let stream = watcher(api.clone(), watcher::Config::default().page_size(2))
            .default_backoff()
            .reflect(writer)
            .for_each(move |ev| {
                if ev.is_err() {
                    errs.fetch_add(1, Ordering::Relaxed);
                }
                async {}
            });
        let task = tokio::spawn(stream);
        converge(&reader, &expected, "initial list").await;
        Self { api, expected, reader, errors, task }
    }

    /// The reflector matches the server exactly.
    async fn assert_matches_server(self) {
        let listed: BTreeSet<String> = self
            .api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert_eq!(listed, self.expected);
        let got: BTreeSet<String> = self.reader.state().iter().filter_map(|p| p.metadata.name.clone()).collect();
        assert_eq!(got, self.expected);
        assert!(self.errors.load(Ordering::Relaxed) > 0, "faults were observed by the watcher");
        self.task.abort();
    }
}

/// The server restarts (every connection and watch ends, state kept), then its history is
/// compacted while the watcher is away, so that resuming gives 410 Gone and a relist.
async fn reflector_survives_restarts_and_compaction(server: Server) {
    let env = server.own_env().await;
    let mut w = Watched::start(&env).await;

    match env.sim() {
        Some(sim) => sim.restart(),
        None => env.own_control_plane().unwrap().restart_apiserver().await.expect("kube-apiserver restarted"),
    }
    create(&w.api, &mut w.expected, "after-restart").await;
    delete(&w.api, &mut w.expected, "p0").await;
    converge(&w.reader, &w.expected, "after restart").await;

    // A write outside the watched namespace puts the watcher's resourceVersion behind the
    // latest, which the compaction then removes.
    let outside = namespace(&env, "later").await;
    create(&Api::namespaced(env.client.clone(), &outside), &mut BTreeSet::new(), "elsewhere").await;
    compact(&env).await;
    create(&w.api, &mut w.expected, "after-compaction").await;
    delete(&w.api, &mut w.expected, "p1").await;
    converge(&w.reader, &w.expected, "after compaction (410 + relist)").await;
    if let Some(sim) = env.sim() {
        assert!(sim.shared().expired_watches() > 0, "the watcher resumed from a compacted resourceVersion");
    }
    w.assert_matches_server().await;
}

/// The simulator's own watch controls, which the benchmarks' soak uses to disrupt the
/// operator (kube-apiserver has no such switch; the operator's fault tests use the fault proxy
/// and a restarted kube-apiserver instead): every watch dropped, then every open watch expired
/// in its stream (410 Gone, as kube-apiserver's watch cache sends), so the watcher lists again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_survives_the_simulators_watch_disruptions() {
    let env = Server::Simulator.env().await;
    let sim = env.require_sim().unwrap();
    let mut w = Watched::start(&env).await;

    sim.drop_watches();
    create(&w.api, &mut w.expected, "after-drop").await;
    delete(&w.api, &mut w.expected, "p0").await;
    converge(&w.reader, &w.expected, "after dropping watches").await;

    let expired = sim.shared().expired_watches();
    sim.expire_watches();
    create(&w.api, &mut w.expected, "after-expiry").await;
    delete(&w.api, &mut w.expected, "p1").await;
    converge(&w.reader, &w.expected, "after the watch expired (410 + relist)").await;
    assert_eq!(sim.shared().expired_watches(), expired + 1, "one open watch, one 410");
    w.assert_matches_server().await;
}
