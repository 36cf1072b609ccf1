//! Which `FailedCreate` Events are believed, what they become, and what is remembered.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::engine::{ContainerKind, WorkloadKind};
use crate::injection_failure::declared;
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
    WorkloadId { namespace: "shop".into(), kind: WorkloadKind::Deployment, name: "web".into() }
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
        needs_pods: true,
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

fn rs() -> Involved {
    Involved {
        namespace: "shop".into(),
        kind: WorkloadKind::ReplicaSet,
        name: "web-7d9f8c6b5".into(),
        uid: "rs-uid".into(),
    }
}

/// What a read of the ReplicaSet sent at `sent_at` finds: Deployment web, needing Pods or not.
fn state(needs_pods: bool, sent_at: &str) -> Read<Involved> {
    let object = ReadObject {
        workload: web(),
        uid: "deploy-uid".into(),
        template_labels: BTreeMap::new(),
        declared: Vec::new(),
        needs_pods,
    };
    Read { lookup: rs(), sent_at: at(sent_at), found: Ok(Some(object)) }
}

fn at(t: &str) -> Timestamp {
    t.parse().expect("time")
}

/// The same Event with a newer last time and count, as the recorder updates it.
fn again(mut event: Event, last: &str) -> Event {
    event.last_timestamp = Some(Time(at(last)));
    event.count = Some(event.count.unwrap_or(1) + 1);
    event
}

/// What `event` tells, as the watch hands it on.
fn told(event: &Event) -> Told {
    Told::of(event).expect("a sidecar's failure")
}

fn applied(ops: &[Op<CreateFailures>]) -> Vec<(String, Timestamp)> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Applied { object: (w, c), .. } => Some((w.to_string(), c.since)),
            _ => None,
        })
        .collect()
}

fn deleted(ops: &[Op<CreateFailures>]) -> bool {
    matches!(ops, [Op::Deleted { key, .. }] if *key == web())
}

/// An Event costs one read of its object; an update of its count or time costs none, nor
/// does another Event about the same object read recently.
#[test]
fn a_new_count_or_time_makes_no_read() {
    let (metrics, now) = (Metrics::new(), at("2026-01-01T10:02:00Z"));
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    let e1 = event("e1", "shop", "shop", UNREACHABLE);
    assert!(known.applied(told(&e1), now).is_empty(), "nothing believed before its object is read");
    assert_eq!(std::mem::take(&mut known.to_read), [Request::new(rs(), false)]);
    let ops = known.read(state(true, "2026-01-01T10:02:00Z"), now);
    assert_eq!(applied(&ops), [("Deployment/web".to_string(), at("2026-01-01T10:00:00Z"))]);
    let ops = known.applied(told(&again(e1, "2026-01-01T10:01:30Z")), now);
    assert!(ops.is_empty() && known.to_read.is_empty(), "{ops:?}");
    let ops = known.applied(told(&event("e2", "shop", "shop", UNREACHABLE)), now);
    assert!(ops.is_empty() && known.to_read.is_empty(), "{ops:?}");
}

/// The failing object's own state ends the failure though its Events stay: once a read finds
/// it needing no Pods (scaled to zero after `rollout undo`, its replicas created), the
/// workload's condition goes; its Events up to then are not believed again, and a failure
/// after that clear starts the `for` clock anew, at its own time.
#[test]
fn the_object_that_failed_resolves_it_and_a_new_failure_starts_the_clock_again() {
    let metrics = Metrics::new();
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    let e1 = event("e1", "shop", "shop", UNREACHABLE);
    known.applied(told(&e1), at("2026-01-01T10:02:00Z"));
    known.to_read.clear();
    assert_eq!(applied(&known.read(state(true, "2026-01-01T10:02:00Z"), at("2026-01-01T10:02:00Z"))).len(), 1);
    // The round re-reads it: scaled to zero.
    known.recheck();
    assert_eq!(std::mem::take(&mut known.to_read), [Request::new(rs(), true)]);
    assert!(deleted(&known.read(state(false, "2026-01-01T10:03:00Z"), at("2026-01-01T10:03:00Z"))));
    // Listed again (a relist), or updated with a failure before the clear: not believed.
    assert!(known.applied(told(&e1), at("2026-01-01T10:04:00Z")).is_empty());
    let e1 = again(e1, "2026-01-01T10:02:59Z");
    assert!(known.applied(told(&e1), at("2026-01-01T10:04:00Z")).is_empty());
    known.recheck();
    assert!(known.to_read.is_empty(), "a cleared object is not read again");
    // It fails again after the clear (scaled up again): believed at once, since then.
    let ops = known.applied(told(&again(e1, "2026-01-01T10:05:00Z")), at("2026-01-01T10:05:01Z"));
    assert_eq!(applied(&ops), [("Deployment/web".to_string(), at("2026-01-01T10:05:00Z"))]);
    // Gone (or made again with another UID): resolved, never believed again.
    let ops = known
        .read(Read { lookup: rs(), sent_at: at("2026-01-01T10:06:00Z"), found: Ok(None) }, at("2026-01-01T10:06:00Z"));
    assert!(deleted(&ops));
    let e1 = again(event("e1", "shop", "shop", UNREACHABLE), "2026-01-01T10:07:00Z");
    let ops = known.applied(told(&e1), at("2026-01-01T10:07:00Z"));
    assert!(ops.is_empty() && known.to_read.is_empty());
}

/// A namespace over its share of Events is cut, each cut counted; another namespace's
/// Events are still kept and read.
#[test]
fn events_are_capped_per_namespace() {
    let (metrics, now) = (Metrics::new(), at("2026-01-01T10:02:00Z"));
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    for i in 0..MAX_EVENTS_PER_NAMESPACE + 3 {
        let mut flood = event(&format!("f{i}"), "flood", "flood", UNREACHABLE);
        flood.involved_object.name = Some(format!("rs-{i}"));
        known.applied(told(&flood), now);
    }
    assert_eq!(metrics.limited.with_label_values(&[LIMIT]).get(), 3);
    assert_eq!(known.to_read.len(), MAX_EVENTS_PER_NAMESPACE);
    known.to_read.clear();
    known.applied(told(&event("e1", "shop", "shop", UNREACHABLE)), now);
    assert_eq!(known.to_read, [Request::new(rs(), false)]);
    assert_eq!(metrics.limited.with_label_values(&[LIMIT]).get(), 3);
    // Re-reads are shared in turn: shop's object is in the first round, whatever the flood.
    for i in 0..MAX_EVENTS_PER_NAMESPACE {
        let mut flood = rs();
        (flood.namespace, flood.name) = ("flood".into(), format!("rs-{i}"));
        known.read(Read { lookup: flood, sent_at: now, found: Err("failed".into()) }, now);
    }
    known.read(Read { lookup: rs(), sent_at: now, found: Err("failed".into()) }, now);
    known.to_read.clear();
    known.recheck();
    assert_eq!(known.to_read.len(), RECHECK_READS);
    assert_eq!(known.to_read.iter().filter(|r| r.lookup.namespace == "shop").count(), 1);
}

/// A workload's condition goes with the last Event that told of it, and a relist forgets
/// the Events it did not list.
#[test]
fn a_workload_is_forgotten_with_its_last_event() {
    let (metrics, now) = (Metrics::new(), at("2026-01-01T10:02:00Z"));
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    known.applied(told(&event("e1", "shop", "shop", UNREACHABLE)), now);
    known.applied(told(&event("e2", "shop", "shop", UNREACHABLE)), now);
    assert_eq!(applied(&known.read(state(true, "2026-01-01T10:02:00Z"), now)).len(), 1);
    assert!(known.forget("e1", now).is_empty(), "e2 still tells of it");
    assert!(deleted(&known.forget("e2", now)));
    assert!(known.forget("e3", now).is_empty(), "never known");
    known.applied(told(&event("e4", "shop", "shop", UNREACHABLE)), now);
    let ops = known.relisted(Some("shop".into()), 4, &HashSet::new(), now);
    assert!(matches!(ops.as_slice(), [Op::Relisted { seen, source: 4, .. }] if seen.is_empty()));
    assert!(known.events.is_empty() && known.objects.is_empty());
}

/// After a restart, readiness must not come before the conditions the listed Events make: the
/// relist is held until every object they name has been read (or its reads all failed).
#[test]
fn a_relist_is_held_until_the_objects_it_names_are_read() {
    let (metrics, now) = (Metrics::new(), at("2026-01-01T10:02:00Z"));
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    known.applied(told(&event("e1", "shop", "shop", UNREACHABLE)), now);
    let listed = HashSet::from(["e1".to_string()]);
    assert!(known.relisted(Some("shop".into()), 4, &listed, now).is_empty(), "the object is not read yet");
    assert!(known.release_relist().is_empty());
    let mut ops = known.read(state(true, "2026-01-01T10:02:00Z"), now);
    ops.extend(known.release_relist());
    assert_eq!(applied(&ops).len(), 1);
    assert!(
        matches!(ops.last(), Some(Op::Relisted { seen, source: 4, .. }) if seen.contains(&web())),
        "the relist follows the condition it saw"
    );
    assert!(known.release_relist().is_empty(), "released once");
}

/// With one Events watch per namespace (`--namespace a,b`), a relist of one namespace
/// forgets only that namespace's Events: the other's failure stays believed and read again.
#[test]
fn a_namespaces_relist_keeps_another_namespaces_events() {
    let (metrics, now) = (Metrics::new(), at("2026-01-01T10:02:00Z"));
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    known.applied(told(&event("e1", "shop", "shop", UNREACHABLE)), now);
    known.applied(told(&event("e2", "blog", "blog", UNREACHABLE)), now);
    let ops = known.relisted(Some("blog".into()), 1, &HashSet::new(), now);
    assert!(!known.events.contains_key("e2"), "blog's relist did not list e2");
    assert!(known.events.contains_key("e1"), "shop's Event is not blog's relist's to forget");
    assert!(known.objects.contains_key(&rs()), "shop's ReplicaSet is still read again");
    assert!(matches!(ops.as_slice(), [Op::Relisted { source: 1, scope: Some(s), .. }] if s == "blog"), "{ops:?}");
}

/// Two namespaces' relists held at once are each released, and counted, once their own
/// namespace's objects are read: the second never replaces the first, so readiness comes.
#[test]
fn every_held_relist_is_released_when_its_namespaces_objects_are_read() {
    let (metrics, now) = (Metrics::new(), at("2026-01-01T10:02:00Z"));
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    known.applied(told(&event("e1", "shop", "shop", UNREACHABLE)), now);
    let listed = HashSet::from(["e1".to_string()]);
    assert!(known.relisted(Some("shop".into()), 0, &listed, now).is_empty(), "shop's object is not read yet");
    let blog = known.relisted(Some("blog".into()), 1, &HashSet::new(), now);
    assert!(matches!(blog.as_slice(), [Op::Relisted { source: 1, .. }]), "nothing of blog's waits: {blog:?}");
    let mut ops = known.read(state(true, "2026-01-01T10:02:00Z"), now);
    ops.extend(known.release_relist());
    assert!(
        matches!(ops.last(), Some(Op::Relisted { source: 0, scope: Some(s), seen }) if s == "shop" && seen.contains(&web())),
        "{ops:?}"
    );
    assert!(known.release_relist().is_empty(), "each released once");
}

/// A read answered after its request finds the object needing no Pods: a failure between
/// the request and the answer is after the clear, so it is believed, since its own time.
#[test]
fn a_clear_counts_from_when_the_read_was_sent() {
    let metrics = Metrics::new();
    let mut known = FailedCreates::new(Shard::default(), metrics.clone());
    let e1 = event("e1", "shop", "shop", UNREACHABLE);
    known.applied(told(&e1), at("2026-01-01T10:02:00Z"));
    known.read(state(true, "2026-01-01T10:02:00Z"), at("2026-01-01T10:02:00Z"));
    assert!(deleted(&known.read(state(false, "2026-01-01T10:03:00Z"), at("2026-01-01T10:03:08Z"))));
    let ops = known.applied(told(&again(e1, "2026-01-01T10:03:05Z")), at("2026-01-01T10:03:09Z"));
    assert_eq!(applied(&ops), [("Deployment/web".to_string(), at("2026-01-01T10:03:05Z"))]);
}
