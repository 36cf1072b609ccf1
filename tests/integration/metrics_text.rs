//! The per-Pod families exactly as Prometheus reads them: label order, escaping of label
//! values (backslash, double quote, newline), numbers, and the `# HELP`/`# TYPE` headers.

use sidecar_watch::api::{PolicySpec, SlimPod};
use sidecar_watch::engine::{CompiledPolicy, PodView, PolicyRef};
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Index, PolicyEntry};
use sidecar_watch::metrics::{render_index, FamilyFilter, RenderOptions};
use sidecar_watch_testkit::engine::{now, Scenario};
use sidecar_watch_testkit::pod::{Container, PodBuilder, Probes};

/// A native sidecar, not ready and often restarted, in a namespace and container whose names
/// need escaping (the API server would refuse them, but nothing in the operator may rely on
/// that).
fn odd_pod() -> SlimPod {
    PodBuilder::new("we\"ird\\ns\n2", "odd\"pod")
        .uid("odd-1")
        .native_sidecar(
            Container::new("log\\\"side\ncar", "busybox:1.36")
                .probes(Probes::Exec)
                .cpu_request("10m")
                .ready(false)
                .restarts(2147483647),
        )
        .container(Container::new("app", "shop/web:1.0"))
        .decode()
}

/// The built-in policy cluster-wide, a second one in the odd namespace (with an odd name),
/// and Pods covering native and legacy sidecars, pending and firing alerts, static checks
/// and restart counts.
fn index() -> Index {
    let index = Index::new();
    let spec = PolicySpec::default();
    for policy in [PolicyRef::cluster("default"), PolicyRef::namespaced("we\"ird\\ns\n2", "strict\\\"p\"")] {
        let compiled = CompiledPolicy::compile(policy.clone(), &spec);
        index.apply_policy(policy, PolicyEntry::new(compiled), now());
    }
    let pods = [Scenario::CrashloopingSidecar, Scenario::TwoSidecars, Scenario::MisconfiguredSidecars]
        .map(Scenario::decode::<SlimPod>);
    for (uid, mut pod) in UIDS.into_iter().zip(pods.into_iter().chain([odd_pod()])) {
        pod.metadata.uid = Some(uid.to_string());
        index.apply_pod(PodView::from_pod(&pod), now());
    }
    // Pods of one segment come in no fixed order; segments come in order.
    for segment in 0..index.segment_count() {
        let mut pods = 0;
        index.for_each_pod_in_segment(segment, |_| pods += 1);
        assert!(pods <= 1, "segment {segment} holds {pods} Pods: pick other UIDS");
    }
    index
}

/// UIDs that put each Pod in a segment of its own.
const UIDS: [&str; 4] = ["uid-a", "uid-b", "uid-c", "uid-d"];

/// The whole `/metrics` text of `index` (the other metrics tests use it too).
pub(crate) fn render(index: &Index, options: &RenderOptions) -> String {
    let mut text = String::new();
    render_index(index, options, |chunk| {
        text.push_str(&chunk);
        true
    });
    text
}

/// Rendered before the sample writer was factored out; must not change (but for the labels
/// issue 56 added, `product`, and the sidecar tax's families issue 63 added: the seed
/// scenarios' requests and limits, one Pod each; no series for a resource not declared).
const GOLDEN: &str = r#"# HELP sidecar_alerts Active sidecar alerts, 1 per alert (pending or firing)
# TYPE sidecar_alerts gauge
sidecar_alerts{alertname="SidecarContainerNotReady",alertstate="firing",severity="warning",policy="default",policy_namespace="",namespace="we\"ird\\ns\n2",pod="odd\"pod",container="log\\\"side\ncar",check="",workload_kind="Pod",workload="odd\"pod",product="unknown"} 1
sidecar_alerts{alertname="MainContainerReadyButSidecarNot",alertstate="firing",severity="warning",policy="default",policy_namespace="",namespace="we\"ird\\ns\n2",pod="odd\"pod",container="log\\\"side\ncar",check="",workload_kind="Pod",workload="odd\"pod",product="unknown"} 1
sidecar_alerts{alertname="SidecarContainerNotReady",alertstate="firing",severity="warning",policy="strict\\\"p\"",policy_namespace="we\"ird\\ns\n2",namespace="we\"ird\\ns\n2",pod="odd\"pod",container="log\\\"side\ncar",check="",workload_kind="Pod",workload="odd\"pod",product="unknown"} 1
sidecar_alerts{alertname="MainContainerReadyButSidecarNot",alertstate="firing",severity="warning",policy="strict\\\"p\"",policy_namespace="we\"ird\\ns\n2",namespace="we\"ird\\ns\n2",pod="odd\"pod",container="log\\\"side\ncar",check="",workload_kind="Pod",workload="odd\"pod",product="unknown"} 1
sidecar_alerts{alertname="SidecarContainerNotReady",alertstate="firing",severity="warning",policy="default",policy_namespace="",namespace="shop",pod="web-7c9f8d6b5-k2x8q",container="log-shipper",check="",workload_kind="Deployment",workload="web",product="fluent-bit"} 1
sidecar_alerts{alertname="MainContainerReadyButSidecarNot",alertstate="firing",severity="warning",policy="default",policy_namespace="",namespace="shop",pod="web-7c9f8d6b5-k2x8q",container="log-shipper",check="",workload_kind="Deployment",workload="web",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarRestartingFrequently",alertstate="firing",severity="critical",policy="default",policy_namespace="",namespace="shop",pod="web-7c9f8d6b5-k2x8q",container="log-shipper",check="",workload_kind="Deployment",workload="web",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarCrashLooping",alertstate="firing",severity="critical",policy="default",policy_namespace="",namespace="shop",pod="web-7c9f8d6b5-k2x8q",container="log-shipper",check="",workload_kind="Deployment",workload="web",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarContainerNotReady",alertstate="pending",severity="warning",policy="default",policy_namespace="",namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="log-sidecar",check="",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 1
sidecar_alerts{alertname="MainContainerReadyButSidecarNot",alertstate="firing",severity="warning",policy="default",policy_namespace="",namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="log-sidecar",check="",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 1
sidecar_alerts{alertname="MainStartedBeforeSidecarReady",alertstate="firing",severity="warning",policy="default",policy_namespace="",namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="log-sidecar",check="",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="log-sidecar",check="legacy-sidecar",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="",check="sidecar-sprawl",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="envoy",check="legacy-sidecar",workload_kind="Deployment",workload="legacy-shop",product="envoy"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="envoy",check="port-conflict",workload_kind="Deployment",workload="legacy-shop",product="envoy"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="log-shipper",check="no-readiness-probe",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="log-shipper",check="no-startup-probe",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="log-shipper",check="latest-image",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="metrics-sidecar",check="legacy-sidecar",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="metrics-sidecar",check="latest-image",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="vault-agent",check="no-resources",workload_kind="Deployment",workload="legacy-shop",product="vault-agent"} 1
sidecar_alerts{alertname="SidecarMisconfigured",alertstate="firing",severity="info",policy="default",policy_namespace="",namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="vault-agent",check="metrics-disabled",workload_kind="Deployment",workload="legacy-shop",product="vault-agent"} 1
# HELP sidecar_container_ready Whether a sidecar container is ready (1) or not (0)
# TYPE sidecar_container_ready gauge
sidecar_container_ready{namespace="we\"ird\\ns\n2",pod="odd\"pod",container="log\\\"side\ncar",sidecar_type="native",workload_kind="Pod",workload="odd\"pod",product="unknown"} 0
sidecar_container_ready{namespace="shop",pod="web-7c9f8d6b5-k2x8q",container="log-shipper",sidecar_type="native",workload_kind="Deployment",workload="web",product="fluent-bit"} 0
sidecar_container_ready{namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="istio-proxy",sidecar_type="native",workload_kind="Deployment",workload="checkout",product="istio"} 1
sidecar_container_ready{namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="log-sidecar",sidecar_type="legacy",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 0
sidecar_container_ready{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="log-shipper",sidecar_type="native",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 1
sidecar_container_ready{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="vault-agent",sidecar_type="native",workload_kind="Deployment",workload="legacy-shop",product="vault-agent"} 1
sidecar_container_ready{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="istio-proxy",sidecar_type="native",workload_kind="Deployment",workload="legacy-shop",product="istio"} 1
sidecar_container_ready{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="envoy",sidecar_type="legacy",workload_kind="Deployment",workload="legacy-shop",product="envoy"} 1
sidecar_container_ready{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="metrics-sidecar",sidecar_type="legacy",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 1
# HELP sidecar_container_restarts_total Restarts of a sidecar container (the kubelet's restartCount)
# TYPE sidecar_container_restarts_total counter
sidecar_container_restarts_total{namespace="we\"ird\\ns\n2",pod="odd\"pod",container="log\\\"side\ncar"} 2147483647
sidecar_container_restarts_total{namespace="shop",pod="web-7c9f8d6b5-k2x8q",container="log-shipper"} 4
sidecar_container_restarts_total{namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="istio-proxy"} 0
sidecar_container_restarts_total{namespace="shop",pod="checkout-84d6c7f9b-vx5jn",container="log-sidecar"} 0
sidecar_container_restarts_total{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="log-shipper"} 0
sidecar_container_restarts_total{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="vault-agent"} 0
sidecar_container_restarts_total{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="istio-proxy"} 0
sidecar_container_restarts_total{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="envoy"} 0
sidecar_container_restarts_total{namespace="legacy",pod="legacy-shop-7f8e9d0c1-b2n3m",container="metrics-sidecar"} 0
# HELP sidecar_policy_pods Pods per policy: selected (matched) and with a firing alert (alerting)
# TYPE sidecar_policy_pods gauge
sidecar_policy_pods{policy="default",policy_namespace="",state="matched"} 4
sidecar_policy_pods{policy="default",policy_namespace="",state="alerting"} 4
sidecar_policy_pods{policy="strict\\\"p\"",policy_namespace="we\"ird\\ns\n2",state="matched"} 1
sidecar_policy_pods{policy="strict\\\"p\"",policy_namespace="we\"ird\\ns\n2",state="alerting"} 1
# HELP sidecar_info Pods per workload that run a sidecar container of one product and version
# TYPE sidecar_info gauge
sidecar_info{namespace="legacy",workload_kind="Deployment",workload="legacy-shop",container="envoy",product="envoy",version="v1.32.3"} 1
sidecar_info{namespace="legacy",workload_kind="Deployment",workload="legacy-shop",container="istio-proxy",product="istio",version="1.24.2"} 1
sidecar_info{namespace="legacy",workload_kind="Deployment",workload="legacy-shop",container="log-shipper",product="fluent-bit",version="latest"} 1
sidecar_info{namespace="legacy",workload_kind="Deployment",workload="legacy-shop",container="metrics-sidecar",product="unknown",version="latest"} 1
sidecar_info{namespace="legacy",workload_kind="Deployment",workload="legacy-shop",container="vault-agent",product="vault-agent",version="1.18.3"} 1
sidecar_info{namespace="shop",workload_kind="Deployment",workload="checkout",container="istio-proxy",product="istio",version="1.24.2"} 1
sidecar_info{namespace="shop",workload_kind="Deployment",workload="checkout",container="log-sidecar",product="fluent-bit",version="3.2.4"} 1
sidecar_info{namespace="shop",workload_kind="Deployment",workload="web",container="log-shipper",product="fluent-bit",version="3.2.4"} 1
sidecar_info{namespace="we\"ird\\ns\n2",workload_kind="Pod",workload="odd\"pod",container="log\\\"side\ncar",product="unknown",version="1.36"} 1
# HELP sidecar_resource_requests Resources the sidecar requests in the workload's live Pods (cpu in cores, memory in bytes)
# TYPE sidecar_resource_requests gauge
sidecar_resource_requests{namespace="legacy",container="envoy",resource="cpu",workload_kind="Deployment",workload="legacy-shop",product="envoy"} 0.1
sidecar_resource_requests{namespace="legacy",container="envoy",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="envoy"} 67108864
sidecar_resource_requests{namespace="legacy",container="istio-proxy",resource="cpu",workload_kind="Deployment",workload="legacy-shop",product="istio"} 0.1
sidecar_resource_requests{namespace="legacy",container="istio-proxy",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="istio"} 134217728
sidecar_resource_requests{namespace="legacy",container="log-shipper",resource="cpu",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 0.05
sidecar_resource_requests{namespace="legacy",container="log-shipper",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 67108864
sidecar_resource_requests{namespace="legacy",container="metrics-sidecar",resource="cpu",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 0.01
sidecar_resource_requests{namespace="legacy",container="metrics-sidecar",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 33554432
sidecar_resource_requests{namespace="shop",container="istio-proxy",resource="cpu",workload_kind="Deployment",workload="checkout",product="istio"} 0.1
sidecar_resource_requests{namespace="shop",container="istio-proxy",resource="memory",workload_kind="Deployment",workload="checkout",product="istio"} 134217728
sidecar_resource_requests{namespace="shop",container="log-sidecar",resource="cpu",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 0.05
sidecar_resource_requests{namespace="shop",container="log-sidecar",resource="memory",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 67108864
sidecar_resource_requests{namespace="shop",container="log-shipper",resource="cpu",workload_kind="Deployment",workload="web",product="fluent-bit"} 0.05
sidecar_resource_requests{namespace="shop",container="log-shipper",resource="memory",workload_kind="Deployment",workload="web",product="fluent-bit"} 67108864
sidecar_resource_requests{namespace="we\"ird\\ns\n2",container="log\\\"side\ncar",resource="cpu",workload_kind="Pod",workload="odd\"pod",product="unknown"} 0.01
# HELP sidecar_resource_limits Resource limits of the sidecar in the workload's live Pods (cpu in cores, memory in bytes)
# TYPE sidecar_resource_limits gauge
sidecar_resource_limits{namespace="legacy",container="envoy",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="envoy"} 268435456
sidecar_resource_limits{namespace="legacy",container="istio-proxy",resource="cpu",workload_kind="Deployment",workload="legacy-shop",product="istio"} 2
sidecar_resource_limits{namespace="legacy",container="istio-proxy",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="istio"} 1073741824
sidecar_resource_limits{namespace="legacy",container="log-shipper",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="fluent-bit"} 134217728
sidecar_resource_limits{namespace="legacy",container="metrics-sidecar",resource="memory",workload_kind="Deployment",workload="legacy-shop",product="unknown"} 67108864
sidecar_resource_limits{namespace="shop",container="istio-proxy",resource="cpu",workload_kind="Deployment",workload="checkout",product="istio"} 2
sidecar_resource_limits{namespace="shop",container="istio-proxy",resource="memory",workload_kind="Deployment",workload="checkout",product="istio"} 1073741824
sidecar_resource_limits{namespace="shop",container="log-sidecar",resource="memory",workload_kind="Deployment",workload="checkout",product="fluent-bit"} 134217728
sidecar_resource_limits{namespace="shop",container="log-shipper",resource="memory",workload_kind="Deployment",workload="web",product="fluent-bit"} 134217728
"#;

#[test]
fn per_pod_families_render_exactly() {
    assert_eq!(render(&index(), &RenderOptions::default()), GOLDEN);
}

/// Denied families leave no header behind; the allowed ones render as in the full scrape.
#[test]
fn filtered_families_render_exactly_their_part() {
    let families = FamilyFilter::new(&["sidecar_container_.*".to_string()], &[]).expect("valid allowlist");
    let text = render(&index(), &RenderOptions { families, ..Default::default() });
    let expected: String = GOLDEN.split_inclusive('\n').filter(|l| l.contains("sidecar_container_")).collect();
    assert_eq!(text, expected);
}

/// A tenant whose Pods run thousands of distinct sidecar versions gets at most its
/// namespace's series in `sidecar_info` (and says so); replicas of one version are one series
/// whatever their number, and other namespaces keep theirs.
#[test]
fn sidecar_info_is_per_workload_and_capped_per_namespace() {
    let index = Index::new();
    let compiled = CompiledPolicy::compile(PolicyRef::cluster("default"), &PolicySpec::default());
    index.apply_policy(PolicyRef::cluster("default"), PolicyEntry::new(compiled), now());
    let replica = |ns: &str, name: &str, version: &str| {
        let pod = PodBuilder::new(ns, name)
            .uid(format!("{ns}-{name}"))
            .owner("ReplicaSet", "web-7d9")
            .label("pod-template-hash", "7d9")
            .native_sidecar(Container::new("istio-proxy", &format!("istio/proxyv2:{version}")))
            .container(Container::new("app", "shop/web:1"));
        PodView::from_pod(&pod.decode::<SlimPod>())
    };
    for i in 0..2_000 {
        index.apply_pod(replica("noisy", &format!("web-{i}"), &format!("1.{i}.0")), now());
    }
    for i in 0..50 {
        index.apply_pod(replica("shop", &format!("web-{i}"), "1.24.0"), now());
    }
    let options = RenderOptions { max_series_per_namespace: 100, ..Default::default() };
    let mut text = String::new();
    let limited = render_index(&index, &options, |chunk| {
        text.push_str(&chunk);
        true
    });
    let info: Vec<&str> = text.lines().filter(|l| l.starts_with("sidecar_info{")).collect();
    assert_eq!(info.iter().filter(|l| l.contains("namespace=\"noisy\"")).count(), 100);
    let shop: Vec<&&str> = info.iter().filter(|l| l.contains("namespace=\"shop\"")).collect();
    assert_eq!(
        shop,
        [&"sidecar_info{namespace=\"shop\",workload_kind=\"Deployment\",workload=\"web\",container=\"istio-proxy\",product=\"istio\",version=\"1.24.0\"} 50"]
    );
    assert!(limited, "the cut is reported");
}

/// The `sidecar_info` lines of a render with `options`.
fn info_lines(index: &Index, options: RenderOptions) -> Vec<String> {
    render(index, &options).lines().filter(|l| l.starts_with("sidecar_info{")).map(str::to_string).collect()
}

/// `sidecar_info` is counted while `sidecar_container_ready` (else `_restarts_total`) walks
/// the Pods' sidecars, or in a walk of its own when neither is exported: the series are the
/// same each way.
#[test]
fn sidecar_info_is_the_same_whichever_walk_counts_it() {
    let index = index();
    let only = |families: &str| RenderOptions {
        families: FamilyFilter::new(&[families.to_string()], &[]).expect("valid allowlist"),
        ..Default::default()
    };
    let expected: Vec<String> = GOLDEN.lines().filter(|l| l.starts_with("sidecar_info{")).map(str::to_string).collect();
    assert_eq!(expected.len(), 9);
    assert_eq!(info_lines(&index, RenderOptions::default()), expected);
    assert_eq!(info_lines(&index, only("sidecar_info")), expected);
    assert_eq!(info_lines(&index, only("sidecar_container_restarts_total|sidecar_info")), expected);
}

/// More series than a render holds while its client reads (4,096): 2,100 Pods without an
/// owner, each its own workload with two sidecars, are counted again at the render's end,
/// and every series is still there, once.
#[test]
fn sidecar_info_past_what_a_render_holds_is_counted_at_its_end() {
    let index = Index::new();
    let compiled = CompiledPolicy::compile(PolicyRef::cluster("default"), &PolicySpec::default());
    index.apply_policy(PolicyRef::cluster("default"), PolicyEntry::new(compiled), now());
    for i in 0..2_100 {
        let pod = PodBuilder::new(&format!("ns-{}", i % 3), &format!("job-{i}"))
            .uid(format!("uid-{i}"))
            .native_sidecar(Container::new("istio-proxy", "istio/proxyv2:1.24.0"))
            .native_sidecar(Container::new("log-shipper", "fluent/fluent-bit:3.2.4"))
            .container(Container::new("app", "shop/batch:1"));
        index.apply_pod(PodView::from_pod(&pod.decode::<SlimPod>()), now());
    }
    let options = || RenderOptions { max_series_per_namespace: 10_000, ..Default::default() };
    let counted_during_ready = info_lines(&index, options());
    assert_eq!(counted_during_ready.len(), 4_200);
    assert!(counted_during_ready.iter().all(|l| l.ends_with("} 1")));
    assert!(counted_during_ready.contains(
        &"sidecar_info{namespace=\"ns-2\",workload_kind=\"Pod\",workload=\"job-2099\",container=\"log-shipper\",product=\"fluent-bit\",version=\"3.2.4\"} 1".to_string()
    ));
    let own_walk = RenderOptions {
        families: FamilyFilter::new(&["sidecar_info".to_string()], &[]).expect("valid allowlist"),
        ..options()
    };
    assert_eq!(info_lines(&index, own_walk), counted_during_ready);
}
