//! Alerts: what a rule reports for one container of one Pod, and what identifies one
//! ([`AlertKey`]) from one evaluation to the next.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Serialize;

use super::sidecar_matcher::IdentifiedBy;
use sidecar_watch_api::Severity;

/// An enum whose variants each carry their label (`Variant => "label"`): the macro writes
/// the enum, `ALL` (every variant, in declaration order) and `as_str` (the label), so that a
/// variant and its label are written once, side by side.
macro_rules! labelled_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $label:literal,)*
        }
        #[doc = $all_doc:literal]
        const ALL;
        #[doc = $as_str_doc:literal]
        fn as_str;
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            #[doc = $all_doc]
            pub const ALL: [$name; [$($label),*].len()] = [$($name::$variant),*];

            #[doc = $as_str_doc]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
        }
    };
}

labelled_enum! {
    /// The alert names, one per rule (the `alertname` label).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
    pub enum AlertName {
        /// A sidecar is running or waiting but not ready.
        SidecarContainerNotReady => "SidecarContainerNotReady",
        /// A main container is ready while a sidecar is not.
        MainContainerReadyButSidecarNot => "MainContainerReadyButSidecarNot",
        /// A sidecar restarted at least `threshold` times within `window`.
        SidecarRestartingFrequently => "SidecarRestartingFrequently",
        /// A sidecar is in `CrashLoopBackOff`.
        SidecarCrashLooping => "SidecarCrashLooping",
        /// A sidecar was OOM-killed within `window`.
        #[serde(rename = "SidecarOOMKilled")]
        SidecarOomKilled => "SidecarOOMKilled",
        /// A main container started while a sidecar was not yet ready.
        MainStartedBeforeSidecarReady => "MainStartedBeforeSidecarReady",
        /// A Job's main containers finished while a sidecar keeps the Pod running.
        JobBlockedBySidecar => "JobBlockedBySidecar",
        /// On shutdown a sidecar stopped while a main container still ran.
        SidecarStoppedBeforeMain => "SidecarStoppedBeforeMain",
        /// A sidecar that an injector's markers or the policy ask for is not in the Pod.
        SidecarMissing => "SidecarMissing",
        /// A sidecar runs a release older than the policy's minimum.
        SidecarVersionDrift => "SidecarVersionDrift",
        /// A static check of the Pod spec failed.
        SidecarMisconfigured => "SidecarMisconfigured",
        /// On a workload: its controller cannot create Pods because of a sidecar or its injector.
        SidecarInjectionFailed => "SidecarInjectionFailed",
        /// On a workload: every Pod of its newest revision has the same sidecar failing while
        /// Pods of an older revision still run.
        RolloutBlockedBySidecar => "RolloutBlockedBySidecar",
    }
    /// Every alert name, in rule order.
    const ALL;
    /// The name as it appears in labels, Events and output.
    fn as_str;
}

impl AlertName {
    /// Whether the alert is on a workload (its Pods are not created, or not all of them fail),
    /// not on one Pod.
    pub fn on_workload(self) -> bool {
        matches!(self, AlertName::SidecarInjectionFailed | AlertName::RolloutBlockedBySidecar)
    }
}

impl std::fmt::Display for AlertName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

labelled_enum! {
    /// The static checks of `SidecarMisconfigured` (the `check` label).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Check {
        /// A sidecar without a readiness probe: nobody knows when it can serve.
        NoReadinessProbe => "no-readiness-probe",
        /// A native sidecar without a startup probe: main containers start almost in parallel.
        NoStartupProbe => "no-startup-probe",
        /// A sidecar declared in `spec.containers`: no start/stop ordering, blocks Jobs.
        LegacySidecar => "legacy-sidecar",
        /// A sidecar image without a pinned tag or digest.
        LatestImage => "latest-image",
        /// A sidecar without resource requests or limits.
        NoResources => "no-resources",
        /// A sidecar declares a port another container of the Pod declares too.
        PortConflict => "port-conflict",
        /// Five or more sidecars in one Pod (reported on the Pod, container empty).
        SidecarSprawl => "sidecar-sprawl",
        /// A main container's liveness probe targets a sidecar's port: a sidecar failure
        /// restarts the app.
        MainProbeOnSidecar => "main-probe-on-sidecar",
        /// Plain init containers run before a native mesh proxy while the mesh already redirects
        /// the Pod's traffic to it: they have no working network.
        InitBeforeProxy => "init-before-proxy",
        /// A native sidecar's `preStop` hook can act on it; the kubelet runs it while the main
        /// containers still run.
        NativePreStop => "native-prestop",
        /// A catalog sidecar whose own metrics its arguments or the Pod's annotations switch
        /// off: the product's functional-health alerts cannot fire.
        MetricsDisabled => "metrics-disabled",
        /// A catalog sidecar whose own metrics are served where Prometheus does not scrape them
        /// (loopback only, or not merged into the endpoint annotation scraping reads).
        MetricsUnreachable => "metrics-unreachable",
        /// A catalog sidecar whose health endpoint its arguments switch off.
        HealthCheckDisabled => "health-check-disabled",
    }
    /// Every check.
    const ALL;
    /// The value of the `check` label.
    fn as_str;
}

impl Check {
    /// The check with this label value.
    pub fn from_label(label: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.as_str() == label)
    }
}

/// Prometheus alert states: the condition holds, but not yet for long enough, or it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds for less than the rule's `for`.
    Pending,
    /// The condition holds for at least the rule's `for`.
    Firing,
}

impl AlertState {
    /// The value of the `alertstate` label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One active alert on one container (or the Pod, for `sidecar-sprawl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Which rule.
    pub name: AlertName,
    /// Its severity under the policy.
    pub severity: Severity,
    /// The container; empty for Pod-level checks.
    pub container: String,
    /// The failed check, for `SidecarMisconfigured`.
    pub check: Option<Check>,
    /// Pending or firing.
    pub state: AlertState,
    /// Since when the condition holds, when known.
    pub since: Option<Timestamp>,
    /// A human explanation, naming the container and the evidence.
    pub message: String,
    /// How the container was recognised as a sidecar; `None` for Pod-level checks.
    pub identified_by: Option<IdentifiedBy>,
}

impl Alert {
    /// What identifies this alert within one Pod and policy.
    pub fn key(&self) -> AlertKey<'_> {
        AlertKey { name: self.name, container: Cow::Borrowed(&self.container), check: self.check }
    }
}

/// What identifies an alert within one Pod and one policy: the rule, the container and the
/// failed check. Two evaluations that report the same key report the same alert (its state,
/// `since` and message may differ). Every layer compares alerts by this key: the engine
/// orders a Pod's alerts by it, the index finds what started or stopped firing with it
/// (a stored alert's `key`, crates/index/src/tracked.rs), and the Event path remembers what
/// it announced by it (its `AnnounceKey`, src/events/announce.rs, which adds the Pod and the
/// policy).
///
/// The container is borrowed where a key is only compared ([`Alert::key`]) and owned where
/// one is kept ([`AlertKey::into_owned`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey<'a> {
    /// Which rule.
    pub name: AlertName,
    /// The container's name; empty for Pod-level checks (`sidecar-sprawl`).
    pub container: Cow<'a, str>,
    /// The failed check, for `SidecarMisconfigured`.
    pub check: Option<Check>,
}

impl AlertKey<'_> {
    /// The key with its container's name owned, to be kept.
    pub fn into_owned(self) -> AlertKey<'static> {
        AlertKey { name: self.name, container: Cow::Owned(self.container.into_owned()), check: self.check }
    }
}
