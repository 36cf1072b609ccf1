//! [`TestEnv`]: the cluster a test runs against (the shared or its own control plane, the
//! cluster of `E2E_KUBECONFIG`, or the simulator), its client and kubeconfig, `kubectl` runs,
//! namespaces and CRD installation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use crate::backstop::{Backstop, Logs, TEST_BOUND};
use crate::control_plane::{self, ControlPlane};
use crate::sim::{SimConfig, Simulator};

use super::*;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "sidecar-watch-harness-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    ))
}

/// Which server a [`TestEnv`] talks to.
enum Server {
    /// The simulator, in this process.
    Simulator(Simulator),
    /// The control plane shared by the tests of this process.
    SharedControlPlane(&'static ControlPlane),
    /// A control plane of this test's own.
    OwnControlPlane(Box<ControlPlane>),
    /// A cluster from `E2E_KUBECONFIG`.
    External,
}

/// A cluster to test against: the real control plane (default), a real cluster from
/// `E2E_KUBECONFIG`, or the in-process simulator.
pub struct TestEnv {
    /// Client for the cluster (as its administrator).
    pub client: Client,
    /// Kubeconfig file for external clients (kubectl; the operator gets its own, see
    /// [`crate::install`]).
    pub kubeconfig: PathBuf,
    server: Server,
    dir: PathBuf,
    /// The logs a failure of the test shows (its operators').
    logs: Logs,
    /// The whole test's bound.
    backstop: Backstop,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("kubeconfig", &self.kubeconfig)
            .field("simulator", &self.sim().map(Simulator::url))
            .field("control_plane", &self.control_plane().map(|c| c.info().server.clone()))
            .finish()
    }
}

impl TestEnv {
    /// Uses the cluster from `E2E_KUBECONFIG` if set, otherwise the control plane shared by
    /// this process' tests (built and started on first use).
    pub async fn start() -> Result<Self> {
        match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) if !path.is_empty() => Self::from_kubeconfig(Path::new(&path)).await,
            _ => {
                let shared = tokio::task::spawn_blocking(ControlPlane::shared)
                    .await
                    .map_err(|e| HarnessError::Manifest { path: PathBuf::new(), message: e.to_string() })??;
                Self::with_server(shared.kubeconfig(), Server::SharedControlPlane(shared)).await
            }
        }
    }

    /// Starts a control plane of this test's own (for faults that would disturb other tests,
    /// or feature gates).
    pub async fn start_control_plane(options: control_plane::Options) -> Result<Self> {
        let own = tokio::task::spawn_blocking(move || ControlPlane::start(&options))
            .await
            .map_err(|e| HarnessError::Manifest { path: PathBuf::new(), message: e.to_string() })??;
        let kubeconfig = own.kubeconfig().to_path_buf();
        Self::with_server(&kubeconfig, Server::OwnControlPlane(Box::new(own))).await
    }

    async fn with_server(kubeconfig: &Path, server: Server) -> Result<Self> {
        let client = client_from(kubeconfig).await?;
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Io { path: dir.clone(), source })?;
        Ok(Self::bounded_env(client, kubeconfig.to_path_buf(), server, dir))
    }

    /// Starts an in-process simulator on 127.0.0.1 (port from `config.bind`, 0 = free port)
    /// and writes a kubeconfig for it.
    pub async fn start_simulator(config: SimConfig) -> Result<Self> {
        let sim = Simulator::start(config).await?;
        let dir = unique_dir();
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).map_err(|source| HarnessError::Io { path: kubeconfig.clone(), source })?;
        let client = client_from(&kubeconfig).await?;
        Ok(Self::bounded_env(client, kubeconfig, Server::Simulator(sim), dir))
    }

    /// Every environment bounds its test ([`TEST_BOUND`]) from the start, so that no test
    /// (also one that builds its cluster by hand) can hang CI; a suite may re-arm it.
    fn bounded_env(client: Client, kubeconfig: PathBuf, server: Server, dir: PathBuf) -> Self {
        let logs = Logs::default();
        let backstop = Backstop::arm(crate::backstop::test_name(), TEST_BOUND, logs.clone());
        Self { client, kubeconfig, server, dir, logs, backstop }
    }

    /// Uses an existing cluster described by a kubeconfig.
    pub async fn from_kubeconfig(path: &Path) -> Result<Self> {
        Self::with_server(path, Server::External).await
    }

    /// The real control plane, if the tests run against one of this project's.
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        match &self.server {
            Server::SharedControlPlane(cp) => Some(cp),
            Server::OwnControlPlane(cp) => Some(cp),
            _ => None,
        }
    }

    /// A control plane of this test's own ([`TestEnv::start_control_plane`]): the only kind
    /// a test may restart or compact.
    pub fn own_control_plane(&self) -> Option<&ControlPlane> {
        match &self.server {
            Server::OwnControlPlane(cp) => Some(cp),
            _ => None,
        }
    }

    /// The `gitVersion` the server must report: the control plane's pinned kube-apiserver,
    /// or the simulator's; `None` for a cluster from `E2E_KUBECONFIG` (any version).
    pub fn expected_version(&self) -> Option<String> {
        match &self.server {
            Server::Simulator(sim) => Some(sim.git_version()),
            Server::SharedControlPlane(cp) => Some(cp.info().versions.kube_api_server.clone()),
            Server::OwnControlPlane(cp) => Some(cp.info().versions.kube_api_server.clone()),
            Server::External => None,
        }
    }

    /// Asks the server for `/version` and checks that it is the server this environment was
    /// given, so that no test passes while talking to no server (or another one). Returns
    /// the `gitVersion`.
    pub async fn assert_reached_server(&self) -> Result<String> {
        let version = self.client.apiserver_version().await?.git_version;
        if let Some(expected) = self.expected_version() {
            assert_eq!(
                version,
                expected,
                "the server at {} is not the one this test started",
                self.kubeconfig.display()
            );
        }
        assert!(!version.is_empty(), "the server at {} reported no version", self.kubeconfig.display());
        Ok(version)
    }

    /// The simulator, if the tests run against it.
    pub fn sim(&self) -> Option<&Simulator> {
        match &self.server {
            Server::Simulator(sim) => Some(sim),
            _ => None,
        }
    }

    /// The simulator, or [`HarnessError::NoSimulator`].
    pub fn require_sim(&self) -> Result<&Simulator> {
        self.sim().ok_or(HarnessError::NoSimulator)
    }

    /// The logs a failure of this test shows: the suites add their operators' here, and
    /// they are printed (last [`crate::backstop::LOG_LINES`] lines) when the environment is
    /// dropped while the test panics (or always with `E2E_SHOW_LOGS`), and when the test's
    /// [`Backstop`] fires.
    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// Bounds the whole running test to `bound` from now ([`Backstop`]) instead of the
    /// [`TEST_BOUND`] armed at the environment's start, until this environment is dropped.
    pub fn arm_backstop(&mut self, bound: Duration) {
        self.backstop = Backstop::arm(crate::backstop::test_name(), bound, self.logs.clone());
    }

    /// Lifts the whole-test bound armed at the environment's start: for a benchmark, whose
    /// largest step (`sidecar-watch-bench --against ksm` at 30,000 Pods) runs past it.
    pub fn disarm_backstop(&mut self) {
        self.backstop = Backstop::disarmed();
    }

    /// A scratch directory owned by this environment (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `kubectl` command preconfigured with this kubeconfig and a private cache dir.
    pub fn kubectl_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.dir.join("kubectl-cache"));
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs kubectl with `args`; returns stdout, or fails with stderr on a non-zero exit.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let shown = args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let failed = |status: String, stderr: String| HarnessError::Kubectl { args: shown.clone(), status, stderr };
        let out = bounded(self.kubectl_command().args(&args).output(), &failed)
            .await?
            .map_err(|e| failed("not started".into(), e.to_string()))?;
        if !out.status.success() {
            return Err(failed(out.status.to_string(), String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply --server-side --force-conflicts -f -` of `manifest` (YAML or JSON,
    /// several documents); returns kubectl's output.
    pub async fn kubectl_apply(&self, manifest: &str) -> Result<String> {
        self.kubectl_stdin(["apply", "--server-side", "--force-conflicts", "-f", "-"], manifest).await
    }

    /// Runs kubectl with `args` and `input` on its standard input; stdout, or an error with
    /// stderr on a non-zero exit.
    pub async fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use tokio::io::AsyncWriteExt;
        let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let shown = args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let failed = |status: String, stderr: String| HarnessError::Kubectl { args: shown.clone(), status, stderr };
        let mut child = self
            .kubectl_command()
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| failed("not started".into(), e.to_string()))?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(input.as_bytes()).await.map_err(|e| failed("stdin".into(), e.to_string()))?;
            }
            child.wait_with_output().await.map_err(|e| failed("not finished".into(), e.to_string()))
        };
        let out = bounded(run, &failed).await??;
        if !out.status.success() {
            return Err(failed(out.status.to_string(), String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a namespace (server-side apply, so it is idempotent).
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        api.patch(name, &PatchParams::apply("e2e-harness"), &Patch::Apply(&ns)).await?;
        Ok(())
    }

    /// Server-side applies every CustomResourceDefinition found in the `*.yaml`/`*.yml`
    /// files of `dir` (or in `dir` itself if it is a file) and waits until each is
    /// Established. Returns the CRD names.
    pub async fn install_crds(&self, dir: &Path) -> Result<Vec<String>> {
        let mut files = Vec::new();
        if dir.is_file() {
            files.push(dir.to_path_buf());
        } else {
            let rd = std::fs::read_dir(dir).map_err(|source| HarnessError::Io { path: dir.to_path_buf(), source })?;
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    files.push(p);
                }
            }
            files.sort();
        }
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut names = Vec::new();
        for f in files {
            for doc in read_manifests(&f)? {
                if doc.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                    continue;
                }
                let name = doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| HarnessError::Manifest {
                        path: f.clone(),
                        message: "CRD without metadata.name".into(),
                    })?
                    .to_string();
                api.patch(&name, &PatchParams::apply("e2e-harness").force(), &Patch::Apply(&doc)).await?;
                names.push(name);
            }
        }
        for name in &names {
            let api = api.clone();
            wait_until(Duration::from_secs(30), &format!("CRD {name} Established"), || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                    let established = crd
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
                    if established {
                        Ok(())
                    } else {
                        Err(format!("conditions: {:?}", crd.status.and_then(|s| s.conditions)))
                    }
                }
            })
            .await?;
        }
        Ok(names)
    }
}

/// How long one kubectl run of a test may take (its process is killed after it: the
/// commands are built with `kill_on_drop`).
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);

/// `run` cut at [`KUBECTL_TIMEOUT`], the error made by `failed(status, message)`.
async fn bounded<T>(
    run: impl std::future::Future<Output = T>,
    failed: &impl Fn(String, String) -> HarnessError,
) -> Result<T> {
    tokio::time::timeout(KUBECTL_TIMEOUT, run)
        .await
        .map_err(|_| failed(format!("killed after {KUBECTL_TIMEOUT:?}"), "it did not finish in time".into()))
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Here, not in each test: whatever failed (a wait, an API call, an assertion), the
        // message is followed by what the operator said. Before the directory holding the
        // operators' log files goes.
        let show = std::thread::panicking() || std::env::var_os("E2E_SHOW_LOGS").is_some();
        if show && !self.logs.is_empty() {
            eprintln!("{}", self.logs.render());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
