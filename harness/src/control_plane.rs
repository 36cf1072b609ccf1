//! A real Kubernetes control plane for the tests: kube-apiserver and etcd built from their
//! pinned Go modules (`harness/control-plane/`), started on loopback, stopped with the tests.
//!
//! [`ControlPlane::shared`] is the one control plane of a test process (each test works in
//! namespaces of its own); [`ControlPlane::start`] gives a test one of its own, for faults
//! that would disturb the others (a restarted API server, a compacted etcd) or feature gates.
//! The binary is built once by `harness/control-plane/build.sh` (Go's build cache makes later
//! builds a few seconds) unless `E2E_CONTROL_PLANE_BIN` names one. [`AuditLog`] has
//! kube-apiserver record every request, for tests of which calls a client makes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

/// Environment variable naming a prebuilt control-plane binary (skips the build).
pub const BINARY_ENV: &str = "E2E_CONTROL_PLANE_BIN";

/// What can go wrong starting or driving the control plane; each names its step.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// `build.sh` failed (no Go, Go too old, a module that cannot be fetched, a failed build).
    #[error("building the test control plane (harness/control-plane/build.sh) failed: {0}")]
    Build(String),
    /// The binary could not be started or said something unexpected.
    #[error("starting the test control plane: {0}")]
    Start(String),
    /// A control request failed.
    #[error("control plane {what}: {message}")]
    Control {
        /// The request.
        what: String,
        /// The cause.
        message: String,
    },
}

/// The versions the control plane runs (its `version` command, recorded in its ready line).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    /// kube-apiserver's `gitVersion` (`/version`), e.g. `v1.37.2`.
    #[serde(rename = "kubeAPIServer")]
    pub kube_api_server: String,
    /// The embedded etcd.
    pub etcd: String,
    /// The Go toolchain that built it.
    pub go: String,
}

/// Where a started control plane is (its ready line).
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    /// The admin kubeconfig (a client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// kube-apiserver's URL (`https://127.0.0.1:<port>`).
    pub server: String,
    /// The control API (`http://127.0.0.1:<port>`).
    pub control: String,
    /// The working directory: certificates, etcd data, `kube-apiserver.log`.
    pub dir: PathBuf,
    /// What runs.
    pub versions: Versions,
}

/// What a dedicated control plane runs with.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// kube-apiserver `--feature-gates` (`A=true,B=false`).
    pub feature_gates: Option<String>,
    /// Further kube-apiserver flags.
    pub apiserver_args: Vec<String>,
}

/// A running control plane; stopped on drop (and when the test process ends, since it
/// exits when its standard input closes).
pub struct ControlPlane {
    info: Info,
    control_port: u16,
    child: Mutex<Option<(Child, ChildStdin)>>,
    owned_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("server", &self.info.server).finish()
    }
}

/// Builds (or finds) the control-plane binary, once per process.
pub fn binary() -> Result<PathBuf, ControlPlaneError> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os(BINARY_ENV).filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(path));
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            match stdout.lines().last() {
                Some(path) if out.status.success() => Ok(PathBuf::from(path.trim())),
                _ => Err(format!("{} exited with {} (its message is above)", script.display(), out.status)),
            }
        })
        .clone()
        .map_err(ControlPlaneError::Build)
}

/// POSTs `path` to the control API of a control plane or cluster on `port` and returns its
/// JSON answer; an error answer or no answer within `timeout` is an error naming the request.
pub(crate) async fn control(port: u16, path: &str, timeout: Duration) -> Result<serde_json::Value, ControlPlaneError> {
    let err = |message: String| ControlPlaneError::Control { what: path.to_string(), message };
    let request = crate::http::Request { method: Some("POST"), ..Default::default() };
    let response = tokio::time::timeout(timeout, crate::http::get(port, path, &request))
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let body: serde_json::Value = serde_json::from_slice(&response.body).map_err(|e| err(e.to_string()))?;
    if response.status != 200 {
        return Err(err(body["error"].as_str().unwrap_or("failed").to_string()));
    }
    Ok(body)
}

impl ControlPlane {
    /// The control plane shared by the tests of this process, started on first use.
    pub fn shared() -> Result<&'static ControlPlane, ControlPlaneError> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        // Once more when a port the binary picked was taken before kube-apiserver or etcd bound
        // it (another test's process, seen in CI): otherwise every test of the process fails.
        let start = || {
            Self::start(&Options::default()).or_else(|e| match e.to_string().contains("address already in use") {
                true => Self::start(&Options::default()),
                false => Err(e),
            })
        };
        SHARED.get_or_init(|| start().map_err(|e| e.to_string())).as_ref().map_err(|e| {
            ControlPlaneError::Start(format!("the shared control plane did not start (first attempt): {e}"))
        })
    }

    /// Starts a control plane of its own in a fresh directory and waits until it is ready
    /// (blocking: up to ~10 s, longer on a loaded machine; the binary's own limit is 60 s).
    pub fn start(options: &Options) -> Result<Self, ControlPlaneError> {
        let binary = binary()?;
        let dir = std::env::temp_dir().join(format!("sidecar-watch-cp-{}-{}", std::process::id(), fastrand::u64(..)));
        let mut cmd = Command::new(&binary);
        // The shared control plane is a static, never dropped: it removes its directory
        // itself when the test process ends (its stdin closes).
        cmd.arg("up").arg("--dir").arg(&dir).arg("--exit-with-stdin").arg("--remove-dir");
        if let Some(gates) = &options.feature_gates {
            cmd.arg("--feature-gates").arg(gates);
        }
        for arg in &options.apiserver_args {
            cmd.arg(format!("--apiserver-arg={arg}"));
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| {
                ControlPlaneError::Start(format!(
                    "cannot run {} ({BINARY_ENV}, or unset it to build with harness/control-plane/build.sh): {e}",
                    binary.display()
                ))
            })?;
        let stdin = child.stdin.take().ok_or_else(|| ControlPlaneError::Start("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| ControlPlaneError::Start("no stdout".into()))?;
        let mut ready = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| ControlPlaneError::Start(e.to_string()))?;
            if let Some(json) = line.strip_prefix("ready ") {
                ready = Some(json.to_string());
                break;
            }
        }
        let Some(json) = ready else {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(ControlPlaneError::Start(format!(
                "{} up exited ({status}) before it was ready; its message is above, logs in {}",
                binary.display(),
                dir.display()
            )));
        };
        let info: Info = serde_json::from_str(&json)
            .map_err(|e| ControlPlaneError::Start(format!("unreadable ready line {json}: {e}")))?;
        let control_port = info
            .control
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ControlPlaneError::Start(format!("no control port in {}", info.control)))?;
        eprintln!(
            "control plane: kube-apiserver {} and etcd {} ({}) at {}",
            info.versions.kube_api_server, info.versions.etcd, info.versions.go, info.server
        );
        Ok(Self { info, control_port, child: Mutex::new(Some((child, stdin))), owned_dir: Some(dir) })
    }

    /// Where it runs and what.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// The port kube-apiserver serves on.
    pub fn port(&self) -> u16 {
        self.info.server.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    async fn control(&self, path: &str) -> Result<serde_json::Value, ControlPlaneError> {
        // Starting kube-apiserver again takes a few seconds; the binary bounds it at 60 s.
        control(self.control_port, path, Duration::from_secs(90)).await
    }

    /// Kills kube-apiserver (SIGKILL: connections and watches break).
    pub async fn stop_apiserver(&self) -> Result<(), ControlPlaneError> {
        self.control("/apiserver/stop").await.map(drop)
    }

    /// Starts kube-apiserver again on the same port and etcd; returns once it is ready.
    pub async fn start_apiserver(&self) -> Result<(), ControlPlaneError> {
        self.control("/apiserver/start").await.map(drop)
    }

    /// Kills kube-apiserver and starts it again.
    pub async fn restart_apiserver(&self) -> Result<(), ControlPlaneError> {
        self.control("/apiserver/restart").await.map(drop)
    }

    /// Compacts etcd at its current revision; returns that revision. Older resourceVersions
    /// are gone from etcd (kube-apiserver's watch cache may still serve them until it is
    /// started again).
    pub async fn compact_etcd(&self) -> Result<i64, ControlPlaneError> {
        let body = self.control("/etcd/compact").await?;
        body["revision"].as_i64().ok_or_else(|| ControlPlaneError::Control {
            what: "/etcd/compact".into(),
            message: format!("no revision in {body}"),
        })
    }

    /// The last `lines` of kube-apiserver's log, for failure messages.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.info.dir.join("kube-apiserver.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// kube-apiserver's audit log, to see which requests a client really made: give a control
/// plane [`AuditLog::apiserver_args`] (a policy recording every request at level `Metadata`,
/// without the `RequestReceived` stage) and read [`AuditLog::requests_by`]. Its directory
/// is removed on drop.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
}

/// One request as kube-apiserver's audit log records it (once, however many stages it
/// logged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditedRequest {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Who kube-apiserver authenticated.
    pub user: String,
    /// The RBAC verb (`get`, `list`, `watch`, `create`, `patch`, …).
    pub verb: String,
    /// The API group ("" for core and for non-resource requests).
    pub api_group: String,
    /// The resource, with a subresource as `resource/subresource`; "" for a non-resource
    /// request (discovery, `/version`, …: see `request_uri`).
    pub resource: String,
    /// The namespace the request named, if any.
    pub namespace: Option<String>,
    /// The path and query.
    pub request_uri: String,
    /// The response code (a watch still open when read: its `ResponseStarted` code, 200).
    pub code: Option<u16>,
}

impl AuditLog {
    /// Writes the audit policy into a fresh directory of its own.
    pub fn new() -> std::io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("sidecar-watch-audit-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir)?;
        let policy =
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";
        std::fs::write(dir.join("audit-policy.yaml"), policy)?;
        Ok(Self { dir })
    }

    /// The log file (JSON lines).
    pub fn path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The kube-apiserver flags that write the log ([`Options::apiserver_args`]); blocking,
    /// so that a request is in the log once its client has the response.
    pub fn apiserver_args(&self) -> Vec<String> {
        vec![
            format!("--audit-policy-file={}", self.dir.join("audit-policy.yaml").display()),
            format!("--audit-log-path={}", self.path().display()),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
        ]
    }

    /// The requests so far whose `User-Agent` starts with `user_agent`, each once, in the
    /// order they were logged. A missing log is no request yet; an unreadable line is an
    /// error.
    pub fn requests_by(&self, user_agent: &str) -> Result<Vec<AuditedRequest>, String> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut order: Vec<String> = Vec::new();
        let mut by_id: std::collections::HashMap<String, AuditedRequest> = std::collections::HashMap::new();
        // The last line may be half written.
        for line in text.lines().filter(|l| l.ends_with('}')) {
            let event: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{}: {e}: {line}", path.display()))?;
            let text = |pointer: &str| event.pointer(pointer).and_then(serde_json::Value::as_str).unwrap_or_default();
            if !text("/userAgent").starts_with(user_agent) {
                continue;
            }
            let id = text("/auditID").to_string();
            let final_stage = matches!(text("/stage"), "ResponseComplete" | "Panic");
            if by_id.contains_key(&id) && !final_stage {
                continue;
            }
            let resource = match (text("/objectRef/resource"), text("/objectRef/subresource")) {
                (resource, "") => resource.to_string(),
                (resource, sub) => format!("{resource}/{sub}"),
            };
            let request = AuditedRequest {
                user_agent: text("/userAgent").to_string(),
                user: text("/user/username").to_string(),
                verb: text("/verb").to_string(),
                api_group: text("/objectRef/apiGroup").to_string(),
                resource,
                namespace: Some(text("/objectRef/namespace")).filter(|n| !n.is_empty()).map(str::to_string),
                request_uri: text("/requestURI").to_string(),
                code: event.pointer("/responseStatus/code").and_then(serde_json::Value::as_u64).map(|c| c as u16),
            };
            if by_id.insert(id.clone(), request).is_none() {
                order.push(id);
            }
        }
        Ok(order.into_iter().filter_map(|id| by_id.remove(&id)).collect())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock() {
            if let Some((mut child, stdin)) = guard.take() {
                // Closing stdin asks it to stop; the kill makes sure.
                drop(stdin);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
