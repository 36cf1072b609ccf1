//! Readiness after a start: the reconciler, fed the first list of Pods that holds a rollout a
//! sidecar may block, becomes ready only once that rollout's controller was read (so that a
//! restarted leader neither resolves nor repeats its alert), and at the latest after its wait.

use std::collections::HashSet;

use serde_json::json;
use sidecar_watch_testkit::pod::{Container, PodBuilder};
use tokio::sync::Notify;

use super::*;
use crate::api::{PolicySpec, SlimPod};
use crate::engine::{AlertName, CompiledPolicy, PodView, PolicyRef};
use crate::index::shard::Shard;
use crate::index::{PolicyEntry, Writes};
use crate::leadership::RoleReceiver;
use crate::test_api::{self, ApiServer};

/// Deployment web: one ready Pod of revision aaaa, one of bbbb whose sidecar has not been
/// ready for long: a candidate blocked rollout. Returns the Pods' UIDs.
fn stalled_rollout(index: &Index) -> HashSet<PodUidBuf> {
    let at = |t: &str| t.parse::<Timestamp>().expect("time");
    let spec: PolicySpec = serde_json::from_value(json!({
        "selector": {"matchLabels": {"app": "web"}},
        "rules": {"sidecarNotReady": {"for": "1m"}, "rolloutBlocked": {"for": "2m"}}
    }))
    .expect("spec");
    let policy = PolicyRef::namespaced("shop", "mesh");
    index.apply_policy(
        policy.clone(),
        PolicyEntry::new(CompiledPolicy::compile(policy, &spec)),
        at("2026-01-01T09:00:00Z"),
    );
    let mut uids = HashSet::new();
    for (name, hash, ready) in [("web-a", "aaaa", true), ("web-b", "bbbb", false)] {
        let pod = PodBuilder::new("shop", name)
            .uid(format!("u-{name}"))
            .created("2026-01-01T10:00:00Z")
            .label("app", "web")
            .label("pod-template-hash", hash)
            .owner("ReplicaSet", &format!("web-{hash}"))
            .native_sidecar(Container::istio_proxy().ready(ready))
            .container(Container::new("app", "shop/web:1.0"));
        let view = PodView::from_pod(&pod.decode::<SlimPod>());
        uids.insert(view.uid().into());
        index.apply_pod(view, at("2026-01-01T10:30:00Z"));
    }
    uids
}

/// A reconciler over `index` with one initial list, the in-process API behind its readers.
pub(super) fn start(index: Arc<Index>, first_reads_wait: Duration) -> (mpsc::Sender<Change>, RoleReceiver, ApiServer) {
    let (client, server) = test_api::client();
    let metrics = Metrics::new();
    let (role_tx, role) = leadership::channel();
    let (events, _publisher) =
        crate::events::spawn_publisher(client.clone(), "op".into(), metrics.clone(), index.clone(), role.clone());
    let (tx, rx) = mpsc::channel(16);
    let (controllers, create_reads) = super::super::spawn_readers(&client, &metrics, &tx);
    let reconciler = Reconciler {
        index,
        metrics,
        events,
        initial_lists: 1,
        role: role_tx,
        status_dirty: Arc::new(Notify::new()),
        controllers,
        create_reads,
        shard: Shard::default(),
        first_reads_wait,
    };
    tokio::spawn(reconciler.run(rx, CancellationToken::new()));
    (tx, role, server)
}

fn blocked(index: &Index) -> usize {
    let mut n = 0;
    index.for_each_workload_alert(|a| n += usize::from(a.alert.name == AlertName::RolloutBlockedBySidecar));
    n
}

async fn synced(role: &mut RoleReceiver) {
    tokio::time::timeout(Duration::from_secs(5), role.wait_for(|r| r.synced))
        .await
        .expect("ready in time")
        .expect("open");
}

#[tokio::test]
async fn ready_only_once_the_rollouts_controller_was_read() {
    let index = Arc::new(Index::new());
    let seen = stalled_rollout(&index);
    let (tx, mut role, mut server) = start(index.clone(), FIRST_READS_WAIT);
    tx.send(Change::Pod(Op::Relisted { source: 0, scope: None, seen })).await.expect("sent");
    let read = server.next().await;
    assert_eq!(read.parts.uri.path(), "/apis/apps/v1/namespaces/shop/deployments/web");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!role.borrow().synced, "not ready while the Deployment is being read");
    // Paused: the rollout is not blocked, and is known so when the replica is ready.
    read.respond_json(
        200,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "uid": "d1"}, "spec": {"paused": true}}),
    );
    synced(&mut role).await;
    assert_eq!(blocked(&index), 0, "judged with the answer before ready");
}

#[tokio::test]
async fn a_read_that_does_not_come_back_delays_readiness_only_for_the_wait() {
    let index = Arc::new(Index::new());
    let seen = stalled_rollout(&index);
    let (tx, mut role, mut server) = start(index.clone(), Duration::from_secs(1));
    tx.send(Change::Pod(Op::Relisted { source: 0, scope: None, seen })).await.expect("sent");
    // Held, never answered.
    let _hung = server.next().await;
    assert!(!role.borrow().synced);
    synced(&mut role).await;
}
