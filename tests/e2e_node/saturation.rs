//! Saturation before failure on the real kubelet: its own cAdvisor endpoint
//! (`/metrics/cadvisor`, no kube-state-metrics) and the chart's operator, scraped by Debian's
//! Prometheus evaluating the shipped rule pack's saturation group
//! (`config/prometheus/prometheusrule.yaml`, its `for`s divided by [`FOR_SCALE`] and its range
//! windows by [`WINDOW_SCALE`]). Real containers do what saturates a sidecar: one fills its memory to 94 % of
//! its limit, one spins under a CPU limit of 100m, one has a child process OOM-killed while
//! the container lives on. The main container does all three and fires nothing: the rules
//! join cAdvisor's series to the operator's `sidecar_container_ready`, sidecars only.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::ksm::rules::rule_groups;
use sidecar_watch_harness::prometheus::{Prometheus, PROMETHEUS_BIN};

use crate::support::{container, native, node, pod, run, Scenario, MINUTE, PROMETHEUS_SA, RELEASE_NAMESPACE};

/// The rules' `for`s ÷ this: `for: 15m` becomes 15 s.
const FOR_SCALE: u32 = 60;
/// The rules' range windows ÷ this: `[5m]` becomes `[1m]`. cAdvisor refreshes a container's
/// stats every 10 to 15 s (its housekeeping) and stamps its samples with that time, so a
/// window must span several refreshes for `increase` to see two.
const WINDOW_SCALE: u32 = 5;
const GROUP: &str = "sidecar-watch.sidecar-signals.saturation";

/// Fills 60 MiB of a memory-backed emptyDir (tmpfs pages are charged to the writer's cgroup
/// and count in its working set) under a 64 MiB limit: 94 %, as measured here.
const FILL_MEMORY: &str = "dd if=/dev/zero of=/fill/x bs=1M count=60 2>/dev/null";
/// A subshell that asks for more than a 32 MiB limit: the kernel kills it, the container's
/// own process lives on. It waits until Prometheus has seen the OOM counter at 0 (an
/// `increase` needs the sample before).
const OOM_A_CHILD: &str = "sleep 25; (x=$(head -c 60m /dev/zero | tr '\\0' a))";
const SPIN: &str = "while :; do :; done";

fn memory_volume(name: &str) -> Value {
    json!({"volumeMounts": [{"name": name, "mountPath": "/fill"}]})
}

fn limits(extra: Value, limits: Value) -> Value {
    let mut extra = extra;
    extra["resources"] = json!({"limits": limits});
    extra
}

/// Prometheus' configuration: the kubelet's cAdvisor and both operator replicas, with the
/// Prometheus ServiceAccount's token, and the saturation group of the shipped rules.
fn config(dir: &Path, token: &Path, kubelet: &str, operators: &[String]) -> String {
    let source = sidecar_watch_testkit::workspace_root().join("config/prometheus/prometheusrule.yaml");
    let group = |scale| {
        let spec = rule_groups(&source, scale).expect("the shipped PrometheusRule");
        let groups = spec["groups"].as_array().cloned().unwrap_or_default();
        groups.into_iter().find(|g| g["name"] == GROUP).unwrap_or_else(|| panic!("no group {GROUP} in {source:?}"))
    };
    let (mut windows, fors) = (group(WINDOW_SCALE), group(FOR_SCALE));
    for (rule, scaled) in
        windows["rules"].as_array_mut().into_iter().flatten().zip(fors["rules"].as_array().into_iter().flatten())
    {
        rule["for"] = scaled["for"].clone();
    }
    // Evaluated every second (the global interval below), not every 2 minutes / WINDOW_SCALE.
    if let Some(group) = windows.as_object_mut() {
        group.remove("interval");
    }
    let groups = [windows];
    let rules = dir.join("saturation-rules.yaml");
    std::fs::write(&rules, serde_norway::to_string(&json!({"groups": groups})).expect("YAML")).expect("rule file");
    // The kubelet answers /metrics/cadvisor in over a second when the node suite's other tests
    // load the node (1.03 s seen at six at once), and cAdvisor refreshes its figures only every
    // 10-15 s anyway: every 5 s, with as long to answer.
    let auth =
        format!("authorization: {{credentials_file: {token:?}}}\n    tls_config: {{insecure_skip_verify: true}}");
    format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}}\n\
         rule_files: [{rules:?}]\n\
         scrape_configs:\n\
         \x20 - job_name: kubelet-cadvisor\n    scrape_interval: 5s\n    scrape_timeout: 5s\n    \
         scheme: https\n    metrics_path: /metrics/cadvisor\n    {auth}\n    \
         static_configs: [{{targets: [{kubelet:?}]}}]\n\
         \x20 - job_name: sidecar-watch\n    scheme: https\n    {auth}\n    \
         static_configs: [{{targets: {operators:?}}}]\n"
    )
}

/// (alertname, container) of every firing alert of namespace `ns`.
async fn firing(prometheus: &Prometheus, ns: &str) -> Result<BTreeSet<(String, String)>, String> {
    let alerts = prometheus.alerts().await.map_err(|e| e.to_string())?;
    Ok(alerts
        .iter()
        .filter(|a| a["state"] == "firing" && a["labels"]["namespace"] == ns)
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
            (label("alertname"), label("container"))
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturating_sidecars_fire_from_the_kubelets_cadvisor_and_a_main_container_does_not() {
    let s = Scenario::start("saturation").await;
    let node = node();
    let mut saturating = pod(
        "saturating",
        vec![
            native(
                "mem-hog",
                &format!("{FILL_MEMORY}; exec sleep 3600"),
                limits(memory_volume("fill"), json!({"memory": "64Mi"})),
            ),
            native("cpu-hog", SPIN, limits(json!({}), json!({"cpu": "100m", "memory": "32Mi"}))),
            native(
                "oom-inside",
                &format!("{OOM_A_CHILD}; exec sleep 3600"),
                limits(json!({}), json!({"memory": "32Mi"})),
            ),
        ],
        vec![container(
            "app",
            &format!("{FILL_MEMORY}; {OOM_A_CHILD}; {SPIN}"),
            limits(memory_volume("app-fill"), json!({"cpu": "100m", "memory": "64Mi"})),
        )],
    );
    saturating["spec"]["volumes"] = json!([{"name": "fill", "emptyDir": {"medium": "Memory"}}, {"name": "app-fill", "emptyDir": {"medium": "Memory"}}]);
    s.apply(saturating).await;

    // Prometheus as kube-prometheus runs it: the kubelet's cAdvisor with `get nodes/metrics`.
    let (sa_ns, sa) = PROMETHEUS_SA;
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: test-cadvisor-reader}}\n\
         rules: [{{apiGroups: [\"\"], resources: [nodes/metrics], verbs: [get]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: test-cadvisor-reader}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: test-cadvisor-reader}}\n\
         subjects: [{{kind: ServiceAccount, namespace: {sa_ns}, name: {sa}}}]\n"
    );
    s.env.kubectl_apply(&rbac).await.expect("cAdvisor reader RBAC");
    let token = run(node, "kubectl", &["-n", sa_ns, "create", "token", sa]).expect("token");
    let dir = std::env::temp_dir().join(format!("sidecar-watch-saturation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token.trim()).expect("token file");
    let port = run(
        node,
        "kubectl",
        &["get", "node", &node.info().node, "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"],
    )
    .expect("the kubelet's port");
    let kubelet = format!("{}:{}", node.info().node_ip, port.trim());
    let ips = run(
        node,
        "kubectl",
        &[
            "-n",
            RELEASE_NAMESPACE,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=sidecar-watch",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ],
    )
    .expect("the operator's Pods");
    let operators: Vec<String> = ips.split_whitespace().map(|ip| format!("{ip}:8443")).collect();
    assert!(!operators.is_empty(), "the chart's operator Pods have IPs");
    let prometheus =
        Prometheus::start_with_config(Path::new(PROMETHEUS_BIN), &config(&dir, &token_file, &kubelet, &operators))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    // On a failure, the OOM counters cAdvisor exported for the Pod say whether the kubelet saw
    // the kill (its OOM watcher parses the kernel log), and the kernel's own lines whether a
    // kill happened at all.
    let oom_counters = format!("container_oom_events_total{{namespace={:?}, pod=\"saturating\"}}[5m]", s.ns);
    let report = |what: String| {
        let (prometheus, oom_counters) = (&prometheus, &oom_counters);
        async move {
            let kernel = std::process::Command::new("dmesg")
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| l.contains("oom-kill"))
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                })
                .unwrap_or_else(|e| format!("dmesg: {e}"));
            format!(
                "{what}\n--- targets ---\n{:?}\n--- alerts ---\n{:?}\n--- {oom_counters} ---\n{:?}\n\
                 --- kernel OOM kills ---\n{kernel}--- log ---\n{}",
                prometheus.targets().await.ok(),
                prometheus.alerts().await.ok(),
                prometheus.query(oom_counters).await.ok(),
                prometheus.log()
            )
        }
    };

    // cAdvisor's series carry the container, Pod and namespace (the kubelet's cAdvisor reads
    // the node's containerd), and the OOM counters start at 0.
    let ns = s.ns.clone();
    let seen = format!(
        "container_oom_events_total{{namespace={ns:?}, pod=\"saturating\", container=~\"oom-inside|app\"}} == 0"
    );
    if let Err(e) = wait_until(MINUTE, "cAdvisor's OOM counters at 0 for the sidecar and the app", || async {
        let v = prometheus.query(&seen).await.map_err(|e| e.to_string())?;
        if v["result"].as_array().is_some_and(|r| r.len() == 2) {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await
    {
        panic!("{}", report(e.to_string()).await);
    }

    let expected: BTreeSet<(String, String)> = [
        ("SidecarMemoryNearLimit", "mem-hog"),
        ("SidecarCPUThrottled", "cpu-hog"),
        ("SidecarOOMKillInside", "oom-inside"),
    ]
    .into_iter()
    .map(|(a, c)| (a.to_string(), c.to_string()))
    .collect();
    let fired = wait_until(2 * MINUTE, "each saturating sidecar's alert", || async {
        let now = firing(&prometheus, &ns).await?;
        if now.is_superset(&expected) {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    let fired = match fired {
        Ok(f) => f,
        Err(e) => panic!("{}", report(e.to_string()).await),
    };
    assert_eq!(fired, expected, "exactly the sidecars' alerts: the main container `app` fires none");

    // One alert each, with the operator's identity of the sidecar: the bare Pod as its workload.
    let alerts = prometheus.alerts().await.expect("alerts");
    let mem = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "SidecarMemoryNearLimit" && a["labels"]["namespace"] == ns.as_str())
        .expect("SidecarMemoryNearLimit");
    assert_eq!(mem["labels"]["workload_kind"], "Pod", "{mem}");
    assert_eq!(mem["labels"]["workload"], "saturating", "{mem}");
    assert_eq!(mem["labels"]["product"], "unknown", "{mem}");
    assert_eq!(mem["annotations"]["pods"], "1", "{mem}");
    // The OOM-killed child did not restart its container.
    assert_eq!(s.container_status("saturating", "oom-inside").await.restart_count, 0);
}
