//! Each injector's triggers and opt-outs, as its documentation and injector code describe them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{selecting, NamespaceMeta, INJECTORS};
use crate::catalog;
use crate::pod::PodView;
use sidecar_watch_api::{SlimPod, INJECTION_ANNOTATIONS};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn namespace(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> NamespaceMeta {
    NamespaceMeta::new(map(labels), &map(annotations))
}

/// A Deployment's Pod in `ns` with these labels, annotations and `hostNetwork`, running `app` only.
fn pod(ns: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)], host_network: bool) -> PodView {
    let pod: Value = json!({
        "metadata": {"name": "web-1", "namespace": ns, "uid": "u1",
            "labels": map(labels), "annotations": map(annotations),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "r", "controller": true}]},
        "spec": {"hostNetwork": host_network, "containers": [{"name": "app", "image": "shop/web:1"}]},
    });
    PodView::from_pod(&serde_json::from_value::<SlimPod>(pod).expect("a Pod"))
}

/// The catalog ids of the injectors that select the Pod, with "ns:" or "pod:" and the key.
fn selected(pod: &PodView, ns: Option<&NamespaceMeta>) -> Vec<String> {
    selecting(pod, ns)
        .map(|s| {
            let place = if s.by.on_namespace { "ns" } else { "pod" };
            format!("{} by {place}:{}={}", s.sidecar, s.by.marker.key, s.by.value)
        })
        .collect()
}

#[test]
fn the_table_names_catalog_entries_and_only_annotations_the_api_decodes() {
    for injector in INJECTORS {
        assert!(catalog::CatalogId::by_id(injector.catalog_id).is_some(), "{} is no catalog id", injector.catalog_id);
        for marker in injector.namespace.iter().chain(injector.pod) {
            if marker.place == super::Place::Annotation {
                assert!(INJECTION_ANNOTATIONS.contains(&marker.key), "{} is not decoded", marker.key);
            }
        }
        assert!(injector.source.contains("https://"), "{} cites nothing", injector.catalog_id);
    }
}

#[test]
fn istio_namespace_label_revision_and_pod_opt_outs() {
    let enabled = namespace(&[("istio-injection", "enabled")], &[]);
    let plain = pod("shop", &[], &[], false);
    assert_eq!(selected(&plain, Some(&enabled)), ["istio by ns:istio-injection=enabled"]);
    let rev = namespace(&[("istio.io/rev", "1-24")], &[]);
    assert_eq!(selected(&plain, Some(&rev)), ["istio by ns:istio.io/rev=1-24"]);
    // The Pod's label opts out; so does the older annotation.
    let out = pod("shop", &[("sidecar.istio.io/inject", "false")], &[], false);
    assert!(selected(&out, Some(&enabled)).is_empty());
    let out = pod("shop", &[], &[("sidecar.istio.io/inject", "false")], false);
    assert!(selected(&out, Some(&enabled)).is_empty());
    // A Pod label injects in an unlabelled namespace; the annotation "true" alone does not.
    let opted_in = pod("shop", &[("sidecar.istio.io/inject", "true")], &[], false);
    assert_eq!(selected(&opted_in, None), ["istio by pod:sidecar.istio.io/inject=true"]);
    assert!(selected(&pod("shop", &[], &[("sidecar.istio.io/inject", "true")], false), None).is_empty());
    // A namespace istio-injection other than enabled is final, whatever the Pod says.
    let disabled = namespace(&[("istio-injection", "disabled")], &[]);
    assert!(selected(&opted_in, Some(&disabled)).is_empty());
    // hostNetwork Pods and kube-system are never injected.
    assert!(selected(&pod("shop", &[], &[], true), Some(&enabled)).is_empty());
    assert!(selected(&pod("kube-system", &[], &[], false), Some(&enabled)).is_empty());
}

#[test]
fn linkerd_annotation_on_namespace_or_pod_the_pods_wins() {
    let enabled = namespace(&[], &[("linkerd.io/inject", "enabled")]);
    let plain = pod("shop", &[], &[], false);
    assert_eq!(selected(&plain, Some(&enabled)), ["linkerd by ns:linkerd.io/inject=enabled"]);
    let disabled = pod("shop", &[], &[("linkerd.io/inject", "disabled")], false);
    assert!(selected(&disabled, Some(&enabled)).is_empty());
    // A namespace "disabled" is not final: the Pod's "enabled" (or "ingress") wins.
    let ns_off = namespace(&[], &[("linkerd.io/inject", "disabled")]);
    let ingress = pod("shop", &[], &[("linkerd.io/inject", "ingress")], false);
    assert_eq!(selected(&ingress, Some(&ns_off)), ["linkerd by pod:linkerd.io/inject=ingress"]);
    // An unknown value opts out, as Linkerd reads it.
    assert!(selected(&pod("shop", &[], &[("linkerd.io/inject", "yes")], false), Some(&enabled)).is_empty());
    // The webhook never sees a namespace labelled admission-webhooks=disabled.
    let excluded = namespace(&[("config.linkerd.io/admission-webhooks", "disabled")], &[]);
    let enabled_pod = pod("shop", &[], &[("linkerd.io/inject", "enabled")], false);
    assert!(selected(&enabled_pod, Some(&excluded)).is_empty());
    assert!(selected(&pod("shop", &[], &[], true), Some(&enabled)).is_empty(), "hostNetwork");
}

#[test]
fn kuma_pod_labels_count_only_in_a_labelled_namespace() {
    let enabled = namespace(&[("kuma.io/sidecar-injection", "enabled")], &[]);
    let plain = pod("shop", &[], &[], false);
    assert_eq!(selected(&plain, Some(&enabled)), ["kuma by ns:kuma.io/sidecar-injection=enabled"]);
    let out = pod("shop", &[("kuma.io/sidecar-injection", "disabled")], &[], false);
    assert!(selected(&out, Some(&enabled)).is_empty());
    let on = pod("shop", &[("kuma.io/sidecar-injection", "enabled")], &[], false);
    assert!(selected(&on, None).is_empty(), "the webhook's namespace selector asks for the label");
    let off = namespace(&[("kuma.io/sidecar-injection", "disabled")], &[]);
    assert_eq!(selected(&on, Some(&off)), ["kuma by pod:kuma.io/sidecar-injection=enabled"]);
}

#[test]
fn pod_annotation_injectors_and_their_opt_outs() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 9] = [
        (
            &[("consul.hashicorp.com/connect-inject", "true")],
            &["consul by pod:consul.hashicorp.com/connect-inject=true"],
        ),
        (&[("consul.hashicorp.com/connect-inject", "false")], &[]),
        (&[("dapr.io/enabled", "true")], &["dapr by pod:dapr.io/enabled=true"]),
        (
            &[("vault.hashicorp.com/agent-inject", "true")],
            &["vault-agent by pod:vault.hashicorp.com/agent-inject=true"],
        ),
        (&[("vault.hashicorp.com/agent-inject", "true"), ("vault.hashicorp.com/agent-pre-populate-only", "true")], &[]),
        (
            &[("sidecar.opentelemetry.io/inject", "my-collector")],
            &["otel-collector by pod:sidecar.opentelemetry.io/inject=my-collector"],
        ),
        (&[("sidecar.opentelemetry.io/inject", "false")], &[]),
        (&[("gke-gcsfuse/volumes", "true")], &["gcsfuse by pod:gke-gcsfuse/volumes=true"]),
        (&[("gke-gcsfuse/volumes", "maybe")], &[]),
    ];
    for (annotations, want) in cases {
        assert_eq!(selected(&pod("shop", &[], annotations, false), None), want, "{annotations:?}");
    }
    // The OpenTelemetry Operator reads the namespace too; the Pod's "false" wins.
    let ns = namespace(&[], &[("sidecar.opentelemetry.io/inject", "true")]);
    assert_eq!(
        selected(&pod("shop", &[], &[], false), Some(&ns)),
        ["otel-collector by ns:sidecar.opentelemetry.io/inject=true"]
    );
    assert!(selected(&pod("shop", &[], &[("sidecar.opentelemetry.io/inject", "false")], false), Some(&ns)).is_empty());
}

#[test]
fn dapr_skips_bare_pods_and_a_tenants_namespace_markers_stay_in_its_namespace() {
    let bare: Value = json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u2",
        "annotations": {"dapr.io/enabled": "true"}}, "spec": {"containers": [{"name": "app"}]}});
    let bare = PodView::from_pod(&serde_json::from_value::<SlimPod>(bare).expect("a Pod"));
    assert!(selected(&bare, None).is_empty());
    // Markers are read from the Pod's own namespace only: the caller passes that one, and a
    // Pod's own labels or annotations select only the Pod.
    let other = pod("billing", &[], &[], false);
    assert!(selected(&other, None).is_empty());
}

#[test]
fn only_marker_changes_count_as_a_namespace_change() {
    let a = namespace(&[("team", "a")], &[]);
    let b = namespace(&[("team", "b")], &[]);
    assert!(!NamespaceMeta::markers_differ(Some(&a), &b));
    assert!(!NamespaceMeta::markers_differ(None, &a));
    let labelled = namespace(&[("team", "a"), ("istio-injection", "enabled")], &[]);
    assert!(NamespaceMeta::markers_differ(Some(&a), &labelled));
    let annotated = namespace(&[("team", "a")], &[("linkerd.io/inject", "enabled"), ("unrelated", "x")]);
    assert!(NamespaceMeta::markers_differ(Some(&a), &annotated));
    assert_eq!(annotated.annotations.len(), 1, "only injection annotations are kept");
}
