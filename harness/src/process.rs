//! Child processes of the benchmark and the tests (the operator, kube-state-metrics,
//! baselines): started with a kubeconfig and a log, killed when dropped, and measured from
//! `/proc` (RSS, CPU time, threads, file descriptors).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

/// A child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
}

impl Proc {
    /// Current RSS in KiB (0 once it is gone).
    pub fn rss(&self) -> u64 {
        rss_kib(self.pid).unwrap_or(0)
    }

    /// RSS at rest: the median of five samples a second apart, so that one sample taken
    /// while the allocator still holds a burst's garbage does not stand for the phase.
    pub async fn settled_rss(&self) -> u64 {
        let mut samples = Vec::with_capacity(5);
        for i in 0..5 {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples.push(self.rss());
        }
        samples.sort_unstable();
        samples[samples.len() / 2]
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Starts `program args` with `KUBECONFIG`, stderr to `log` and `RUST_LOG` from
/// `BENCH_RUST_LOG` (default `warn`).
pub fn spawn(program: &Path, args: &[&str], kubeconfig: &Path, log: &Path, stdout: Stdio) -> Result<Proc> {
    spawn_with_env(program, args, kubeconfig, log, stdout, &[])
}

/// [`spawn`] with more environment variables.
pub fn spawn_with_env(
    program: &Path,
    args: &[&str],
    kubeconfig: &Path,
    log: &Path,
    stdout: Stdio,
    vars: &[(&str, String)],
) -> Result<Proc> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?)
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().context("child pid")?;
    Ok(Proc { child, pid, started })
}

/// Resident set size of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of [`rss_kib`] (`RssAnon`): the heap, stacks and the allocator's
/// pages, without the binary's mapped text (12.5–13 MiB of the operator's RSS, varying by
/// ±0.25 MiB from one start of the same binary to the next).
pub fn anon_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// OS threads of a process (`Threads` of `/proc/<pid>/status`).
pub fn threads(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a process in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it start after ')'.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11, stime 15 → index 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unavailable).
pub fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_ticks(pid).is_some());
        assert!(open_fds(pid).unwrap() >= 3, "stdin, stdout, stderr");
        assert!(threads(pid).unwrap() >= 1);
    }
}
