//! The operator as a platform team runs it: installed by the Helm chart from its own image,
//! two replicas electing a leader on their Lease, in-cluster credentials from the mounted
//! ServiceAccount token, `/metrics` over TLS behind a token, and Prometheus (Debian's, on the
//! host) discovering the chart's Service endpoints as a ServiceMonitor makes it, with a token
//! bound to the chart's metrics-reader role, evaluating the chart's PrometheusRule.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use sidecar_watch_harness::env::{read_manifests_str, wait_until};
use sidecar_watch_harness::prometheus::{Prometheus, PROMETHEUS_BIN};
use sidecar_watch_testkit::prom::Scrape;

use crate::support::{
    container, helm, image_values, native, node, pod, probe, run, scrape_metrics, Scenario, PROMETHEUS_SA,
    RELEASE_NAMESPACE,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_runs_the_operator_from_its_image_and_prometheus_fires_its_rules() {
    let s = Scenario::start("node-chart").await;
    let node = node();
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    let operators =
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=sidecar-watch")).await.expect("pods");
    assert_eq!(operators.items.len(), 2, "the chart's two replicas");
    for p in &operators.items {
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.containers[0].image.as_deref(), Some(sidecar_watch_harness::node::OPERATOR_IMAGE));
        let ready =
            p.status.as_ref().and_then(|st| st.container_statuses.as_ref()).is_some_and(|c| c.iter().all(|c| c.ready));
        assert!(ready, "operator Pod {:?} ready (its probes pass)", p.metadata.name);
    }
    // One leader, holding the chart's Lease, and only it says so on /metrics.
    let leases: Api<Lease> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    let holder = wait_until(Duration::from_secs(60), "the Lease held", || async {
        let lease = leases.get("sidecar-watch").await.map_err(|e| e.to_string())?;
        lease.spec.and_then(|sp| sp.holder_identity).ok_or_else(|| "no holder".to_string())
    })
    .await
    .unwrap();
    let token = run(node, "kubectl", &["-n", PROMETHEUS_SA.0, "create", "token", PROMETHEUS_SA.1]).expect("token");
    let token = token.trim();
    let mut leaders = Vec::new();
    for p in &operators.items {
        let ip = p.status.as_ref().and_then(|st| st.pod_ip.clone()).expect("Pod IP");
        assert_eq!(scrape_metrics(&ip, None).0, 401, "/metrics without a token");
        let (code, body) = scrape_metrics(&ip, Some(token));
        assert_eq!(code, 200, "/metrics with the metrics-reader token: {body}");
        let metrics = Scrape::parse(&body).expect("valid exposition");
        if metrics.value("sidecar_watch_leader", &[("shard", "0")]) == Some(1.0) {
            leaders.push(p.metadata.name.clone().unwrap_or_default());
        }
    }
    assert_eq!(leaders, vec![holder], "the Lease holder alone leads");

    // Prometheus: the chart's PrometheusRule's groups as a rule file, the reader's token, and
    // as targets the chart Service's endpoints, each replica, as a ServiceMonitor makes it
    // (Debian's Prometheus is built without Kubernetes discovery, so the test reads them from
    // the Service's EndpointSlice).
    let slices: Api<EndpointSlice> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    let targets: Vec<String> = wait_until(Duration::from_secs(30), "two ready endpoints", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=sidecar-watch-metrics"))
            .await
            .map_err(|e| e.to_string())?;
        let port = list.items.iter().flat_map(|s| s.ports.iter().flatten()).find_map(|p| p.port).unwrap_or(0);
        let ips: Vec<String> = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses.iter().map(move |a| format!("{a}:{port}")))
            .collect();
        if ips.len() == 2 {
            Ok(ips)
        } else {
            Err(format!("{ips:?}"))
        }
    })
    .await
    .unwrap();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/sidecar-watch").display().to_string();
    let mut args: Vec<String> = vec!["template".into(), "sidecar-watch".into(), chart];
    for v in image_values() {
        args.extend(["--set".into(), v]);
    }
    args.extend(["--set".into(), "prometheusRule.enabled=true".into(), "-n".into(), RELEASE_NAMESPACE.into()]);
    let rendered = run(node, &helm(), &args.iter().map(String::as_str).collect::<Vec<_>>()).expect("helm template");
    let docs = read_manifests_str(&rendered, Path::new("helm template")).expect("rendered YAML");
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let dir = s.env.dir().to_path_buf();
    let rule_file = dir.join("rules.yaml");
    std::fs::write(&rule_file, serde_norway::to_string(&rule["spec"]).expect("YAML")).expect("rule file");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).expect("token file");
    let config = format!(
        "global: {{scrape_interval: 2s, evaluation_interval: 1s, scrape_timeout: 2s}}
rule_files: [{rules:?}]
scrape_configs:
  - job_name: sidecar-watch
    scheme: https
    authorization: {{credentials_file: {token:?}}}
    tls_config: {{insecure_skip_verify: true}}
    static_configs: [{{targets: {targets:?}}}]
",
        rules = rule_file.display().to_string(),
        token = token_file.display().to_string(),
    );
    let prometheus =
        Prometheus::start_with_config(Path::new(PROMETHEUS_BIN), &config).await.expect("prometheus started");
    s.apply(pod(
        "web",
        vec![native("proxy", "sleep 3600", json!({"readinessProbe": probe("false")}))],
        vec![container("app", "sleep 3600", json!({}))],
    ))
    .await;
    let ns = s.ns.clone();
    wait_until(Duration::from_secs(120), "SidecarContainerNotReady firing in Prometheus", || async {
        let alerts = prometheus.alerts().await.map_err(|e| e.to_string())?;
        let firing = alerts.iter().any(|a: &Value| {
            a["labels"]["alertname"] == "SidecarContainerNotReady"
                && a["labels"]["namespace"] == ns.as_str()
                && a["labels"]["container"] == "proxy"
                && a["state"] == "firing"
        });
        if firing {
            Ok(())
        } else {
            Err(format!("alerts {alerts:?}; targets {:?}", prometheus.targets().await.ok()))
        }
    })
    .await
    .unwrap();
    let up = prometheus.query("sum(up{job=\"sidecar-watch\"})").await.expect("query");
    assert_eq!(up["result"][0]["value"][1], "2", "both replicas scraped: {up}");
}
