//! Issue 56's labels on `/metrics`: `product` on `sidecar_alerts`, and the Namespace labels
//! `--namespace-labels` copies onto `sidecar_alerts` and `sidecar_info` as `label_*`, read
//! at each scrape from the namespace as the index holds it now; and issue 63's identity on
//! `sidecar_container_ready` (the same `product`, workload and `label_*`), which a rule joins
//! a product's own per-Pod series on.

use std::collections::BTreeMap;

use crate::metrics_text::render;
use serde_json::json;
use sidecar_watch::api::{PolicySpec, SlimPod};
use sidecar_watch::engine::{CompiledPolicy, NamespaceMeta, PodUid, PodView, PolicyRef};
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Index, PolicyEntry};
use sidecar_watch::metrics::{NamespaceLabels, RenderOptions};
use sidecar_watch_testkit::engine::now;
use sidecar_watch_testkit::pod::{Container, PodBuilder};

fn lines<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    let prefix = format!("{family}{{");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// The value of `label` in a sample line.
fn label<'a>(line: &'a str, label: &str) -> &'a str {
    let start = [',', '{']
        .iter()
        .find_map(|c| line.find(&format!("{c}{label}=\"")))
        .map(|i| i + label.len() + 3)
        .expect("the label");
    let end = line[start..].find('"').expect("a closing quote");
    &line[start..start + end]
}

fn apply_policy(index: &Index, policy: PolicyRef, spec: serde_json::Value) {
    let spec: PolicySpec = serde_json::from_value(spec).expect("a spec");
    let compiled = CompiledPolicy::compile(policy.clone(), &spec);
    index.apply_policy(policy, PolicyEntry::new(compiled), now());
}

/// A replica of `web` in `namespace` whose two sidecars are not ready: `istio-proxy` (the
/// catalog's `istio`) and `audit-agent` (a sidecar the catalog does not know).
fn web_pod(namespace: &str, i: usize) -> PodView {
    let pod = PodBuilder::new(namespace, &format!("web-7d9-{i}"))
        .uid(format!("{namespace}-web-{i}"))
        .owner("ReplicaSet", "web-7d9")
        .label("pod-template-hash", "7d9")
        .label("app", "web")
        .native_sidecar(Container::new("istio-proxy", "istio/proxyv2:1.24.2").ready(false))
        .native_sidecar(Container::new("audit-agent", "example/audit-agent:2.0").ready(false))
        .container(Container::new("app", "shop/web:1.0"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

/// The built-in policy cluster-wide and `web` Pods in `shop` and `books`.
fn index() -> Index {
    let index = Index::new();
    apply_policy(&index, PolicyRef::cluster("default"), json!({}));
    for namespace in ["shop", "books"] {
        for i in 0..3 {
            index.apply_pod(web_pod(namespace, i), now());
        }
    }
    index
}

/// What the Namespace watch gives the index for a namespace with `labels`.
fn namespace(index: &Index, name: &str, allow: &NamespaceLabels, labels: BTreeMap<String, String>) {
    let (values, _) = allow.values(&labels);
    index.apply_namespace(name, NamespaceMeta::new(labels, &BTreeMap::new()).with_exported(values), now());
}

fn allow(keys: &[&str]) -> NamespaceLabels {
    NamespaceLabels::new(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()).expect("valid keys")
}

fn options(allow: &NamespaceLabels) -> RenderOptions {
    RenderOptions { namespace_labels: allow.clone(), ..Default::default() }
}

/// `product` is the catalog id of the alert's container, `unknown` for one the catalog does
/// not know, and for `SidecarMissing` the absent sidecar's: a catalog entry's, or `unknown`
/// for a required sidecar the catalog does not know.
#[test]
fn product_is_the_catalog_id_of_the_alert_container() {
    let index = index();
    apply_policy(
        &index,
        PolicyRef::namespaced("shop", "mandate"),
        json!({"selector": {"matchLabels": {"app": "web"}}, "sidecars": {"required": ["vector", "linkerd", "otc-container"]}}),
    );
    let text = render(&index, &RenderOptions::default());
    let mut products: Vec<String> = lines(&text, "sidecar_alerts")
        .iter()
        .filter(|l| l.contains("pod=\"web-7d9-0\",") && l.contains("namespace=\"shop\""))
        .map(|l| {
            format!(
                "{} {} {} {}",
                label(l, "policy"),
                label(l, "alertname"),
                label(l, "container"),
                label(l, "product")
            )
        })
        .collect();
    products.sort();
    products.dedup();
    assert_eq!(
        products,
        [
            "default MainContainerReadyButSidecarNot audit-agent unknown",
            "default MainContainerReadyButSidecarNot istio-proxy istio",
            "default MainStartedBeforeSidecarReady audit-agent unknown",
            "default MainStartedBeforeSidecarReady istio-proxy istio",
            "default SidecarContainerNotReady audit-agent unknown",
            "default SidecarContainerNotReady istio-proxy istio",
            "default SidecarMisconfigured audit-agent unknown",
            "default SidecarMisconfigured istio-proxy istio",
            "mandate MainContainerReadyButSidecarNot audit-agent unknown",
            "mandate MainContainerReadyButSidecarNot istio-proxy istio",
            "mandate MainStartedBeforeSidecarReady audit-agent unknown",
            "mandate MainStartedBeforeSidecarReady istio-proxy istio",
            "mandate SidecarContainerNotReady audit-agent unknown",
            "mandate SidecarContainerNotReady istio-proxy istio",
            "mandate SidecarMisconfigured audit-agent unknown",
            "mandate SidecarMisconfigured istio-proxy istio",
            "mandate SidecarMissing linkerd-proxy linkerd",
            "mandate SidecarMissing otc-container otel-collector",
            "mandate SidecarMissing vector unknown",
        ]
    );
    // Without --namespace-labels, the line ends with `product`, as before issue 56 but for it.
    assert!(lines(&text, "sidecar_alerts")
        .iter()
        .all(|l| l.contains(",workload=\"web\",product=\"") && !l.contains("label_")));
}

/// Only the allowlisted labels of a namespace with 1,000 are exported, and only they are
/// kept for it; every series of both families carries every allowlisted name, empty where
/// the namespace lacks the label or is not known; a value of 63 characters is whole.
#[test]
fn allowlisted_namespace_labels_are_on_every_alert_and_info_series() {
    let index = index();
    let allow = allow(&["team", "app.kubernetes.io/part-of"]);
    let mut labels: BTreeMap<String, String> = (0..998).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    labels.insert("team".into(), "payments".into());
    labels.insert("cost-center".into(), "c".repeat(63));
    assert_eq!(labels.len(), 1000);
    namespace(&index, "shop", &allow, labels);
    let long = "p".repeat(63);
    namespace(&index, "books", &allow, BTreeMap::from([("app.kubernetes.io/part-of".into(), long.clone())]));
    index.with_namespaces(|namespaces| {
        let kept: Vec<&str> = namespaces["shop"].exported.iter().map(|v| &**v).collect();
        assert_eq!(kept, ["payments", ""]);
    });

    let text = render(&index, &options(&allow));
    let alerts = lines(&text, "sidecar_alerts");
    assert_eq!(alerts.len(), 72, "6 alerts on each of 2 sidecars of 6 Pods");
    for line in &alerts {
        let expected = if label(line, "namespace") == "shop" {
            ",product=\"istio\",label_team=\"payments\",label_app_kubernetes_io_part_of=\"\"} 1".to_string()
        } else {
            format!(",product=\"istio\",label_team=\"\",label_app_kubernetes_io_part_of=\"{long}\"}} 1")
        };
        let expected =
            if line.contains("container=\"audit-agent\"") { expected.replace("istio", "unknown") } else { expected };
        assert!(line.ends_with(&expected), "{line}");
    }
    assert_eq!(
        lines(&text, "sidecar_info"),
        [
            format!("sidecar_info{{namespace=\"books\",workload_kind=\"Deployment\",workload=\"web\",container=\"audit-agent\",product=\"unknown\",version=\"2.0\",label_team=\"\",label_app_kubernetes_io_part_of=\"{long}\"}} 3"),
            format!("sidecar_info{{namespace=\"books\",workload_kind=\"Deployment\",workload=\"web\",container=\"istio-proxy\",product=\"istio\",version=\"1.24.2\",label_team=\"\",label_app_kubernetes_io_part_of=\"{long}\"}} 3"),
            "sidecar_info{namespace=\"shop\",workload_kind=\"Deployment\",workload=\"web\",container=\"audit-agent\",product=\"unknown\",version=\"2.0\",label_team=\"payments\",label_app_kubernetes_io_part_of=\"\"} 3".to_string(),
            "sidecar_info{namespace=\"shop\",workload_kind=\"Deployment\",workload=\"web\",container=\"istio-proxy\",product=\"istio\",version=\"1.24.2\",label_team=\"payments\",label_app_kubernetes_io_part_of=\"\"} 3".to_string(),
        ]
    );
    assert!(!text.contains("label_k") && !text.contains("label_cost"), "keys outside the allowlist are not exported");
    assert!(
        text.lines().filter(|l| l.contains("label_")).all(|l| [
            "sidecar_alerts{",
            "sidecar_container_ready{",
            "sidecar_info{"
        ]
        .iter()
        .any(|f| l.starts_with(f))),
        "only the families that carry a sidecar's identity carry them"
    );

    // A namespace the index does not know (no Namespace object yet): every name, empty.
    index.apply_pod(web_pod("new", 0), now());
    let text = render(&index, &options(&allow));
    let new: Vec<&str> = lines(&text, "sidecar_info").into_iter().filter(|l| l.contains("namespace=\"new\"")).collect();
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|l| l.ends_with(",label_team=\"\",label_app_kubernetes_io_part_of=\"\"} 1")));
}

/// A label that changes while alerts fire: each scrape has one series per alert, with the
/// value of the moment, and none with the old one.
#[test]
fn a_changed_namespace_label_changes_the_series_at_the_next_scrape() {
    let index = index();
    let allow = allow(&["team"]);
    let team = |value: &str| BTreeMap::from([("team".to_string(), value.to_string())]);
    namespace(&index, "shop", &allow, team("payments"));
    let shop = |text: &str| -> Vec<String> {
        lines(text, "sidecar_alerts")
            .into_iter()
            .filter(|l| l.contains("namespace=\"shop\""))
            .map(str::to_string)
            .collect()
    };
    let before = shop(&render(&index, &options(&allow)));
    assert_eq!(before.len(), 36);
    assert!(before.iter().all(|l| l.ends_with(",label_team=\"payments\"} 1")));

    namespace(&index, "shop", &allow, team("storefront"));
    let text = render(&index, &options(&allow));
    let after = shop(&text);
    assert_eq!(after, before.iter().map(|l| l.replace("\"payments\"", "\"storefront\"")).collect::<Vec<_>>());
    assert!(!text.contains("payments"));
    let mut unique = after.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), after.len(), "no series twice");
    assert!(lines(&text, "sidecar_info")
        .iter()
        .filter(|l| l.contains("namespace=\"shop\""))
        .all(|l| l.ends_with(",label_team=\"storefront\"} 3")));

    // Removed: empty, not gone and not the old value.
    namespace(&index, "shop", &allow, BTreeMap::new());
    let after = shop(&render(&index, &options(&allow)));
    assert_eq!(after.len(), 36);
    assert!(after.iter().all(|l| l.ends_with(",label_team=\"\"} 1")));
}

/// An alert on a workload is a `sidecar_alerts` series with `pod=""`, the workload as users
/// know it, the catalog's `product` and the namespace's `label_*`, within the namespace's
/// series cap like the Pods' series.
#[test]
fn an_alert_on_a_workload_is_a_series_without_a_pod() {
    use sidecar_watch::engine::CatalogId;
    use sidecar_watch::engine::{WorkloadId, WorkloadKind};
    use sidecar_watch::index::Condition;
    let index = index();
    let allow = allow(&["team"]);
    namespace(&index, "shop", &allow, BTreeMap::from([("team".into(), "payments".into())]));
    let workload = WorkloadId { namespace: "shop".into(), kind: WorkloadKind::Deployment, name: "cart".into() };
    let condition = Condition {
        container: "istio-proxy".into(),
        container_kind: None,
        catalog: CatalogId::by_id("istio"),
        since: now(),
        latest: now(),
        message: "Deployment/cart cannot create Pods".into(),
        object_uid: None,
        template_labels: None,
    };
    index.set_create_failure(workload, Some(condition), now());
    let text = render(&index, &options(&allow));
    let on_workload: Vec<&str> =
        lines(&text, "sidecar_alerts").into_iter().filter(|l| l.contains("SidecarInjectionFailed")).collect();
    assert_eq!(
        on_workload,
        ["sidecar_alerts{alertname=\"SidecarInjectionFailed\",alertstate=\"pending\",severity=\"critical\",\
          policy=\"default\",policy_namespace=\"\",namespace=\"shop\",pod=\"\",container=\"istio-proxy\",check=\"\",\
          workload_kind=\"Deployment\",workload=\"cart\",product=\"istio\",label_team=\"payments\"} 1"]
    );
    // Three Pods of web fire two alerts each: a cap of 6 leaves no room for the workload's.
    let capped = RenderOptions { max_series_per_namespace: 6, ..options(&allow) };
    let text = render(&index, &capped);
    assert!(!text.contains("SidecarInjectionFailed"), "{text}");
}

/// `sidecar_container_ready` carries the identity `sidecar_alerts` and `sidecar_info` write:
/// the workload (a Deployment's, a bare Pod's own name, a CronJob's for its Job's Pod), the
/// catalog `product` and the namespace's `label_*`; a deleted Pod's series are gone at the
/// next scrape, so a join on them drops its signal too.
#[test]
fn sidecar_container_ready_carries_the_identity_to_join_on() {
    let index = Index::new();
    apply_policy(&index, PolicyRef::cluster("default"), json!({}));
    let allow = allow(&["team"]);
    namespace(&index, "shop", &allow, BTreeMap::from([("team".into(), "payments".into())]));
    index.apply_pod(web_pod("shop", 0), now());
    let bare = PodBuilder::new("shop", "debug")
        .uid("shop-debug")
        .native_sidecar(Container::new("istio-proxy", "istio/proxyv2:1.24.2"))
        .container(Container::new("app", "shop/debug:1.0"));
    index.apply_pod(PodView::from_pod(&bare.decode::<SlimPod>()), now());
    // Minute 29,149,080 is 2025-06-03T10:00:00Z: the CronJob controller's name for that run.
    let cron = PodBuilder::new("shop", "nightly-29149080-x7k2p")
        .uid("shop-nightly")
        .created("2025-06-03T10:00:05Z")
        .owner("Job", "nightly-29149080")
        .native_sidecar(Container::new("log-shipper", "fluent/fluent-bit:3.2.4"))
        .container(Container::new("report", "shop/report:1.0"));
    index.apply_pod(PodView::from_pod(&cron.decode::<SlimPod>()), now());

    let text = render(&index, &options(&allow));
    // Sorted: a Pod's place in the text is its segment's.
    let mut ready = lines(&text, "sidecar_container_ready");
    ready.sort();
    assert_eq!(
        ready,
        [
            "sidecar_container_ready{namespace=\"shop\",pod=\"debug\",container=\"istio-proxy\",sidecar_type=\"native\",workload_kind=\"Pod\",workload=\"debug\",product=\"istio\",label_team=\"payments\"} 1",
            "sidecar_container_ready{namespace=\"shop\",pod=\"nightly-29149080-x7k2p\",container=\"log-shipper\",sidecar_type=\"native\",workload_kind=\"CronJob\",workload=\"nightly\",product=\"fluent-bit\",label_team=\"payments\"} 1",
            "sidecar_container_ready{namespace=\"shop\",pod=\"web-7d9-0\",container=\"audit-agent\",sidecar_type=\"native\",workload_kind=\"Deployment\",workload=\"web\",product=\"unknown\",label_team=\"payments\"} 0",
            "sidecar_container_ready{namespace=\"shop\",pod=\"web-7d9-0\",container=\"istio-proxy\",sidecar_type=\"native\",workload_kind=\"Deployment\",workload=\"web\",product=\"istio\",label_team=\"payments\"} 0",
        ]
    );
    // Without --namespace-labels: the same lines without `label_team`.
    let plain = render(&index, &RenderOptions::default());
    let without: Vec<String> =
        lines(&text, "sidecar_container_ready").iter().map(|l| l.replace(",label_team=\"payments\"", "")).collect();
    assert_eq!(lines(&plain, "sidecar_container_ready"), without);
    // The restart counter keeps its labels: the ready series is the one to join on.
    assert!(lines(&text, "sidecar_container_restarts_total")
        .iter()
        .all(|l| !l.contains("workload") && !l.contains("label_team")));

    index.delete_pod(PodUid::parse("shop-debug"), now());
    index.delete_pod(PodUid::parse("shop-nightly"), now());
    let text = render(&index, &options(&allow));
    let pods: Vec<&str> = lines(&text, "sidecar_container_ready").iter().map(|l| label(l, "pod")).collect();
    assert_eq!(pods, ["web-7d9-0", "web-7d9-0"]);
}
