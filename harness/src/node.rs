//! A real single-node cluster for the tests: the control plane of [`crate::control_plane`]
//! plus kube-controller-manager, kube-scheduler, kube-proxy, containerd and a kubelet
//! (`sidecar-watch-control-plane cluster up`), with the images of `harness/node/images.sh`
//! imported: the static busybox the test Pods run, the pause image and the operator's own.
//!
//! One cluster per test process ([`Node::shared`]): it needs root, and the Pod network's
//! bridge has one name. The cluster tears itself down (Pods, mounts, cgroups, iptables
//! rules, the bridge) when the test process ends and its standard input closes.
//!
//! What the node suite (`tests/e2e_node/`) runs on it: the operator's chart ([`chart`]), Pods
//! of the test image ([`pods`]) and a recorder of the statuses the kubelet writes
//! ([`recorder`]).

pub mod chart;
pub mod pods;
pub mod recorder;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::control_plane::{binary, ControlPlaneError};

/// The test image: Debian's static busybox (`/bin/sh`, `sleep`, `tail`…).
pub const BUSYBOX_IMAGE: &str = "sidecar-watch.test/busybox:1";
/// The operator's image as `harness/node/images.sh` names it.
pub const OPERATOR_IMAGE: &str = "sidecar-watch.test/sidecar-watch:dev";
/// Environment variable naming the operator binary put in its image (default: the one the
/// test names, see [`Node::shared`]); `scripts/version-matrix` sets the release build.
pub const OPERATOR_BINARY_ENV: &str = "E2E_OPERATOR_IMAGE_BIN";
/// Another build of the control-plane binary (`harness/control-plane/build.sh
/// --kubernetes-version VERSION`) whose kubelet runs the node: `cluster up --kubelet-bin`.
pub const KUBELET_BINARY_ENV: &str = "E2E_KUBELET_BIN";

/// What the node runs: the kubelet from the pinned module, the runtime from the host.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeVersions {
    /// The kubelet (`k8s.io/kubernetes` module version).
    pub kubelet: String,
    /// `containerd --version`.
    pub containerd: String,
    /// `runc --version`'s first line.
    pub runc: String,
    /// `bridge --version` of the CNI plugins.
    #[serde(rename = "cniPlugins")]
    pub cni_plugins: String,
    /// `v1` or `v2`.
    pub cgroups: String,
}

/// Where a started cluster is (its ready line).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// kube-apiserver's URL, on the node's address.
    pub server: String,
    /// The control API (`http://127.0.0.1:<port>`).
    pub control: String,
    /// The working directory: logs of every component, containerd's and the kubelet's state.
    pub dir: PathBuf,
    /// The Node's name.
    pub node: String,
    /// The node's address on the Pod network's bridge.
    #[serde(rename = "nodeIP")]
    pub node_ip: String,
    /// The node's versions.
    pub node_versions: NodeVersions,
}

/// The running cluster.
pub struct Node {
    info: NodeInfo,
    control_port: u16,
    _child: Mutex<(Child, ChildStdin)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("node", &self.info.node).field("server", &self.info.server).finish()
    }
}

/// Builds the images (`harness/node/images.sh`) with `operator` as the operator's binary.
pub fn build_images(operator: &Path) -> Result<Vec<PathBuf>, ControlPlaneError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/images.sh");
    let out_dir = std::env::temp_dir().join(format!("sidecar-watch-images-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&out_dir)
        .arg(operator)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| ControlPlaneError::Start(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(ControlPlaneError::Start(format!(
            "{} failed ({}): its message is above",
            script.display(),
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect())
}

impl Node {
    /// The cluster of this test process, started on first use with the images built from
    /// `operator` (or [`OPERATOR_BINARY_ENV`]). Needs root; a machine that cannot run a node
    /// gets the binary's message naming what it lacks.
    pub fn shared(operator: &Path) -> Result<&'static Node, ControlPlaneError> {
        static SHARED: OnceLock<Result<Node, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let operator = std::env::var_os(OPERATOR_BINARY_ENV)
                    .filter(|p| !p.is_empty())
                    .map_or_else(|| operator.to_path_buf(), PathBuf::from);
                Self::start(&operator).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ControlPlaneError::Start(format!("the test node did not start (first attempt): {e}")))
    }

    fn start(operator: &Path) -> Result<Self, ControlPlaneError> {
        let images = build_images(operator)?;
        let binary = binary()?;
        let dir = std::env::temp_dir().join(format!("sidecar-watch-node-{}", std::process::id()));
        let mut cmd = Command::new(&binary);
        cmd.args(["cluster", "up", "--exit-with-stdin", "--dir"]).arg(&dir);
        for image in &images {
            cmd.arg("--image").arg(image);
        }
        // A kubelet from another build (version skew: an older kubelet under this control plane).
        if let Some(kubelet) = std::env::var_os(KUBELET_BINARY_ENV).filter(|p| !p.is_empty()) {
            cmd.arg("--kubelet-bin").arg(kubelet);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| ControlPlaneError::Start(format!("cannot run {}: {e}", binary.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| ControlPlaneError::Start("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| ControlPlaneError::Start("no stdout".into()))?;
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("ready ").map(str::to_string));
        let Some(json) = ready else {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(ControlPlaneError::Start(format!(
                "{} cluster up exited ({status}) before the Node was Ready; its message is above",
                binary.display()
            )));
        };
        let info: NodeInfo = serde_json::from_str(&json)
            .map_err(|e| ControlPlaneError::Start(format!("unreadable ready line {json}: {e}")))?;
        let control_port = info
            .control
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ControlPlaneError::Start(format!("no control port in {}", info.control)))?;
        let v = &info.node_versions;
        eprintln!(
            "node {}: kubelet {}, {}, {}, CNI plugins {}, cgroup {}; kube-apiserver at {}",
            info.node, v.kubelet, v.containerd, v.runc, v.cni_plugins, v.cgroups, info.server
        );
        Ok(Self { info, control_port, _child: Mutex::new((child, stdin)) })
    }

    /// Where it runs and what.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// Restarts `component` (`kubelet`, `containerd`, `kube-proxy`, `kube-scheduler`,
    /// `kube-controller-manager`: SIGTERM then start, as a service manager restarts it;
    /// `apiserver`: killed) and waits until it runs again.
    pub async fn restart(&self, component: &str) -> Result<(), ControlPlaneError> {
        crate::control_plane::control(self.control_port, &format!("/{component}/restart"), Duration::from_secs(120))
            .await
            .map(drop)
    }

    /// Stops `component` (see [`Node::restart`]).
    pub async fn stop(&self, component: &str) -> Result<(), ControlPlaneError> {
        crate::control_plane::control(self.control_port, &format!("/{component}/stop"), Duration::from_secs(60))
            .await
            .map(drop)
    }

    /// Starts `component` again.
    pub async fn start_component(&self, component: &str) -> Result<(), ControlPlaneError> {
        crate::control_plane::control(self.control_port, &format!("/{component}/start"), Duration::from_secs(120))
            .await
            .map(drop)
    }

    /// The last `lines` of a component's log (`kubelet`, `containerd`…), for failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.info.dir.join(format!("{component}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
