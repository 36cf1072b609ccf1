//! kube-state-metrics as a careful user runs it: built from its pinned Go module
//! (`harness/ksm/build.sh`), Pods only (`--resources=pods`), exporting only the families the rules
//! read (`--metric-allowlist`), with a ServiceAccount that may list and watch Pods.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::env::{free_port, http_get_timed, HttpResponse};
use crate::process::{spawn, Proc};

/// Environment variable naming a prebuilt kube-state-metrics (skips the build).
pub const BINARY_ENV: &str = "E2E_KSM_BIN";

/// Every family the seed's rules and the careful rules read; nothing else is exported.
pub const ALLOWLIST: [&str; 5] = [
    "kube_pod_container_status_ready",
    "kube_pod_container_status_restarts_total",
    "kube_pod_init_container_status_ready",
    "kube_pod_init_container_status_restarts_total",
    "kube_pod_init_container_info",
];

/// `explicit` (the benchmark's `--ksm`), else `E2E_KSM_BIN`, else what `harness/ksm/build.sh` builds
/// (once; Go's build cache makes it about a second after the first time).
pub fn binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os(BINARY_ENV).map(PathBuf::from)) {
        if !path.is_file() {
            bail!("kube-state-metrics binary {} does not exist", path.display());
        }
        return Ok(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ksm/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(path) if out.status.success() => Ok(PathBuf::from(path.trim())),
        _ => bail!("{} exited with {} (its message is above)", script.display(), out.status),
    }
}

/// `kube-state-metrics version`'s first line.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// A running kube-state-metrics.
pub struct Ksm {
    pub proc: Proc,
    /// Its `/metrics` port.
    pub port: u16,
    /// Its own metrics and `/debug/pprof`.
    pub telemetry: u16,
}

/// Go's account of kube-state-metrics' memory (`go_memstats_*` of its telemetry port), bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoMemory {
    /// Live objects (`heap_alloc`).
    pub heap_live: f64,
    /// Heap spans in use, garbage not yet collected included (`heap_inuse`).
    pub heap_inuse: f64,
    /// Everything obtained from the OS (`sys`).
    pub sys: f64,
}

impl Ksm {
    /// Starts it on loopback with `kubeconfig`, its log in `log`.
    pub fn spawn(binary: &Path, kubeconfig: &Path, log: &Path) -> Result<Self> {
        let (port, telemetry) = (free_port()?, free_port()?);
        let args = [
            format!("--kubeconfig={}", kubeconfig.display()),
            "--resources=pods".to_string(),
            format!("--metric-allowlist={}", ALLOWLIST.join(",")),
            "--host=127.0.0.1".to_string(),
            format!("--port={port}"),
            "--telemetry-host=127.0.0.1".to_string(),
            format!("--telemetry-port={telemetry}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = spawn(binary, &args, kubeconfig, log, Stdio::null())?;
        Ok(Self { proc, port, telemetry })
    }

    /// Go's memory statistics.
    pub async fn go_memory(&self) -> Result<GoMemory> {
        let r = http_get_timed(self.telemetry, "/metrics").await?;
        let value = |name: &str| {
            r.body
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(GoMemory {
            heap_live: value("go_memstats_heap_alloc_bytes"),
            heap_inuse: value("go_memstats_heap_inuse_bytes"),
            sys: value("go_memstats_sys_bytes"),
        })
    }

    /// Collects its garbage (`/debug/pprof/heap?gc=1` runs `runtime.GC()` first), saves the
    /// heap profile to `path` and returns the first `lines` of `go tool pprof -top` by space
    /// in use (or why not): what stays, not the initial list's garbage.
    pub async fn heap_profile(&self, path: &Path, lines: usize) -> Result<String> {
        let r = crate::http::get(self.telemetry, "/debug/pprof/heap?gc=1", &Default::default()).await?;
        if r.status != 200 {
            bail!("/debug/pprof/heap answered {}", r.status);
        }
        std::fs::write(path, &r.body)?;
        let out = Command::new("go")
            .args(["tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=12"])
            .arg(path)
            .output()
            .context("go tool pprof")?;
        if !out.status.success() {
            bail!("go tool pprof {}: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().take(lines).collect::<Vec<_>>().join("\n"))
    }

    /// `GET /metrics`: the body and how long it took.
    pub async fn scrape(&self) -> Result<HttpResponse> {
        let r = http_get_timed(self.port, "/metrics").await?;
        if r.code != 200 {
            bail!("kube-state-metrics /metrics answered {}", r.code);
        }
        Ok(r)
    }

    /// Waits until `/metrics` has a `kube_pod_container_status_ready` series for each of
    /// `containers` regular containers (every Pod listed); returns seconds since the start.
    pub async fn wait_synced(&self, containers: usize, deadline: Duration) -> Result<f64> {
        let mut pause = Duration::from_millis(200);
        loop {
            if let Ok(r) = self.scrape().await {
                let seen = r.body.lines().filter(|l| l.starts_with("kube_pod_container_status_ready{")).count();
                if seen >= containers {
                    return Ok(self.proc.started.elapsed().as_secs_f64());
                }
            }
            if self.proc.started.elapsed() > deadline {
                bail!("kube-state-metrics did not export {containers} containers within {deadline:?}");
            }
            // A scrape of a large store is work for it too: poll less often as time passes.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}
