//! Support for the operator suite: a cluster (the real control plane, `E2E_KUBECONFIG`, or
//! the simulator where a test needs exact faults) with the CRDs, a namespace of its own and
//! the operator's shipped RBAC, the operator binary as a child process running as its
//! ServiceAccount, `/metrics` scraping and parsing, Events, policy status and Pod helpers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use sidecar_watch_e2e::control_plane;
use sidecar_watch_e2e::fault_proxy::FaultProxy;
use sidecar_watch_e2e::harness::{wait_until, TestEnv};
use sidecar_watch_e2e::install;
use sidecar_watch_e2e::kubelet::{self, test_pod, PodDriver, State};
use sidecar_watch_e2e::sim::SimConfig;

/// Default deadline of a wait.
pub const WAIT: Duration = Duration::from_secs(25);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The minor release of the server `env` talks to, from its `/version` (`"33"`, or `"33+"` as
/// some managed clusters write it), for the tests that assert what each release does: the
/// operator suite runs on the 1.37.2 control plane and, in CI, on 1.33.13 too
/// (docs/development.md, "Other Kubernetes versions").
pub async fn server_minor(env: &TestEnv) -> u32 {
    let info = env.client.apiserver_version().await.expect("the server answers /version");
    let minor = info.minor.trim_end_matches('+');
    minor.parse().unwrap_or_else(|_| panic!("/version: minor {:?} is not a number", info.minor))
}

/// Whether kube-apiserver 1.`minor` serves streaming lists without a flag: the WatchList
/// feature gate is on by default in 1.32 and from 1.34, off in 1.27-1.31 and again in 1.33
/// (and streaming lists do not exist before 1.27).
pub fn streams_by_default(minor: u32) -> bool {
    minor == 32 || minor >= 34
}

/// The `SidecarPolicy` resource.
pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sidecarwatch.io", "v1alpha1", "SidecarPolicy"),
        "sidecarpolicies",
    )
}

/// Every rule of a policy; [`rules`] disables those not given.
pub const RULES: [&str; 9] = [
    "sidecarNotReady",
    "mainReadySidecarNotReady",
    "restarts",
    "crashLoop",
    "oomKilled",
    "startupOrder",
    "jobBlocked",
    "shutdownOrder",
    "misconfiguration",
];

/// A `rules` object with exactly the given rules enabled (everything else `enabled: false`),
/// so that each test asserts the exact set of alerts.
pub fn rules(enabled: Value) -> Value {
    let mut out = serde_json::Map::new();
    for name in RULES {
        let rule = enabled.get(name).cloned().unwrap_or_else(|| json!({"enabled": false}));
        out.insert(name.to_string(), rule);
    }
    Value::Object(out)
}

/// A test cluster: the environment, its own namespace, the CRDs installed, and the
/// kubeconfig the operator runs with.
pub struct Cluster {
    /// The environment.
    pub env: TestEnv,
    /// The test's namespace.
    pub ns: String,
    /// The operator's kubeconfig: a token of the shipped ServiceAccount on a real server,
    /// the administrator's on the simulator (which has no RBAC).
    pub operator_kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts the environment (the shared control plane, or `E2E_KUBECONFIG`), installs the
    /// CRDs from `crds/` and the shipped RBAC, and creates a namespace.
    pub async fn start(prefix: &str) -> Self {
        Self::with_env(prefix, TestEnv::start().await.expect("test environment")).await
    }

    /// [`Cluster::start`] on a control plane of the test's own (to restart or compact it, or
    /// with feature gates), also when `E2E_KUBECONFIG` names a cluster.
    pub async fn start_own_control_plane(prefix: &str, options: control_plane::Options) -> Self {
        Self::with_env(prefix, TestEnv::start_control_plane(options).await.expect("control plane")).await
    }

    /// [`Cluster::start_own_control_plane`] with the operator's connection through a
    /// [`FaultProxy`] (the test's own client still goes straight to kube-apiserver).
    pub async fn start_behind_fault_proxy(prefix: &str, options: control_plane::Options) -> (Self, FaultProxy) {
        let mut c = Self::start_own_control_plane(prefix, options).await;
        let proxy = FaultProxy::start(&c.env.kubeconfig).await.expect("the fault proxy starts");
        let path = c.env.dir().join("kubeconfig-operator-via-proxy");
        proxy.kubeconfig(&c.operator_kubeconfig, &path).expect("the operator's kubeconfig via the proxy");
        c.operator_kubeconfig = path;
        (c, proxy)
    }

    /// The control plane of this test's own ([`Cluster::start_own_control_plane`]).
    pub fn control_plane(&self) -> &control_plane::ControlPlane {
        self.env.own_control_plane().expect("a control plane of the test's own")
    }

    /// [`Cluster::start`] on a simulator configured as `config`, for what no real server
    /// serves (a Pod kube-apiserver would have refused to store: `limits.rs`).
    pub async fn start_simulator(prefix: &str, config: SimConfig) -> Self {
        Self::with_env(prefix, TestEnv::start_simulator(config).await.expect("simulator")).await
    }

    async fn with_env(prefix: &str, env: TestEnv) -> Self {
        env.assert_reached_server().await.expect("the server answers /version");
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let names = env.install_crds(&crds).await.expect("CRDs installed");
        assert_eq!(names.len(), 2, "{names:?}");
        let ns = format!(
            "e2e-{prefix}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand_suffix()
        );
        env.create_namespace(&ns).await.expect("namespace");
        kubelet::ensure_node(&env.client).await.expect("the test Node");
        let operator_kubeconfig = if env.sim().is_some() {
            env.kubeconfig.clone()
        } else {
            install::install_operator_rbac(&env, &ns).await.expect("the shipped RBAC installed");
            let path = env.dir().join("kubeconfig-operator");
            install::service_account_kubeconfig(
                &env,
                install::OPERATOR_NAMESPACE,
                install::OPERATOR_SERVICE_ACCOUNT,
                &path,
            )
            .await
            .expect("a token of the operator's ServiceAccount")
        };
        Self { env, ns, operator_kubeconfig }
    }

    /// `kubectl apply --server-side -f -` of a YAML or JSON document in the test namespace.
    pub async fn apply(&self, manifest: &str) -> String {
        self.apply_in(&self.ns, manifest).await
    }

    /// `kubectl apply --server-side -f -` of a YAML or JSON document in `namespace`.
    pub async fn apply_in(&self, namespace: &str, manifest: &str) -> String {
        let args = ["apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", "-"];
        match self.env.kubectl_stdin(args, manifest).await {
            Ok(out) => out,
            Err(e) => panic!("{e}\n{manifest}"),
        }
    }

    /// Applies a `SidecarPolicy` named `name` with `spec` (kubectl server-side apply).
    pub async fn apply_policy(&self, name: &str, spec: Value) {
        let doc = json!({
            "apiVersion": "sidecarwatch.io/v1alpha1",
            "kind": "SidecarPolicy",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        });
        let out = self.apply(&serde_json::to_string_pretty(&doc).unwrap()).await;
        assert!(out.contains(&format!("sidecarpolicy.sidecarwatch.io/{name} serverside-applied")), "{out}");
    }

    /// Applies a `SidecarPolicy` selecting `app=<app>` with exactly the `enabled` rules (see
    /// [`rules`]), the shape most tests need.
    pub async fn apply_app_policy(&self, name: &str, app: &str, enabled: Value) {
        self.apply_policy(name, json!({"selector": {"matchLabels": {"app": app}}, "rules": rules(enabled)})).await;
    }

    /// Deletes a policy.
    pub async fn delete_policy(&self, name: &str) {
        self.env
            .kubectl(["delete", "sidecarpolicy", name, "-n", &self.ns, "--wait=false"])
            .await
            .expect("policy deleted");
    }

    /// The policy as JSON.
    pub async fn policy(&self, name: &str) -> Value {
        let api: Api<DynamicObject> = Api::namespaced_with(self.env.client.clone(), &self.ns, &policy_resource());
        serde_json::to_value(api.get(name).await.expect("policy")).unwrap()
    }

    /// Waits until `check` accepts the policy's `status`.
    pub async fn wait_status(&self, name: &str, what: &str, check: impl Fn(&Value) -> Result<(), String>) -> Value {
        wait_until(WAIT, &format!("status of policy {name}: {what}"), || async {
            let policy = self.policy(name).await;
            let status = policy.get("status").cloned().unwrap_or(Value::Null);
            check(&status).map_err(|e| format!("{e}; status: {status}"))?;
            Ok::<_, String>(status)
        })
        .await
        .unwrap()
    }

    /// Creates a Pod (JSON) in the test namespace and returns its driver.
    pub async fn create_pod(&self, pod: Value) -> PodDriver {
        self.create_pod_in(&self.ns, pod).await
    }

    /// Creates a Pod (JSON) in `namespace`, binds it to the test Node as a scheduler would,
    /// and returns its driver.
    pub async fn create_pod_in(&self, namespace: &str, pod: Value) -> PodDriver {
        let name = pod["metadata"]["name"].as_str().expect("pod name").to_string();
        let api: Api<Pod> = Api::namespaced(self.env.client.clone(), namespace);
        let pod: Pod = serde_json::from_value(pod).expect("valid Pod");
        api.create(&PostParams::default(), &pod).await.expect("pod created");
        kubelet::bind(&self.env.client, namespace, &name).await.expect("pod bound to the test Node");
        PodDriver::new(self.env.client.clone(), namespace, &name)
    }

    /// The Pods API of the namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.env.client.clone(), &self.ns)
    }

    /// Deletes a Pod at once (grace period 0).
    pub async fn delete_pod_now(&self, name: &str) {
        self.pods().delete(name, &DeleteParams::default().grace_period(0)).await.expect("pod deleted");
    }

    /// Merge-patches a Pod's labels.
    pub async fn label_pod(&self, name: &str, labels: Value) {
        self.pods()
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": labels}})))
            .await
            .expect("pod labelled");
    }

    /// Every Event of the operator (`reportingController: sidecar-watch`) in the namespace.
    pub async fn events(&self) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.env.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .expect("events listed")
            .items
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("sidecar-watch"))
            .collect()
    }

    /// Occurrences (Event objects, counting `series.count`) of `type_`/`reason` regarding
    /// `object` (a Pod or policy name).
    pub async fn event_count(&self, object: &str, type_: &str, reason: &str) -> u32 {
        count_events(&self.events().await, object, type_, reason)
    }

    /// Waits until exactly `count` occurrences of `type_`/`reason` regard `object`.
    pub async fn wait_events(&self, object: &str, type_: &str, reason: &str, count: u32) -> Vec<Event> {
        wait_until(WAIT, &format!("{count} {type_} {reason} Event(s) on {object}"), || async {
            let events = self.events().await;
            let n = count_events(&events, object, type_, reason);
            if n == count {
                Ok(events)
            } else {
                Err(format!("{n}; events: {}", describe_events(&events)))
            }
        })
        .await
        .unwrap()
    }
}

fn fastrand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    nanos % 100_000
}

/// Occurrences of an Event (counting `series.count`).
pub fn count_events(events: &[Event], object: &str, type_: &str, reason: &str) -> u32 {
    events
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some(type_)
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1) as u32))
        .sum()
}

/// A one-line summary of Events for failure messages.
pub fn describe_events(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{}/{} on {}[{}] x{}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                e.regarding.as_ref().and_then(|r| r.name.as_deref()).unwrap_or(""),
                e.regarding.as_ref().and_then(|r| r.field_path.as_deref()).unwrap_or(""),
                e.series.as_ref().map_or(1, |s| s.count)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The single Event with `reason` regarding `object`.
pub fn the_event<'a>(events: &'a [Event], object: &str, reason: &str) -> &'a Event {
    let found: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {reason} Event on {object}: {}", describe_events(events));
    found[0]
}

/// An alert Event as expected: `Warning` with reason `<alert>` when the alert fires, `Normal`
/// with `<alert>Resolved` when it clears, regarding the Pod's container, related to the
/// SidecarPolicy, published once (no series). A struct literal, so that every value is named
/// and an alert, a transition or a string put in the wrong place does not compile.
pub struct AlertEvent<'a> {
    /// The alert.
    pub alert: AlertName,
    /// Fired (`Warning`) or resolved (`Normal`).
    pub transition: TransitionKind,
    /// The Pod's name.
    pub pod: &'a str,
    /// The container as the Event names it: `spec.initContainers{istio-proxy}`.
    pub field_path: &'a str,
    /// The SidecarPolicy's name.
    pub policy: &'a str,
}

impl AlertEvent<'_> {
    /// Checks `e` against the expectation.
    pub fn assert_matches(&self, e: &Event) {
        let (type_, reason) = match self.transition {
            TransitionKind::Fired => ("Warning", self.alert.to_string()),
            TransitionKind::Resolved => ("Normal", format!("{}Resolved", self.alert)),
        };
        assert_eq!(e.type_.as_deref(), Some(type_), "{e:?}");
        assert_eq!(e.reason.as_deref(), Some(reason.as_str()), "{e:?}");
        assert_eq!(e.reporting_controller.as_deref(), Some("sidecar-watch"), "{e:?}");
        let regarding = e.regarding.as_ref().expect("regarding");
        assert_eq!(regarding.kind.as_deref(), Some("Pod"), "{e:?}");
        assert_eq!(regarding.name.as_deref(), Some(self.pod), "{e:?}");
        assert_eq!(regarding.field_path.as_deref(), Some(self.field_path), "{e:?}");
        let related = e.related.as_ref().expect("related");
        assert_eq!(related.kind.as_deref(), Some("SidecarPolicy"), "{e:?}");
        assert_eq!(related.name.as_deref(), Some(self.policy), "{e:?}");
        assert!(e.series.as_ref().is_none_or(|s| s.count <= 1), "a repeated Event: {e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Pods

/// A test Pod with a native sidecar (`initContainers`, `restartPolicy: Always`).
pub fn native_pod(name: &str, app: &str, main: &str, sidecar: &str) -> Value {
    test_pod(name, &[("app", app)], &[main], &[sidecar])
}

/// Brings every container of the Pod to running and started; `ready` says which are ready.
/// One status write; the driver derives the phase and the conditions as the kubelet does
/// (`Ready` only when all are ready).
pub async fn drive(pod: &PodDriver, ready: &[(&str, bool)]) -> Pod {
    pod.update(|_, s| {
        for c in s.container_statuses.iter_mut().flatten().chain(s.init_container_statuses.iter_mut().flatten()) {
            if c.state.as_ref().and_then(|st| st.running.as_ref()).is_none() {
                c.state = Some(State::Running.to_k8s());
            }
            c.started = Some(true);
            if let Some((_, r)) = ready.iter().find(|(n, _)| *n == c.name) {
                c.ready = *r;
            }
        }
        Ok(())
    })
    .await
    .expect("pod status written")
}

/// Sets `ready` of one container (a readiness probe's result); the driver updates the Pod
/// conditions in the same write, as the kubelet does.
pub async fn set_ready(pod: &PodDriver, container: &str, ready: bool) -> Pod {
    pod.set_ready(container, ready).await.expect("pod status written")
}

// ---------------------------------------------------------------------------------------
// Metrics

pub use sidecar_watch::api::Severity;
pub use sidecar_watch::engine::{AlertName, AlertState};
pub use sidecar_watch::index::TransitionKind;
pub use sidecar_watch_testkit::prom::{Labels, Scrape};

/// Checks that the single sample of `name` with `matching` labels has value `want`.
pub fn has_value(s: &Scrape, name: &str, matching: &[(&str, &str)], want: f64) -> Result<(), String> {
    match s.value(name, matching) {
        Some(v) if (v - want).abs() < 1e-9 => Ok(()),
        other => Err(format!("{name}{matching:?} = {other:?}, want {want}")),
    }
}

/// The expected labels of a `sidecar_alerts` series of a namespaced policy, on a Pod of the
/// policy's namespace that has no owner (see [`owned_by`]). A struct literal, so that every
/// value is named and a state, a severity or an alert put in the wrong place does not compile.
#[derive(Clone, Copy, Debug)]
pub struct AlertSeries<'a> {
    /// The alert (`alertname`).
    pub alert: AlertName,
    /// `alertstate`.
    pub state: AlertState,
    /// `severity`.
    pub severity: Severity,
    /// The SidecarPolicy's name (`policy`).
    pub policy: &'a str,
    /// The namespace of the policy and of the Pod.
    pub namespace: &'a str,
    /// The Pod's name (and its workload's: a Pod without owner is its own workload).
    pub pod: &'a str,
    /// The container's name.
    pub container: &'a str,
}

/// `SidecarContainerNotReady`, firing, warning, of the policy `mesh` on `istio-proxy`: what
/// most tests provoke ([`native_pod`] with its sidecar not ready). Name the rest:
/// `AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }`.
pub const MESH_NOT_READY: AlertSeries<'static> = AlertSeries {
    alert: AlertName::SidecarContainerNotReady,
    state: AlertState::Firing,
    severity: Severity::Warning,
    policy: "mesh",
    namespace: "",
    pod: "",
    container: "istio-proxy",
};

impl AlertSeries<'_> {
    /// The series' labels as a scrape shows them (`check` empty).
    pub fn labels(&self) -> Labels {
        [
            ("alertname", self.alert.as_str()),
            ("alertstate", self.state.as_str()),
            ("severity", self.severity.as_str()),
            ("policy", self.policy),
            ("policy_namespace", self.namespace),
            ("namespace", self.namespace),
            ("pod", self.pod),
            ("container", self.container),
            ("check", ""),
            ("workload_kind", "Pod"),
            ("workload", self.pod),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// `labels` of a Pod owned by the workload `kind`/`name`.
pub fn owned_by(mut labels: Labels, kind: &str, name: &str) -> Labels {
    labels.insert("workload_kind".into(), kind.into());
    labels.insert("workload".into(), name.into());
    labels
}

/// Sorted copy.
pub fn sorted(mut v: Vec<Labels>) -> Vec<Labels> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// The operator

/// A free loopback port.
pub fn free_port() -> u16 {
    sidecar_watch_e2e::harness::free_port().expect("a free loopback port")
}

/// `sidecar-watch run` as a child process (killed on drop; its log printed if the test
/// panics).
pub struct Operator {
    child: Option<tokio::process::Child>,
    /// The `--identity`.
    pub identity: String,
    /// The metrics port.
    pub port: u16,
    /// Whether the metrics listener speaks TLS (`SIDECAR_WATCH_METRICS_SECURE=true`).
    pub tls: bool,
    /// The bearer token scrapes send.
    pub token: Option<String>,
    log: PathBuf,
}

impl Operator {
    /// Starts `sidecar-watch run` against the cluster with the default test flags
    /// (`--namespace <ns> --lease-namespace <ns> --status-interval 1s`) plus `extra`.
    pub async fn start(cluster: &Cluster, identity: &str, extra: &[&str]) -> Self {
        Self::start_with_env(cluster, identity, extra, &[]).await
    }

    /// [`Operator::start`] with environment variables (`SIDECAR_WATCH_METRICS_SECURE=true`
    /// for TLS and tokens; then set [`Operator::token`] to scrape).
    pub async fn start_with_env(cluster: &Cluster, identity: &str, extra: &[&str], vars: &[(&str, &str)]) -> Self {
        let (port, args) = Self::default_args(cluster, identity, extra);
        Self::spawn(cluster, identity, port, &args, vars).await
    }

    /// Starts `sidecar-watch run` with exactly `args` and the environment variables `vars`
    /// (the caller passes the metrics address, by flag or `SIDECAR_WATCH_METRICS_ADDR`) and
    /// waits until it is ready.
    pub async fn spawn(cluster: &Cluster, identity: &str, port: u16, args: &[String], vars: &[(&str, &str)]) -> Self {
        let mut op = Self::launch(cluster, identity, port, args, vars);
        op.wait_ready().await;
        op
    }

    /// [`Operator::spawn`] without waiting for `/readyz`.
    pub fn launch(cluster: &Cluster, identity: &str, port: u16, args: &[String], vars: &[(&str, &str)]) -> Self {
        let log = cluster.env.dir().join(format!("operator-{identity}-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidecar-watch"));
        // `vars` come last so that a test can point one replica at another kubeconfig.
        cmd.arg("run")
            .args(args)
            .env("KUBECONFIG", &cluster.operator_kubeconfig)
            // Plain HTTP unless a test asks for TLS and tokens (metrics_secure.rs).
            .env("SIDECAR_WATCH_METRICS_SECURE", "false")
            .envs(vars.iter().copied())
            .env("RUST_LOG", std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let child = cmd.spawn().expect("operator started");
        let tls = vars.iter().any(|(k, v)| *k == "SIDECAR_WATCH_METRICS_SECURE" && *v == "true");
        Self { child: Some(child), identity: identity.to_string(), port, tls, token: None, log }
    }

    /// Starts `sidecar-watch run` without leader election, watching `namespaces` (status
    /// written every second): a tenant's namespace beside the test's own.
    pub async fn start_watching(cluster: &Cluster, identity: &str, namespaces: &[&str]) -> Self {
        let port = free_port();
        let args: Vec<String> = [
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--namespace",
            &namespaces.join(","),
            "--leader-elect=false",
            "--status-interval",
            "1s",
        ]
        .map(String::from)
        .into();
        Self::spawn(cluster, identity, port, &args, &[]).await
    }

    /// The default test arguments ([`Operator::start`]) plus `extra`, on a free port.
    pub fn default_args(cluster: &Cluster, identity: &str, extra: &[&str]) -> (u16, Vec<String>) {
        let port = free_port();
        let mut args: Vec<String> = ["--metrics-addr", &format!("127.0.0.1:{port}")].map(String::from).into();
        args.extend(
            ["--namespace", &cluster.ns, "--lease-namespace", &cluster.ns, "--identity", identity].map(String::from),
        );
        args.extend(["--status-interval", "1s"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        (port, args)
    }

    /// Waits for `/readyz` 200.
    pub async fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("operator {} exited early ({status})", self.identity);
            }
            let request = sidecar_watch_e2e::http::Request { tls: self.tls, ..Default::default() };
            if sidecar_watch_e2e::http::get(self.port, "/readyz", &request).await.is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(start.elapsed() < WAIT, "operator {} not ready within {WAIT:?}", self.identity);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The raw `/metrics` text.
    pub async fn metrics_text(&self) -> Result<String, String> {
        let headers = self.token.iter().map(|t| ("authorization", format!("Bearer {t}"))).collect();
        let request = sidecar_watch_e2e::http::Request { tls: self.tls, headers, ..Default::default() };
        match sidecar_watch_e2e::http::get(self.port, "/metrics", &request).await {
            Ok(r) if r.status == 200 => r.text().map_err(|e| format!("/metrics: {e}")),
            Ok(r) => Err(format!("/metrics: {}: {}", r.status, r.text().unwrap_or_default())),
            Err(e) => Err(format!("/metrics: {e}")),
        }
    }

    /// Scrapes and parses `/metrics`.
    pub async fn scrape(&self) -> Result<Scrape, String> {
        Scrape::parse(&self.metrics_text().await?).map_err(|e| e.to_string())
    }

    /// Waits until the `sidecar_alerts` series equal `expected` (sorted label sets).
    pub async fn wait_alerts(&self, what: &str, expected: Vec<Labels>) -> Scrape {
        let expected = sorted(expected);
        wait_until(WAIT, &format!("{}: alerts {what}", self.identity), || async {
            let scrape = self.scrape().await?;
            if scrape.alerts() == expected {
                Ok(scrape)
            } else {
                Err(format!("got {:?}\nwanted {:?}", scrape.alerts(), expected))
            }
        })
        .await
        .unwrap()
    }

    /// Waits until `check` accepts a scrape.
    pub async fn wait_scrape(&self, what: &str, check: impl Fn(&Scrape) -> Result<(), String>) -> Scrape {
        wait_until(WAIT, &format!("{}: {what}", self.identity), || async {
            let scrape = self.scrape().await?;
            check(&scrape)?;
            Ok::<_, String>(scrape)
        })
        .await
        .unwrap()
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines that report a call the API server refused ([`install::refused_calls`]).
    pub fn forbidden_calls(&self) -> Vec<String> {
        install::refused_calls(&self.log()).into_iter().map(str::to_owned).collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("operator running")
    }

    /// Sends SIGTERM and asserts a clean exit (status 0) within 10 s.
    pub async fn terminate(&mut self) {
        let pid = self.pid();
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM {pid}: {status}");
        let mut child = self.child.take().expect("operator running");
        let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("operator {} did not exit within 10 s of SIGTERM\n{}", self.identity, self.log())
            })
            .expect("wait");
        assert!(exit.success(), "operator {} exited with {exit} after SIGTERM\n{}", self.identity, self.log());
        assert!(self.log().contains("stopped"), "no clean shutdown in the log:\n{}", self.log());
    }

    /// The exit status, once the process has ended by itself.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL (no chance to release the lease).
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("operator running");
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("E2E_SHOW_LOGS").is_some() {
            let log = self.log();
            let tail: String = if log.len() > 20_000 {
                format!("…{}", &log[log.len() - 20_000..].chars().skip(1).collect::<String>())
            } else {
                log
            };
            eprintln!(
                "----- log of operator {} (port {}) -----\n{tail}\n----- end of log -----",
                self.identity, self.port
            );
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Polls the scrapes of `op` until `alertname` on `pod` is firing; returns when it was
/// first seen pending (if it was) and when firing.
pub async fn observe_firing(op: &Operator, pod: &str, alertname: &str) -> (Option<Instant>, Instant) {
    let mut pending_at = None;
    let start = Instant::now();
    loop {
        if let Ok(scrape) = op.scrape().await {
            let states: Vec<String> = scrape
                .find("sidecar_alerts", &[("pod", pod), ("alertname", alertname)])
                .iter()
                .map(|s| s.labels["alertstate"].clone())
                .collect();
            if states.iter().any(|s| s == "firing") {
                return (pending_at, Instant::now());
            }
            if pending_at.is_none() && states.iter().any(|s| s == "pending") {
                pending_at = Some(Instant::now());
            }
        }
        assert!(start.elapsed() < WAIT, "{alertname} on {pod} did not fire within {WAIT:?}\n{}", op.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that something that should happen `expected` after `t0` happened at `at`, within
/// `-early` (API timestamps have whole seconds) and `+late` (scheduling on a loaded box).
pub fn assert_on_time(what: &str, t0: Instant, at: Instant, expected: Duration) {
    let took = at.duration_since(t0);
    let early = Duration::from_millis(1500);
    let late = Duration::from_millis(3500);
    assert!(took + early >= expected, "{what} too early: after {took:?}, expected {expected:?}");
    assert!(took <= expected + late, "{what} too late: after {took:?}, expected {expected:?}");
}

/// The condition of `type_` in a status.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status.get("conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Checks the counts of a policy status.
pub fn status_counts(status: &Value, matched: u64, alerting: u64, firing: Value, pending: u64) -> Result<(), String> {
    let got = (
        status["matchedPods"].as_u64().unwrap_or(0),
        status["alertingPods"].as_u64().unwrap_or(0),
        status.get("firing").cloned().unwrap_or(json!({})),
        status["pendingAlerts"].as_u64().unwrap_or(0),
    );
    let want = (matched, alerting, firing, pending);
    if got == want {
        Ok(())
    } else {
        Err(format!("counts (matched, alerting, firing, pending) = {got:?}, want {want:?}"))
    }
}

/// Checks the Ready condition.
pub fn status_ready(status: &Value, value: &str, reason: &str) -> Result<(), String> {
    let c = condition(status, "Ready").ok_or("no Ready condition")?;
    if c["status"] == value && c["reason"] == reason {
        Ok(())
    } else {
        Err(format!("Ready = {c}, want {value}/{reason}"))
    }
}

/// What one kubectl run printed, its standard error (the API server's warnings) included,
/// whatever its exit status: what a user sees.
#[derive(Debug)]
pub struct Kubectl {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kubectl with `args` in the repository and `input` on standard input, keeping
/// standard error (the harness' `kubectl` helpers drop it).
pub async fn run_kubectl(env: &TestEnv, args: &[&str], input: &str) -> Kubectl {
    use tokio::io::AsyncWriteExt;
    let mut child = env
        .kubectl_command()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("kubectl reads its input");
    drop(stdin);
    let out = child.wait_with_output().await.expect("kubectl ends");
    Kubectl {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
