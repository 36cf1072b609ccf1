//! The one typed workload: what Events, metrics, the index, `FailedCreate` and `audit` name
//! when they name a workload, and what each kind means to the API (its group, the label its
//! Pods' revision is in, where its Pod template is).
//!
//! How a workload is found from an object is decided once per path, by the controller owner
//! reference where the object is read (the object a `FailedCreate` Event names), and from
//! the Pod alone on the Pod path (`workload_of`, which reads nothing but the Pod):
//! - a ReplicaSet owned by an apps/v1 Deployment stands for the Deployment; its Pods name the
//!   Deployment too (the ReplicaSet's name is `<deployment>-<pod-template-hash>`);
//! - a ReplicaSet adopted by another controller (an Argo Rollouts `Rollout`, whose Pods carry
//!   `rollouts-pod-template-hash`, not `pod-template-hash`) is itself the workload, on both
//!   paths; so is an orphaned one, except that the Pod path still names the Deployment its
//!   name and Pods' label say made it (a Deployment deleted with `--cascade=orphan`);
//! - a Job owned by a batch/v1 CronJob stands for the CronJob (its Pods: by the Job's name,
//!   as the CronJob controller gives it); a Job made by hand is itself;
//! - any other owner kind is named as its reference names it ([`WorkloadKind::Other`]), and a
//!   Pod without one is its own workload ([`WorkloadKind::Pod`]).

use std::fmt;

/// A workload's kind, as its API object says it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 ReplicaSet without a Deployment.
    ReplicaSet,
    /// batch/v1 Job without a CronJob.
    Job,
    /// batch/v1 CronJob.
    CronJob,
    /// A Pod without an owner.
    Pod,
    /// Any other owner kind (`ReplicationController`, `Node` for a static Pod, a custom
    /// controller's), as its owner reference spells it.
    Other(String),
}

/// The label naming the revision of a Deployment's Pods: `DefaultDeploymentUniqueLabelKey`
/// in k8s.io/api apps/v1 types.go.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label naming the revision of a StatefulSet's Pods: `ControllerRevisionHashLabelKey`
/// (`StatefulSetRevisionLabel`) in k8s.io/api apps/v1 types.go.
const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The label naming the template generation of a DaemonSet's Pods, a number the DaemonSet
/// carries too (`deprecated.daemonset.template.generation`), so the controller's newest is
/// read without listing its ControllerRevisions: `DaemonSetTemplateGenerationKey`, set by
/// kubernetes/kubernetes pkg/controller/daemon/util `CreatePodTemplate` (v1.29.15 … v1.37.2).
const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

impl WorkloadKind {
    /// The kinds whose controllers create Pods from a template.
    pub const CONTROLLERS: [WorkloadKind; 6] =
        [Self::Deployment, Self::StatefulSet, Self::DaemonSet, Self::ReplicaSet, Self::Job, Self::CronJob];

    /// The kind spelled `kind` (exactly, as the API spells it).
    pub fn parse(kind: &str) -> Self {
        Self::known(kind).unwrap_or_else(|| Self::Other(kind.to_string()))
    }

    /// The kind spelled `kind` in `api_version` if it is one of the [`Self::CONTROLLERS`]
    /// (`api_version` `None`: any): the workloads that get Events and are read. Allocates
    /// nothing: the Pod path asks it on every change.
    pub fn controller(kind: &str, api_version: Option<&str>) -> Option<Self> {
        let found = Self::known(kind)?;
        let version = found.api_version()?;
        api_version.is_none_or(|v| v == version).then_some(found)
    }

    fn known(kind: &str) -> Option<Self> {
        Some(match kind {
            "Deployment" => Self::Deployment,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "ReplicaSet" => Self::ReplicaSet,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            "Pod" => Self::Pod,
            _ => return None,
        })
    }

    /// `Deployment`, `Job`, …
    pub fn as_str(&self) -> &str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::Pod => "Pod",
            Self::Other(kind) => kind,
        }
    }

    /// `apps/v1` or `batch/v1` for a controller kind; `None` for the others.
    pub fn api_version(&self) -> Option<&'static str> {
        match self {
            Self::Deployment | Self::StatefulSet | Self::DaemonSet | Self::ReplicaSet => Some("apps/v1"),
            Self::Job | Self::CronJob => Some("batch/v1"),
            Self::Pod | Self::Other(_) => None,
        }
    }

    /// The label that names the revision of its Pods, for the kinds whose rollouts
    /// `RolloutBlockedBySidecar` judges; `None` for the others (Jobs, CronJobs, bare
    /// ReplicaSets, …).
    pub fn revision_label(&self) -> Option<&'static str> {
        match self {
            Self::Deployment => Some(POD_TEMPLATE_HASH),
            Self::StatefulSet => Some(CONTROLLER_REVISION_HASH),
            Self::DaemonSet => Some(POD_TEMPLATE_GENERATION),
            _ => None,
        }
    }

    /// Where the object keeps its Pod template (a JSON pointer); `None` for kinds without one.
    pub fn template_pointer(&self) -> Option<&'static str> {
        match self {
            Self::CronJob => Some("/spec/jobTemplate/spec/template"),
            Self::Pod | Self::Other(_) => None,
            _ => Some("/spec/template"),
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload as users know it: namespace, kind and name. The Pod view keeps its owner
/// interned ([`Workload`](crate::Workload)); this is the workload an alert, an Event or a
/// series names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    /// Its namespace.
    pub namespace: String,
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
}

impl WorkloadId {
    /// The workload `kind`/`name` of `namespace`.
    pub fn new(namespace: &str, kind: &str, name: &str) -> Self {
        WorkloadId { namespace: namespace.to_string(), kind: WorkloadKind::parse(kind), name: name.to_string() }
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind reads back as it is spelled; only the controller kinds have an API version,
    /// and the API version must match where one is given.
    #[test]
    fn kinds_round_trip_and_only_controllers_are_read() {
        for kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout"] {
            assert_eq!(WorkloadKind::parse(kind).as_str(), kind);
        }
        assert_eq!(WorkloadKind::controller("CronJob", Some("batch/v1")), Some(WorkloadKind::CronJob));
        assert_eq!(WorkloadKind::controller("CronJob", Some("batch/v1beta1")), None);
        assert_eq!(WorkloadKind::controller("Rollout", None), None);
        assert_eq!(WorkloadKind::controller("Pod", None), None);
        assert_eq!(WorkloadKind::parse("deployment"), WorkloadKind::Other("deployment".into()), "kinds are exact");
    }

    /// What each kind means to the API.
    #[test]
    fn each_kind_knows_its_revision_label_and_template() {
        let table: Vec<_> = WorkloadKind::CONTROLLERS
            .iter()
            .map(|k| (k.as_str(), k.api_version(), k.revision_label(), k.template_pointer()))
            .collect();
        assert_eq!(
            table,
            [
                ("Deployment", Some("apps/v1"), Some("pod-template-hash"), Some("/spec/template")),
                ("StatefulSet", Some("apps/v1"), Some("controller-revision-hash"), Some("/spec/template")),
                ("DaemonSet", Some("apps/v1"), Some("pod-template-generation"), Some("/spec/template")),
                ("ReplicaSet", Some("apps/v1"), None, Some("/spec/template")),
                ("Job", Some("batch/v1"), None, Some("/spec/template")),
                ("CronJob", Some("batch/v1"), None, Some("/spec/jobTemplate/spec/template")),
            ]
        );
        assert_eq!(WorkloadId::new("shop", "CronJob", "backup").to_string(), "CronJob/backup");
    }
}
