//! What the shipped PrometheusRule costs a real Prometheus (Debian's `/usr/bin/prometheus`)
//! at scale, and what its sidecar-signal pack (the groups `sidecar-watch.sidecar-signals.*`:
//! functional health and saturation) adds when nothing fails (issue 63: under 10 %).
//!
//! N Pods of the full benchmark's mix (`sidecar_watch_testkit::factory`: an Istio proxy in
//! every Pod, a Fluent Bit beside it in a third) in an index; the operator's own server serves
//! their `/metrics`; a second server serves what the sidecars and the kubelet export for the
//! same Pods, all healthy: each Istio proxy's merged Envoy and agent series, each Fluent Bit's
//! pipeline series, and cAdvisor's memory, CPU and OOM series for every container, main
//! containers included, as the real ones name them (config/prometheus/tests/ has the same
//! shapes). Prometheus scrapes both every 60 s and evaluates every group every 30 s; after
//! `MINUTES` of data, `/api/v1/rules` gives each group's last evaluation time, read after each
//! of the next evaluations. The values do not change (counters stay put): nothing fires.
//!
//! Range functions read what the data holds: `increase(…[30m])` and `predict_linear(…[1h])`
//! read `MINUTES` of samples, not a steady state's hour; the table says how many.
//!
//! `cargo bench --bench rule_cost -- [PODS [MINUTES]]` (default 100000 and 10).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use sidecar_watch::api::ClusterPolicySpec;
use sidecar_watch::engine::{CompiledPolicy, PolicyRef};
use sidecar_watch::index::{Index, PolicyEntry, Writes};
use sidecar_watch::metrics::Metrics;
use sidecar_watch_harness::prometheus::{Prometheus, PROMETHEUS_BIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The groups of the pack whose cost is measured against the rest.
const PACK_PREFIX: &str = "sidecar-watch.sidecar-signals.";
const EVALUATION: Duration = Duration::from_secs(30);
const SAMPLES: usize = 6;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let pods: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let minutes: u64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(10);
    let index = Arc::new(mix_index(pods)?);
    let exporters = exporters_text(&index);
    println!("{pods} Pods; exporters' text {:.1} MiB", exporters.len() as f64 / 1048576.0);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let metrics = Metrics::new();
        let (role_tx, role) = sidecar_watch::leadership::channel();
        sidecar_watch::leadership::set_leader(&role_tx, true);
        let operator_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let security = sidecar_watch::server::Security::Plain;
        let address = SocketAddr::from(([127, 0, 0, 1], operator_port));
        let server = sidecar_watch::server::serve(address, security, index, metrics, role, std::future::pending());
        tokio::spawn(server);
        let exporters_port = serve_text(exporters).await?;

        let dir = std::env::temp_dir().join(format!("sidecar-watch-rule-cost-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let rules = dir.join("rules.yaml");
        std::fs::write(&rules, shipped_rule_groups()?)?;
        let config = format!(
            "global:\n  scrape_interval: 60s\n  scrape_timeout: 55s\n  evaluation_interval: {}s\n\
             rule_files:\n  - {rules:?}\nscrape_configs:\n\
             \x20 - job_name: sidecar-watch\n    static_configs:\n      - targets: ['127.0.0.1:{operator_port}']\n\
             \x20 - job_name: pods-and-kubelet\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{exporters_port}']\n",
            EVALUATION.as_secs()
        );
        let prometheus = Prometheus::start_with_config(Path::new(PROMETHEUS_BIN), &config).await?;
        println!("collecting {minutes} minutes of data …");
        tokio::time::sleep(Duration::from_secs(minutes * 60)).await;
        let mut pack = Vec::new();
        let mut rest = Vec::new();
        for _ in 0..SAMPLES {
            tokio::time::sleep(EVALUATION).await;
            let (p, r) = group_times(&prometheus.rules().await?);
            pack.push(p);
            rest.push(r);
        }
        let (pack, rest) = (median(&mut pack), median(&mut rest));
        let mut slowest = rule_times(&prometheus.rules().await?);
        slowest.truncate(8);
        println!("rule evaluation, median of {SAMPLES} (one every {}s):", EVALUATION.as_secs());
        println!("  shipped rules without the pack: {:>9.1} ms", rest * 1e3);
        println!("  the pack ({PACK_PREFIX}*):      {:>9.1} ms ({:+.1} %)", pack * 1e3, pack / rest * 100.0);
        println!("  the slowest rules at the last evaluation:");
        for (seconds, group, rule) in slowest {
            println!("    {:>9.1} ms  {group} / {rule}", seconds * 1e3);
        }
        let rss = std::fs::read_to_string(format!("/proc/{}/status", prometheus.pid().unwrap_or(0))).unwrap_or_default();
        println!("  Prometheus {}", rss.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS ?"));
        anyhow::Ok(())
    })
}

/// The index of `pods` Pods of the full benchmark's mix under its policies.
fn mix_index(pods: usize) -> anyhow::Result<Index> {
    let now = Timestamp::now();
    let index = Index::new();
    for object in sidecar_watch_testkit::factory::policies() {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let spec: ClusterPolicySpec = serde_json::from_value(object["spec"].clone())?;
        let compiled = CompiledPolicy::compile_cluster(&name, &spec).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        index.apply_policy(PolicyRef::cluster(&name), PolicyEntry::new(Ok(compiled)), now);
    }
    let factory = sidecar_watch_testkit::factory::PodFactory::new();
    for i in 0..pods {
        let pod = serde_json::from_value(factory.pod(i))?;
        index.apply_pod(index.view_of(&pod), now);
    }
    Ok(index)
}

/// What the Pods' sidecars and the kubelet's cAdvisor export for the Pods of `index`, healthy.
fn exporters_text(index: &Index) -> String {
    let mut out = String::new();
    index.for_each_pod(|pod| {
        let view = pod.view();
        let (ns, name) = (view.namespace().as_str(), view.name());
        let pod_labels = format!("namespace=\"{ns}\",pod=\"{name}\"");
        for container in &view.containers {
            let c = container.name.as_str();
            let labels = format!("{pod_labels},container=\"{c}\",id=\"/kubepods/{name}/{c}\",image=\"example/{c}:1\",name=\"{c}-{name}\"");
            let _ = write!(
                out,
                "container_memory_working_set_bytes{{{labels}}} 52428800\n\
                 container_spec_memory_limit_bytes{{{labels}}} 268435456\n\
                 container_cpu_cfs_periods_total{{{labels}}} 120000\n\
                 container_cpu_cfs_throttled_periods_total{{{labels}}} 10\n\
                 container_oom_events_total{{{labels}}} 0\n\
                 container_start_time_seconds{{{labels}}} 1764300000\n"
            );
        }
        for (sidecar, _) in pod.sidecar_containers() {
            match sidecar.catalog.map(|c| c.entry().id) {
                Some("istio") => {
                    let _ = write!(
                        out,
                        "envoy_listener_manager_lds_update_rejected{{{pod_labels}}} 0\n\
                         envoy_cluster_manager_cds_update_rejected{{{pod_labels}}} 0\n\
                         envoy_cluster_update_rejected{{{pod_labels},envoy_cluster_name=\"outbound|80||svc.{ns}.svc.cluster.local\"}} 0\n\
                         envoy_http_rds_update_rejected{{{pod_labels},envoy_http_conn_manager_prefix=\"outbound_0.0.0.0_80\",envoy_rds_route_config=\"80\"}} 0\n\
                         envoy_server_state{{{pod_labels}}} 0\n\
                         envoy_control_plane_connected_state{{{pod_labels}}} 1\n\
                         istio_agent_cert_expiry_seconds{{{pod_labels},resource_name=\"default\"}} 80000\n\
                         istio_agent_istiod_connection_failures{{{pod_labels}}} 0\n"
                    );
                }
                Some("fluent-bit") => {
                    let _ = write!(
                        out,
                        "fluentbit_input_records_total{{{pod_labels},name=\"tail.0\"}} 100000\n\
                         fluentbit_output_proc_records_total{{{pod_labels},name=\"forward.0\"}} 100000\n\
                         fluentbit_output_retries_failed_total{{{pod_labels},name=\"forward.0\"}} 0\n\
                         fluentbit_output_dropped_records_total{{{pod_labels},name=\"forward.0\"}} 0\n\
                         fluentbit_input_storage_overlimit{{{pod_labels},name=\"tail.0\"}} 0\n"
                    );
                }
                _ => {}
            }
        }
    });
    out
}

/// `spec` of the shipped PrometheusRule as a Prometheus rule file, as prometheus-operator
/// makes it.
fn shipped_rule_groups() -> anyhow::Result<String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus/prometheusrule.yaml");
    Ok(serde_norway::to_string(&sidecar_watch_harness::ksm::rules::rule_groups(&source, 1)?)?)
}

/// The pack's and the other groups' summed last evaluation times, in seconds.
fn group_times(rules: &Value) -> (f64, f64) {
    let (mut pack, mut rest) = (0.0, 0.0);
    for group in rules["groups"].as_array().into_iter().flatten() {
        let time = group["evaluationTime"].as_f64().unwrap_or_default();
        if group["name"].as_str().unwrap_or_default().starts_with(PACK_PREFIX) {
            pack += time;
        } else {
            rest += time;
        }
    }
    (pack, rest)
}

/// Every rule's last evaluation time in seconds, with its group and name, slowest first.
fn rule_times(rules: &Value) -> Vec<(f64, String, String)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_array().into_iter().flatten() {
        let group_name = group["name"].as_str().unwrap_or_default();
        for rule in group["rules"].as_array().into_iter().flatten() {
            let time = rule["evaluationTime"].as_f64().unwrap_or_default();
            out.push((time, group_name.to_string(), rule["name"].as_str().unwrap_or_default().to_string()));
        }
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Serves `text` as the body of every request, on a free loopback port.
async fn serve_text(text: String) -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let body = Arc::new(text.into_bytes());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = stream.read(&mut request).await;
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    Ok(port)
}
