//! kube-runtime watchers that turn API events into typed [`Change`]s for the reconciler:
//! one spawn line per watch, one generic [`forward`] for all of them.
//!
//! Reconnects, bookmarks, `410 Gone` relists and backoff are kube-runtime's, the initial list
//! strategy and its fall back are in [`initial_list`]; this module only
//! converts objects (Pods into compact views right away, policies into compiled entries)
//! and reports relists so the index can forget what disappeared meanwhile.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Client, Resource};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::create_failures::{self, FailedCreateEvents};
use super::initial_list::{self, Plan, Size};
use super::queue::{Change, Op};
use crate::api::{decode, ClusterSidecarPolicy, Lenient, LenientEvent, LenientPod, SidecarPolicy};
use crate::engine::{pod_workload, CompiledPolicy, NamespaceMeta, PodUidBuf, PolicyRef, SpecError};
use crate::index::shard::Shard;
use crate::index::{Index, Namespaces, Pods, Policies, PolicyEntry, PolicyScope, Watched};
use crate::metrics::{Metrics, Undecodables};

/// What the operator watches.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    /// Namespaces to watch Pods and SidecarPolicies in; empty means all.
    pub(crate) namespaces: Vec<String>,
    /// This replica's shard.
    pub(crate) shard: Shard,
}

impl Scope {
    fn namespace_list(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        }
    }

    /// How many initial lists must finish before the operator is ready.
    pub(crate) fn initial_lists(&self) -> usize {
        // Pods, SidecarPolicies and FailedCreate Events per namespace (a workload that cannot
        // create Pods must be known before a new leader judges what is new or resolved),
        // ClusterSidecarPolicies, Namespaces.
        3 * self.namespace_list().len() + 2
    }
}

/// Starts every watcher, getting its initial state as `plan` says; each sends into `tx`
/// until `tx` closes.
pub(crate) fn spawn_watchers(
    client: Client,
    scope: Scope,
    plan: Plan,
    tx: mpsc::Sender<Change>,
    metrics: Metrics,
    index: Arc<Index>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    // Each watch's number: its first list counts once towards readiness.
    let mut sources = 0..;
    let mut source = || sources.next().unwrap_or_default();
    for namespace in scope.namespace_list() {
        let (pods, policies) = pods_and_policies(&client, &namespace);
        let pods = initial_list::watch_events(pods, "pods", Size::Large, None, plan, metrics.clone());
        let policies =
            initial_list::watch_events(policies, "sidecarpolicies", Size::Small, None, plan, metrics.clone());
        let policy_scope = PolicyScope { cluster: false, namespace: namespace.clone() };
        let pod_op = pod_op(scope.shard, metrics.clone(), index.clone());
        tasks.push(tokio::spawn(forward(pods, tx.clone(), source(), namespace.clone(), pod_op, pod_deleted)));
        tasks.push(tokio::spawn(forward(
            policies,
            tx.clone(),
            source(),
            policy_scope,
            policy_op(false, metrics.clone()),
            policy_deleted(false),
        )));
        let events = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        // Events are many in a busy cluster: listed in pages like Pods, filtered by the server.
        let fields = Some(create_failures::FIELDS);
        let events = initial_list::watch_events(events, "events", Size::Large, fields, plan, metrics.clone());
        let on_event = event_op(metrics.clone());
        tasks.push(tokio::spawn(forward(events, tx.clone(), source(), namespace, on_event, event_deleted)));
    }
    let cluster_policies: Api<Lenient<DynamicObject>> =
        Api::all_with(client.clone(), &ApiResource::erase::<ClusterSidecarPolicy>(&()));
    let cluster_policies = initial_list::watch_events(
        cluster_policies,
        "clustersidecarpolicies",
        Size::Small,
        None,
        plan,
        metrics.clone(),
    );
    let cluster_scope = PolicyScope { cluster: true, namespace: None };
    let namespaces: Api<Lenient<PartialObjectMeta<Namespace>>> = Api::all(client);
    let namespace_op = namespace_op(&metrics);
    let cluster_policy_op = policy_op(true, metrics.clone());
    let namespaces = initial_list::watch_events(namespaces, "namespaces", Size::Small, None, plan, metrics);
    tasks.push(tokio::spawn(forward(
        cluster_policies,
        tx.clone(),
        source(),
        cluster_scope,
        cluster_policy_op,
        policy_deleted(true),
    )));
    tasks.push(tokio::spawn(forward(namespaces, tx, source(), (), namespace_op, namespace_deleted)));
    tasks
}

/// The Pod and SidecarPolicy APIs of `namespace` (`None`: every namespace).
fn pods_and_policies(client: &Client, namespace: &Option<String>) -> (Api<LenientPod>, Api<Lenient<DynamicObject>>) {
    // Pods are decoded slim (only the fields the engine reads are parsed into memory) and
    // one object at a time: an unreadable Pod is skipped, not the list it came in.
    let resource = ApiResource::erase::<SidecarPolicy>(&());
    match namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced_with(client.clone(), ns, &resource)),
        None => (Api::all(client.clone()), Api::all_with(client.clone(), &resource)),
    }
}

/// Forwards one watch stream of kind `K` to the reconciler: every applied or deleted object
/// as it comes, and after each (re)list the keys it listed, so that what vanished meanwhile
/// is forgotten. `on_apply` returns `None` for objects this replica ignores (another
/// shard's Pods), and may report an object that cannot be read as deleted.
async fn forward<K: Watched, T>(
    stream: impl Stream<Item = watcher::Event<T>>,
    tx: mpsc::Sender<Change>,
    source: usize,
    scope: K::Scope,
    mut on_apply: impl FnMut(T, Instant) -> Option<Op<K>>,
    on_delete: impl Fn(T) -> Op<K>,
) where
    Change: From<Op<K>>,
{
    futures::pin_mut!(stream);
    let mut seen = HashSet::new();
    while let Some(event) = stream.next().await {
        let received = Instant::now();
        let op = match event {
            watcher::Event::Init => {
                seen.clear();
                continue;
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let Some(op) = on_apply(object, received) else { continue };
                op
            }
            watcher::Event::Delete(object) => on_delete(object),
            watcher::Event::InitDone => Op::Relisted { source, scope: scope.clone(), seen: std::mem::take(&mut seen) },
        };
        match &op {
            Op::Applied { object, .. } => {
                seen.insert(K::key(object));
            }
            Op::Deleted { key, .. } => {
                seen.remove(key);
            }
            Op::Relisted { .. } => {}
        }
        if tx.send(Change::from(op)).await.is_err() {
            return;
        }
    }
}

/// Turns a watched Pod into a change: its compact view, or its deletion when it cannot be
/// decoded (forgetting what an earlier, readable version of it said) or when its workload
/// belongs to another shard.
fn pod_op(shard: Shard, metrics: Metrics, index: Arc<Index>) -> impl FnMut(LenientPod, Instant) -> Option<Op<Pods>> {
    let mut undecodable = Undecodables::new("Pod", metrics);
    move |pod, received| {
        let uid = pod.metadata_uid();
        if let LenientPod::Object(readable) = &pod {
            if shard.count > 1 && !owns_pod(shard, &readable.metadata) {
                // A Pod whose owner or labels changed (orphaned, adopted, relabelled) moves
                // to another shard: this one forgets it. Sent for every Pod it does not own,
                // as whether an earlier change of it is still queued is not known here; the
                // index ignores the deletion of a Pod it never held.
                let namespace = readable.metadata.namespace.clone().unwrap_or_default();
                return Some(Op::Deleted { namespace, key: PodUidBuf::parse(&uid) });
            }
        }
        match pod {
            LenientPod::Object(pod) => Some(Op::Applied { object: index.view_of(&pod), received }),
            LenientPod::Undecodable(bad) => {
                undecodable.report(&bad);
                let namespace = bad.metadata.namespace.clone().unwrap_or_default();
                (!uid.is_empty()).then(|| Op::Deleted { namespace, key: PodUidBuf::parse(&uid) })
            }
        }
    }
}

/// Turns a watched `FailedCreate` Event into a change ([`create_failures::event_op`]), or
/// into its deletion when it cannot be decoded: a forged Event (a timestamp past year 9999,
/// a field of the wrong type) is skipped and counted, never the list or watch it came in,
/// which readiness waits for.
fn event_op(metrics: Metrics) -> impl FnMut(LenientEvent, Instant) -> Option<Op<FailedCreateEvents>> {
    let mut undecodable = Undecodables::new("Event", metrics);
    move |event, received| match event {
        LenientEvent::Object(event) => create_failures::event_op(*event, received),
        LenientEvent::Undecodable(bad) => {
            undecodable.report(&bad);
            let uid = bad.metadata.uid.clone().unwrap_or_default();
            let namespace = bad.metadata.namespace.clone().unwrap_or_default();
            (!uid.is_empty()).then_some(Op::Deleted { namespace, key: uid })
        }
    }
}

fn event_deleted(event: LenientEvent) -> Op<FailedCreateEvents> {
    let meta = kube::Resource::meta(&event);
    Op::Deleted { namespace: meta.namespace.clone().unwrap_or_default(), key: meta.uid.clone().unwrap_or_default() }
}

/// Whether `shard` owns the Pod of `meta`, by the workload the Pod names (see
/// [`crate::index::shard`]).
fn owns_pod(shard: Shard, meta: &kube::api::ObjectMeta) -> bool {
    let name = meta.name.as_deref().unwrap_or_default();
    let (kind, name) = pod_workload(meta).unwrap_or(("Pod", name));
    shard.owns(meta.namespace.as_deref().unwrap_or_default(), kind, name)
}

fn pod_deleted(pod: LenientPod) -> Op<Pods> {
    // Read once here: the queue, the index and the timers carry it as it is.
    let key = PodUidBuf::parse(&pod.metadata_uid());
    Op::Deleted { namespace: kube::Resource::meta(&pod).namespace.clone().unwrap_or_default(), key }
}

/// Turns a policy object into an index entry; a policy that does not even decode becomes
/// an invalid entry naming the field, never an error for the whole watch.
pub fn policy_entry(object: DynamicObject, cluster: bool) -> (PolicyRef, PolicyEntry) {
    let generation = object.metadata.generation;
    let uid = object.metadata.uid.clone();
    let created = object.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let name = object.metadata.name.clone().unwrap_or_default();
    let namespace = object.metadata.namespace.clone();
    let ready_condition = object
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .and_then(|list| list.iter().find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready")))
        .and_then(|c| {
            Some((c.get("status")?.as_str()?.to_string(), c.get("lastTransitionTime")?.as_str()?.to_string()))
        });
    let shard_statuses =
        object.data.pointer("/status/shards").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let value = serde_json::to_value(&object).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    let (policy, compiled) = if cluster {
        match decode::<ClusterSidecarPolicy>(value) {
            Ok(p) => CompiledPolicy::from_cluster_policy(&p),
            Err(e) => (PolicyRef::cluster(name), Err(SpecError::from(e))),
        }
    } else {
        match decode::<SidecarPolicy>(value) {
            Ok(p) => CompiledPolicy::from_sidecar_policy(&p),
            Err(e) => (PolicyRef::namespaced(namespace.unwrap_or_default(), name), Err(SpecError::from(e))),
        }
    };
    let entry = PolicyEntry { generation, uid, ready_condition, shard_statuses, created, ..PolicyEntry::new(compiled) };
    (policy, entry)
}

/// Turns a watched policy into its entry, or, when not even its metadata decodes, into its
/// deletion (counted and logged like an undecodable Pod).
fn policy_op(cluster: bool, metrics: Metrics) -> impl FnMut(Lenient<DynamicObject>, Instant) -> Option<Op<Policies>> {
    let kind = if cluster { "ClusterSidecarPolicy" } else { "SidecarPolicy" };
    let mut undecodable = Undecodables::new(kind, metrics);
    move |object, received| match object {
        Lenient::Object(object) => {
            let (policy, entry) = policy_entry(*object, cluster);
            Some(Op::Applied { object: (policy, Box::new(entry)), received })
        }
        Lenient::Undecodable(bad) => {
            undecodable.report(&bad);
            Some(policy_deleted(cluster)(Lenient::Undecodable(bad)))
        }
    }
}

fn policy_deleted(cluster: bool) -> impl Fn(Lenient<DynamicObject>) -> Op<Policies> {
    move |object| {
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let key = match (cluster, meta.namespace.clone()) {
            (false, Some(ns)) => PolicyRef::namespaced(ns, name),
            _ => PolicyRef::cluster(name),
        };
        Op::Deleted { namespace: key.namespace.clone().unwrap_or_default(), key }
    }
}

/// What the engine reads of a namespace (its labels and the annotations injectors read),
/// with the values of the labels `--namespace-labels` exports: only those are copied for
/// /metrics, cut as the API would have refused them longer, each cut counted.
fn namespace_op(
    metrics: &Metrics,
) -> impl FnMut(Lenient<PartialObjectMeta<Namespace>>, Instant) -> Option<Op<Namespaces>> {
    let exported = metrics.namespace_labels().clone();
    let limited = metrics.limited.with_label_values(&[crate::metrics::NAMESPACE_LABEL_CUT_LIMIT]);
    let mut undecodable = Undecodables::new("Namespace", metrics.clone());
    move |ns, received| {
        let ns = match ns {
            Lenient::Object(ns) => ns,
            Lenient::Undecodable(bad) => {
                undecodable.report(&bad);
                return Some(namespace_deleted(Lenient::Undecodable(bad)));
            }
        };
        let name = ns.metadata.name.unwrap_or_default();
        let labels = ns.metadata.labels.unwrap_or_default();
        let (values, cut) = exported.values(&labels);
        limited.inc_by(u64::from(cut));
        let meta = NamespaceMeta::new(labels, &ns.metadata.annotations.unwrap_or_default()).with_exported(values);
        Some(Op::Applied { object: (name, meta), received })
    }
}

fn namespace_deleted(ns: Lenient<PartialObjectMeta<Namespace>>) -> Op<Namespaces> {
    let name = ns.meta().name.clone().unwrap_or_default();
    Op::Deleted { namespace: name.clone(), key: name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::shard::shard_of;
    use serde_json::json;

    fn pod(owner: Option<&str>) -> LenientPod {
        let mut meta = json!({"name": "web-7d9f8b6c5-x2x9z", "namespace": "team-a", "uid": "u-1"});
        if let Some(hash) = owner {
            meta["labels"] = json!({"pod-template-hash": hash});
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("web-{hash}"), "uid": "rs-1", "controller": true}]);
        }
        // Decoded as the watch decodes it: from the text (a raw value per Pod).
        serde_json::from_str(&json!({"metadata": meta}).to_string()).expect("a Pod")
    }

    /// The Pod of a Deployment is on its Deployment's shard; once orphaned (its labels
    /// changed, say) it is its own workload, and the shard it left forgets it.
    #[test]
    fn a_pod_belongs_to_its_workloads_shard_and_leaves_it_when_orphaned() {
        let owned_by_deployment = shard_of("team-a", "Deployment", "web", 3);
        let on_its_own = shard_of("team-a", "Pod", "web-7d9f8b6c5-x2x9z", 3);
        assert_ne!(owned_by_deployment, on_its_own, "pick names whose shards differ");
        let shard = Shard { index: owned_by_deployment, count: 3 };
        let mut op = pod_op(shard, Metrics::new(), Arc::new(Index::new()));
        let now = Instant::now();
        assert!(matches!(op(pod(Some("7d9f8b6c5")), now), Some(Op::Applied { .. })));
        match op(pod(None), now) {
            Some(Op::Deleted { namespace, key }) => {
                assert_eq!((namespace.as_str(), key), ("team-a", PodUidBuf::parse("u-1")))
            }
            other => panic!("expected the Pod forgotten, got {other:?}"),
        }
        // The shard it moved to takes it; one shard alone keeps every Pod.
        let mut there = pod_op(Shard { index: on_its_own, count: 3 }, Metrics::new(), Arc::new(Index::new()));
        assert!(matches!(there(pod(None), now), Some(Op::Applied { .. })));
        let mut single = pod_op(Shard::default(), Metrics::new(), Arc::new(Index::new()));
        assert!(matches!(single(pod(None), now), Some(Op::Applied { .. })));
        assert!(matches!(single(pod(Some("7d9f8b6c5")), now), Some(Op::Applied { .. })));
    }
}
