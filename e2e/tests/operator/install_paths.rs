//! The install paths for real: the kustomize overlay and the Helm chart, rendered as a
//! platform team renders them, applied to kube-apiserver with server-side apply after
//! prometheus-operator's own CRDs (from its pinned Go module), so that every object, the
//! ServiceMonitor and PrometheusRule included, meets the server's real schemas. Then the
//! operator runs as that installation's ServiceAccount, with its Lease in the installation's
//! namespace, and alerts: a permission the installation lacks would fail here.

use std::path::Path;

use serde_json::json;
use sidecar_watch_e2e::control_plane::Options;
use sidecar_watch_e2e::harness::TestEnv;
use sidecar_watch_e2e::install;

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A control plane of the test's own (also under `E2E_KUBECONFIG`: the installation is
/// cluster-wide) with prometheus-operator's CRDs.
async fn bare_control_plane() -> TestEnv {
    let env = TestEnv::start_control_plane(Options::default()).await.expect("control plane");
    env.assert_reached_server().await.expect("/version");
    let crds = install::prometheus_operator_crds().expect("prometheus-operator CRDs");
    let names = env.install_crds(&crds).await.expect("prometheus-operator CRDs installed");
    assert!(names.contains(&"servicemonitors.monitoring.coreos.com".to_string()), "{names:?}");
    env
}

/// Applies `rendered` and checks that kubectl reports every object of it applied.
async fn apply_rendered(env: &TestEnv, rendered: &str, expected: &[&str]) {
    let out = env.kubectl_apply(rendered).await.expect("the rendered installation applies");
    for object in expected {
        assert!(out.contains(&format!("{object} serverside-applied")), "{object} not applied:\n{out}");
    }
    let crds = Path::new(ROOT).join("crds");
    env.install_crds(&crds).await.expect("the installed CRDs are Established");
}

/// The operator, as the installed ServiceAccount `sidecar-watch-system/<account>`, alerts on a
/// Pod of a namespace of the test's.
async fn installed_operator_alerts(env: TestEnv, account: &str, lease_name: &str) {
    let ns = "shop".to_string();
    env.create_namespace(&ns).await.expect("namespace");
    sidecar_watch_e2e::kubelet::ensure_node(&env.client).await.expect("node");
    let path = env.dir().join("kubeconfig-installed");
    let operator_kubeconfig = install::service_account_kubeconfig(&env, install::OPERATOR_NAMESPACE, account, &path)
        .await
        .expect("a token of the installed ServiceAccount");
    let c = Cluster { env, ns: ns.clone(), operator_kubeconfig };
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let port = free_port();
    let args: Vec<String> = [
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--lease-namespace",
        install::OPERATOR_NAMESPACE,
        "--lease-name",
        lease_name,
        "--identity",
        "installed-0",
        "--status-interval",
        "1s",
    ]
    .map(String::from)
    .into();
    let op = Operator::spawn(&c, "installed-0", port, &args, &[]).await;
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    op.wait_alerts(
        "the installed operator alerts",
        vec![AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }.labels()],
    )
    .await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "status written", |s| status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0))
        .await;
    assert!(!op.log().contains("403"), "a call was forbidden:\n{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_installation_applies_and_its_service_account_runs_the_operator() {
    let env = bare_control_plane().await;
    let overlay = Path::new(ROOT).join("config/default");
    let rendered = env.kubectl([Path::new("kustomize").as_os_str(), overlay.as_os_str()]).await.expect("kustomize");
    apply_rendered(
        &env,
        &rendered,
        &[
            "customresourcedefinition.apiextensions.k8s.io/sidecarpolicies.sidecarwatch.io",
            "clusterrole.rbac.authorization.k8s.io/sidecar-watch",
            "deployment.apps/sidecar-watch",
            "servicemonitor.monitoring.coreos.com/sidecar-watch",
            "prometheusrule.monitoring.coreos.com/sidecar-watch",
        ],
    )
    .await;
    installed_operator_alerts(env, install::OPERATOR_SERVICE_ACCOUNT, "sidecar-watch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_chart_applies_and_its_service_account_runs_the_operator() {
    let env = bare_control_plane().await;
    let helm = install::helm().expect("helm");
    let out = tokio::process::Command::new(&helm)
        .args(["template", "sidecar-watch", "charts/sidecar-watch", "--namespace", install::OPERATOR_NAMESPACE])
        .args(["--include-crds", "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"])
        .current_dir(ROOT)
        .output()
        .await
        .expect("helm runs");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    env.create_namespace(install::OPERATOR_NAMESPACE).await.expect("the release namespace");
    apply_rendered(
        &env,
        &String::from_utf8_lossy(&out.stdout),
        &[
            "customresourcedefinition.apiextensions.k8s.io/clustersidecarpolicies.sidecarwatch.io",
            "serviceaccount/sidecar-watch",
            "deployment.apps/sidecar-watch",
            "servicemonitor.monitoring.coreos.com/sidecar-watch",
            "prometheusrule.monitoring.coreos.com/sidecar-watch",
        ],
    )
    .await;
    installed_operator_alerts(env, "sidecar-watch", "sidecar-watch").await;
}
