//! Which `FailedCreate` Events are believed, what they become, and what is remembered.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::engine::ContainerKind;
use crate::failed_create::{declared, ReadObject};
use serde_json::Value;
use std::collections::BTreeMap;

const UNREACHABLE: &str = "Error creating: Internal error occurred: failed calling webhook \
    \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \
    \"https://istiod.istio-system.svc:443/inject?timeout=10s\": dial tcp 10.96.0.10:443: connect: connection refused";

fn event(uid: &str, namespace: &str, object_namespace: &str, message: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!("web-7d9f8c6b5.{uid}")),
            namespace: Some(namespace.into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("ReplicaSet".into()),
            name: Some("web-7d9f8c6b5".into()),
            namespace: Some(object_namespace.into()),
            uid: Some("rs-uid".into()),
            ..ObjectReference::default()
        },
        reason: Some("FailedCreate".into()),
        message: Some(message.into()),
        first_timestamp: Some(Time("2026-01-01T10:00:00Z".parse().expect("time"))),
        last_timestamp: Some(Time("2026-01-01T10:01:00Z".parse().expect("time"))),
        ..Event::default()
    }
}

fn web() -> WorkloadId {
    WorkloadId { namespace: "shop".into(), kind: "Deployment".into(), name: "web".into() }
}

/// A sidecar's failure about an object of the Event's namespace is believed; one about
/// another namespace's object (a tenant forging an Event about somebody else's workload), an
/// unrelated cause or another reason is not.
#[test]
fn only_a_sidecars_failure_in_the_events_own_namespace_is_read() {
    let (failure, involved) = sidecar_failure(&event("e1", "shop", "shop", UNREACHABLE)).expect("ours");
    assert_eq!((failure.container.as_str(), involved.kind.as_str()), ("istio-proxy", "ReplicaSet"));
    assert!(sidecar_failure(&event("e2", "tenant", "shop", UNREACHABLE)).is_none(), "another namespace's object");
    let quota = "Error creating: pods \"web-1\" is forbidden: exceeded quota: compute, requested: cpu=2";
    assert!(sidecar_failure(&event("e3", "shop", "shop", quota)).is_none(), "not a sidecar's cause");
    let mut other = event("e4", "shop", "shop", UNREACHABLE);
    other.reason = Some("FailedDelete".into());
    assert!(sidecar_failure(&other).is_none());
    let huge = format!("{UNREACHABLE}{}", "x".repeat(1 << 20));
    assert!(sidecar_failure(&event("e5", "shop", "shop", &huge)).is_some(), "a long message is read from its start");
}

/// The condition names the workload, the cause and the fix; its clock runs from the
/// Event's first time, and its last time bounds the Pods that resolve it.
#[test]
fn a_condition_carries_the_events_times_and_the_templates_labels() {
    let event = event("e1", "shop", "shop", UNREACHABLE);
    let (failure, _) = sidecar_failure(&event).expect("ours");
    let object = ReadObject {
        workload: web(),
        uid: "deploy-uid".into(),
        template_labels: BTreeMap::from([("app".into(), "web".into())]),
        declared: vec![("istio-proxy".into(), ContainerKind::RestartableInit)],
    };
    let condition = condition_of(&event, &failure, &object, Timestamp::now());
    assert_eq!(condition.since, "2026-01-01T10:00:00Z".parse::<Timestamp>().expect("time"));
    assert_eq!(condition.latest, "2026-01-01T10:01:00Z".parse::<Timestamp>().expect("time"));
    assert_eq!(condition.container_kind, Some(ContainerKind::RestartableInit));
    assert_eq!(condition.object_uid.as_deref(), Some("deploy-uid"));
    assert!(condition.message.starts_with("Deployment/web cannot create Pods: "), "{}", condition.message);
    assert!(condition.message.contains("namespace.sidecar-injector.istio.io"), "{}", condition.message);
}

/// Where a template declares a container: a plain init container, a native sidecar, a
/// regular container, or nowhere (injected).
#[test]
fn the_template_says_where_a_container_is_declared() {
    let spec = serde_json::json!({
        "initContainers": [{"name": "istio-init"}, {"name": "proxy", "restartPolicy": "Always"}],
        "containers": [{"name": "app"}],
    });
    let expected = [
        ("istio-init", ContainerKind::Init),
        ("proxy", ContainerKind::RestartableInit),
        ("app", ContainerKind::Regular),
    ];
    assert_eq!(declared(&spec), expected.map(|(name, kind)| (name.to_string(), kind)));
    assert_eq!(declared(&Value::Null), []);
}

/// A workload's condition goes with the last Event that told of it, and a relist forgets
/// the Events it did not list.
#[test]
fn a_workload_is_forgotten_with_its_last_event() {
    let mut known = Known::default();
    known.events.insert("e1".into(), web());
    known.events.insert("e2".into(), web());
    assert!(known.deleted(&event("e1", "shop", "shop", UNREACHABLE)).is_empty(), "e2 still tells of it");
    let ops = known.deleted(&event("e2", "shop", "shop", UNREACHABLE));
    assert!(matches!(ops.as_slice(), [Op::Deleted { key, .. }] if *key == web()));
    assert!(known.deleted(&event("e3", "shop", "shop", UNREACHABLE)).is_empty(), "never known");
    known.events.insert("e4".into(), web());
    known.relisting = Some(HashSet::new());
    let ops = known.relisted(&Some("shop".into()), 4);
    assert!(matches!(ops.as_slice(), [Op::Relisted { seen, source: 4, .. }] if seen.is_empty()));
    assert!(known.events.is_empty());
}
