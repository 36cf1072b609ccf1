//! The node suite's own glue, over the harness: the one cluster with the operator installed
//! by its chart once (`CARGO_BIN_EXE_sidecar-watch`, which only this package's test targets
//! have, goes into its image), a namespace and policy per test ([`Scenario`]: this suite's
//! policy, its fault lock and its recording), and the operator's Events read back from the
//! server.
//!
//! The rest is the harness crate's and is re-exported here: the chart and commands with the
//! node's kubeconfig (`sidecar_watch_harness::node::chart`), Pods of the test image
//! (`sidecar_watch_harness::node::pods`) and the kubelet's status recorder
//! (`sidecar_watch_harness::node::recorder`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use sidecar_watch_harness::backstop::LOG_LINES;
use sidecar_watch_harness::env::{wait_until, TestEnv};
use sidecar_watch_harness::events::operator_events;
use sidecar_watch_harness::node::chart::{install_chart, run_within};
use sidecar_watch_harness::node::recorder::{record, Recorder};
use sidecar_watch_harness::node::Node;
use sidecar_watch_testkit::prom::Scrape;

pub use sidecar_watch_harness::node::chart::{helm, image_values, run, PROMETHEUS_SA, RELEASE_NAMESPACE};
pub use sidecar_watch_harness::node::pods::{container, healthy, job, native, pod, probe};

/// Tests that restart the node's components or the operator take this exclusively; every
/// other test holds it shared ([`Scenario::start`]), so that no fault lands in the middle of
/// another test's expectations.
pub static FAULTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// How long the slower steps of a scenario may take.
pub const MINUTE: Duration = Duration::from_secs(60);

/// The node, with the operator installed by the chart (once per process).
pub fn node() -> &'static Node {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let node = Node::shared(Path::new(env!("CARGO_BIN_EXE_sidecar-watch"))).unwrap_or_else(|e| {
        panic!("{e}\n(the node suite needs root and the packages of `scripts/deploy/install-tools.sh node`)")
    });
    if let Err(e) = INSTALLED.get_or_init(|| install_chart(node).map_err(|e| e.to_string())) {
        panic!("installing the operator by its chart failed (first attempt): {e}");
    }
    node
}

/// A test's namespace with a SidecarPolicy `seed` selecting every Pod, with short `for`s so
/// that the seed scenarios fire within a test's time; the static checks are off (their
/// Events would blur the exact sets the tests expect; `audit` and the engine tests cover
/// them).
pub struct Scenario {
    /// A client as the cluster's administrator.
    pub env: TestEnv,
    /// The namespace.
    pub ns: String,
    _faults: Faults,
    _recorder: Recorder,
}

/// This test's hold on [`FAULTS`].
enum Faults {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// Says how long the running test waited for its turn on [`FAULTS`] when it was more than a
/// second: libtest's "running for over 60 seconds" counts that wait, which is no step of
/// the test (a test that restarts a component runs alone, for minutes).
fn waited_for_turn(asked: std::time::Instant) {
    let waited = asked.elapsed();
    if waited > Duration::from_secs(1) {
        eprintln!(
            "{} waited {:.1} s for its turn (FAULTS)",
            sidecar_watch_harness::backstop::test_name(),
            waited.as_secs_f64()
        );
    }
}

/// How long a whole node test may run from its [`Scenario`]'s start (the slowest take about
/// five minutes).
pub const TEST_BOUND: Duration = Duration::from_secs(15 * 60);

/// The last [`LOG_LINES`] lines of each operator Pod's log, for a failure's message.
fn operator_logs(kubeconfig: &Path) -> String {
    let tail = format!("--tail={LOG_LINES}");
    let args =
        ["-n", RELEASE_NAMESPACE, "logs", "-l", "app.kubernetes.io/name=sidecar-watch", tail.as_str(), "--prefix"];
    run_within(kubeconfig, "kubectl", &args, Duration::from_secs(30)).unwrap_or_else(|e| format!("(kubectl logs: {e})"))
}

/// [`wait_until`], failing with the operator Pods' recent log: a wait that runs out says
/// what the operator saw.
pub async fn wait<T, E: std::fmt::Debug, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    match wait_until(timeout, what, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}\nthe operator's log:\n{}", operator_logs(node().kubeconfig())),
    }
}

/// The policy every scenario namespace gets.
pub const POLICY: &str = "seed";

impl Scenario {
    /// Creates namespace `<prefix>-<n>` and its policy.
    pub async fn start(prefix: &str) -> Self {
        let asked = std::time::Instant::now();
        let turn = FAULTS.read().await;
        waited_for_turn(asked);
        Self::with(prefix, Faults::Shared(turn)).await
    }

    /// Like [`Scenario::start`] for a test that restarts components: it runs alone.
    pub async fn exclusive(prefix: &str) -> Self {
        let asked = std::time::Instant::now();
        let turn = FAULTS.write().await;
        waited_for_turn(asked);
        Self::with(prefix, Faults::Exclusive(turn)).await
    }

    async fn with(prefix: &str, faults: Faults) -> Self {
        let node = tokio::task::spawn_blocking(node).await.expect("node");
        let mut env = TestEnv::from_kubeconfig(node.kubeconfig()).await.expect("client");
        // Armed once the test holds its turn ([`FAULTS`]): waiting for it is not the test's.
        env.arm_backstop(TEST_BOUND);
        let kubeconfig = node.kubeconfig().to_path_buf();
        env.logs().add(format!("the operator's Pods in {RELEASE_NAMESPACE}"), move || operator_logs(&kubeconfig));
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let ns = format!("{prefix}-{}", nanos % 100_000);
        env.create_namespace(&ns).await.expect("namespace");
        let policy = json!({
            "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
            "metadata": {"name": POLICY, "namespace": ns},
            "spec": {"selector": {}, "rules": {
                "sidecarNotReady": {"for": "30s"},
                "mainReadySidecarNotReady": {"for": "30s"},
                "restarts": {"threshold": 3, "window": "15m"},
                "crashLoop": {"for": "10s"},
                "jobBlocked": {"for": "10s"},
                "misconfiguration": {"enabled": false},
            }},
        });
        env.kubectl_apply(&policy.to_string()).await.expect("policy applied");
        let transitions = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-transitions");
        let recorder = record(env.client.clone(), &ns, &transitions);
        Self { env, ns, _faults: faults, _recorder: recorder }
    }

    /// Creates an object (JSON) in the namespace.
    pub async fn apply(&self, mut object: Value) {
        object["metadata"]["namespace"] = json!(self.ns);
        self.env.kubectl_apply(&object.to_string()).await.expect("applied");
    }

    /// The operator's Warning Events of this namespace's policy: (reason, Pod, container
    /// field path).
    pub async fn warnings(&self) -> BTreeSet<(String, String, String)> {
        self.events()
            .await
            .iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .map(|e| {
                let regarding = e.regarding.clone().unwrap_or_default();
                (
                    e.reason.clone().unwrap_or_default(),
                    regarding.name.unwrap_or_default(),
                    regarding.field_path.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// How many times each Event was published (Event objects, counting `series.count`):
    /// (type, reason, Pod, container field path) → count.
    pub async fn event_counts(&self) -> BTreeMap<(String, String, String, String), i32> {
        let mut counts = BTreeMap::new();
        for e in self.events().await {
            let regarding = e.regarding.clone().unwrap_or_default();
            let key = (
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                regarding.name.unwrap_or_default(),
                regarding.field_path.unwrap_or_default(),
            );
            *counts.entry(key).or_insert(0) += e.series.as_ref().map_or(1, |s| s.count.max(1));
        }
        counts
    }

    /// Seconds from `since` (a kubelet timestamp: the moment the condition began) to the
    /// `eventTime` of the operator's Event `reason` on `pod`: the time to alert.
    pub async fn time_to_alert(&self, reason: &str, pod: &str, since: &k8s_openapi::jiff::Timestamp) -> f64 {
        let events = self.events().await;
        let e = events
            .iter()
            .find(|e| {
                e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
            })
            .unwrap_or_else(|| panic!("no {reason} Event on {pod}"));
        let at = e.event_time.as_ref().expect("eventTime").0;
        let seconds = at.duration_since(*since).as_secs_f64();
        eprintln!("time to alert: {reason} on {}/{pod}: {seconds:.2} s after the kubelet's timestamp", self.ns);
        seconds
    }

    /// `status.startTime` of Pod `pod`: when the kubelet accepted it.
    pub async fn pod_start_time(&self, pod: &str) -> k8s_openapi::jiff::Timestamp {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), &self.ns);
        let status = pods.get(pod).await.expect("pod").status.unwrap_or_default();
        status.start_time.expect("a started Pod").0
    }

    /// The status of container `name` of Pod `pod` (init or regular).
    pub async fn container_status(&self, pod: &str, name: &str) -> k8s_openapi::api::core::v1::ContainerStatus {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), &self.ns);
        let status = pods.get(pod).await.expect("pod").status.unwrap_or_default();
        status
            .init_container_statuses
            .into_iter()
            .flatten()
            .chain(status.container_statuses.into_iter().flatten())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no status of {name} in {pod}"))
    }

    /// Every Event the operator published for this namespace's policy.
    pub async fn events(&self) -> Vec<Event> {
        operator_events(&self.env.client, &self.ns)
            .await
            .into_iter()
            .filter(|e| e.related.as_ref().and_then(|r| r.name.as_deref()) == Some(POLICY))
            .collect()
    }

    /// The operator's Events of `reason` about the workload `kind`/`name` (its
    /// `regarding`), as [`Self::events`] lists them.
    pub async fn workload_events(&self, kind: &str, name: &str, reason: &str) -> Vec<Event> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| {
                let regarding = e.regarding.as_ref();
                regarding.and_then(|r| r.kind.as_deref()) == Some(kind)
                    && regarding.and_then(|r| r.name.as_deref()) == Some(name)
            })
            .collect()
    }

    /// Shortens the scenario policy's `sidecarNotReady` to 5 s and `rolloutBlocked` to 10 s,
    /// so that a rollout test sees both within its bounds.
    pub async fn shorten_rollout_rules(&self) {
        let patch = json!({"spec": {"rules": {"sidecarNotReady": {"for": "5s"}, "rolloutBlocked": {"for": "10s"}}}});
        let patch = patch.to_string();
        let args = ["-n", self.ns.as_str(), "patch", "sidecarpolicy", POLICY, "--type", "merge", "-p", patch.as_str()];
        self.env.kubectl(args).await.expect("sidecarNotReady for 5s, rolloutBlocked for 10s");
    }

    /// Waits until the Warning Events are exactly `expected` (each `(reason, pod, field path)`),
    /// then for `settle` more to see that nothing else arrives.
    pub async fn expect_warnings(&self, timeout: Duration, settle: Duration, expected: &[(&str, &str, &str)]) {
        let expected: BTreeSet<(String, String, String)> =
            expected.iter().map(|(r, p, c)| (r.to_string(), p.to_string(), c.to_string())).collect();
        wait_until(timeout, &format!("the operator's Warning Events {expected:?}"), || async {
            let got = self.warnings().await;
            if got == expected {
                Ok(())
            } else {
                Err(format!("{got:?}; pods: {}", self.describe_pods().await))
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(settle).await;
        let got = self.warnings().await;
        assert_eq!(got, expected, "after {settle:?} more; pods: {}", self.describe_pods().await);
    }

    /// One line per Pod with its containers' states, for failure messages.
    pub async fn describe_pods(&self) -> String {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), &self.ns);
        let Ok(list) = pods.list(&ListParams::default()).await else { return "(unlisted)".into() };
        list.items
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                let containers: Vec<String> = status
                    .init_container_statuses
                    .iter()
                    .flatten()
                    .chain(status.container_statuses.iter().flatten())
                    .map(|c| {
                        let state = c.state.clone().unwrap_or_default();
                        let what = if state.running.is_some() {
                            "running".to_string()
                        } else if let Some(w) = state.waiting {
                            w.reason.unwrap_or_default()
                        } else if let Some(t) = state.terminated {
                            format!("terminated {}", t.exit_code)
                        } else {
                            "?".into()
                        };
                        format!("{}={what} ready={} restarts={}", c.name, c.ready, c.restart_count)
                    })
                    .collect();
                format!("{} [{}]", p.metadata.name.clone().unwrap_or_default(), containers.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The name of Job `job`'s Pod, once it exists.
pub async fn job_pod(s: &Scenario, job: &str) -> String {
    wait_until(MINUTE, &format!("a Pod of Job {job}"), || async {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
        let list = pods.list(&kube::api::ListParams::default().labels(&format!("job-name={job}"))).await;
        list.ok()
            .and_then(|l| l.items.first().and_then(|p| p.metadata.name.clone()))
            .ok_or_else(|| "none yet".to_string())
    })
    .await
    .unwrap()
}

/// GETs an operator Pod's `https://<ip>:8443/metrics` with `token` (none: no header); status and body.
pub fn scrape_metrics(ip: &str, token: Option<&str>) -> (u16, String) {
    let mut args = vec!["-sk".to_string(), "-w".into(), "\n%{http_code}".into(), "--max-time".into(), "5".into()];
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    args.push(format!("https://{ip}:8443/metrics"));
    let out = std::process::Command::new("curl").args(&args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The leading operator's `/metrics`.
pub async fn leader_metrics(s: &Scenario) -> Scrape {
    let node = node();
    let token = run(node, "kubectl", &["-n", PROMETHEUS_SA.0, "create", "token", PROMETHEUS_SA.1]).expect("token");
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    wait_until(MINUTE, "the leader's /metrics", || async {
        let operators = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=sidecar-watch"))
            .await
            .map_err(|e| e.to_string())?;
        for p in &operators.items {
            let Some(ip) = p.status.as_ref().and_then(|st| st.pod_ip.clone()) else { continue };
            let (code, body) = scrape_metrics(&ip, Some(token.trim()));
            let Ok(metrics) = Scrape::parse(&body) else { continue };
            if code == 200 && metrics.value("sidecar_watch_leader", &[("shard", "0")]) == Some(1.0) {
                return Ok(metrics);
            }
        }
        Err("no leader answered".to_string())
    })
    .await
    .unwrap()
}

/// The states of the leader's firing or pending `sidecar_alerts` series matching `matching`
/// under the scenario's policy (not the cluster-wide one), sorted.
pub async fn seed_alert_states(s: &Scenario, matching: &[(&str, &str)]) -> Vec<String> {
    let m = leader_metrics(s).await;
    let mut states: Vec<String> = m
        .find("sidecar_alerts", matching)
        .iter()
        .filter(|sample| sample.value == 1.0 && sample.labels.get("policy").map(String::as_str) == Some(POLICY))
        .filter_map(|sample| sample.labels.get("alertstate").cloned())
        .collect();
    states.sort();
    states
}

/// StatefulSet `db` of two Pods (`Parallel`) with native sidecar `proxy` beside `app`, updating
/// only ordinals from `partition` up.
pub fn partitioned_statefulset(proxy: Value, partition: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"initContainers": [proxy], "containers": [container("app", "exec sleep 3600", json!({}))],
                         "terminationGracePeriodSeconds": 1},
            },
        },
    })
}
