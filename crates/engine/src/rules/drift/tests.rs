//! `SidecarVersionDrift` against `spec.sidecars.minimumVersions`.

use jiff::Timestamp;
use serde_json::json;

use crate::alert::{Alert, AlertName, AlertState};
use crate::history::PodHistory;
use crate::pod::PodView;
use crate::policy::CompiledPolicy;
use crate::rules::{evaluate, Around};
use crate::PolicyRef;
use sidecar_watch_api::{PolicySpec, SlimPod};

/// `shop/web-1`, created at `created`, with a native `istio-proxy` of `image`.
fn pod(image: &str, created: &str) -> PodView {
    let pod = json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "creationTimestamp": created},
        "spec": {"initContainers": [{"name": "istio-proxy", "image": image, "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": "Running", "startTime": created}
    });
    PodView::from_pod(&serde_json::from_value::<SlimPod>(pod).expect("a Pod"))
}

fn policy(spec: &str) -> Result<CompiledPolicy, String> {
    let spec: PolicySpec = serde_norway::from_str(spec).map_err(|e| e.to_string())?;
    CompiledPolicy::compile(PolicyRef::namespaced("shop", "mesh"), &spec).map_err(|e| e.to_string())
}

fn drift(view: &PodView, policy: &CompiledPolicy) -> Vec<Alert> {
    let now: Timestamp = "2025-06-03T12:00:00Z".parse().expect("a time");
    let evaluation = evaluate(view, policy, &PodHistory::default(), now, Around::default());
    evaluation.alerts.into_iter().filter(|a| a.name == AlertName::SidecarVersionDrift).collect()
}

const MINIMUM: &str = "sidecars: {minimumVersions: {istio: \"1.25\"}}\nrules: {misconfiguration: {enabled: false}}";

#[test]
fn an_older_release_fires_after_for_from_the_pods_creation() {
    let policy = policy(MINIMUM).expect("compiles");
    let alerts = drift(&pod("docker.io/istio/proxyv2:1.24.2", "2025-06-03T10:00:00Z"), &policy);
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].state, alerts[0].container.as_str()), (AlertState::Firing, "istio-proxy"));
    assert_eq!(
        alerts[0].message,
        "Sidecar istio-proxy (Istio) in Pod shop/web-1 runs version \"1.24.2\", older than 1.25.0, the minimum \
         SidecarPolicy shop/mesh sets for istio (spec.sidecars.minimumVersions); create the Pod again: kubectl \
         replace --force -f <its manifest> (Pod shop/web-1)"
    );
    // Created 30 minutes ago, within the default 1h: pending, as a rollout in progress is.
    let young = drift(&pod("docker.io/istio/proxyv2:1.24.2", "2025-06-03T11:30:00Z"), &policy);
    assert_eq!(young[0].state, AlertState::Pending);
}

#[test]
fn newer_equal_and_unknown_versions_never_fire() {
    let minimum = policy(MINIMUM).expect("compiles");
    for image in [
        "istio/proxyv2:1.25.0",
        "istio/proxyv2:1.26.1-distroless",
        "istio/proxyv2:latest",
        "istio/proxyv2@sha256:8f3e1a0c2b7d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f",
        "istio/proxyv2:stable",
    ] {
        assert!(drift(&pod(image, "2025-06-03T10:00:00Z"), &minimum).is_empty(), "{image}");
    }
    // By container name too; and none without a minimum for the sidecar.
    let by_name = policy("sidecars: {minimumVersions: {istio-proxy: \"2.0\"}}").expect("compiles");
    assert_eq!(drift(&pod("istio/proxyv2:1.25.0", "2025-06-03T10:00:00Z"), &by_name).len(), 1);
    let other = policy("sidecars: {minimumVersions: {linkerd: \"2.0\"}}").expect("compiles");
    assert!(drift(&pod("istio/proxyv2:1.0.0", "2025-06-03T10:00:00Z"), &other).is_empty());
}

#[test]
fn a_minimum_that_is_not_a_release_is_refused_naming_its_key() {
    let error = policy("sidecars: {minimumVersions: {istio: latest}}").expect_err("refused");
    assert_eq!(error, "spec.sidecars.minimumVersions.istio: \"latest\" is not a release such as 1.25 or 1.25.2");
}
