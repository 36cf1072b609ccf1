//! A restart (or a new leader) while an alert on a workload fires, on the in-process API
//! ([`crate::test_api`]): the publisher reads back the Warning the last run published, and
//! neither announces it again nor resolves it while it fires, whether its container is
//! injected (not in the template: no `fieldPath`) or declared, and whether the workload has
//! tracked Pods; once it ends, one `Resolved` follows. `tests/e2e_operator/workload_events.rs`
//! proves the same on kube-apiserver.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use sidecar_watch_testkit::pod::{Container, PodBuilder};

use crate::api::{PolicySpec, SlimPod};
use crate::engine::{CompiledPolicy, ContainerKind, PodView, PolicyRef};
use crate::engine::{WorkloadId, WorkloadKind};
use crate::events::{spawn_publisher, EventCommand, EventSink};
use crate::index::Writes;
use crate::index::{Condition, CreateFailures, Index, IndexResource, PolicyEntry};
use crate::leadership::{self, RoleSender};
use crate::metrics::Metrics;
use crate::test_api::{self, ApiServer};

/// Where the publisher lists the operator's Events, and where it creates the workload's.
const ALL_EVENTS: &str = "/apis/events.k8s.io/v1/events";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
/// Long enough for a repeat, a due batch and the sweep of gone Pods (paused time: no wait).
const QUIET: Duration = Duration::from_secs(600);

fn web() -> WorkloadId {
    WorkloadId { namespace: "shop".into(), kind: WorkloadKind::Deployment, name: "web".into() }
}

fn ago(minutes: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_mins(minutes)
}

/// Deployment `web` cannot create Pods: Istio's injector is down. `kind`: where its template
/// declares `istio-proxy` (`None`: it does not, the injector adds it).
fn injector_down(kind: Option<ContainerKind>) -> Condition {
    Condition {
        container: "istio-proxy".into(),
        container_kind: kind,
        catalog: None,
        since: ago(60),
        latest: ago(1),
        message: "Deployment/web cannot create Pods: the injector is down. Fix: start istiod".into(),
        object_uid: Some("deploy-uid".into()),
        template_labels: Some([("app".to_string(), "web".to_string())].into()),
    }
}

/// A healthy Pod of `web`'s ReplicaSet, created before the failure (an old revision's).
fn old_pod(i: usize) -> PodView {
    let pod = PodBuilder::new("shop", &format!("web-7d9f8c6b5-{i}"))
        .uid(format!("uid-{i}"))
        .created("2026-01-01T00:00:00Z")
        .label("app", "web")
        .label("pod-template-hash", "7d9f8c6b5")
        .owner("ReplicaSet", "web-7d9f8c6b5")
        .native_sidecar(Container::istio_proxy())
        .container(Container::new("app", "shop/web:1.0"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

/// An index where `web`'s injection failure fires under policy `shop/mesh`, with two tracked
/// Pods of `web` if `pods`.
fn firing(kind: Option<ContainerKind>, pods: bool) -> Arc<Index> {
    let index = Index::new();
    let spec: PolicySpec = serde_json::from_value(
        json!({"rules": {"injectionFailed": {"for": "1m"}, "misconfiguration": {"enabled": false}}}),
    )
    .expect("a spec");
    let policy = PolicyRef::namespaced("shop", "mesh");
    index.apply_policy(policy.clone(), PolicyEntry::new(CompiledPolicy::compile(policy, &spec)), Timestamp::now());
    for i in (0..2).filter(|_| pods) {
        assert!(index.apply_pod(old_pod(i), Timestamp::now()).transitions.is_empty(), "a healthy Pod");
    }
    let outcome = IndexResource::<CreateFailures>::apply(&index, (web(), injector_down(kind)), Timestamp::now());
    assert_eq!(outcome.transitions.len(), 1, "{outcome:?}");
    Arc::new(index)
}

/// A replica that leads and is synced, publishing on the in-process API.
struct Leader {
    sink: EventSink,
    task: tokio::task::JoinHandle<()>,
    server: ApiServer,
    _role: RoleSender,
}

impl Leader {
    /// Starts a publisher that leads at once; it first lists the operator's Events, answered
    /// with `published`.
    async fn start(index: &Arc<Index>, published: Vec<Value>) -> Leader {
        let (client, mut server) = test_api::client();
        let (role_tx, role) = leadership::channel();
        let (sink, task) = spawn_publisher(client, "op".into(), Metrics::new(), index.clone(), role);
        leadership::set_leader(&role_tx, true);
        leadership::set_synced(&role_tx);
        let call = server.next().await;
        assert_eq!((call.parts.method.as_str(), call.parts.uri.path()), ("GET", ALL_EVENTS), "{}", call.parts.uri);
        call.respond_json(
            200,
            &json!({"apiVersion": "events.k8s.io/v1", "kind": "EventList", "metadata": {}, "items": published}),
        );
        Leader { sink, task, server, _role: role_tx }
    }

    /// Answers the read of Deployment `web` its Warning waits for (by the ReplicaSet UID the
    /// alert's object UID stands for, [`crate::events::owners`]).
    async fn answer_deployment_read(&mut self) {
        let call = self.server.next().await;
        call.expect("GET", "/apis/apps/v1/namespaces/shop/deployments/web", &[]);
        call.respond_json(200, &json!({"metadata": {"name": "web", "namespace": "shop", "uid": "deploy-uid"}}));
    }

    /// Expects the create of an Event with `reason` about Deployment `web`; returns it as
    /// the API server keeps it.
    async fn expect_published(&mut self, reason: &str) -> Value {
        let call = self.server.next().await;
        call.expect("POST", EVENTS, &[]);
        let body = call.json();
        assert_eq!((body["reason"].as_str(), body["regarding"]["kind"].as_str()), (Some(reason), Some("Deployment")));
        assert_eq!(body["regarding"]["uid"], "deploy-uid");
        call.respond_json(201, &body);
        body
    }

    /// Stops it: no sink left, so its publisher drains and ends.
    async fn stop(self) {
        drop(self.sink);
        tokio::time::timeout(QUIET, self.task).await.expect("the publisher ends").expect("no panic");
    }
}

/// The whole story for one container kind, with or without tracked Pods of the workload.
async fn a_restart_neither_repeats_nor_resolves(kind: Option<ContainerKind>, pods: bool, field_path: Value) {
    let index = firing(kind, pods);
    let mut first = Leader::start(&index, Vec::new()).await;
    first.answer_deployment_read().await;
    let warning = first.expect_published("SidecarInjectionFailed").await;
    assert_eq!(warning["regarding"]["fieldPath"], field_path);
    first.server.expect_silence(QUIET).await;
    first.stop().await;

    // The restart: the Warning stands and the alert still fires.
    let mut second = Leader::start(&index, vec![warning]).await;
    second.server.expect_silence(QUIET).await;

    // It ends: one `Resolved`, about the object of the Warning.
    let outcome = IndexResource::<CreateFailures>::delete(index.as_ref(), &web(), Timestamp::now());
    let [resolved] = <[_; 1]>::try_from(outcome.transitions).expect("one transition");
    second.sink.send(EventCommand::Transition(resolved));
    let event = second.expect_published("SidecarInjectionFailedResolved").await;
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("SidecarInjectionFailed on sidecar container istio-proxy of Deployment/web resolved"),
        "{note}"
    );
    assert_eq!(event["regarding"]["fieldPath"], field_path);
    second.server.expect_silence(QUIET).await;
    second.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_injected_container_is_not_announced_again_after_a_restart() {
    a_restart_neither_repeats_nor_resolves(None, false, Value::Null).await;
}

#[tokio::test(start_paused = true)]
async fn an_injected_container_with_tracked_pods_is_not_resolved_by_a_restart() {
    a_restart_neither_repeats_nor_resolves(None, true, Value::Null).await;
}

#[tokio::test(start_paused = true)]
async fn a_declared_container_is_not_announced_again_after_a_restart() {
    let native = json!("spec.template.spec.initContainers{istio-proxy}");
    a_restart_neither_repeats_nor_resolves(Some(ContainerKind::RestartableInit), true, native).await;
    let regular = json!("spec.template.spec.containers{istio-proxy}");
    a_restart_neither_repeats_nor_resolves(Some(ContainerKind::Regular), false, regular).await;
}

/// A Warning that stood when the alert cleared while nobody led: the next leader resolves
/// it once, naming the container its Warning named.
#[tokio::test(start_paused = true)]
async fn a_warning_whose_alert_cleared_meanwhile_is_resolved_once() {
    let index = firing(Some(ContainerKind::Regular), true);
    let mut first = Leader::start(&index, Vec::new()).await;
    first.answer_deployment_read().await;
    let warning = first.expect_published("SidecarInjectionFailed").await;
    first.stop().await;
    IndexResource::<CreateFailures>::delete(index.as_ref(), &web(), Timestamp::now());
    let mut second = Leader::start(&index, vec![warning]).await;
    let event = second.expect_published("SidecarInjectionFailedResolved").await;
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("SidecarInjectionFailed on sidecar container istio-proxy of Deployment/web resolved"),
        "{note}"
    );
    second.server.expect_silence(QUIET).await;
    second.stop().await;
}
