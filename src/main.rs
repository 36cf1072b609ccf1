//! The `sidecar-watch` command: `run` (the operator), `audit` (offline), `crd` and
//! `admission-policy`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: no per-allocation header for the many small strings of the index, and freed
// memory goes back to the OS (glibc keeps it in per-thread arenas after a relist or churn);
// through a wrapper that keeps each block in its size class (`memory::Mimalloc`).
#[cfg(not(feature = "heap-counts"))]
#[global_allocator]
static GLOBAL: sidecar_watch::memory::Mimalloc = sidecar_watch::memory::Mimalloc;

// The same allocator, counting what is live (`--features heap-counts`, for measuring).
#[cfg(feature = "heap-counts")]
#[global_allocator]
static GLOBAL: sidecar_watch::memory::CountingMimalloc = sidecar_watch::memory::CountingMimalloc;

/// Watches sidecar containers in Kubernetes and fires alerts on them.
#[derive(Parser)]
#[command(name = "sidecar-watch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against a cluster (kubeconfig or in-cluster config).
    Run(Box<sidecar_watch::controller::RunArgs>),
    /// Evaluate Pods or workload manifests against policies at one instant: files (`-f`,
    /// `kubectl get pods -A -o json`, `helm template` output) or the current cluster.
    Audit(sidecar_watch::audit::AuditArgs),
    /// Print the CustomResourceDefinitions as YAML (`crds/` holds this output).
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Print the sidecar checks as a ValidatingAdmissionPolicy and its binding (YAML): the API
    /// server then warns at `kubectl apply` as `audit` would report.
    AdmissionPolicy(sidecar_watch::admission::AdmissionPolicyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let log_format = args.log_format;
            match sidecar_watch::controller::run_blocking(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One line (one JSON object with --log-format json), each cause once.
                    eprintln!("{}", sidecar_watch::logging::fatal_line(log_format, "sidecar-watch failed", &e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(args) => match sidecar_watch::audit::run(&args) {
            Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(sidecar_watch::audit::AuditError::ClosedPipe) => end_by_sigpipe(),
            Err(e) => {
                eprintln!("sidecar-watch audit: {e}");
                ExitCode::from(2)
            }
        },
        Command::Crd { out_dir } => {
            match print_or_write(out_dir.as_deref(), sidecar_watch::api::crds_yaml, sidecar_watch::api::crd_files) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidecar-watch crd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::AdmissionPolicy(args) => {
            let options = args.binding_options();
            let render = || sidecar_watch::admission::render(&options);
            match print_or_write(args.out_dir.as_deref(), render, || sidecar_watch::admission::files(&options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidecar-watch admission-policy: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Ends the process the way git and kubectl do when the reader of their output has gone
/// (`audit | head -1`): silently, killed by SIGPIPE (status 141 in a shell, so that `set -o
/// pipefail` notices a truncated result). Rust ignores SIGPIPE, so its default is restored first.
fn end_by_sigpipe() -> ExitCode {
    #[cfg(target_os = "linux")]
    // SAFETY: restores a signal's default action and raises it; no Rust state is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    ExitCode::from(141)
}

/// Prints the YAML `print` renders or, with `out_dir`, writes each of the named `files` there.
fn print_or_write<E: std::error::Error + Send + Sync + 'static>(
    out_dir: Option<&std::path::Path>,
    print: impl FnOnce() -> Result<String, E>,
    files: impl FnOnce() -> Result<Vec<(String, String)>, E>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    match out_dir {
        None => print!("{}", print()?),
        Some(dir) => {
            for (name, yaml) in files()? {
                let path = dir.join(name);
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
