//! The versions of each sidecar that the Pods of one workload run, for the workload half of
//! `SidecarVersionDrift`: a workload whose Pods run more than one version of a sidecar for
//! longer than the rule's `for` (a rollout that stalled, a StatefulSet partition left
//! behind, Pods never replaced after a mesh upgrade).
//!
//! Kept as counts per (namespace, workload, container) and version, each with the creation
//! of the first Pod seen on it, so that a Pod's change costs a few hash-map operations and
//! the Pods of a workload are evaluated again only when what they are compared with (the
//! workload's [`Newest`] version) changes: twice per rollout, not once per Pod (what it
//! costs: docs/benchmarks.md#what-does-comparing-a-workloads-sidecar-versions-cost).

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use crate::name::{Name, Workload};
use crate::pod::{ContainerView, PodView};
use crate::version::Release;

/// A workload in a namespace.
pub type InternedWorkload = (Name, Arc<Workload>);

/// What one Pod's sidecar adds to its workload's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    workload: InternedWorkload,
    container: Name,
    version: Name,
    created: Timestamp,
}

/// The version a workload's newer Pods run of one sidecar, when its Pods run more than one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Newest {
    /// The image tag or digest ([`ContainerSpec::version`](crate::container::ContainerSpec::version)).
    pub version: Name,
    /// The creation of the first Pod seen on it: since then the workload runs two versions.
    pub since: Timestamp,
}

#[derive(Debug)]
struct VersionPods {
    version: Name,
    pods: u32,
    first_created: Timestamp,
}

/// Version counts of every workload's sidecars, and the workloads whose [`Newest`] changed
/// since last asked.
#[derive(Debug, Default)]
pub struct SidecarVersions {
    counts: HashMap<(InternedWorkload, Name), Vec<VersionPods>>,
    changed: Vec<InternedWorkload>,
}

/// What `sidecars` of `pod` add to its workload's counts: nothing unless the Pod belongs to a
/// workload, was created, and neither finished nor is being deleted (a rollout's old Pods
/// stop counting when they start terminating); a sidecar without an image version adds
/// nothing either.
pub fn counted<'a>(pod: &PodView, sidecars: impl IntoIterator<Item = &'a ContainerView>) -> Vec<Counted> {
    let (Some(owner), Some(created)) = (pod.owner(), pod.created_at) else { return Vec::new() };
    if !pod.is_live() {
        return Vec::new();
    }
    let workload = (pod.namespace().clone(), owner.clone());
    sidecars
        .into_iter()
        .filter_map(|c| {
            Some(Counted {
                workload: workload.clone(),
                container: c.name.clone(),
                version: c.version.clone()?,
                created: created.timestamp(),
            })
        })
        .collect()
}

/// Versions of one sidecar in one workload from which its Pods are not compared: no
/// rollout runs that many at once, and every change of the newest version evaluates each
/// of the workload's Pods again, so a tenant whose Pods each run a version of their own
/// (2,000 in tests/integration/metrics_text.rs, `sidecar_info_is_per_workload_and_capped_per_namespace`) would
/// cost the square of its Pods' count in evaluations.
pub(crate) const MAX_COMPARED_VERSIONS: usize = 8;

/// The newest of a workload's versions of one sidecar, if it runs more than one (and no
/// more than [`MAX_COMPARED_VERSIONS`]): the highest release when every tag names one, else
/// the version whose first Pod was created last (tags such as `latest` or digests say
/// nothing of their order).
fn newest(versions: &[VersionPods]) -> Option<Newest> {
    if versions.len() < 2 || versions.len() > MAX_COMPARED_VERSIONS {
        return None;
    }
    let releases: Option<Vec<Release>> = versions.iter().map(|v| Release::parse(v.version.as_str())).collect();
    let chosen = match releases {
        Some(releases) => versions.iter().zip(releases).max_by_key(|(v, r)| (*r, v.first_created))?.0,
        None => versions.iter().max_by_key(|v| (v.first_created, v.version.clone()))?,
    };
    Some(Newest { version: chosen.version.clone(), since: chosen.first_created })
}

impl SidecarVersions {
    /// Counts of every Pod of `pods` with the sidecars `sidecars_of` names in it (`audit`,
    /// which sees every Pod at once).
    pub fn of_pods<'a, S>(pods: impl IntoIterator<Item = &'a PodView>, sidecars_of: impl Fn(&'a PodView) -> S) -> Self
    where
        S: IntoIterator<Item = &'a ContainerView>,
    {
        let mut versions = SidecarVersions::default();
        for pod in pods {
            versions.replace(&[], &counted(pod, sidecars_of(pod)));
        }
        versions.changed.clear();
        versions
    }

    /// One Pod's counts change from `before` to `after` (each from [`counted`]); the
    /// workloads whose newest version changes are noted for [`Self::take_changed`].
    pub fn replace(&mut self, before: &[Counted], after: &[Counted]) {
        if before == after {
            return;
        }
        let mut touched: Vec<(InternedWorkload, Name)> = Vec::new();
        for c in before.iter().chain(after) {
            let key = (c.workload.clone(), c.container.clone());
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        let was: Vec<Option<Newest>> = touched.iter().map(|k| self.counts.get(k).and_then(|v| newest(v))).collect();
        for c in before {
            self.remove(c);
        }
        for c in after {
            let versions = self.counts.entry((c.workload.clone(), c.container.clone())).or_default();
            match versions.iter_mut().find(|v| v.version == c.version) {
                Some(v) => {
                    v.pods += 1;
                    v.first_created = v.first_created.min(c.created);
                }
                None => versions.push(VersionPods { version: c.version.clone(), pods: 1, first_created: c.created }),
            }
        }
        for (key, was) in touched.into_iter().zip(was) {
            if self.counts.get(&key).and_then(|v| newest(v)) != was && !self.changed.contains(&key.0) {
                self.changed.push(key.0);
            }
        }
    }

    fn remove(&mut self, c: &Counted) {
        let key = (c.workload.clone(), c.container.clone());
        let Some(versions) = self.counts.get_mut(&key) else { return };
        if let Some(at) = versions.iter().position(|v| v.version == c.version) {
            versions[at].pods -= 1;
            if versions[at].pods == 0 {
                versions.swap_remove(at);
            }
        }
        if versions.is_empty() {
            self.counts.remove(&key);
        }
    }

    /// The workloads whose newest version of a sidecar changed since the last call: their
    /// Pods are compared with something else now.
    pub fn take_changed(&mut self) -> Vec<InternedWorkload> {
        std::mem::take(&mut self.changed)
    }

    /// For each sidecar of `pod` whose workload runs more than one version of it: the
    /// newest, which the Pod's own version is compared with.
    pub fn newest_of(&self, pod: &PodView) -> Vec<(Name, Newest)> {
        let Some(owner) = pod.owner() else { return Vec::new() };
        if self.counts.is_empty() {
            return Vec::new();
        }
        let workload = (pod.namespace().clone(), owner.clone());
        let mut out = Vec::new();
        for c in pod.containers.iter() {
            let key = (workload.clone(), c.name.clone());
            if let Some(newest) = self.counts.get(&key).and_then(|v| newest(v)) {
                out.push((c.name.clone(), newest));
            }
        }
        out
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests;
