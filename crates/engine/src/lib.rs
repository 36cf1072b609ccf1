#![forbid(unsafe_code)]
// The modules are private: what other crates use is re-exported below, and a `pub` item that
// nothing re-exports is a warning (CI denies warnings), so the surface stays what is used.
#![warn(unreachable_pub)]
//! The rule engine: pure functions from a Pod's compact view, a compiled policy, the
//! observed history and the current time to alerts. No I/O, no clock of its own; the
//! controller and `audit` both call [`evaluate`].
//!
//! # Where each alert's `since` comes from
//!
//! The API's own timestamps are preferred, so that a restarted operator (or `audit`, which
//! has no history at all) computes the same `for` clocks:
//!
//! | alert | `since` |
//! | --- | --- |
//! | `SidecarContainerNotReady` | the last time it was ready: latest of the readiness flip the operator observed and the Pod `Ready=False` `lastTransitionTime`, never before the kubelet could start it (its first run's `startedAt`, the `finishedAt` of the plain init containers before it); else the Pod's `startTime`. Not its current run's start: a sidecar crash looping without ever being ready is not ready since long before |
//! | `MainContainerReadyButSidecarNot` | the later of the sidecar's not-ready time (above) and the earliest time a ready main container has been ready (its `startedAt`, or the observed flip) |
//! | `SidecarRestartingFrequently` | the restart that brought the count in the window to the threshold; restarts are the observed `restartCount` increments, `lastState.terminated.finishedAt`, and the rest placed at the Pod's `startTime` (the earliest they can be); restarts the kubelet made itself are left out ([`restart_causes`]) |
//! | `SidecarCrashLooping` | the first restart of the current episode: restarts (as above) no more than 10 minutes apart; a run shorter than 5 minutes between back-offs keeps the episode going, and so does a terminated state the kubelet will restart from |
//! | `SidecarOOMKilled` | the OOM kill's `finishedAt`; active for `window` after it |
//! | `MainStartedBeforeSidecarReady` | the main container's `running.startedAt` |
//! | `JobBlockedBySidecar` | the last main container's `terminated.finishedAt` |
//! | `SidecarStoppedBeforeMain` | the sidecar's `terminated.finishedAt` |
//! | `SidecarMisconfigured` | the Pod's `creationTimestamp` |
//! | `SidecarVersionDrift` | older than the policy's minimum: the Pod's `creationTimestamp`; behind its workload: the `creationTimestamp` of the workload's first Pod on the newest version ([`version_drift`]) |
//!
//! Where none of these exists, the operator's first-seen clock for the condition is used
//! (see [`history::PodHistory::set_clocks`]).

mod alert;
mod catalog;
mod container;
mod exit_rules;
mod failed_create_message;
mod history;
mod injection;
mod interner;
mod name;
mod observation;
mod observed;
mod pod;
mod policy;
mod relations;
mod restart_causes;
mod rollout_blocked;
mod rule_settings;
mod rules;
mod sidecar_matcher;
mod stamp;
mod uid;
mod version;
mod version_drift;
mod workload;

pub use alert::{Alert, AlertKey, AlertName, AlertState, Check};
pub use catalog::signal::{texts as signal_texts, DAPR_ENABLE_METRICS, ISTIO_MERGE_METRICS, VAULT_AGENT_CONFIGMAP};
pub use catalog::{
    Blindspot, CatalogEntry, CatalogId, ImageRule, Redirect, Signal, CATALOG, GENERIC_JOB_REMEDIATION,
    GENERIC_NATIVE_REMEDIATION,
};
pub use container::{
    is_latest_image, ContainerKind, ContainerResources, ContainerSpec, ContainerState, ContainerStatusView,
    ContainerView, ResourceAmounts, SpecFlags, Termination,
};
pub use exit_rules::ExitVerdict;
pub use failed_create_message::{classify_failed_create, InjectionCause, InjectionFailure, FAILED_CREATE_READ_LIMIT};
pub use history::{ContainerHistory, HistoryMarks, PodHistory, MAX_RECORDED_RESTARTS};
pub use injection::{Inject, Injector, Marker, NamespaceMeta, OptOut, Place, INJECTORS};
pub use interner::Interner;
pub use name::{LabelSet, Name};
pub use observation::Observation;
pub use observed::ObservedPod;
pub use pod::{ConditionView, PodView};
pub use policy::{CompiledPolicy, PolicyRef};
pub use relations::{cronjob_of_job, pod_workload, Workload, CRONJOB_CLOCK_SKEW, CRONJOB_NAME_MAX, CRONJOB_RUN_WINDOW};
pub use rollout_blocked::{
    rollout_blocked, Blocked, ControllerRollout, Revision, RevisionPod, RolloutHold, SidecarFiring, BLOCKING,
};
pub use rule_settings::SpecError;
pub use rules::{
    check_texts, cronjob_concurrency, evaluate, missing_texts, Around, Evaluation, DEFAULT_MAX_SIDECARS,
    JOB_NEVER_COMPLETES, SPRAWL_THRESHOLD,
};
pub use sidecar_matcher::{Identified, IdentifiedBy, SidecarType, DEFAULT_SIDECAR_PATTERN};
pub use stamp::Stamp;
pub use uid::{PodUid, PodUidBuf};
pub use version_drift::{counted, Counted, InternedWorkload, SidecarVersions};
pub use workload::{WorkloadId, WorkloadKind};
