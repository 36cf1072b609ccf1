//! The test environment: a cluster (the real control plane of [`crate::control_plane`], a
//! real cluster from `E2E_KUBECONFIG`, or the simulator when a test asks for it), a kube
//! client, a kubeconfig file, a `kubectl` runner, CRD installation and a deadline-based poller.
//!
//! Tests never sleep a fixed time to wait for a condition: use [`wait_until`].
//!
//! [`TestEnv`] is in `test_env`, the manifest and kubeconfig helpers in `files`, the server's
//! release and kubectl runs that keep standard error in `server`; all are re-exported here.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::control_plane;

#[cfg(test)]
mod bounds;
mod files;
mod server;
mod test_env;

pub use files::*;
pub use server::*;
pub use test_env::*;

/// Environment variable naming a kubeconfig of a real cluster to run against.
pub const KUBECONFIG_ENV: &str = "E2E_KUBECONFIG";

/// Harness errors.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// File system error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The kubeconfig could not be loaded.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// Path of the kubeconfig.
        path: PathBuf,
        /// Cause.
        message: String,
    },
    /// A Kubernetes API call failed.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// The simulator failed to start.
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
    /// kubectl could not be run or exited with an error.
    #[error("kubectl {args} failed ({status}): {stderr}")]
    Kubectl {
        /// Arguments.
        args: String,
        /// Exit status.
        status: String,
        /// Standard error.
        stderr: String,
    },
    /// A condition did not hold before the deadline.
    #[error("timed out after {waited:?} waiting for {what}; last observed: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// Last observed value.
        last: String,
    },
    /// A manifest could not be parsed.
    #[error("invalid manifest {path}: {message}")]
    Manifest {
        /// File.
        path: PathBuf,
        /// Cause.
        message: String,
    },
    /// The operation needs the simulator but the tests run against a real cluster.
    #[error("this test needs the simulator ({KUBECONFIG_ENV} points at a real cluster)")]
    NoSimulator,
    /// The test control plane could not be built, started or driven.
    #[error(transparent)]
    ControlPlane(#[from] control_plane::ControlPlaneError),
}

/// Result alias of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Polls `check` every 100 ms until it returns `Ok` or `timeout` elapses. `Err` values mean
/// "not yet" and carry the observed state; the last one is reported on timeout.
pub async fn wait_until<T, E, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        last = match tokio::time::timeout(remaining.max(Duration::from_millis(10)), check()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => format!("{e:?}"),
            // The deadline cut a check short: what the one before it saw is the news.
            Err(_) if !last.is_empty() => format!("{last} (the next check did not complete before the deadline)"),
            Err(_) => "check did not complete before the deadline".to_string(),
        };
        if start.elapsed() >= timeout {
            eprintln!("wait_until: timed out waiting for {what}; last observed: {last}");
            return Err(HarnessError::Timeout { what: what.to_string(), waited: timeout, last });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET http://127.0.0.1:<port><path>`: (status, body), for the operator's and Prometheus'
/// HTTP endpoints ([`crate::http::get`] for headers and HTTPS).
pub async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let response = http_get_timed(port, path).await?;
    Ok((response.code, response.body))
}

/// A response: status code, body, time to the full body.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub code: u16,
    /// Body.
    pub body: String,
    /// Time from connecting to the last byte.
    pub elapsed: Duration,
}

/// `GET http://127.0.0.1:<port><path>`, timed.
pub async fn http_get_timed(port: u16, path: &str) -> std::io::Result<HttpResponse> {
    let response = crate::http::get(port, path, &crate::http::Request::default()).await?;
    Ok(HttpResponse { code: response.status, body: response.text()?, elapsed: response.elapsed })
}

/// A free loopback port (bound and released, so a race with another process is possible
/// but harmless in tests: binding then fails loudly).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
