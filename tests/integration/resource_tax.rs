//! Issue 63's sidecar tax on `/metrics`: `sidecar_resource_requests` and
//! `sidecar_resource_limits`, per workload, sidecar and resource (`cpu` in cores, `memory` in
//! bytes), summed over the workload's live Pods; a resource a sidecar does not declare, or
//! declares as no quantity, writes no series, and its Pod stays tracked.

use std::collections::BTreeMap;

use crate::metrics_text::render;
use serde_json::{json, Value};
use sidecar_watch::api::{PolicySpec, SlimPod};
use sidecar_watch::engine::{CompiledPolicy, NamespaceMeta, PodUid, PodView, PolicyRef};
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Index, PolicyEntry};
use sidecar_watch::metrics::{FamilyFilter, NamespaceLabels, RenderOptions};
use sidecar_watch_testkit::engine::now;
use sidecar_watch_testkit::pod::{Container, PodBuilder};

/// The lines of the two tax families and `sidecar_info`, in the order rendered.
fn tax_lines(index: &Index, options: &RenderOptions) -> Vec<String> {
    render(index, options)
        .lines()
        .filter(|l| l.starts_with("sidecar_resource_") || l.starts_with("sidecar_info{"))
        .map(str::to_string)
        .collect()
}

/// `index` with the built-in policy cluster-wide.
fn index() -> Index {
    let index = Index::new();
    let policy = PolicyRef::cluster("default");
    let compiled = CompiledPolicy::compile(policy.clone(), &PolicySpec::default());
    index.apply_policy(policy, PolicyEntry::new(compiled), now());
    index
}

/// A replica `i` of Deployment `web` in `namespace` whose `log-shipper` native sidecar
/// declares `resources`; `edit` changes the Pod's JSON before it is decoded.
fn web_pod(namespace: &str, i: usize, resources: Value, edit: impl FnOnce(&mut Value)) -> PodView {
    let builder = PodBuilder::new(namespace, &format!("web-7d9-{i}"))
        .uid(format!("{namespace}-web-{i}"))
        .owner("ReplicaSet", "web-7d9")
        .label("pod-template-hash", "7d9")
        .native_sidecar(Container::new("log-shipper", "fluent/fluent-bit:3.2.4"))
        .container(Container::new("app", "shop/web:1.0"));
    let mut pod = builder.json();
    pod["spec"]["initContainers"][0]["resources"] = resources;
    edit(&mut pod);
    let pod: SlimPod = serde_json::from_value(pod).expect("a Pod");
    PodView::from_pod(&pod)
}

fn fluent_bit() -> Value {
    json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})
}

const WEB_REQUESTS: [&str; 2] = [
    r#"sidecar_resource_requests{namespace="shop",container="log-shipper",resource="cpu",workload_kind="Deployment",workload="web",product="fluent-bit"} 0.3"#,
    r#"sidecar_resource_requests{namespace="shop",container="log-shipper",resource="memory",workload_kind="Deployment",workload="web",product="fluent-bit"} 201326592"#,
];
const WEB_LIMITS: &str = r#"sidecar_resource_limits{namespace="shop",container="log-shipper",resource="memory",workload_kind="Deployment",workload="web",product="fluent-bit"} 402653184"#;
const WEB_INFO: &str = r#"sidecar_info{namespace="shop",workload_kind="Deployment",workload="web",container="log-shipper",product="fluent-bit",version="3.2.4"} 3"#;

/// Three replicas of a native sidecar requesting 100m and 64Mi, limited to 128Mi of memory
/// and no CPU: 0.3 cores and 3 × 64Mi requested, 3 × 128Mi limit, no CPU limit series.
#[test]
fn a_native_sidecar_sums_over_the_replicas() {
    let index = index();
    for i in 0..3 {
        index.apply_pod(web_pod("shop", i, fluent_bit(), |_| {}), now());
    }
    let expected = [WEB_INFO, WEB_REQUESTS[0], WEB_REQUESTS[1], WEB_LIMITS];
    assert_eq!(tax_lines(&index, &RenderOptions::default()), expected);
    // The same without the families that walk the Pods' sidecars: counted in a walk of its own.
    let families = FamilyFilter::new(&["sidecar_resource_.*".to_string()], &[]).expect("a valid allowlist");
    assert_eq!(tax_lines(&index, &RenderOptions { families, ..Default::default() }), expected[1..]);
}

/// A finished Pod and one being deleted leave the sums (`sidecar_info` still counts the
/// tracked Pods); a deleted one leaves both; the last live one gone, no series is left.
#[test]
fn pods_that_are_not_live_leave_the_sum() {
    let index = index();
    index.apply_pod(web_pod("shop", 0, fluent_bit(), |_| {}), now());
    index.apply_pod(web_pod("shop", 1, fluent_bit(), |p| p["status"]["phase"] = json!("Succeeded")), now());
    let deleting = |p: &mut Value| p["metadata"]["deletionTimestamp"] = json!("2025-06-03T10:29:00Z");
    index.apply_pod(web_pod("shop", 2, fluent_bit(), deleting), now());
    index.apply_pod(web_pod("shop", 3, fluent_bit(), |_| {}), now());
    index.delete_pod(PodUid::parse("shop-web-3"), now());
    let line = |l: &str, from: &str, to: &str| l.replace(from, to);
    assert_eq!(
        tax_lines(&index, &RenderOptions::default()),
        [
            WEB_INFO.to_string(),
            line(WEB_REQUESTS[0], "} 0.3", "} 0.1"),
            line(WEB_REQUESTS[1], "} 201326592", "} 67108864"),
            line(WEB_LIMITS, "} 402653184", "} 134217728"),
        ]
    );
    index.delete_pod(PodUid::parse("shop-web-0"), now());
    assert_eq!(tax_lines(&index, &RenderOptions::default()), [WEB_INFO.replace("} 3", "} 2")]);
}

/// A legacy sidecar (a catalog product in `spec.containers`) counts as a native one; a
/// quantity that is no quantity writes no series for its resource, and the Pod stays
/// tracked, its other resources summed.
#[test]
fn legacy_sidecars_count_and_malformed_quantities_write_nothing() {
    let index = index();
    let legacy = PodBuilder::new("books", "api-5f6-0")
        .uid("books-api-0")
        .owner("ReplicaSet", "api-5f6")
        .label("pod-template-hash", "5f6")
        .container(Container::new("app", "books/api:2.0"))
        .container(Container::new("envoy", "envoyproxy/envoy:v1.32.3"));
    let mut legacy = legacy.json();
    legacy["spec"]["containers"][1]["resources"] =
        json!({"requests": {"cpu": "1.5", "memory": "1Gi"}, "limits": {"cpu": "2"}});
    index.apply_pod(PodView::from_pod(&serde_json::from_value::<SlimPod>(legacy).expect("a Pod")), now());
    let malformed = json!({"requests": {"cpu": "lots", "memory": "64Mi"}, "limits": {"memory": "-1Gi"}});
    index.apply_pod(web_pod("shop", 0, malformed, |_| {}), now());
    assert_eq!(index.pod_count(), 2);
    assert_eq!(
        tax_lines(&index, &RenderOptions::default()),
        [
            r#"sidecar_info{namespace="books",workload_kind="Deployment",workload="api",container="envoy",product="envoy",version="v1.32.3"} 1"#,
            r#"sidecar_info{namespace="shop",workload_kind="Deployment",workload="web",container="log-shipper",product="fluent-bit",version="3.2.4"} 1"#,
            r#"sidecar_resource_requests{namespace="books",container="envoy",resource="cpu",workload_kind="Deployment",workload="api",product="envoy"} 1.5"#,
            r#"sidecar_resource_requests{namespace="books",container="envoy",resource="memory",workload_kind="Deployment",workload="api",product="envoy"} 1073741824"#,
            r#"sidecar_resource_requests{namespace="shop",container="log-shipper",resource="memory",workload_kind="Deployment",workload="web",product="fluent-bit"} 67108864"#,
            r#"sidecar_resource_limits{namespace="books",container="envoy",resource="cpu",workload_kind="Deployment",workload="api",product="envoy"} 2"#,
        ]
    );
}

/// Two workloads of one name in two namespaces are two series each, every one with its
/// namespace's `label_*` copies (`--namespace-labels`), as `sidecar_info` has them.
#[test]
fn workloads_in_two_namespaces_with_their_namespace_labels() {
    let index = index();
    let allow = NamespaceLabels::new(&["team".to_string()]).expect("a valid key");
    for (namespace, team) in [("shop", "payments"), ("books", "catalog")] {
        let labels = BTreeMap::from([("team".to_string(), team.to_string())]);
        let (values, _) = allow.values(&labels);
        index.apply_namespace(namespace, NamespaceMeta::new(labels, &BTreeMap::new()).with_exported(values), now());
    }
    for i in 0..3 {
        index.apply_pod(web_pod("shop", i, fluent_bit(), |_| {}), now());
    }
    let small = json!({"requests": {"cpu": "20m", "memory": "32Mi"}});
    index.apply_pod(web_pod("books", 0, small, |_| {}), now());
    let options = RenderOptions { namespace_labels: allow, ..Default::default() };
    let lines: Vec<String> =
        tax_lines(&index, &options).into_iter().filter(|l| l.starts_with("sidecar_resource_")).collect();
    let books = |resource: &str, value: &str| {
        format!(
            r#"sidecar_resource_requests{{namespace="books",container="log-shipper",resource="{resource}",workload_kind="Deployment",workload="web",product="fluent-bit",label_team="catalog"}} {value}"#
        )
    };
    let shop = |line: &str| line.replace("\"} ", "\",label_team=\"payments\"} ");
    assert_eq!(
        lines,
        [
            books("cpu", "0.02"),
            books("memory", "33554432"),
            shop(WEB_REQUESTS[0]),
            shop(WEB_REQUESTS[1]),
            shop(WEB_LIMITS),
        ]
    );
}
