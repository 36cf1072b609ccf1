//! The `FailedCreate` path as production drives it: a watched Event into the reconciler, the
//! object it names read by the reader, the condition set in the index.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;

use super::startup_tests::start;
use super::*;
use crate::engine::{AlertName, WorkloadKind};

const UNREACHABLE: &str = "Error creating: Internal error occurred: failed calling webhook \
    \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \
    \"https://istiod.istio-system.svc:443/inject?timeout=10s\": dial tcp 10.96.0.10:443: connect: connection refused";

/// ReplicaSet web-7d9f8c6b5's Event, last seen at `last`.
fn failed(last: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some("web-7d9f8c6b5.e1".into()),
            namespace: Some("shop".into()),
            uid: Some("e1".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("ReplicaSet".into()),
            name: Some("web-7d9f8c6b5".into()),
            namespace: Some("shop".into()),
            uid: Some("rs-uid".into()),
            ..ObjectReference::default()
        },
        reason: Some("FailedCreate".into()),
        message: Some(UNREACHABLE.into()),
        first_timestamp: Some(Time("2026-01-01T10:00:00Z".parse().expect("time"))),
        last_timestamp: Some(Time(last)),
        ..Event::default()
    }
}

async fn send(tx: &mpsc::Sender<Change>, event: Event) {
    let op = create_failures::event_op(event, Instant::now()).expect("an Event is always a change");
    tx.send(Change::FailedCreate(op)).await.expect("the reconciler runs");
}

/// In real time (the Events' times are compared with the wall clock): an Event about an
/// object read recently, updated after the reconciler sat idle, starts its `for` clock at its
/// own time, not at when the reconciler last woke; the old failure of the object, since
/// scaled to zero (`rollout undo`), is not believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_a_quiet_spell_starts_its_clock_at_its_own_time() {
    let index = Arc::new(Index::new());
    let (tx, _role, mut server) = start(index.clone(), FIRST_READS_WAIT);
    let workload =
        WorkloadId { namespace: "shop".into(), kind: WorkloadKind::ReplicaSet, name: "web-7d9f8c6b5".into() };
    let condition = || index.workload_condition(AlertName::SidecarInjectionFailed, &workload);
    send(&tx, failed("2026-01-01T10:01:00Z".parse().expect("time"))).await;
    let read = server.next().await;
    assert_eq!(read.parts.uri.path(), "/apis/apps/v1/namespaces/shop/replicasets/web-7d9f8c6b5");
    read.respond_json(
        200,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f8c6b5", "namespace": "shop", "uid": "rs-uid"},
        "spec": {"replicas": 0}}),
    );
    // Idle: no Event, no read, the next round of reads 15 s away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(condition(), None, "scaled to zero: its old failure is over");
    // Scaled up again, it fails again: its Event updated, whole seconds as the API writes it.
    let failed_at = Timestamp::from_second(Timestamp::now().as_second()).expect("a time");
    send(&tx, failed(failed_at)).await;
    let since = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(condition) = condition() {
                return condition.since;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("believed without another read");
    assert_eq!(since, failed_at);
}

/// After a start the `FailedCreate` list counts towards readiness, and only once the objects
/// its Events name are read: a new leader judges with every standing failure known, so that
/// it neither repeats nor resolves a Warning another replica published.
#[tokio::test]
async fn ready_only_once_the_listed_events_objects_were_read() {
    let index = Arc::new(Index::new());
    let (tx, mut role, mut server) = start(index.clone(), FIRST_READS_WAIT);
    send(&tx, failed(Timestamp::now())).await;
    let seen = HashSet::from(["e1".to_string()]);
    let listed = Op::Relisted { source: 0, scope: Some("shop".to_string()), seen };
    tx.send(Change::FailedCreate(listed)).await.expect("sent");
    let read = server.next().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!role.borrow().synced, "not ready while the ReplicaSet is being read");
    read.respond_json(
        200,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f8c6b5", "namespace": "shop", "uid": "rs-uid", "generation": 1},
        "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "replicas": 0}}),
    );
    tokio::time::timeout(Duration::from_secs(5), role.wait_for(|r| r.synced))
        .await
        .expect("ready in time")
        .expect("open");
    let workload =
        WorkloadId { namespace: "shop".into(), kind: WorkloadKind::ReplicaSet, name: "web-7d9f8c6b5".into() };
    assert!(
        index.workload_condition(AlertName::SidecarInjectionFailed, &workload).is_some(),
        "the failure is known when ready"
    );
}
