//! `/metrics`: the expected `sidecar_alerts` series ([`AlertSeries`]), label helpers and
//! value checks of a scrape.

pub use sidecar_watch::api::Severity;
pub use sidecar_watch::engine::{AlertName, AlertState};
pub use sidecar_watch::index::TransitionKind;
pub use sidecar_watch_testkit::prom::{Labels, Scrape};

/// Checks that the single sample of `name` with `matching` labels has value `want`.
pub fn has_value(s: &Scrape, name: &str, matching: &[(&str, &str)], want: f64) -> Result<(), String> {
    match s.value(name, matching) {
        Some(v) if (v - want).abs() < 1e-9 => Ok(()),
        other => Err(format!("{name}{matching:?} = {other:?}, want {want}")),
    }
}

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
}

/// `SidecarContainerNotReady`, firing, warning, of the policy `mesh` on `istio-proxy`: what
/// most tests provoke ([`native_pod`] with its sidecar not ready). Name the rest:
/// `AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }`.
pub const MESH_NOT_READY: AlertSeries<'static> = AlertSeries {
    alert: AlertName::SidecarContainerNotReady,
    state: AlertState::Firing,
    severity: Severity::Warning,
    policy: "mesh",
    namespace: "",
    pod: "",
    container: "istio-proxy",
};

impl AlertSeries<'_> {
    /// The series' labels as a scrape shows them (`check` empty).
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

/// Sorted copy.
pub fn sorted(mut v: Vec<Labels>) -> Vec<Labels> {
    v.sort();
    v
}
