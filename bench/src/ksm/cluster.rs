//! The real cluster both systems watch: the test control plane (kube-apiserver v1.37.2 and
//! etcd from their Go modules), the namespaces, Node, CRDs and policies of the simulator
//! benchmark, RBAC for each client as a careful user installs it (the operator's shipped
//! ServiceAccount and roles; kube-state-metrics' own ServiceAccount allowed to list and watch
//! Pods, nothing else), and the same realistic Pods, created through the API server.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::TestEnv;
use sidecar_watch_harness::install;
use sidecar_watch_harness::kubelet::{self, NODE_NAME, SCHEDULER_NAME};

use crate::args::repo_root;
use crate::pods::{self, PodFactory};

/// kube-state-metrics' namespace and ServiceAccount (as its standard manifests name them).
pub const KSM_NAMESPACE: &str = "kube-system";
/// kube-state-metrics' ServiceAccount.
pub const KSM_ACCOUNT: &str = "kube-state-metrics";

/// The control plane, its processes and the benchmark's objects.
pub struct Cluster {
    /// Admin client, kubectl and the control plane (stopped on drop).
    pub env: TestEnv,
    /// The process running etcd (the control plane's own, which embeds it).
    pub etcd_pid: u32,
    /// kube-apiserver's process.
    pub apiserver_pid: u32,
    /// Regular containers of the Pods created so far (kube-state-metrics' sync target).
    pub containers: usize,
    /// Pods created so far (`PodFactory` indices `0..pods`).
    pub pods: usize,
    dir: PathBuf,
}

/// How the Pods of one step were created.
#[derive(Debug, Default, Clone, Copy)]
pub struct Creation {
    /// Pods created.
    pub pods: usize,
    pub secs: f64,
    /// Requests retried after a 429 or 5xx.
    pub retries: u64,
}

/// etcd's and kube-apiserver's process ids, found by the control plane's working directory
/// on their command lines (`up --dir DIR`, and its child `apiserver`).
fn control_plane_pids(dir: &Path) -> Result<(u32, u32)> {
    let cmdline = |pid: u32| -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| b.split(|c| *c == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
            .unwrap_or_default()
    };
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let pids: Vec<u32> =
        std::fs::read_dir("/proc")?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    let dir = dir.display().to_string();
    let etcd = pids
        .iter()
        .copied()
        .find(|p| {
            let args = cmdline(*p);
            args.get(1).is_some_and(|a| a == "up") && args.contains(&dir)
        })
        .with_context(|| format!("no control-plane process `up --dir {dir}`"))?;
    let apiserver = pids
        .iter()
        .copied()
        .find(|p| parent(*p) == Some(etcd) && cmdline(*p).get(1).is_some_and(|a| a == "apiserver"))
        .with_context(|| format!("no kube-apiserver child of process {etcd}"))?;
    Ok((etcd, apiserver))
}

fn yaml_stream(docs: &[Value]) -> String {
    docs.iter().map(|d| serde_norway::to_string(d).unwrap_or_default()).collect::<Vec<_>>().join("---\n")
}

impl Cluster {
    /// Starts the control plane and installs everything but the Pods.
    pub async fn start(dir: &Path) -> Result<Self> {
        let mut env = TestEnv::start_control_plane(Options::default()).await.context("starting the control plane")?;
        // A benchmark is not a test: the harness's 600-s bound on a whole test ended the
        // 30,000-Pod step partway.
        env.disarm_backstop();
        let cp = env.control_plane().context("no control plane")?;
        let (etcd_pid, apiserver_pid) = control_plane_pids(&cp.info().dir)?;
        say!(
            "control plane: kube-apiserver {} (pid {apiserver_pid}), etcd {} (pid {etcd_pid}), {}",
            cp.info().versions.kube_api_server,
            cp.info().versions.etcd,
            cp.info().versions.go
        );
        env.install_crds(&repo_root().join("crds")).await.context("installing the CRDs")?;
        let mut docs: Vec<Value> = (0..pods::NAMESPACES)
            .map(|i| {
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": pods::namespace(i), "labels": {"team": format!("team-{}", i % 7)}}})
            })
            .collect();
        docs.extend(pods::policies());
        docs.extend(ksm_rbac());
        env.kubectl_apply(&yaml_stream(&docs)).await.context("namespaces, policies, kube-state-metrics' RBAC")?;
        install::install_operator_rbac(&env, install::OPERATOR_NAMESPACE).await.context("the operator's RBAC")?;
        kubelet::ensure_node(&env.client).await.context("the Node")?;
        Ok(Self { env, etcd_pid, apiserver_pid, containers: 0, pods: 0, dir: dir.to_path_buf() })
    }

    /// The admin client.
    pub fn client(&self) -> &Client {
        &self.env.client
    }

    /// A fresh kubeconfig of the operator's ServiceAccount (tokens last an hour: one per
    /// process start).
    pub async fn operator_kubeconfig(&self) -> Result<PathBuf> {
        let path = self.dir.join("operator.kubeconfig");
        let (ns, sa) = (install::OPERATOR_NAMESPACE, install::OPERATOR_SERVICE_ACCOUNT);
        Ok(install::service_account_kubeconfig(&self.env, ns, sa, &path).await?)
    }

    /// A fresh kubeconfig of kube-state-metrics' ServiceAccount.
    pub async fn ksm_kubeconfig(&self) -> Result<PathBuf> {
        let path = self.dir.join("ksm.kubeconfig");
        Ok(install::service_account_kubeconfig(&self.env, KSM_NAMESPACE, KSM_ACCOUNT, &path).await?)
    }

    /// Creates the Pods `self.pods..n` of `factory` through the API server, `concurrency` at
    /// a time: each is a `POST` (bound to [`NODE_NAME`] by its `spec.nodeName`, as a
    /// DaemonSet's Pods are, which saves the `pods/binding` call) and a merge patch of its
    /// status (the factory's, as a kubelet reports it).
    pub async fn grow_to(&mut self, factory: &PodFactory, n: usize, concurrency: usize) -> Result<Creation> {
        let range: Range<usize> = self.pods..n.max(self.pods);
        let started = Instant::now();
        let client = self.client().clone();
        let mut retries = 0u64;
        let mut done = 0usize;
        let mut containers = 0usize;
        let mut results = stream::iter(range.clone())
            .map(|i| {
                let client = client.clone();
                let pod = factory.pod(i);
                async move { create_pod(&client, pod).await }
            })
            .buffer_unordered(concurrency.max(1));
        let mut last_report = Instant::now();
        while let Some(result) = results.next().await {
            let (regular, r) = result?;
            retries += r;
            containers += regular;
            done += 1;
            if last_report.elapsed() > Duration::from_secs(15) {
                last_report = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                say!("created {done} of {} Pods ({rate:.0}/s)", range.len());
            }
        }
        self.pods = range.end;
        self.containers += containers;
        Ok(Creation { pods: done, secs: started.elapsed().as_secs_f64(), retries })
    }

    /// Pods a status-update load may flip: healthy ones (the factory's not-ready and
    /// restarted few keep their state), as (factory index, namespace, name).
    pub fn update_targets(&self, factory: &PodFactory) -> Vec<(usize, String, String)> {
        (0..self.pods)
            .filter(|i| i % 100 >= 10)
            .map(|i| {
                let (ns, name) = pods::ns_name(&factory.pod(i));
                (i, ns, name)
            })
            .collect()
    }
}

/// kube-state-metrics' ServiceAccount and the only permission `--resources=pods` needs.
fn ksm_rbac() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": KSM_ACCOUNT, "namespace": KSM_NAMESPACE}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": KSM_ACCOUNT},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": KSM_ACCOUNT},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": KSM_ACCOUNT},
               "subjects": [{"kind": "ServiceAccount", "name": KSM_ACCOUNT, "namespace": KSM_NAMESPACE}]}),
    ]
}

/// The factory's Pod as a client sends it: what the server sets (uid, resourceVersion,
/// creation time, managedFields) removed, bound to the benchmark's Node; and its status.
pub fn split_for_create(mut pod: Value) -> (Value, Value) {
    let status = pod.as_object_mut().and_then(|o| o.remove("status")).unwrap_or(Value::Null);
    if let Some(meta) = pod["metadata"].as_object_mut() {
        for k in ["uid", "resourceVersion", "creationTimestamp", "managedFields"] {
            meta.remove(k);
        }
    }
    pod["spec"]["nodeName"] = json!(NODE_NAME);
    pod["spec"]["schedulerName"] = json!(SCHEDULER_NAME);
    (pod, status)
}

fn retryable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 429 || s.code >= 500)
        || matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// Creates one Pod and writes its status; returns its regular containers and retries.
async fn create_pod(client: &Client, pod: Value) -> Result<(usize, u64)> {
    let (ns, name) = pods::ns_name(&pod);
    let regular = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let (body, status) = split_for_create(pod);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<Pod>(&()));
    let object: DynamicObject = serde_json::from_value(body)?;
    let mut retries = 0;
    let status_patch = json!({"status": status});
    for step in ["create", "status"] {
        let mut attempt = 0;
        loop {
            let result = match step {
                "create" => api.create(&PostParams::default(), &object).await.map(drop),
                _ => api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status_patch)).await.map(drop),
            };
            match result {
                Ok(()) => break,
                Err(kube::Error::Api(s)) if step == "create" && s.code == 409 => break,
                Err(e) if retryable(&e) && attempt < 10 => {
                    attempt += 1;
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => bail!("{step} of Pod {ns}/{name}: {e}"),
            }
        }
    }
    Ok((regular, retries))
}

/// Writes `status`'s container statuses and conditions to Pod `ns/name` as one merge patch
/// of the status subresource (those lists are atomic: a kubelet's status manager sends them
/// whole, one `PATCH` per update).
pub async fn patch_status(client: &Client, ns: &str, name: &str, status: &Value) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<Pod>(&()));
    let mut patch = json!({"status": {}});
    for k in ["containerStatuses", "initContainerStatuses", "conditions"] {
        if let Some(v) = status.get(k) {
            patch["status"][k] = v.clone();
        }
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| anyhow!("status of Pod {ns}/{name}: {e}"))
}
