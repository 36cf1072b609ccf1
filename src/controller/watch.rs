//! kube-runtime watchers that turn API events into [`Input`]s for the reconciler.
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

use super::initial_list::{self, Plan, Size};
use crate::api::{decode, ClusterSidecarPolicy, LenientPod, SidecarPolicy};
use crate::engine::{CompiledPolicy, NamespaceMeta, PodView, PolicyRef, SpecError};
use crate::index::shard::Shard;
use crate::index::{Index, PolicyEntry};
use crate::metrics::Metrics;

/// One change for the reconciler.
#[derive(Debug)]
pub(crate) enum Input {
    /// A Pod was created or changed.
    Pod {
        /// The compact view.
        view: PodView,
        /// When the watch event arrived.
        received: Instant,
    },
    /// A Pod was deleted.
    PodDeleted {
        /// Its namespace, whose turn the deletion takes.
        namespace: String,
        /// Its UID.
        uid: String,
    },
    /// A (re)list of Pods finished: forget those not seen.
    PodsListed {
        /// The namespace listed, or every namespace.
        namespace: Option<String>,
        /// UIDs listed.
        seen: HashSet<String>,
    },
    /// A policy was created or changed.
    Policy {
        /// Which policy.
        policy: PolicyRef,
        /// Compiled or invalid; boxed, as policy changes are rare and an input in the
        /// queue would otherwise take its ~300 bytes, not a Pod's ~80.
        entry: Box<PolicyEntry>,
        /// When the watch event arrived.
        received: Instant,
    },
    /// A policy was deleted.
    PolicyDeleted(PolicyRef),
    /// A (re)list of policies finished.
    PoliciesListed {
        /// Cluster-scoped kind or namespaced kind.
        cluster: bool,
        /// The namespace listed (namespaced kind), or every namespace.
        namespace: Option<String>,
        /// Policies listed.
        seen: HashSet<PolicyRef>,
    },
    /// A namespace's labels and the annotations injectors read.
    Namespace {
        /// Its name.
        name: String,
        /// What the engine reads of it.
        meta: NamespaceMeta,
    },
    /// A namespace was deleted.
    NamespaceDeleted(String),
    /// A (re)list of namespaces finished.
    NamespacesListed(HashSet<String>),
}

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
        // Pods and SidecarPolicies per namespace, ClusterSidecarPolicies, Namespaces.
        2 * self.namespace_list().len() + 2
    }
}

/// Starts every watcher, getting its initial state as `plan` says; each sends into `tx`
/// until `tx` closes.
pub(crate) fn spawn_watchers(
    client: Client,
    scope: Scope,
    plan: Plan,
    tx: mpsc::Sender<Input>,
    metrics: Metrics,
    index: Arc<Index>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for namespace in scope.namespace_list() {
        // Decoded slim (only the fields the engine reads are parsed into memory) and one
        // object at a time: an unreadable Pod is skipped, not the list it came in.
        let pods: Api<LenientPod> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let pod_watch =
            watch_pods(pods, plan, namespace.clone(), scope.shard, tx.clone(), metrics.clone(), index.clone());
        tasks.push(tokio::spawn(pod_watch));
        let resource = ApiResource::erase::<SidecarPolicy>(&());
        let policies: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        tasks.push(tokio::spawn(watch_policies(policies, plan, false, namespace, tx.clone(), metrics.clone())));
    }
    let resource = ApiResource::erase::<ClusterSidecarPolicy>(&());
    let cluster_policies: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    tasks.push(tokio::spawn(watch_policies(cluster_policies, plan, true, None, tx.clone(), metrics.clone())));
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    tasks.push(tokio::spawn(watch_namespaces(namespaces, plan, tx, metrics)));
    tasks
}

/// Forwards one watch stream to the reconciler: every applied or deleted object as it comes,
/// and after each (re)list the keys it listed, so that what vanished meanwhile is forgotten.
/// `on_apply` returns `None` for objects this replica ignores (another shard's Pods).
async fn forward<K, Q: Eq + std::hash::Hash>(
    stream: impl Stream<Item = watcher::Event<K>>,
    tx: mpsc::Sender<Input>,
    mut on_apply: impl FnMut(K, Instant) -> Option<(Q, Input)>,
    mut on_delete: impl FnMut(K) -> (Q, Input),
    mut on_listed: impl FnMut(HashSet<Q>) -> Input,
) {
    futures::pin_mut!(stream);
    let mut seen = HashSet::new();
    while let Some(event) = stream.next().await {
        let received = Instant::now();
        let input = match event {
            watcher::Event::Init => {
                seen.clear();
                continue;
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let Some((key, input)) = on_apply(object, received) else { continue };
                seen.insert(key);
                input
            }
            watcher::Event::Delete(object) => {
                let (key, input) = on_delete(object);
                seen.remove(&key);
                input
            }
            watcher::Event::InitDone => on_listed(std::mem::take(&mut seen)),
        };
        if tx.send(input).await.is_err() {
            return;
        }
    }
}

async fn watch_pods(
    api: Api<LenientPod>,
    plan: Plan,
    namespace: Option<String>,
    shard: Shard,
    tx: mpsc::Sender<Input>,
    metrics: Metrics,
    index: Arc<Index>,
) {
    let stream = initial_list::watch_events(api, "pods", Size::Large, plan, metrics.clone());
    // Unreadable Pods already reported (by UID), so that each is logged once, not on every
    // update; bounded, as a tenant can create any number of them.
    let mut reported: HashSet<String> = HashSet::new();
    forward(
        stream,
        tx,
        |pod: LenientPod, received| {
            let uid = pod.metadata_uid();
            if !shard.owns(&uid) {
                return None;
            }
            match pod {
                LenientPod::Pod(pod) => Some((uid, Input::Pod { view: index.view_of(&pod), received })),
                LenientPod::Undecodable(bad) => {
                    metrics.decode_errors.with_label_values(&["Pod"]).inc();
                    if reported.len() >= 10_000 {
                        reported.clear();
                    }
                    if reported.insert(uid.clone()) {
                        tracing::warn!(pod = %bad.key(), error = %bad.error, "Pod cannot be decoded; skipped");
                    }
                    // Forget what an earlier, readable version of it said.
                    let namespace = bad.metadata.namespace.clone().unwrap_or_default();
                    (!uid.is_empty()).then(|| (uid.clone(), Input::PodDeleted { namespace, uid }))
                }
            }
        },
        |pod| {
            let uid = pod.metadata_uid();
            let namespace = kube::Resource::meta(&pod).namespace.clone().unwrap_or_default();
            (uid.clone(), Input::PodDeleted { namespace, uid })
        },
        |seen| Input::PodsListed { namespace: namespace.clone(), seen },
    )
    .await;
}

/// Turns a policy object into an index entry; a policy that does not even decode becomes
/// an invalid entry naming the field, never an error for the whole watch.
pub fn policy_entry(object: DynamicObject, cluster: bool) -> (PolicyRef, PolicyEntry) {
    let generation = object.metadata.generation;
    let uid = object.metadata.uid.clone();
    let created = object.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let name = object.metadata.name.clone().unwrap_or_default();
    let namespace = object.metadata.namespace.clone();
    let spec = object.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
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
    let value = match serde_json::to_value(&object) {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
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
    let compiled = compiled.map(Arc::new);
    let entry =
        PolicyEntry { generation, uid, compiled, spec, ready_condition, shard_statuses, created, held_back: None };
    (policy, entry)
}

fn policy_ref(object: &DynamicObject, cluster: bool) -> PolicyRef {
    let name = object.meta().name.clone().unwrap_or_default();
    match (cluster, object.meta().namespace.clone()) {
        (false, Some(ns)) => PolicyRef::namespaced(ns, name),
        _ => PolicyRef::cluster(name),
    }
}

async fn watch_policies(
    api: Api<DynamicObject>,
    plan: Plan,
    cluster: bool,
    namespace: Option<String>,
    tx: mpsc::Sender<Input>,
    metrics: Metrics,
) {
    let what = if cluster { "clustersidecarpolicies" } else { "sidecarpolicies" };
    let stream = initial_list::watch_events(api, what, Size::Small, plan, metrics);
    forward(
        stream,
        tx,
        |object, received| {
            let (policy, entry) = policy_entry(object, cluster);
            Some((policy.clone(), Input::Policy { policy, entry: Box::new(entry), received }))
        },
        |object| {
            let policy = policy_ref(&object, cluster);
            (policy.clone(), Input::PolicyDeleted(policy))
        },
        |seen| Input::PoliciesListed { cluster, namespace: namespace.clone(), seen },
    )
    .await;
}

async fn watch_namespaces(
    api: Api<PartialObjectMeta<Namespace>>,
    plan: Plan,
    tx: mpsc::Sender<Input>,
    metrics: Metrics,
) {
    let exported = metrics.namespace_labels().clone();
    let limited = metrics.limited.with_label_values(&[crate::metrics::NAMESPACE_LABEL_CUT_LIMIT]);
    let stream = initial_list::watch_events(api, "namespaces", Size::Small, plan, metrics);
    forward(
        stream,
        tx,
        |ns: PartialObjectMeta<Namespace>, _| {
            let name = ns.metadata.name.unwrap_or_default();
            let labels = ns.metadata.labels.unwrap_or_default();
            // Only the allowlisted values are copied for /metrics, cut as the API would
            // have refused them longer.
            let (values, cut) = exported.values(&labels);
            limited.inc_by(u64::from(cut));
            let meta = NamespaceMeta::new(labels, &ns.metadata.annotations.unwrap_or_default()).with_exported(values);
            Some((name.clone(), Input::Namespace { name, meta }))
        },
        |ns| {
            let name = ns.metadata.name.unwrap_or_default();
            (name.clone(), Input::NamespaceDeleted(name))
        },
        Input::NamespacesListed,
    )
    .await;
}
