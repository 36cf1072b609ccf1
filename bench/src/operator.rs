//! The operator under test: started with plain-HTTP `/metrics` and without leader election,
//! waited for (`/readyz`, Pods tracked, a metric line) and scraped.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sidecar_watch_harness::env::{free_port, http_get_timed, HttpResponse};
use sidecar_watch_harness::process::{spawn_with_env, Proc};

use super::prom::Scrape;

/// `GET /metrics` on the operator's plain-HTTP port; an error unless 200.
pub async fn scrape(port: u16) -> Result<HttpResponse> {
    let r = http_get_timed(port, "/metrics").await?;
    if r.code != 200 {
        bail!("/metrics answered {}", r.code);
    }
    Ok(r)
}

/// [`scrape`], parsed.
pub async fn scrape_parsed(port: u16) -> Result<Scrape> {
    Ok(Scrape::parse(&scrape(port).await?.body)?)
}

/// Polls `/metrics` until a line contains all of `parts`; returns seconds since `t0`.
pub async fn wait_metric(port: u16, parts: &[&str], t0: Instant, timeout: Duration) -> Option<f64> {
    while t0.elapsed() < timeout {
        if let Ok(r) = scrape(port).await {
            if r.body.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
                return Some(t0.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The operator under test, serving plain-HTTP `/metrics` on `port`.
pub struct Operator {
    pub proc: Proc,
    pub port: u16,
}

impl Operator {
    /// Starts `sidecar-watch run` without leader election and with plain `/metrics`,
    /// plus `extra` flags.
    pub fn spawn(program: &Path, kubeconfig: &Path, log: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn_serving(program, kubeconfig, log, false, extra, &[])
    }

    /// [`Operator::spawn`] with environment variables, which (unlike flags) an operator
    /// binary that does not know them ignores: the same benchmark runs against older builds.
    pub fn spawn_with_env(
        program: &Path,
        kubeconfig: &Path,
        log: &Path,
        extra: &[&str],
        vars: &[(&str, String)],
    ) -> Result<Self> {
        Self::spawn_serving(program, kubeconfig, log, false, extra, vars)
    }

    /// [`Operator::spawn_with_env`], with `/metrics` over TLS and for reviewed tokens when
    /// `secure` (then [`Operator::wait_ready`] and the scrape helpers here do not apply).
    pub fn spawn_serving(
        program: &Path,
        kubeconfig: &Path,
        log: &Path,
        secure: bool,
        extra: &[&str],
        vars: &[(&str, String)],
    ) -> Result<Self> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let secure = if secure { "--metrics-secure=true" } else { "--metrics-secure=false" };
        let mut args = vec!["run", "--leader-elect=false", secure, "--metrics-addr", &addr];
        args.extend_from_slice(extra);
        let proc = spawn_with_env(program, &args, kubeconfig, log, Stdio::null(), vars)?;
        Ok(Operator { proc, port })
    }

    /// Waits for `/readyz` 200; returns seconds since the start.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<f64> {
        loop {
            if self.proc.started.elapsed() > deadline {
                bail!("operator not ready after {deadline:?}");
            }
            if http_get_timed(self.port, "/readyz").await.is_ok_and(|r| r.code == 200) {
                return Ok(self.proc.started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `sidecar_watch_pods_tracked` reaches `n`; returns seconds since the start.
    pub async fn wait_tracked(&self, n: usize, deadline: Duration) -> Result<f64> {
        loop {
            let s = scrape_parsed(self.port).await?;
            if s.sum("sidecar_watch_pods_tracked", &[]) as usize >= n {
                return Ok(self.proc.started.elapsed().as_secs_f64());
            }
            if self.proc.started.elapsed() > deadline {
                bail!("operator never tracked {n} Pods");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
