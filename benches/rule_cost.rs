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
//! shapes), with each Pod's own cgroup and pause sandbox as cAdvisor exports them (without a
//! container). Prometheus scrapes both every 60 s and evaluates the groups at 30 s, or at their
//! own `interval` (the pack's 2 minutes); after `MINUTES` of data, `/api/v1/rules` is read
//! every 30 s for [`SAMPLING`]: each group's distinct evaluations give its median time, and its
//! interval what it costs per hour. The values do not change (counters stay put): nothing
//! fires.
//!
//! Two references in the same Prometheus, the same data and the same load: the floor (one
//! group that only reads the sidecar identity, `sidecar_container_ready`, which any join of a
//! sidecar's signal has to read) and, given `BEFORE` (another PrometheusRule file, e.g. `git
//! show <rev>:config/prometheus/prometheusrule.yaml`), that file's pack as it was.
//!
//! Range functions read what the data holds: `increase(…[30m])` and `predict_linear(…[1h])`
//! read `MINUTES` of samples, not a steady state's hour; the table says how many.
//!
//! `cargo bench --bench rule_cost -- [PODS [MINUTES [BEFORE]]]` (default 100000 and 10).

use std::collections::BTreeMap;
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
/// The groups of `BEFORE`'s pack, renamed so that they are told apart.
const BEFORE_PREFIX: &str = "before.";
/// The group that only reads the sidecar identity.
const FLOOR_GROUP: &str = "floor.sidecar-identity";
const EVALUATION: Duration = Duration::from_secs(30);
/// How long the groups' evaluations are read: three of the pack's 2-minute ones at least.
const SAMPLING: Duration = Duration::from_secs(7 * 60);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let pods: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let minutes: u64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(10);
    let before = args.get(2).map(std::path::PathBuf::from);
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
        std::fs::write(&rules, rule_groups(before.as_deref())?)?;
        let config = format!(
            "global:\n  scrape_interval: 60s\n  scrape_timeout: 55s\n  evaluation_interval: {}s\n\
             rule_files:\n  - {rules:?}\nscrape_configs:\n\
             \x20 - job_name: sidecar-watch\n    static_configs:\n      - targets: ['127.0.0.1:{operator_port}']\n\
             \x20 - job_name: pods-and-kubelet\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{exporters_port}']\n",
            EVALUATION.as_secs()
        );
        let prometheus = Prometheus::start_with_config(Path::new(PROMETHEUS_BIN), &config).await?;
        println!("collecting {minutes} minutes of data in Prometheus at {} …", prometheus.url());
        tokio::time::sleep(Duration::from_secs(minutes * 60)).await;
        let mut evaluations = Evaluations::default();
        let sampling_started = tokio::time::Instant::now();
        while sampling_started.elapsed() < SAMPLING {
            tokio::time::sleep(EVALUATION).await;
            evaluations.add(&prometheus.rules().await?);
        }
        let groups = evaluations.per_group();
        let sum = |keep: &dyn Fn(&str) -> bool| {
            groups.iter().filter(|g| keep(&g.name)).fold((0.0, 0.0), |(e, h), g| (e + g.median, h + g.per_hour))
        };
        let rest = sum(&|n| !n.starts_with(PACK_PREFIX) && !n.starts_with(BEFORE_PREFIX) && n != FLOOR_GROUP);
        let pack = sum(&|n| n.starts_with(PACK_PREFIX));
        let before_pack = sum(&|n| n.starts_with(BEFORE_PREFIX));
        let floor = sum(&|n| n == FLOOR_GROUP);
        println!("rule evaluation: median of each group's evaluations over {} s, and per hour", SAMPLING.as_secs());
        let line = |what: &str, (each, hour): (f64, f64)| {
            println!(
                "  {what:<44} {:>9.1} ms each {:>9.1} s per hour ({:.1} % of the rest's)",
                each * 1e3,
                hour,
                hour / rest.1 * 100.0
            );
        };
        line("shipped rules without the pack", rest);
        line(&format!("the pack ({PACK_PREFIX}*)"), pack);
        if before.is_some() {
            line("BEFORE's pack", before_pack);
        }
        line("floor: reading the sidecar identity once", floor);
        println!("  groups (evaluations seen, interval):");
        for g in &groups {
            println!("    {:>9.1} ms x {} every {:>3} s  {}", g.median * 1e3, g.seen, g.interval, g.name);
        }
        let mut slowest = rule_times(&prometheus.rules().await?);
        slowest.truncate(10);
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
        let cgroups = view.containers.iter().map(|c| {
            let c = c.name.as_str();
            format!("{pod_labels},container=\"{c}\",id=\"/kubepods/{name}/{c}\",image=\"example/{c}:1\",name=\"{c}-{name}\"")
        });
        let pod_and_sandbox = [
            format!("{pod_labels},container=\"\",id=\"/kubepods/{name}\",image=\"\",name=\"\""),
            format!("{pod_labels},container=\"\",id=\"/kubepods/{name}/pause\",image=\"registry.k8s.io/pause:3.10\",name=\"pause-{name}\""),
        ];
        for labels in cgroups.chain(pod_and_sandbox) {
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
/// makes it, with the floor group and `before`'s pack groups (renamed) beside it.
fn rule_groups(before: Option<&Path>) -> anyhow::Result<String> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus/prometheusrule.yaml");
    let mut spec = sidecar_watch_harness::ksm::rules::rule_groups(&shipped, 1)?;
    let floor = serde_json::json!({"name": FLOOR_GROUP, "rules": [{
        "record": "floor:sidecar_identity:count",
        "expr": "count(max without (instance, job, endpoint, service, shard, sidecar_type) (sidecar_container_ready))",
    }]});
    let mut extra = vec![floor];
    if let Some(before) = before {
        let old = sidecar_watch_harness::ksm::rules::rule_groups(before, 1)?;
        for mut group in old["groups"].as_array().cloned().unwrap_or_default() {
            let name = group["name"].as_str().unwrap_or_default().to_string();
            if name.starts_with(PACK_PREFIX) {
                group["name"] = Value::from(format!("{BEFORE_PREFIX}{name}"));
                extra.push(group);
            }
        }
    }
    if let Some(groups) = spec["groups"].as_array_mut() {
        groups.extend(extra);
    }
    Ok(serde_norway::to_string(&spec)?)
}

/// Each group's interval and distinct evaluations (start → seconds), read from
/// `/api/v1/rules` again and again.
#[derive(Default)]
struct Evaluations {
    by_group: BTreeMap<String, (f64, BTreeMap<String, f64>)>,
}

/// What one group cost.
struct GroupCost {
    name: String,
    /// Seconds between its evaluations.
    interval: f64,
    /// Evaluations seen.
    seen: usize,
    /// Median evaluation time, seconds.
    median: f64,
    /// Evaluation seconds per hour at its interval.
    per_hour: f64,
}

impl Evaluations {
    fn add(&mut self, rules: &Value) {
        for group in rules["groups"].as_array().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or_default().to_string();
            let interval = group["interval"].as_f64().unwrap_or(EVALUATION.as_secs_f64());
            let started = group["lastEvaluation"].as_str().unwrap_or_default().to_string();
            let time = group["evaluationTime"].as_f64().unwrap_or_default();
            let entry = self.by_group.entry(name).or_default();
            entry.0 = interval;
            // Go's zero time: not evaluated yet.
            if !started.starts_with("0001-") {
                entry.1.insert(started, time);
            }
        }
    }

    fn per_group(&self) -> Vec<GroupCost> {
        self.by_group
            .iter()
            .map(|(name, (interval, seen))| {
                let mut times: Vec<f64> = seen.values().copied().collect();
                let median = if times.is_empty() { 0.0 } else { median(&mut times) };
                let per_hour = median * 3600.0 / interval;
                GroupCost { name: name.clone(), interval: *interval, seen: times.len(), median, per_hour }
            })
            .collect()
    }
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
