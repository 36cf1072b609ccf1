//! Which `FailedCreate` Events are believed, what they become, and what is remembered.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::controller::initial_list::{watch_events, Plan, Size, Strategy};
use crate::engine::{ContainerKind, WorkloadKind};
use crate::injection_failure::declared;
use kube::Api;
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
    let (mut known, metrics, now) = (Known::new(Shard::default()), Metrics::new(), at("2026-01-01T10:02:00Z"));
    let e1 = event("e1", "shop", "shop", UNREACHABLE);
    assert!(known.applied(&e1, &metrics, now).is_empty(), "nothing believed before its object is read");
    assert_eq!(std::mem::take(&mut known.to_read), [Request::new(rs(), false)]);
    let ops = known.read(state(true, "2026-01-01T10:02:00Z"), now);
    assert_eq!(applied(&ops), [("Deployment/web".to_string(), at("2026-01-01T10:00:00Z"))]);
    let ops = known.applied(&again(e1, "2026-01-01T10:01:30Z"), &metrics, now);
    assert!(ops.is_empty() && known.to_read.is_empty(), "{ops:?}");
    let ops = known.applied(&event("e2", "shop", "shop", UNREACHABLE), &metrics, now);
    assert!(ops.is_empty() && known.to_read.is_empty(), "{ops:?}");
}

/// The failing object's own state ends the failure though its Events stay: once a read finds
/// it needing no Pods (scaled to zero after `rollout undo`, its replicas created), the
/// workload's condition goes; its Events up to then are not believed again, and a failure
/// after that clear starts the `for` clock anew, at its own time.
#[test]
fn the_object_that_failed_resolves_it_and_a_new_failure_starts_the_clock_again() {
    let (mut known, metrics) = (Known::new(Shard::default()), Metrics::new());
    let e1 = event("e1", "shop", "shop", UNREACHABLE);
    known.applied(&e1, &metrics, at("2026-01-01T10:02:00Z"));
    known.to_read.clear();
    assert_eq!(applied(&known.read(state(true, "2026-01-01T10:02:00Z"), at("2026-01-01T10:02:00Z"))).len(), 1);
    // The round re-reads it: scaled to zero.
    known.recheck();
    assert_eq!(std::mem::take(&mut known.to_read), [Request::new(rs(), true)]);
    assert!(deleted(&known.read(state(false, "2026-01-01T10:03:00Z"), at("2026-01-01T10:03:00Z"))));
    // Listed again (a relist), or updated with a failure before the clear: not believed.
    assert!(known.applied(&e1, &metrics, at("2026-01-01T10:04:00Z")).is_empty());
    let e1 = again(e1, "2026-01-01T10:02:59Z");
    assert!(known.applied(&e1, &metrics, at("2026-01-01T10:04:00Z")).is_empty());
    known.recheck();
    assert!(known.to_read.is_empty(), "a cleared object is not read again");
    // It fails again after the clear (scaled up again): believed at once, since then.
    let ops = known.applied(&again(e1, "2026-01-01T10:05:00Z"), &metrics, at("2026-01-01T10:05:01Z"));
    assert_eq!(applied(&ops), [("Deployment/web".to_string(), at("2026-01-01T10:05:00Z"))]);
    // Gone (or made again with another UID): resolved, never believed again.
    let ops = known
        .read(Read { lookup: rs(), sent_at: at("2026-01-01T10:06:00Z"), found: Ok(None) }, at("2026-01-01T10:06:00Z"));
    assert!(deleted(&ops));
    let ops = known.applied(
        &again(event("e1", "shop", "shop", UNREACHABLE), "2026-01-01T10:07:00Z"),
        &metrics,
        at("2026-01-01T10:07:00Z"),
    );
    assert!(ops.is_empty() && known.to_read.is_empty());
}

/// A namespace over its share of Events is cut, each cut counted; another namespace's
/// Events are still kept and read.
#[test]
fn events_are_capped_per_namespace() {
    let (mut known, metrics, now) = (Known::new(Shard::default()), Metrics::new(), at("2026-01-01T10:02:00Z"));
    for i in 0..MAX_EVENTS_PER_NAMESPACE + 3 {
        let mut flood = event(&format!("f{i}"), "flood", "flood", UNREACHABLE);
        flood.involved_object.name = Some(format!("rs-{i}"));
        known.applied(&flood, &metrics, now);
    }
    assert_eq!(metrics.limited.with_label_values(&[LIMIT]).get(), 3);
    assert_eq!(known.to_read.len(), MAX_EVENTS_PER_NAMESPACE);
    known.to_read.clear();
    known.applied(&event("e1", "shop", "shop", UNREACHABLE), &metrics, now);
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
    let (mut known, metrics, now) = (Known::new(Shard::default()), Metrics::new(), at("2026-01-01T10:02:00Z"));
    known.applied(&event("e1", "shop", "shop", UNREACHABLE), &metrics, now);
    known.applied(&event("e2", "shop", "shop", UNREACHABLE), &metrics, now);
    assert_eq!(applied(&known.read(state(true, "2026-01-01T10:02:00Z"), now)).len(), 1);
    assert!(known.deleted(&event("e1", "shop", "shop", UNREACHABLE), now).is_empty(), "e2 still tells of it");
    assert!(deleted(&known.deleted(&event("e2", "shop", "shop", UNREACHABLE), now)));
    assert!(known.deleted(&event("e3", "shop", "shop", UNREACHABLE), now).is_empty(), "never known");
    known.applied(&event("e4", "shop", "shop", UNREACHABLE), &metrics, now);
    known.relisting = Some(HashSet::new());
    let ops = known.relisted(&Some("shop".into()), 4, now);
    assert!(matches!(ops.as_slice(), [Op::Relisted { seen, source: 4, .. }] if seen.is_empty()));
    assert!(known.events.is_empty() && known.objects.is_empty());
}

/// After a restart, readiness must not come before the conditions the listed Events make: the
/// relist is held until every object they name has been read (or its reads all failed).
#[test]
fn a_relist_is_held_until_the_objects_it_names_are_read() {
    let (mut known, metrics, now) = (Known::new(Shard::default()), Metrics::new(), at("2026-01-01T10:02:00Z"));
    known.relisting = Some(HashSet::new());
    known.applied(&event("e1", "shop", "shop", UNREACHABLE), &metrics, now);
    assert!(known.relisted(&Some("shop".into()), 4, now).is_empty(), "the object is not read yet");
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

/// A read answered after its request finds the object needing no Pods: a failure between
/// the request and the answer is after the clear, so it is believed, since its own time.
#[test]
fn a_clear_counts_from_when_the_read_was_sent() {
    let (mut known, metrics) = (Known::new(Shard::default()), Metrics::new());
    let e1 = event("e1", "shop", "shop", UNREACHABLE);
    known.applied(&e1, &metrics, at("2026-01-01T10:02:00Z"));
    known.read(state(true, "2026-01-01T10:02:00Z"), at("2026-01-01T10:02:00Z"));
    assert!(deleted(&known.read(state(false, "2026-01-01T10:03:00Z"), at("2026-01-01T10:03:08Z"))));
    let ops = known.applied(&again(e1, "2026-01-01T10:03:05Z"), &metrics, at("2026-01-01T10:03:09Z"));
    assert_eq!(applied(&ops), [("Deployment/web".to_string(), at("2026-01-01T10:03:05Z"))]);
}

/// The watch loop against the in-process API, in real time (the clock the Events' times are
/// compared with is the wall clock): an Event about an object read recently, updated after
/// the loop sat idle, starts its `for` clock at its own time, not at when the loop last woke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_a_quiet_spell_starts_its_clock_at_its_own_time() {
    let (client, mut server) = crate::test_api::client();
    let (tx, mut changes) = mpsc::channel(16);
    let plan = Plan { strategy: Strategy::Paginated, deadline: Duration::from_secs(60) };
    let api = Api::namespaced(client.clone(), "shop");
    let stream = watch_events(api, "events", Size::Large, Some(FIELDS), plan, Metrics::new());
    tokio::spawn(watch(stream, client, Some("shop".into()), Shard::default(), 0, tx, Metrics::new()));
    let events = "/api/v1/namespaces/shop/events";
    let list = server.next().await;
    list.expect("GET", events, &[("fieldSelector", "reason%3DFailedCreate"), ("limit", "500")]);
    list.respond_json(
        200,
        &serde_json::json!({"kind": "EventList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"}, "items": []}),
    );
    let watch_call = server.next().await;
    assert_eq!(watch_call.parts.uri.path(), events);
    let stream = watch_call.respond_stream(200, "application/json");
    let send = |kind: &str, event: &Event| {
        let mut line = serde_json::to_vec(&serde_json::json!({"type": kind, "object": event})).expect("JSON");
        line.push(b'\n');
        stream.unbounded_send(Ok(line.into())).expect("the watch is open");
    };
    assert!(matches!(changes.recv().await, Some(Change::CreateFailure(Op::Relisted { .. }))));
    // An old failure of a ReplicaSet since scaled to zero (`rollout undo`): not believed.
    let mut failed = event("e1", "shop", "shop", UNREACHABLE);
    failed.metadata.resource_version = Some("2".into());
    send("ADDED", &failed);
    let read = server.next().await;
    assert_eq!(read.parts.uri.path(), "/apis/apps/v1/namespaces/shop/replicasets/web-7d9f8c6b5");
    read.respond_json(
        200,
        &serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f8c6b5", "namespace": "shop", "uid": "rs-uid"},
        "spec": {"replicas": 0}}),
    );
    // Idle: no Event, no read, the next re-read round 15 s away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Scaled up again, it fails again: its Event updated, whole seconds as the API writes it.
    let failed_at = Timestamp::from_second(Timestamp::now().as_second()).expect("a time");
    failed.last_timestamp = Some(Time(failed_at));
    failed.metadata.resource_version = Some("3".into());
    send("MODIFIED", &failed);
    let Some(Change::CreateFailure(Op::Applied { object: (workload, condition), .. })) = changes.recv().await else {
        panic!("the condition of ReplicaSet web-7d9f8c6b5");
    };
    assert_eq!((workload.to_string(), condition.since), ("ReplicaSet/web-7d9f8c6b5".to_string(), failed_at));
}
