//! The kustomize installation on the real node: `config/default`, as a platform team
//! overlays it (its own namespace and name prefix, the locally built image), runs the
//! operator from its image with the installation's ServiceAccount, probes, Lease, TLS
//! `/metrics` behind a token and default ClusterSidecarPolicy.
//!
//! The chart's installation runs beside it for the rest of the suite, so the overlay keeps
//! the two apart: another namespace and prefix (the Lease, the RBAC objects), the CRDs left
//! to the chart (the same files), and this operator watching only the test's namespace
//! (`--namespace`), or it would publish a second Event for every other test's Pods.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use sidecar_watch_harness::env::{read_manifests_str, wait_until};
use sidecar_watch_harness::install;
use sidecar_watch_harness::node::OPERATOR_IMAGE;
use sidecar_watch_testkit::prom::Scrape;

use crate::support::{container, native, node, pod, probe, run, scrape_metrics, Scenario, MINUTE, PROMETHEUS_SA};

/// The overlay's namespace, and the prefix of its objects' names.
const NAMESPACE: &str = "sidecar-watch-kz";
const PREFIX: &str = "kz-";
/// The reader binding the test adds for Prometheus' ServiceAccount.
const READER_BINDING: &str = "kz-sidecar-watch-metrics-reader-prometheus";

/// `to` relative to the directory `from` (both absolute): kustomize takes no absolute
/// resource paths.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let depth = from.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let mut path: PathBuf = std::iter::repeat_n("..", depth).collect();
    path.extend(to.components().filter(|c| matches!(c, Component::Normal(_))));
    path
}

/// The overlay on `config/default`, rendered by `kubectl kustomize`: every object but the
/// CRDs (the chart's, already installed).
async fn render(s: &Scenario) -> Vec<Value> {
    let dir = s.env.dir().join("kustomize");
    std::fs::create_dir_all(&dir).expect("overlay dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = root.join("config/default");
    // An overlay that changes `namespace:` lists the default policy's transformers again
    // (docs/install.md), so that the policy leaves out the overlay's namespace.
    let transformers = root.join("config/components/default-policy/transformers");
    let (name, tag) = OPERATOR_IMAGE.rsplit_once(':').expect("image:tag");
    let overlay = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative(&dir, &base)],
        "namespace": NAMESPACE, "namePrefix": PREFIX,
        "transformers": [relative(&dir, &transformers)],
        "images": [{"name": "ghcr.io/sidecar-watch/sidecar-watch", "newName": name, "newTag": tag}],
        "patches": [{"target": {"kind": "Deployment"}, "patch": json!([
            {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": format!("--namespace={}", s.ns)},
        ]).to_string()}],
    });
    std::fs::write(dir.join("kustomization.yaml"), overlay.to_string()).expect("kustomization.yaml");
    let rendered = s.env.kubectl([Path::new("kustomize").as_os_str(), dir.as_os_str()]).await.expect("kustomize");
    let docs = read_manifests_str(&rendered, Path::new("kubectl kustomize")).expect("rendered YAML");
    docs.into_iter().filter(|d| d["kind"] != "CustomResourceDefinition").collect()
}

/// Deletes the installation (not the CRDs) when the test ends, passed or not: the chart's
/// operator would otherwise evaluate its default policy for the rest of the suite.
struct Uninstall(PathBuf);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let node = node();
        let file = self.0.display().to_string();
        let _ = run(node, "kubectl", &["delete", "--ignore-not-found", "--wait=false", "-f", &file]);
        let _ = run(node, "kubectl", &["delete", "--ignore-not-found", "clusterrolebinding", READER_BINDING]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kustomize_installation_runs_the_operator_from_its_image() {
    let s = Scenario::start("node-kustomize").await;
    let node = node();
    let objects = render(&s).await;
    let deployment = objects.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], OPERATOR_IMAGE);
    let policy = objects.iter().find(|d| d["kind"] == "ClusterSidecarPolicy").expect("the default policy");
    assert_eq!(
        policy["spec"]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", NAMESPACE]),
        "the default policy leaves out the installation's namespace"
    );
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
    let file = s.env.dir().join("kustomize/rendered.json");
    std::fs::write(&file, &list).expect("rendered.json");
    let _uninstall = Uninstall(file);
    // The ServiceMonitor and PrometheusRule need prometheus-operator's CRDs.
    let crds = install::prometheus_operator_crds().expect("prometheus-operator CRDs");
    s.env.install_crds(&crds).await.expect("prometheus-operator CRDs installed");
    s.env.kubectl_apply(&list).await.expect("the overlay applies");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": READER_BINDING},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kz-sidecar-watch-metrics-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS_SA.1, "namespace": PROMETHEUS_SA.0}],
    });
    s.env.kubectl_apply(&binding.to_string()).await.expect("reader binding");

    // Both replicas run from the image and pass their probes.
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), NAMESPACE);
    let ips: Vec<String> = wait_until(3 * MINUTE, "two ready operator Pods", || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=sidecar-watch"))
            .await
            .map_err(|e| e.to_string())?;
        let ready: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|st| st.container_statuses.as_ref())
                    .is_some_and(|c| c.iter().all(|c| c.ready))
            })
            .filter_map(|p| p.status.as_ref().and_then(|st| st.pod_ip.clone()))
            .collect();
        if ready.len() == 2 {
            Ok(ready)
        } else {
            Err(format!("{} ready: {}", ready.len(), node.log_tail("kubelet", 5)))
        }
    })
    .await
    .unwrap();

    s.apply(pod(
        "web",
        vec![native("proxy", "sleep 3600", json!({"readinessProbe": probe("false")}))],
        vec![container("app", "sleep 3600", json!({}))],
    ))
    .await;
    let token = run(node, "kubectl", &["-n", PROMETHEUS_SA.0, "create", "token", PROMETHEUS_SA.1]).expect("token");
    let token = token.trim();
    let ns = s.ns.clone();
    // The leader alerts under the namespace's policy and finds the missing startup gate under
    // the installation's default policy; the standby exports neither.
    let leader = wait_until(2 * MINUTE, "the leader's alerts", || async {
        let mut leaders = Vec::new();
        for ip in &ips {
            assert_eq!(scrape_metrics(ip, None).0, 401, "/metrics without a token");
            let (code, body) = scrape_metrics(ip, Some(token));
            if code != 200 {
                return Err(format!("{ip}: {code} {body}"));
            }
            let metrics = Scrape::parse(&body).map_err(|e| e.to_string())?;
            if metrics.value("sidecar_watch_leader", &[("shard", "0")]) == Some(1.0) {
                leaders.push((ip.clone(), metrics));
            }
        }
        let [(ip, metrics)] = &leaders[..] else { return Err(format!("{} leaders", leaders.len())) };
        let alert = |labels: &[(&str, &str)]| {
            let mut all = vec![("namespace", ns.as_str()), ("pod", "web")];
            all.extend_from_slice(labels);
            metrics.value("sidecar_alerts", &all) == Some(1.0)
        };
        let not_ready =
            alert(&[("policy", "seed"), ("alertname", "SidecarContainerNotReady"), ("alertstate", "firing")]);
        let default = alert(&[("policy", "kz-sidecar-watch-default"), ("check", "no-startup-probe")]);
        if not_ready && default {
            Ok(ip.clone())
        } else {
            Err(format!("not ready {not_ready}, no-startup-probe {default}: {:?}", metrics.alerts()))
        }
    })
    .await
    .unwrap();

    // It leads on the installation's own Lease, and no call it made was refused.
    let leases: Api<Lease> = Api::namespaced(s.env.client.clone(), NAMESPACE);
    let lease = leases.get("sidecar-watch").await.expect("the installation's Lease");
    let holder = lease.spec.and_then(|sp| sp.holder_identity).expect("a holder");
    let holder_ip = pods.get(&holder).await.ok().and_then(|p| p.status).and_then(|st| st.pod_ip);
    assert_eq!(holder_ip, Some(leader), "the Lease holder is the Pod that exports alerts");
    let logs = run(
        node,
        "kubectl",
        &["-n", NAMESPACE, "logs", "-l", "app.kubernetes.io/name=sidecar-watch", "--tail=-1", "--prefix"],
    )
    .expect("logs");
    let refused = install::refused_calls(&logs);
    assert!(refused.is_empty(), "calls refused under the installation's RBAC: {refused:?}");
}
