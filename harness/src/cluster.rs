//! [`Cluster`], the operator suite's cluster (`tests/e2e_operator/`): the environment, the
//! test's own namespace, the CRDs and the shipped RBAC installed, and the operator's
//! kubeconfig; applying manifests and policies, Pods, Events.
//!
//! Test helpers: they panic, with what failed, when the cluster does not do what they need.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::control_plane;
use crate::env::{wait_until, TestEnv};
use crate::events::{count_events, describe_events, operator_events};
use crate::fault_proxy::FaultProxy;
use crate::install;
use crate::kubelet::{self, PodDriver};
use crate::policy::{policy_resource, rules};

/// Default deadline of a wait.
pub const WAIT: Duration = Duration::from_secs(25);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A test cluster: the environment, its own namespace, the CRDs installed, and the
/// kubeconfig the operator runs with.
pub struct Cluster {
    /// The environment.
    pub env: TestEnv,
    /// The test's namespace.
    pub ns: String,
    /// The operator's kubeconfig: a token of the shipped ServiceAccount.
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

    async fn with_env(prefix: &str, env: TestEnv) -> Self {
        env.assert_reached_server().await.expect("the server answers /version");
        let crds = sidecar_watch_testkit::workspace_root().join("crds");
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
        install::install_operator_rbac(&env, &ns).await.expect("the shipped RBAC installed");
        let operator_kubeconfig = install::service_account_kubeconfig(
            &env,
            install::OPERATOR_NAMESPACE,
            install::OPERATOR_SERVICE_ACCOUNT,
            &env.dir().join("kubeconfig-operator"),
        )
        .await
        .expect("a token of the operator's ServiceAccount");
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
        let out = self.apply(&serde_json::to_string_pretty(&doc).expect("JSON prints")).await;
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
        serde_json::to_value(api.get(name).await.expect("policy")).expect("a policy as JSON")
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
        .unwrap_or_else(|e| panic!("{e}"))
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
        operator_events(&self.env.client, &self.ns).await
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
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn fastrand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    nanos % 100_000
}
