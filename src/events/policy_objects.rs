//! Which policy object the publisher's remembered alerts belong to.
//!
//! An alert is remembered by its policy's name ([`announce::AnnounceKey`],
//! [`workload::WorkloadKey`]). A deleted policy raises no `Resolved` (its alerts just end), so
//! what was remembered of it would stay while its Pods live, and a policy created again under
//! its name would find its alerts announced already and get no Warning. So the UID each name
//! stood for is remembered too, and what was remembered of an object that is gone (deleted, no
//! longer evaluated, or replaced by another of its name) is forgotten, by a Fired of another
//! object of that name or by the 30-second sweep.
//!
//! Only while nothing else is queued: the queue lags the index, and a `Resolved` of the old
//! object still queued must find its Warning remembered. A busy queue keeps what it
//! remembers until a later sweep finds the queue drained.
//!
//! [`announce::AnnounceKey`]: super::announce::AnnounceKey
//! [`workload::WorkloadKey`]: super::workload::WorkloadKey

use std::collections::{BTreeMap, HashMap};

use super::Publisher;
use crate::engine::PolicyRef;
use crate::index::PolicyEntry;

/// The UID of each policy whose alerts the publisher remembers.
#[derive(Debug, Default)]
pub(super) struct PolicyObjects(HashMap<PolicyRef, Option<String>>);

impl PolicyObjects {
    /// Notes that `policy` names the object `uid` now; true when it named another before.
    fn changed(&mut self, policy: &PolicyRef, uid: Option<String>) -> bool {
        match self.0.get_mut(policy) {
            Some(recorded) if *recorded == uid => false,
            Some(recorded) => {
                *recorded = uid;
                true
            }
            None => {
                self.0.insert(policy.clone(), uid);
                false
            }
        }
    }

    /// Removes and returns the policies that `now` does not hold as the same object, still
    /// evaluated. One that only stopped publishing Events stays: its alerts still fire, and
    /// their `Resolved` is due if it publishes again before they end.
    fn stale(&mut self, now: &BTreeMap<PolicyRef, PolicyEntry>) -> Vec<PolicyRef> {
        let mut stale = Vec::new();
        self.0.retain(|policy, uid| {
            let same = now.get(policy).is_some_and(|e| e.uid == *uid && e.evaluated().is_some());
            if !same {
                stale.push(policy.clone());
            }
            same
        });
        stale
    }
}

impl Publisher {
    /// Before a Fired transition of `policy` is counted or announced: what was remembered of
    /// another object of its name is forgotten, so that this one's alerts are announced,
    /// when nothing else is queued (see the module's documentation).
    pub(super) fn note_policy(&mut self, policy: &PolicyRef) {
        if !self.nothing_queued {
            return;
        }
        let uid = self.index.policy_uid(policy);
        if self.policy_objects.changed(policy, uid) {
            self.forget_policy(policy);
        }
    }

    /// Notes the objects of the policies whose alerts a new leader found announced.
    pub(super) fn note_remembered_policies(&mut self) {
        let mut policies: Vec<PolicyRef> = self.workloads.policies().cloned().collect();
        if let Some(announcer) = &self.announcer {
            policies.extend(announcer.policies().cloned());
        }
        for policy in policies {
            let uid = self.index.policy_uid(&policy);
            self.policy_objects.changed(&policy, uid);
        }
    }

    /// The sweep: forgets what is remembered of policies gone, no longer evaluated, or named
    /// by another object now (`now`: the index's policies), when `nothing_queued`.
    pub(super) fn forget_stale_policies(&mut self, now: &BTreeMap<PolicyRef, PolicyEntry>, nothing_queued: bool) {
        if !nothing_queued {
            return;
        }
        for policy in self.policy_objects.stale(now) {
            self.forget_policy(&policy);
        }
    }

    fn forget_policy(&mut self, policy: &PolicyRef) {
        if let Some(announcer) = self.announcer.as_mut() {
            announcer.forget_policy(policy);
        }
        self.workloads.forget_policy(policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CompiledPolicy;

    fn entry(uid: &str, events: bool) -> PolicyEntry {
        let spec = crate::api::PolicySpec { events, ..Default::default() };
        let mut entry = PolicyEntry::new(CompiledPolicy::compile(PolicyRef::namespaced("shop", "mesh"), &spec));
        entry.uid = Some(uid.into());
        entry
    }

    #[test]
    fn a_policy_is_stale_once_gone_or_another_object() {
        let mesh = PolicyRef::namespaced("shop", "mesh");
        let mut objects = PolicyObjects::default();
        assert!(!objects.changed(&mesh, Some("a".into())), "first seen");
        assert!(!objects.changed(&mesh, Some("a".into())));
        assert!(objects.changed(&mesh, Some("b".into())), "deleted and created again");
        for same in [entry("b", true), entry("b", false)] {
            let now = BTreeMap::from([(mesh.clone(), same)]);
            assert!(objects.stale(&now).is_empty(), "the same object, its Events on or off");
        }
        let mut invalid = entry("b", true);
        invalid.compiled =
            Err(crate::engine::SpecError { field: "spec.sidecars.pattern".into(), message: "unclosed group".into() });
        for now in [
            BTreeMap::new(),
            BTreeMap::from([(mesh.clone(), entry("c", true))]),
            BTreeMap::from([(mesh.clone(), invalid)]),
        ] {
            objects.changed(&mesh, Some("b".into()));
            assert_eq!(objects.stale(&now), std::slice::from_ref(&mesh), "{now:?}");
            assert!(objects.0.is_empty(), "forgotten with what it held");
        }
    }
}
