//! The one way a watch reaches the index: one [`IndexResource`] implementation per watched
//! kind, as Linkerd's policy-controller links each watch to its index.
//!
//! A watcher reports three things about a kind: an object applied, an object deleted, and
//! a (re)list finished (what it did not list vanished meanwhile). Everything the caller must
//! do afterwards is in the [`Outcome`]: a Pod deleted or forgotten returns the cancellation
//! of its timer as a wakeup of `None`, an invalid policy its Event, so that the caller never
//! looks at the kind.

use std::collections::HashSet;
use std::hash::Hash;

use jiff::Timestamp;
use sidecar_watch_engine::{AlertName, NamespaceMeta, PodUid, PodUidBuf, PodView, PolicyRef};

use crate::transitions::InvalidPolicy;
use crate::{Condition, Index, Outcome, PolicyEntry};
use sidecar_watch_engine::WorkloadId;

/// A watched kind: what a watch reports of it.
pub trait Watched {
    /// An object as the index takes it.
    type Object;
    /// What names an object: relists report the keys they listed.
    type Key: Eq + Hash + Clone + std::fmt::Debug;
    /// What one watch of the kind lists (a namespace, or every one).
    type Scope: Clone + std::fmt::Debug;
    /// The key of `object`.
    fn key(object: &Self::Object) -> Self::Key;
    /// The namespace whose share of the work a change of `object` counts against.
    fn namespace(object: &Self::Object) -> &str;
}

/// Pods: compact views by UID, listed per namespace (`None`: every namespace).
#[derive(Debug)]
pub enum Pods {}

/// SidecarPolicies and ClusterSidecarPolicies: compiled entries by reference.
#[derive(Debug)]
pub enum Policies {}

/// Namespaces: what the engine reads of them, by name.
#[derive(Debug)]
pub enum Namespaces {}

/// The controllers' `FailedCreate` Events whose cause is a sidecar's, as the condition of
/// the workload that cannot create Pods (`SidecarInjectionFailed`), by workload.
#[derive(Debug)]
pub enum CreateFailures {}

/// What one policy watch lists.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyScope {
    /// ClusterSidecarPolicies (`true`) or SidecarPolicies.
    pub cluster: bool,
    /// The namespace listed (SidecarPolicies only), or every namespace.
    pub namespace: Option<String>,
}

impl Watched for Pods {
    type Object = PodView;
    type Key = PodUidBuf;
    type Scope = Option<String>;
    fn key(view: &PodView) -> PodUidBuf {
        view.uid().into()
    }
    fn namespace(view: &PodView) -> &str {
        view.namespace().as_str()
    }
}

impl Watched for Policies {
    /// Boxed: policy changes are rare, and a queued change would otherwise take an entry's
    /// ~300 bytes, not a Pod's ~80.
    type Object = (PolicyRef, Box<PolicyEntry>);
    type Key = PolicyRef;
    type Scope = PolicyScope;
    fn key((policy, _): &Self::Object) -> PolicyRef {
        policy.clone()
    }
    fn namespace((policy, _): &Self::Object) -> &str {
        policy.namespace.as_deref().unwrap_or("")
    }
}

impl Watched for Namespaces {
    type Object = (String, NamespaceMeta);
    type Key = String;
    type Scope = ();
    fn key((name, _): &Self::Object) -> String {
        name.clone()
    }
    fn namespace((name, _): &Self::Object) -> &str {
        name
    }
}

impl Watched for CreateFailures {
    type Object = (WorkloadId, Condition);
    type Key = WorkloadId;
    /// The namespace listed, or every one.
    type Scope = Option<String>;
    fn key((workload, _): &Self::Object) -> WorkloadId {
        workload.clone()
    }
    fn namespace((workload, _): &Self::Object) -> &str {
        &workload.namespace
    }
}

/// How the index takes in what a watch of kind `K` reports.
pub trait IndexResource<K: Watched> {
    /// An object was created or changed.
    fn apply(&self, object: K::Object, now: Timestamp) -> Outcome;
    /// The object named `key` was deleted.
    fn delete(&self, key: &K::Key, now: Timestamp) -> Outcome;
    /// A (re)list of `scope` finished having listed `seen`: forget the rest of `scope`.
    fn relisted(&self, scope: &K::Scope, seen: &HashSet<K::Key>, now: Timestamp) -> Outcome;
}

impl IndexResource<Pods> for Index {
    fn apply(&self, view: PodView, now: Timestamp) -> Outcome {
        self.put_pod(view, now)
    }

    fn delete(&self, uid: &PodUidBuf, now: Timestamp) -> Outcome {
        let mut outcome = self.remove_pod(uid.as_uid(), now);
        outcome.wakeups.push((uid.clone(), None));
        outcome
    }

    /// Forgets the Pods of `namespace` (`None`: of every namespace) not in `seen` and cancels
    /// their timers, with what evaluating their workloads' other Pods again did.
    fn relisted(&self, namespace: &Option<String>, seen: &HashSet<PodUidBuf>, now: Timestamp) -> Outcome {
        // Borrowed, so that each tracked Pod's own UID is looked up without a copy.
        let seen: HashSet<PodUid<'_>> = seen.iter().map(PodUidBuf::as_uid).collect();
        let mut outcome = Outcome::default();
        for segment in self.segments.iter() {
            segment.lock().retain(|pod| {
                let view = pod.view();
                let kept = seen.contains(&view.uid()) || namespace.as_ref().is_some_and(|ns| view.namespace() != ns);
                if !kept {
                    outcome.wakeups.push((view.uid().into(), None));
                    self.forget(pod);
                }
                kept
            });
        }
        self.settle_versions(now, &mut outcome);
        outcome
    }
}

impl IndexResource<Policies> for Index {
    fn apply(&self, (policy, entry): (PolicyRef, Box<PolicyEntry>), now: Timestamp) -> Outcome {
        // Announced on every version, as the spec that made it invalid may be edited again.
        let invalid = entry.compiled.as_ref().err().map(|error| InvalidPolicy {
            policy: policy.clone(),
            uid: entry.uid.clone(),
            generation: entry.generation,
            message: error.to_string(),
        });
        let mut outcome = self.put_policy(policy, *entry, now);
        outcome.invalid_policies.extend(invalid);
        outcome
    }

    fn delete(&self, policy: &PolicyRef, now: Timestamp) -> Outcome {
        self.remove_policy(policy, now)
    }

    /// Drops the policies of the scope's kind (and namespace, if it has one) not in `seen`.
    fn relisted(&self, scope: &PolicyScope, seen: &HashSet<PolicyRef>, now: Timestamp) -> Outcome {
        let gone: Vec<PolicyRef> = {
            let table = self.policies.read();
            table
                .keys()
                .filter(|p| p.namespace.is_none() == scope.cluster && !seen.contains(p))
                .filter(|p| scope.namespace.is_none() || p.namespace == scope.namespace)
                .cloned()
                .collect()
        };
        let mut outcome = Outcome::default();
        for policy in gone {
            outcome.merge(self.remove_policy(&policy, now));
        }
        outcome
    }
}

impl IndexResource<Namespaces> for Index {
    fn apply(&self, (name, meta): (String, NamespaceMeta), now: Timestamp) -> Outcome {
        self.put_namespace(&name, meta, now)
    }

    fn delete(&self, name: &String, _: Timestamp) -> Outcome {
        self.namespaces.write().remove(name);
        Outcome::default()
    }

    fn relisted(&self, _: &(), seen: &HashSet<String>, _: Timestamp) -> Outcome {
        self.namespaces.write().retain(|n, _| seen.contains(n));
        Outcome::default()
    }
}

impl IndexResource<CreateFailures> for Index {
    fn apply(&self, (workload, mut condition): (WorkloadId, Condition), now: Timestamp) -> Outcome {
        // Several Events may tell of one failure (one per ReplicaSet, a new Event after the
        // last expired): the clock runs from the first.
        let alert = AlertName::SidecarInjectionFailed;
        if let Some(held) = self.workload_condition(alert, &workload) {
            condition.since = held.since.min(condition.since);
            condition.latest = held.latest.max(condition.latest);
        }
        let (mut outcome, kept) =
            self.set_workload_condition(AlertName::SidecarInjectionFailed, workload, Some(condition), now);
        outcome.limited_workloads += u32::from(!kept);
        outcome
    }

    fn delete(&self, workload: &WorkloadId, now: Timestamp) -> Outcome {
        self.set_workload_condition(AlertName::SidecarInjectionFailed, workload.clone(), None, now).0
    }

    fn relisted(&self, namespace: &Option<String>, seen: &HashSet<WorkloadId>, now: Timestamp) -> Outcome {
        let held: Vec<WorkloadId> =
            self.workloads.lock().0.holding(AlertName::SidecarInjectionFailed).cloned().collect();
        let mut outcome = Outcome::default();
        for workload in held {
            if namespace.as_ref().is_none_or(|ns| *ns == workload.namespace) && !seen.contains(&workload) {
                outcome.merge(IndexResource::<CreateFailures>::delete(self, &workload, now));
            }
        }
        outcome
    }
}

/// The writes of [`IndexResource`], one named method per kind and change: what `audit`,
/// the benchmarks and the tests call, so that they drive the index exactly as the watches do
/// (a deleted Pod's timer cancelled, an invalid policy announced). There is no other way in.
pub trait Writes {
    /// A Pod applied ([`Pods`]).
    fn apply_pod(&self, view: PodView, now: Timestamp) -> Outcome;
    /// A Pod deleted ([`Pods`]).
    fn delete_pod(&self, uid: PodUid<'_>, now: Timestamp) -> Outcome;
    /// A policy applied ([`Policies`]).
    fn apply_policy(&self, policy: PolicyRef, entry: PolicyEntry, now: Timestamp) -> Outcome;
    /// A policy deleted ([`Policies`]).
    fn delete_policy(&self, policy: &PolicyRef, now: Timestamp) -> Outcome;
    /// A namespace applied ([`Namespaces`]).
    fn apply_namespace(&self, name: &str, meta: NamespaceMeta, now: Timestamp) -> Outcome;
    /// A workload's `FailedCreate` condition set, or cleared with `None` ([`CreateFailures`]).
    fn set_create_failure(&self, workload: WorkloadId, condition: Option<Condition>, now: Timestamp) -> Outcome;
}

impl Writes for Index {
    fn apply_pod(&self, view: PodView, now: Timestamp) -> Outcome {
        IndexResource::<Pods>::apply(self, view, now)
    }
    fn delete_pod(&self, uid: PodUid<'_>, now: Timestamp) -> Outcome {
        IndexResource::<Pods>::delete(self, &uid.into(), now)
    }
    fn apply_policy(&self, policy: PolicyRef, entry: PolicyEntry, now: Timestamp) -> Outcome {
        IndexResource::<Policies>::apply(self, (policy, Box::new(entry)), now)
    }
    fn delete_policy(&self, policy: &PolicyRef, now: Timestamp) -> Outcome {
        IndexResource::<Policies>::delete(self, policy, now)
    }
    fn apply_namespace(&self, name: &str, meta: NamespaceMeta, now: Timestamp) -> Outcome {
        IndexResource::<Namespaces>::apply(self, (name.to_string(), meta), now)
    }
    fn set_create_failure(&self, workload: WorkloadId, condition: Option<Condition>, now: Timestamp) -> Outcome {
        match condition {
            Some(condition) => IndexResource::<CreateFailures>::apply(self, (workload, condition), now),
            None => IndexResource::<CreateFailures>::delete(self, &workload, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: &str) -> Timestamp {
        ts.parse().expect("timestamp")
    }

    fn pod(namespace: &str, name: &str) -> PodView {
        PodView::from_pod(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": namespace, "uid": format!("u-{name}")}
            }))
            .expect("Pod"),
        )
    }

    /// A relist forgets the Pods of its namespace it did not list and cancels their timers;
    /// other namespaces' Pods stay; a deletion cancels the Pod's timer too.
    #[test]
    fn pods_relisted_forget_what_vanished_and_cancel_its_timer() {
        let index = Index::new();
        let now = at("2025-06-03T11:30:00Z");
        for (ns, name) in [("shop", "a"), ("shop", "b"), ("db", "c")] {
            IndexResource::<Pods>::apply(&index, pod(ns, name), now);
        }
        let uid = PodUidBuf::parse;
        let seen = HashSet::from([uid("u-a")]);
        let outcome = IndexResource::<Pods>::relisted(&index, &Some("shop".into()), &seen, now);
        assert_eq!(outcome.wakeups, [(uid("u-b"), None)]);
        assert_eq!(index.pod_uids(), HashSet::from([uid("u-a"), uid("u-c")]));
        let outcome = IndexResource::<Pods>::delete(&index, &uid("u-c"), now);
        assert_eq!(outcome.wakeups, [(uid("u-c"), None)]);
        assert!(!index.contains_pod(uid("u-c").as_uid()));
    }

    /// A relist of one policy kind in one namespace drops only that kind's unlisted
    /// policies there; an invalid policy's Event comes with its outcome.
    #[test]
    fn policies_relisted_forget_what_vanished() {
        let index = Index::new();
        let now = at("2025-06-03T11:30:00Z");
        for policy in [
            PolicyRef::namespaced("shop", "kept"),
            PolicyRef::namespaced("shop", "gone"),
            PolicyRef::namespaced("db", "other"),
            PolicyRef::cluster("global"),
        ] {
            let entry =
                PolicyEntry::new(sidecar_watch_engine::CompiledPolicy::compile(policy.clone(), &Default::default()));
            let outcome = IndexResource::<Policies>::apply(&index, (policy, Box::new(entry)), now);
            assert!(outcome.invalid_policies.is_empty());
        }
        let scope = PolicyScope { cluster: false, namespace: Some("shop".into()) };
        let seen = HashSet::from([PolicyRef::namespaced("shop", "kept")]);
        IndexResource::<Policies>::relisted(&index, &scope, &seen, now);
        let left: Vec<PolicyRef> = index.policies().into_keys().collect();
        assert_eq!(
            left,
            [PolicyRef::cluster("global"), PolicyRef::namespaced("db", "other"), PolicyRef::namespaced("shop", "kept")]
        );
        let invalid = PolicyEntry::new(Err(sidecar_watch_engine::SpecError::new("spec.rules", "unknown rule")));
        let outcome =
            IndexResource::<Policies>::apply(&index, (PolicyRef::namespaced("shop", "bad"), Box::new(invalid)), now);
        let names: Vec<String> = outcome.invalid_policies.iter().map(|i| i.message.clone()).collect();
        assert_eq!(names, ["spec.rules: unknown rule"]);
    }

    /// A relist of namespaces forgets those it did not list.
    #[test]
    fn namespaces_relisted_forget_what_vanished() {
        let index = Index::new();
        let now = at("2025-06-03T11:30:00Z");
        for name in ["shop", "db"] {
            IndexResource::<Namespaces>::apply(&index, (name.to_string(), NamespaceMeta::default()), now);
        }
        IndexResource::<Namespaces>::relisted(&index, &(), &HashSet::from(["db".to_string()]), now);
        assert_eq!(index.namespace_names(), ["db".to_string()]);
    }
}
