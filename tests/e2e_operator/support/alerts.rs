//! What the operator is expected to publish, in its own types: the `sidecar_alerts` series
//! of `/metrics` ([`AlertSeries`]) and alert Events ([`AlertEvent`]).

use k8s_openapi::api::events::v1::Event;

pub use sidecar_watch::api::Severity;
pub use sidecar_watch::engine::{AlertName, AlertState};
pub use sidecar_watch::index::TransitionKind;
pub use sidecar_watch_testkit::prom::{has_value, sorted, Labels, Scrape};

/// The expected labels of a `sidecar_alerts` series of a namespaced policy, on a Pod of the
/// policy's namespace that has no owner (see [`owned_by`]). A struct literal, so that every
/// value is named and a state, a severity or an alert put in the wrong place does not compile.
#[derive(Clone, Copy, Debug)]
pub struct AlertSeries<'a> {
    /// The alert (`alertname`).
    pub alert: AlertName,
    /// `alertstate`.
    pub state: AlertState,
    /// `severity`.
    pub severity: Severity,
    /// The SidecarPolicy's name (`policy`).
    pub policy: &'a str,
    /// The namespace of the policy and of the Pod.
    pub namespace: &'a str,
    /// The Pod's name (and its workload's: a Pod without owner is its own workload).
    pub pod: &'a str,
    /// The container's name.
    pub container: &'a str,
    /// The container's catalog id (`product`), `unknown` for one the catalog does not know.
    pub product: &'a str,
}

/// `SidecarContainerNotReady`, firing, warning, of the policy `mesh` on `istio-proxy`: what
/// most tests provoke ([`native_pod`](sidecar_watch_harness::kubelet::native_pod) with its sidecar not ready). Name the rest:
/// `AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }`.
pub const MESH_NOT_READY: AlertSeries<'static> = AlertSeries {
    alert: AlertName::SidecarContainerNotReady,
    state: AlertState::Firing,
    severity: Severity::Warning,
    policy: "mesh",
    namespace: "",
    pod: "",
    container: "istio-proxy",
    product: "istio",
};

impl AlertSeries<'_> {
    /// The series' labels as a scrape shows them (`check` empty, no `label_*`: the operator
    /// runs without `--namespace-labels`).
    pub fn labels(&self) -> Labels {
        [
            ("alertname", self.alert.as_str()),
            ("alertstate", self.state.as_str()),
            ("severity", self.severity.as_str()),
            ("policy", self.policy),
            ("policy_namespace", self.namespace),
            ("namespace", self.namespace),
            ("pod", self.pod),
            ("container", self.container),
            ("check", ""),
            ("workload_kind", "Pod"),
            ("workload", self.pod),
            ("product", self.product),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// `labels` of a Pod owned by the workload `kind`/`name`.
pub fn owned_by(mut labels: Labels, kind: &str, name: &str) -> Labels {
    labels.insert("workload_kind".into(), kind.into());
    labels.insert("workload".into(), name.into());
    labels
}

/// An alert Event as expected: `Warning` with reason `<alert>` when the alert fires, `Normal`
/// with `<alert>Resolved` when it clears, regarding the Pod's container, related to the
/// SidecarPolicy, published once (no series). A struct literal, so that every value is named
/// and an alert, a transition or a string put in the wrong place does not compile.
pub struct AlertEvent<'a> {
    /// The alert.
    pub alert: AlertName,
    /// Fired (`Warning`) or resolved (`Normal`).
    pub transition: TransitionKind,
    /// The Pod's name.
    pub pod: &'a str,
    /// The container as the Event names it: `spec.initContainers{istio-proxy}`.
    pub field_path: &'a str,
    /// The SidecarPolicy's name.
    pub policy: &'a str,
}

impl AlertEvent<'_> {
    /// Checks `e` against the expectation.
    pub fn assert_matches(&self, e: &Event) {
        let (type_, reason) = match self.transition {
            TransitionKind::Fired => ("Warning", self.alert.to_string()),
            TransitionKind::Resolved => ("Normal", format!("{}Resolved", self.alert)),
        };
        assert_eq!(e.type_.as_deref(), Some(type_), "{e:?}");
        assert_eq!(e.reason.as_deref(), Some(reason.as_str()), "{e:?}");
        assert_eq!(e.reporting_controller.as_deref(), Some("sidecar-watch"), "{e:?}");
        let regarding = e.regarding.as_ref().expect("regarding");
        assert_eq!(regarding.kind.as_deref(), Some("Pod"), "{e:?}");
        assert_eq!(regarding.name.as_deref(), Some(self.pod), "{e:?}");
        assert_eq!(regarding.field_path.as_deref(), Some(self.field_path), "{e:?}");
        let related = e.related.as_ref().expect("related");
        assert_eq!(related.kind.as_deref(), Some("SidecarPolicy"), "{e:?}");
        assert_eq!(related.name.as_deref(), Some(self.policy), "{e:?}");
        assert!(e.series.as_ref().is_none_or(|s| s.count <= 1), "a repeated Event: {e:?}");
    }
}
