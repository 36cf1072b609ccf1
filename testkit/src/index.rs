//! Index fixtures (feature `index`): Pods, policies and the alerts they raise, for the
//! index's test binary (`crates/index/tests/index/`) and the operator's tests of what it makes
//! of the index (`tests/integration/index.rs` and `policy_limits.rs`).
//!
//! Test fixtures: they panic, naming what, on a Pod or policy that does not parse.

use crate::pod::{Container, PodBuilder};
use jiff::Timestamp;
use serde_json::json;
use sidecar_watch_api::{PolicySpec, SlimPod};
use sidecar_watch_engine::{AlertState, CompiledPolicy, PodView, PolicyRef};
use sidecar_watch_index::Writes;
use sidecar_watch_index::{Index, Outcome, PolicyEntry};

/// `text` (RFC 3339) as a timestamp.
pub fn ts(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// A web Pod with a native `istio-proxy` sidecar; `sidecar_ready` toggles its readiness.
pub fn web_pod(name: &str, uid: &str, labels: &[(&str, &str)], sidecar_ready: bool) -> PodView {
    let pod = labels.iter().fold(PodBuilder::new("shop", name).uid(uid).created(CREATED), |p, (k, v)| p.label(k, v));
    let pod = pod
        .native_sidecar(Container::istio_proxy().ready(sidecar_ready))
        .container(Container::new("app", "shop/web:1.0"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

/// When every Pod here was created.
pub const CREATED: &str = "2026-11-22T10:00:00Z";

/// The policy under test; start-up order is left out (the sidecar here never became ready,
/// which that rule would report too).
pub fn mesh_policy(selector: serde_json::Value) -> (PolicyRef, PolicyEntry) {
    let spec: PolicySpec = serde_json::from_value(
        serde_json::json!({"selector": selector, "rules": {"startupOrder": {"enabled": false}}}),
    )
    .expect("spec");
    let policy = PolicyRef::namespaced("shop", "mesh");
    let compiled = CompiledPolicy::compile(policy.clone(), &spec);
    (policy, PolicyEntry::new(compiled))
}

/// The alerts in `state` of every Pod of `index` (rule alerts, not static checks) as
/// `pod/container:alert`, sorted.
pub fn alert_names(index: &Index, state: AlertState) -> Vec<String> {
    let mut names = Vec::new();
    index.for_each_pod(|p| {
        for r in &p.results {
            for a in r.alerts.iter().filter(|a| a.state == state && a.check.is_none()) {
                names.push(format!("{}/{}:{}", p.view().name(), r.container_name(a, p.view()), a.name));
            }
        }
    });
    names.sort();
    names
}

/// The instant the index tests evaluate at (ten minutes after [`CREATED`]).
pub const NOW: &str = "2026-11-22T10:10:00Z";

/// [`NOW`] as a timestamp.
pub fn now() -> Timestamp {
    NOW.parse().expect("timestamp")
}

/// A Pod with a native `istio-proxy` that is not ready and a legacy `log-agent`.
pub fn pod(namespace: &str, name: &str, app: &str) -> PodView {
    let pod: SlimPod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}-{name}"),
                     "labels": {"app": app}, "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {
            "initContainers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.22.0", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "shop/web:1.0"}, {"name": "log-agent", "image": "corp/agent:2"}]
        },
        "status": {
            "startTime": "2026-11-22T10:00:00Z",
            "initContainerStatuses": [{"name": "istio-proxy", "ready": false, "restartCount": 0, "started": true,
                                       "image": "", "imageID": "", "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}},
                {"name": "log-agent", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}}]
        }
    }))
    .expect("valid Pod");
    PodView::from_pod(&pod)
}

/// A SidecarPolicy `namespace/name` with `spec`, created at minute `created` (if any).
pub fn policy(namespace: &str, name: &str, spec: serde_json::Value, created: Option<i64>) -> (PolicyRef, PolicyEntry) {
    let parsed: PolicySpec = serde_json::from_value(spec.clone()).expect("spec");
    let policy = PolicyRef::namespaced(namespace, name);
    let mut entry = PolicyEntry::new(CompiledPolicy::compile(policy.clone(), &parsed));
    entry.created =
        created.map(|m| "2026-11-22T09:00:00Z".parse::<Timestamp>().expect("t") + jiff::SignedDuration::from_mins(m));
    (policy, entry)
}

/// Applies a policy to `index` at [`NOW`].
pub fn apply(index: &Index, (policy, entry): (PolicyRef, PolicyEntry)) -> Outcome {
    index.apply_policy(policy, entry, now())
}
