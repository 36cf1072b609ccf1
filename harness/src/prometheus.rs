//! Runs Debian's `/usr/bin/prometheus` on a free loopback port with a rule file and one
//! scrape target (1 s scrape and evaluation interval), optionally sending its alerts to an
//! Alertmanager ([`crate::alertmanager`]), or with a configuration of the caller's (the
//! benchmark's 30 s intervals and several targets), and queries its HTTP API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::env::{free_port, http_get};
use serde_json::Value;

/// Default location of the Prometheus binary (Debian package `prometheus`).
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// Errors of the Prometheus runner.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The binary is missing.
    #[error("{0} not found: install it with `apt-get install -y prometheus` (do not start the system service)")]
    Missing(PathBuf),
    /// I/O error.
    #[error("prometheus I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Prometheus did not become ready.
    #[error("prometheus did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
    /// Prometheus exited early.
    #[error("prometheus exited early ({status}); log:\n{log}")]
    Exited {
        /// Exit status.
        status: String,
        /// Its log.
        log: String,
    },
    /// The API returned an error or an unexpected document.
    #[error("prometheus API error: {0}")]
    Api(String),
}

/// Result alias of the runner.
pub type Result<T, E = PrometheusError> = std::result::Result<T, E>;

/// A running Prometheus; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

/// Percent-encodes a query parameter's value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a server started as a child process did not become ready ([`wait_http_ready`]).
#[derive(Debug)]
pub(crate) enum Unready {
    /// Its status could not be read.
    Io(std::io::Error),
    /// It exited, with this status.
    Exited(String),
    /// It did not answer 200 in time; the last answer or error.
    Timeout(String),
}

/// Polls `GET /-/ready` on `port` (Prometheus' and Alertmanager's readiness endpoint) every
/// 200 ms until it answers 200, the child exits or `timeout` elapses.
pub(crate) async fn wait_http_ready(
    child: &mut tokio::process::Child,
    port: u16,
    timeout: Duration,
) -> std::result::Result<(), Unready> {
    let start = std::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().map_err(Unready::Io)? {
            return Err(Unready::Exited(status.to_string()));
        }
        match http_get(port, "/-/ready").await {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => last = format!("{code}: {body}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Unready::Timeout(last))
}

impl Prometheus {
    /// Starts Prometheus with `rule_file` evaluated every second and `target` (`host:port`,
    /// metrics at `/metrics`) scraped every second, and waits until it is ready.
    pub async fn start(rule_file: &Path, target: &str) -> Result<Self> {
        Self::start_with_binary(Path::new(PROMETHEUS_BIN), rule_file, target, "").await
    }

    /// Like [`Prometheus::start`], scraping over HTTPS (any certificate: the operator's
    /// default is self-signed) with the bearer token in `token_file`, as a ServiceMonitor
    /// with `authorization` and `tlsConfig` makes prometheus-operator configure it.
    pub async fn start_secure(rule_file: &Path, target: &str, token_file: &Path) -> Result<Self> {
        let settings = format!(
            "    scheme: https\n    authorization:\n      credentials_file: {:?}\n    tls_config:\n      insecure_skip_verify: true\n",
            std::fs::canonicalize(token_file)?.display().to_string()
        );
        Self::start_with_binary(Path::new(PROMETHEUS_BIN), rule_file, target, &settings).await
    }

    /// Like [`Prometheus::start`], sending its alerts to the Alertmanager at `alertmanager`
    /// (`host:port`, API v2), as a cluster's Prometheus does with the rules' alerts.
    pub async fn start_alerting(rule_file: &Path, target: &str, alertmanager: &str) -> Result<Self> {
        let config = Self::config(rule_file, target, "", Some(alertmanager))?;
        Self::start_with_config(Path::new(PROMETHEUS_BIN), &config).await
    }

    /// Like [`Prometheus::start`] with an explicit binary path and extra scrape settings
    /// (YAML lines indented for the scrape config).
    pub async fn start_with_binary(bin: &Path, rule_file: &Path, target: &str, scrape_settings: &str) -> Result<Self> {
        let config = Self::config(rule_file, target, scrape_settings, None)?;
        Self::start_with_config(bin, &config).await
    }

    /// The configuration of the test runs: 1 s intervals, one rule file, one scrape job and,
    /// when given, one Alertmanager.
    fn config(rule_file: &Path, target: &str, scrape_settings: &str, alertmanager: Option<&str>) -> Result<String> {
        let rules = std::fs::canonicalize(rule_file)?;
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\nrule_files:\n  - {rules:?}\nscrape_configs:\n  - job_name: sidecar-watch\n{scrape_settings}    static_configs:\n      - targets: [{target:?}]\n",
            rules = rules.display().to_string(),
        );
        if let Some(alertmanager) = alertmanager {
            config.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs:\n        - targets: [{alertmanager:?}]\n"
            ));
        }
        Ok(config)
    }

    /// Starts `bin` with a whole configuration file's text (`prometheus.yml`: intervals,
    /// rule files by absolute path, scrape jobs) and waits until it is ready.
    pub async fn start_with_config(bin: &Path, config: &str) -> Result<Self> {
        if !bin.exists() {
            return Err(PrometheusError::Missing(bin.to_path_buf()));
        }
        let dir = std::env::temp_dir().join(format!("sidecar-watch-prom-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(dir.join("data"))?;
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = tokio::process::Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let mut p = Self { child, port, dir };
        p.wait_ready(Duration::from_secs(30)).await?;
        Ok(p)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        match wait_http_ready(&mut self.child, self.port, timeout).await {
            Ok(()) => Ok(()),
            Err(Unready::Io(e)) => Err(e.into()),
            Err(Unready::Exited(status)) => Err(PrometheusError::Exited { status, log: self.log() }),
            Err(Unready::Timeout(last)) => {
                Err(PrometheusError::NotReady(timeout, format!("{last}\nlog:\n{}", self.log())))
            }
        }
    }

    /// Prometheus' log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn api(&self, path_and_query: &str) -> Result<Value> {
        let (code, body) = http_get(self.port, path_and_query).await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| PrometheusError::Api(format!("{code}: {e}: {body}")))?;
        if v.get("status").and_then(Value::as_str) != Some("success") {
            return Err(PrometheusError::Api(format!("{code}: {body}")));
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// `GET /api/v1/alerts`: the active (pending or firing) alerts.
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data.get("alerts").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// Names of alerts currently in state `firing`.
    pub async fn firing_alerts(&self) -> Result<Vec<String>> {
        Ok(self
            .alerts()
            .await?
            .iter()
            .filter(|a| a.get("state").and_then(Value::as_str) == Some("firing"))
            .filter_map(|a| a.pointer("/labels/alertname").and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    /// `GET /api/v1/query?query=...`: the `data` object (`resultType`, `result`).
    pub async fn query(&self, promql: &str) -> Result<Value> {
        self.api(&format!("/api/v1/query?query={}", encode(promql))).await
    }

    /// `GET /api/v1/rules?type=alert`: the `data` object (rule groups, each with its `file`,
    /// and every alerting rule's active alerts with their `state`).
    pub async fn alerting_rules(&self) -> Result<Value> {
        self.api("/api/v1/rules?type=alert").await
    }

    /// `GET /api/v1/rules`: the `data` object (every rule group, alerting and recording, with
    /// its `evaluationTime` and each rule's).
    pub async fn rules(&self) -> Result<Value> {
        self.api("/api/v1/rules").await
    }

    /// The process id (for its RSS and CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `GET /api/v1/targets`: the `data` object (active targets with health).
    pub async fn targets(&self) -> Result<Value> {
        self.api("/api/v1/targets").await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
