//! `SidecarMissing`: fires at once for a running or pending Pod, never for a finished,
//! deleting or template one.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::alert::{Alert, AlertName, AlertState};
use crate::history::PodHistory;
use crate::injection::NamespaceMeta;
use crate::pod::PodView;
use crate::policy::CompiledPolicy;
use crate::rules::{evaluate, Around};
use crate::PolicyRef;
use sidecar_watch_api::{PolicySpec, SlimPod};

/// `shop/web-7d9-x`, a Deployment's Pod created at 10:00 running `app` (and `extra`
/// containers), in phase `phase`.
fn web(phase: &str, extra: Value) -> Value {
    let mut containers = vec![json!({"name": "app", "image": "shop/web:1"})];
    containers.extend(extra.as_array().cloned().unwrap_or_default());
    json!({
        "metadata": {"name": "web-7d9-x", "namespace": "shop", "uid": "u1",
            "creationTimestamp": "2025-06-03T10:00:00Z", "labels": {"pod-template-hash": "7d9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "r", "controller": true}]},
        "spec": {"containers": containers},
        "status": {"phase": phase, "startTime": "2025-06-03T10:00:00Z"}
    })
}

fn policy(spec: &str) -> CompiledPolicy {
    let spec: PolicySpec = serde_norway::from_str(spec).expect("a spec");
    CompiledPolicy::compile(PolicyRef::namespaced("shop", "mesh"), &spec).expect("compiles")
}

fn missing(pod: &Value, ns: Option<&NamespaceMeta>, policy: &CompiledPolicy) -> Vec<Alert> {
    let view = PodView::from_pod(&serde_json::from_value::<SlimPod>(pod.clone()).expect("a Pod"));
    let now: Timestamp = "2025-06-03T10:30:00Z".parse().expect("a time");
    let evaluation =
        evaluate(&view, policy, &PodHistory::default(), now, Around { namespace: ns, ..Around::default() });
    evaluation.alerts.into_iter().filter(|a| a.name == AlertName::SidecarMissing).collect()
}

fn istio_namespace() -> NamespaceMeta {
    NamespaceMeta::new(BTreeMap::from([("istio-injection".into(), "enabled".into())]), &BTreeMap::new())
}

#[test]
fn a_pod_in_an_injected_namespace_without_the_proxy_fires_at_once() {
    let quiet = policy("rules: {misconfiguration: {enabled: false}}");
    let alerts = missing(&web("Running", json!([])), Some(&istio_namespace()), &quiet);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!((alert.state, alert.container.as_str()), (AlertState::Firing, "istio-proxy"));
    assert_eq!(alert.since, Some("2025-06-03T10:00:00Z".parse().expect("a time")));
    assert_eq!(
        alert.message,
        "Pod shop/web-7d9-x runs no istio-proxy (Istio), which the label istio-injection=\"enabled\" on namespace \
         shop asks for: its injector did not add it — the injector was down or unreachable while its webhook fails \
         open (failurePolicy: Ignore), or the marker came after the Pod was created — so the Pod runs without it; \
         once the injector is healthy, restart the workload: kubectl rollout restart deployment/web -n shop"
    );
    // Pending too: the Pod was created without it, it will not appear.
    assert_eq!(missing(&web("Pending", json!([])), Some(&istio_namespace()), &quiet).len(), 1);
    // The proxy, by name or by image, wherever it is declared, is there.
    let proxy = json!([{"name": "mesh", "image": "docker.io/istio/proxyv2:1.24.0"}]);
    assert!(missing(&web("Running", proxy), Some(&istio_namespace()), &quiet).is_empty());
    // Without the namespace's labels nothing asks for it.
    assert!(missing(&web("Running", json!([])), None, &quiet).is_empty());
}

#[test]
fn never_for_a_finished_deleting_or_template_pod_nor_when_disabled() {
    let quiet = policy("rules: {misconfiguration: {enabled: false}}");
    let ns = istio_namespace();
    for phase in ["Succeeded", "Failed"] {
        assert!(missing(&web(phase, json!([])), Some(&ns), &quiet).is_empty(), "{phase}");
    }
    let mut deleting = web("Running", json!([]));
    deleting["metadata"]["deletionTimestamp"] = json!("2025-06-03T10:29:00Z");
    assert!(missing(&deleting, Some(&ns), &quiet).is_empty());
    let slim: SlimPod = serde_json::from_value(web("Running", json!([]))).expect("a Pod");
    let template = PodView::from_template(&slim, "Deployment", "web");
    let now: Timestamp = "2025-06-03T10:30:00Z".parse().expect("a time");
    let evaluation =
        evaluate(&template, &quiet, &PodHistory::default(), now, Around { namespace: Some(&ns), ..Around::default() });
    assert!(evaluation.alerts.iter().all(|a| a.name != AlertName::SidecarMissing));
    let off = policy("rules: {misconfiguration: {enabled: false}, sidecarMissing: {enabled: false}}");
    assert!(missing(&web("Running", json!([])), Some(&ns), &off).is_empty());
}

#[test]
fn required_sidecars_by_catalog_id_or_container_name() {
    let required = policy(
        "sidecars: {required: [istio, log-shipper]}\nrules: {misconfiguration: {enabled: false}, sidecarMissing: {severity: critical}}",
    );
    let alerts = missing(&web("Running", json!([])), None, &required);
    let found: Vec<(&str, &str)> = alerts.iter().map(|a| (a.container.as_str(), a.severity.as_str())).collect();
    assert_eq!(found, [("istio-proxy", "critical"), ("log-shipper", "critical")]);
    assert_eq!(
        alerts[1].message,
        "Pod shop/web-7d9-x runs no log-shipper, which SidecarPolicy shop/mesh requires (spec.sidecars.required): \
         add it to the workload's template, or the markers of its injector, then restart the workload: kubectl \
         rollout restart deployment/web -n shop"
    );
    // In an injected namespace the proxy is reported once, for the injector's marker.
    let alerts = missing(&web("Running", json!([])), Some(&istio_namespace()), &required);
    assert_eq!(alerts.iter().filter(|a| a.container == "istio-proxy").count(), 1);
    assert!(alerts[0].message.contains("istio-injection"), "{}", alerts[0].message);
    let both = json!([{"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"}, {"name": "log-shipper", "image": "x"}]);
    assert!(missing(&web("Running", both), None, &required).is_empty());
}

#[test]
fn a_bare_pod_and_another_owner_get_their_own_advice() {
    let quiet = policy("rules: {misconfiguration: {enabled: false}}");
    let mut bare = web("Running", json!([]));
    bare["metadata"].as_object_mut().expect("an object").remove("ownerReferences");
    let alert = &missing(&bare, Some(&istio_namespace()), &quiet)[0];
    assert!(
        alert.message.ends_with("create the Pod again: kubectl replace --force -f <its manifest> (Pod shop/web-7d9-x)"),
        "{}",
        alert.message
    );
    let mut job = web("Running", json!([]));
    job["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "nightly", "uid": "j", "controller": true}]);
    let alert = &missing(&job, Some(&istio_namespace()), &quiet)[0];
    assert!(
        alert
            .message
            .ends_with("delete the Pod so that its Job nightly creates it again: kubectl delete pod web-7d9-x -n shop"),
        "{}",
        alert.message
    );
}

#[test]
fn a_hostile_marker_value_is_quoted_and_cut() {
    let quiet = policy("rules: {misconfiguration: {enabled: false}}");
    let mut pod = web("Running", json!([]));
    let value = format!("\u{1b}[2J{}", "x".repeat(10_000));
    pod["metadata"]["annotations"] = json!({"sidecar.opentelemetry.io/inject": value});
    let alert = &missing(&pod, None, &quiet)[0];
    assert!(!alert.message.contains('\u{1b}'), "{}", alert.message);
    assert!(alert.message.len() < 1_000, "{} bytes", alert.message.len());
}
