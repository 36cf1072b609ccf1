//! A kube-runtime watcher + reflector over Pods survives every injected fault and ends with
//! exactly the right set of objects.

mod sim_common;

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
use sidecar_watch_e2e::harness::wait_until;
use sidecar_watch_e2e::kubelet::test_pod;
use sidecar_watch_e2e::sim::api::Caller;
use sidecar_watch_e2e::sim::Simulator;
use sim_common::sim_env;

const NS: &str = "faults";

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

/// Creates a Pod directly in the simulator state, bypassing HTTP (and its injected faults).
fn create_direct(sim: &Simulator, expected: &mut BTreeSet<String>, name: &str) {
    let mut st = sim.shared().state();
    let info = st.registry.find("", "v1", "pods").cloned().expect("pods served");
    let caller = Caller { manager: "test".into(), dry_run: false };
    st.create(&info, "v1", Some(NS), test_pod(name, &[("app", "fault")], &["c"], &[]), &caller, false)
        .expect("direct create");
    expected.insert(name.to_string());
}

async fn converge(store: &Store<Pod>, expected: &BTreeSet<String>, what: &str) {
    wait_until(Duration::from_secs(30), what, || async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_survives_every_fault() {
    let env = sim_env().await;
    let sim = env.require_sim().unwrap();
    env.create_namespace(NS).await.unwrap();
    let api: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let mut expected = BTreeSet::new();
    for i in 0..5 {
        create(&api, &mut expected, &format!("p{i}")).await;
    }
    // another namespace must never leak into the reflector
    let other: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    create(&other, &mut BTreeSet::new(), "outsider").await;

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

    // 1. dropped watches
    sim.drop_watches();
    create(&api, &mut expected, "after-drop").await;
    delete(&api, &mut expected, "p0").await;
    converge(&reader, &expected, "after dropping watches").await;

    // 2. HTTP 500s
    sim.fail_next_500(3);
    sim.drop_watches();
    create(&api, &mut expected, "after-500").await;
    delete(&api, &mut expected, "p1").await;
    converge(&reader, &expected, "after 500s").await;

    // 3. HTTP 429 with Retry-After
    sim.fail_next_429(3, 1);
    sim.drop_watches();
    create(&api, &mut expected, "after-429").await;
    converge(&reader, &expected, "after 429s").await;

    // 4. latency
    sim.set_latency(Duration::from_millis(300));
    sim.drop_watches();
    create(&api, &mut expected, "slow").await;
    delete(&api, &mut expected, "p2").await;
    converge(&reader, &expected, "with latency").await;
    sim.set_latency(Duration::ZERO);

    // 5. compaction → 410 Gone: keep the watcher disconnected (all HTTP requests fail),
    // change state directly, compact, then let it reconnect from its stale resourceVersion.
    let failed_before = sim.shared().failed_requests();
    sim.fail_next_500(u32::MAX);
    sim.drop_watches();
    wait_until(Duration::from_secs(10), "the watcher to hit the injected fault", || async {
        let n = sim.shared().failed_requests();
        if n > failed_before {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await
    .unwrap();
    create_direct(sim, &mut expected, "while-away");
    sim.compact();
    sim.fail_next_500(0);
    converge(&reader, &expected, "after compaction (410 + relist)").await;
    assert!(sim.shared().expired_watches() > 0, "the watcher resumed from a compacted resourceVersion");

    // 6. restart: connections and watches closed, state and port kept
    sim.restart();
    create(&api, &mut expected, "after-restart").await;
    delete(&api, &mut expected, "p3").await;
    converge(&reader, &expected, "after restart").await;

    // the reflector matches the server exactly
    let listed: BTreeSet<String> =
        api.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();
    assert_eq!(listed, expected);
    let got: BTreeSet<String> = reader.state().iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(got, expected);
    assert!(errors.load(Ordering::Relaxed) > 0, "faults were observed by the watcher");
    assert!(sim.shared().failed_requests() > 0);
    task.abort();
}
