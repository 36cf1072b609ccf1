//! The install paths for real: the kustomize overlay and the Helm chart, rendered as a
//! platform team renders them, applied to kube-apiserver with server-side apply after
//! prometheus-operator's own CRDs (from its pinned Go module), so that every object, the
//! ServiceMonitor and PrometheusRule included, meets the server's real schemas. Then the
//! operator runs as that installation's ServiceAccount, with its Lease in the installation's
//! namespace, and alerts: a permission the installation lacks would fail here.

use std::path::Path;

use serde_json::json;
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::{wait_until, TestEnv};
use sidecar_watch_harness::install;

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

/// Applies `rendered` and checks that kubectl reports every object of it applied. The CRDs
/// first, Established, as Helm installs its `crds/` and as the README has kustomize users
/// apply `config/crd` before `config/default`: in one apply, kubectl cannot map the default
/// ClusterSidecarPolicy before its CRD exists.
async fn apply_rendered(env: &TestEnv, rendered: &str, expected: &[&str]) {
    let crds = Path::new(ROOT).join("crds");
    env.install_crds(&crds).await.expect("the CRDs are Established");
    let out = env.kubectl_apply(rendered).await.expect("the rendered installation applies");
    for object in expected {
        assert!(out.contains(&format!("{object} serverside-applied")), "{object} not applied:\n{out}");
    }
}

/// The default ClusterSidecarPolicy of the installation (`default_policy`) alerts on first
/// install, before anyone wrote a policy: on a Pod of an unlabelled namespace, not on one in
/// kube-system; `kubectl get cscp` shows it. Then the operator, as the installed
/// ServiceAccount `sidecar-watch-system/<account>`, alerts under a tenant's own policy too.
async fn installed_operator_alerts(env: TestEnv, account: &str, lease_name: &str, default_policy: &str) {
    let ns = "shop".to_string();
    env.create_namespace(&ns).await.expect("namespace");
    sidecar_watch_harness::kubelet::ensure_node(&env.client).await.expect("node");
    let path = env.dir().join("kubeconfig-installed");
    let operator_kubeconfig = install::service_account_kubeconfig(&env, install::OPERATOR_NAMESPACE, account, &path)
        .await
        .expect("a token of the installed ServiceAccount");
    let c = Cluster { env, ns: ns.clone(), operator_kubeconfig };
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
    // A native sidecar without probes, resources or a pinned image: the static checks fire at
    // once (no `for`), under the default policy alone. The kube-system Pod first: one watch
    // sees both in order, so once web-1 alerts, dns-1 has been evaluated too.
    c.create_pod_in("kube-system", native_pod("dns-1", "dns", "app", "istio-proxy")).await;
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    let checks = ["latest-image", "no-readiness-probe", "no-resources", "no-startup-probe"];
    let misconfigured = |pod: &str, namespace: &str, check: &str| -> Labels {
        let mut labels = AlertSeries {
            alert: AlertName::SidecarMisconfigured,
            severity: Severity::Info,
            policy: default_policy,
            namespace,
            pod,
            ..MESH_NOT_READY
        }
        .labels();
        labels.insert("policy_namespace".into(), String::new());
        labels.insert("check".into(), check.into());
        labels
    };
    let first_install: Vec<Labels> = checks.iter().map(|check| misconfigured("web-1", &ns, check)).collect();
    wait_alerts_including(&op, "the default policy alerts on first install, not in kube-system", &first_install).await;
    c.wait_events("web-1", "Warning", "SidecarMisconfigured", checks.len() as u32).await;
    wait_until(WAIT, &format!("kubectl get cscp {default_policy}: 1 Pod matched and alerting"), || async {
        let out = c.env.kubectl(["get", "cscp", default_policy]).await.map_err(|e| e.to_string())?;
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        match rows.as_slice() {
            [header, row]
                if header[..] == ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "AGE"]
                    && row.get(1..5) == Some(&["1", "1", "True", "Evaluating"][..]) =>
            {
                Ok(())
            }
            _ => Err(out),
        }
    })
    .await
    .unwrap();

    // A tenant's own policy alerts beside it.
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    let mesh = AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }.labels();
    wait_alerts_including(&op, "the installed operator alerts under a tenant's policy too", &[mesh]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "status written", |s| status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0))
        .await;
    assert_eq!(op.forbidden_calls(), Vec::<String>::new(), "a call was forbidden");
}

/// Waits until the `sidecar_alerts` series include `expected`, and none is of kube-system.
async fn wait_alerts_including(op: &Operator, what: &str, expected: &[Labels]) {
    wait_until(WAIT, what, || async {
        let alerts = op.scrape().await?.alerts();
        let missing: Vec<&Labels> = expected.iter().filter(|e| !alerts.contains(e)).collect();
        let system: Vec<&Labels> =
            alerts.iter().filter(|a| a.get("namespace").map(String::as_str) == Some("kube-system")).collect();
        assert!(system.is_empty(), "the default policy evaluated kube-system: {system:?}");
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}\ngot {alerts:?}"))
        }
    })
    .await
    .unwrap();
}

/// Creating the CRDs on a fresh kube-apiserver as the README does (`kubectl apply -k
/// config/crd`), and applying them again server-side, prints nothing on stderr: no `Warning:
/// unrecognized format "uint32"` (or any other warning) from the server. A CRD with such a
/// format, sent to the same server, shows that the server does warn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crds_apply_without_a_warning() {
    let env = TestEnv::start_control_plane(Options::default()).await.expect("control plane");
    let Kubectl { success: ok, stdout: out, stderr: err } = run_kubectl(&env, &["apply", "-k", "config/crd"], "").await;
    assert!(ok, "kubectl apply -k config/crd failed: {out}{err}");
    assert_eq!(err, "", "kubectl apply -k config/crd printed warnings (stdout: {out})");
    for crd in ["sidecarpolicies", "clustersidecarpolicies"] {
        let created = format!("customresourcedefinition.apiextensions.k8s.io/{crd}.sidecarwatch.io created");
        assert!(out.contains(&created), "{out}");
    }
    let wait = ["wait", "--for=condition=Established", "--timeout=30s"];
    let crds = ["crd/sidecarpolicies.sidecarwatch.io", "crd/clustersidecarpolicies.sidecarwatch.io"];
    let Kubectl { success: ok, stdout: out, stderr: err } =
        run_kubectl(&env, &[&wait[..], &crds[..]].concat(), "").await;
    assert!(ok && err.is_empty(), "{out}{err}");
    let Kubectl { success: ok, stdout: out, stderr: err } =
        run_kubectl(&env, &["apply", "--server-side", "-f", "crds/"], "").await;
    assert!(ok, "kubectl apply --server-side -f crds/ failed: {out}{err}");
    assert_eq!(err, "", "kubectl apply --server-side -f crds/ printed warnings (stdout: {out})");

    // The control: the server warns about a format it does not know (from 1.36; 1.33-1.35
    // accept one without a word, so there the control shows only that the dry run passes and
    // the empty stderr above proves less).
    let unknown = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"count": {"type": "integer", "format": "uint32"}}}}}]}}"#;
    let Kubectl { success: ok, stdout: out, stderr: err } =
        run_kubectl(&env, &["create", "--dry-run=server", "-f", "-"], unknown).await;
    assert!(ok, "{out}{err}");
    if server_minor(&env).await >= 36 {
        assert!(err.contains("Warning: unrecognized format \"uint32\""), "the server no longer warns: {err}");
    } else {
        assert_eq!(err, "", "a server before 1.36 warned about an unknown format: {out}");
    }
}

/// `kubectl apply -k config/samples` on a fresh cluster (the CRDs installed, nothing else):
/// the samples create the namespaces they live in and their two Pods, and kubectl prints no
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_apply_to_a_fresh_cluster() {
    let env = TestEnv::start_control_plane(Options::default()).await.expect("control plane");
    env.install_crds(&Path::new(ROOT).join("crds")).await.expect("CRDs");
    let Kubectl { success: ok, stdout: out, stderr: err } =
        run_kubectl(&env, &["apply", "-k", "config/samples"], "").await;
    assert!(ok, "kubectl apply -k config/samples failed:\n{out}{err}");
    assert_eq!(err, "", "warnings (stdout: {out})");
    for object in [
        "namespace/shop created",
        "namespace/payments created",
        "namespace/batch created",
        "sidecarpolicy.sidecarwatch.io/istio-mesh created",
        "sidecarpolicy.sidecarwatch.io/linkerd-mesh created",
        "sidecarpolicy.sidecarwatch.io/log-shipper created",
        "clustersidecarpolicy.sidecarwatch.io/platform-sidecars created",
        "pod/web created",
        "pod/report created",
    ] {
        assert!(out.contains(object), "{object} not in:\n{out}");
    }
    // Again, as a user re-running the quick start: unchanged, still no warning.
    let Kubectl { success: ok, stdout: out, stderr: err } =
        run_kubectl(&env, &["apply", "-k", "config/samples"], "").await;
    assert!(ok && err.is_empty(), "{out}{err}");
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
            "clustersidecarpolicy.sidecarwatch.io/sidecar-watch-default",
        ],
    )
    .await;
    installed_operator_alerts(env, install::OPERATOR_SERVICE_ACCOUNT, "sidecar-watch", "sidecar-watch-default").await;
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
            "clustersidecarpolicy.sidecarwatch.io/sidecar-watch-default",
        ],
    )
    .await;
    installed_operator_alerts(env, "sidecar-watch", "sidecar-watch", "sidecar-watch-default").await;
}

/// The rows of `kubectl get` output without the AGE column, sorted.
async fn table(env: &TestEnv, args: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let out = env.kubectl(args).await.map_err(|e| e.to_string())?;
    let mut rows: Vec<Vec<String>> = out
        .lines()
        .map(|l| {
            let mut cells: Vec<String> = l.split_whitespace().map(String::from).collect();
            cells.pop();
            cells
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// The README's quick start, as a newcomer follows it on this project's test cluster: the
/// chart with its defaults, then `kubectl apply -k config/samples`, and the operator running
/// as the chart's ServiceAccount. `kubectl get cscp` and `kubectl get scp -A` print what the
/// README shows (AGE aside), and the sample Pods have their Warning Events: the default
/// policy alerts on first install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_with_the_chart_alerts_on_the_sample_pods() {
    let env = TestEnv::start_control_plane(Options::default()).await.expect("control plane");
    let helm = install::helm().expect("helm");
    let out = tokio::process::Command::new(&helm)
        .args(["template", "sidecar-watch", "charts/sidecar-watch", "--namespace", install::OPERATOR_NAMESPACE])
        .arg("--include-crds")
        .current_dir(ROOT)
        .output()
        .await
        .expect("helm runs");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    env.create_namespace(install::OPERATOR_NAMESPACE).await.expect("the release namespace");
    apply_rendered(
        &env,
        &String::from_utf8_lossy(&out.stdout),
        &["deployment.apps/sidecar-watch", "clustersidecarpolicy.sidecarwatch.io/sidecar-watch-default"],
    )
    .await;
    let Kubectl { success: ok, stdout: out, stderr: err } =
        run_kubectl(&env, &["apply", "-k", "config/samples"], "").await;
    assert!(ok && err.is_empty(), "kubectl apply -k config/samples:\n{out}{err}");

    let path = env.dir().join("kubeconfig-installed");
    let operator_kubeconfig =
        install::service_account_kubeconfig(&env, install::OPERATOR_NAMESPACE, "sidecar-watch", &path)
            .await
            .expect("a token of the chart's ServiceAccount");
    let c = Cluster { env, ns: "shop".into(), operator_kubeconfig };
    let port = free_port();
    let args: Vec<String> = [
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--lease-namespace",
        install::OPERATOR_NAMESPACE,
        "--identity",
        "quick-start-0",
        "--status-interval",
        "1s",
    ]
    .map(String::from)
    .into();
    let op = Operator::spawn(&c, "quick-start-0", port, &args, &[]).await;
    let rows = |text: &str| -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> =
            text.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect();
        rows.sort();
        rows
    };
    let want_cscp = rows(
        "NAME MATCHED ALERTING READY REASON\n\
         platform-sidecars 0 0 True Evaluating\n\
         sidecar-watch-default 2 2 True Evaluating",
    );
    let want_scp = rows(
        "NAMESPACE NAME MATCHED ALERTING READY REASON\n\
         batch log-shipper 1 0 True Evaluating\n\
         payments linkerd-mesh 0 0 True Evaluating\n\
         shop istio-mesh 1 1 True Evaluating",
    );
    for (args, want) in [(&["get", "cscp"][..], want_cscp), (&["get", "scp", "-A"], want_scp)] {
        wait_until(WAIT, &format!("kubectl {args:?} as the README shows it"), || async {
            let got = table(&c.env, args).await?;
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await
        .unwrap();
    }
    // Both policies that select shop/web announce its finding, each once.
    let events = c.wait_events("web", "Warning", "SidecarMisconfigured", 2).await;
    let mut notes: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("SidecarMisconfigured"))
        .filter_map(|e| e.note.clone())
        .collect();
    notes.sort();
    let finding = "Sidecar istio-proxy in Pod shop/web is a native sidecar with neither a startupProbe nor a postStart hook, so main containers start almost in parallel with it";
    assert_eq!(
        notes,
        [
            format!("{finding} (workload Pod/web, policy ClusterSidecarPolicy sidecar-watch-default)"),
            format!("{finding} (workload Pod/web, policy SidecarPolicy shop/istio-mesh)"),
        ]
    );
    let scrape = op.scrape().await.expect("/metrics");
    let series = |namespace: &str, pod: &str, check: &str| {
        scrape
            .value(
                "sidecar_alerts",
                &[("policy", "sidecar-watch-default"), ("namespace", namespace), ("pod", pod), ("check", check)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(series("shop", "web", "no-startup-probe"), 1.0, "{:?}", scrape.alerts());
    assert_eq!(series("batch", "report", "legacy-sidecar"), 1.0, "{:?}", scrape.alerts());
    assert_eq!(op.forbidden_calls(), Vec::<String>::new(), "a call was forbidden");
}
