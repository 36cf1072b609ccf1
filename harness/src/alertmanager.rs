//! Runs Debian's `/usr/bin/prometheus-alertmanager` on a free loopback port with a
//! configuration of the caller's (gossip off, its own storage), posts alerts to it through
//! `amtool` ([`Alertmanager::add_alert`]), reads its API v2 (the alerts with their
//! `inhibitedBy`), and rewrites a shipped configuration for a test: every webhook
//! to a [`WebhookReceiver`] of the test process, shorter group timings.
//!
//! The process and readiness handling are [`crate::prometheus`]'s.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::env::{free_port, http_get};
use crate::prometheus::{encode, wait_http_ready, Unready};

mod webhook;

pub use webhook::{Notification, WebhookReceiver, KEPT_NOTIFICATIONS};

/// Default location of the Alertmanager binary (Debian package `prometheus-alertmanager`).
pub const ALERTMANAGER_BIN: &str = "/usr/bin/prometheus-alertmanager";

/// Default location of `amtool`, Alertmanager's client (the same Debian package).
pub const AMTOOL_BIN: &str = "/usr/bin/amtool";

/// How long one `amtool` call may take: its own `--timeout`; the process is killed a second
/// later.
const AMTOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the Alertmanager runner.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    /// The binary is missing.
    #[error("{0} not found: install it with `bash scripts/deploy/install-tools.sh alertmanager` (Debian package prometheus-alertmanager; its system service is not needed)")]
    Missing(PathBuf),
    /// I/O error.
    #[error("alertmanager I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Alertmanager did not become ready.
    #[error("alertmanager did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
    /// Alertmanager exited early (a configuration it refused, a port taken).
    #[error("alertmanager exited early ({status}); log:\n{log}")]
    Exited {
        /// Exit status.
        status: String,
        /// Its log.
        log: String,
    },
    /// The API returned an error or an unexpected document.
    #[error("alertmanager API error: {0}")]
    Api(String),
    /// A configuration to rewrite is not what [`webhooks_to`] expects.
    #[error("alertmanager configuration: {0}")]
    Config(String),
}

/// Result alias of the runner.
pub type Result<T, E = AlertmanagerError> = std::result::Result<T, E>;

/// A running Alertmanager; killed on drop.
#[derive(Debug)]
pub struct Alertmanager {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Alertmanager {
    /// Starts Alertmanager with the configuration `config` (YAML text) and its storage
    /// (notification log, silences) and log in a new directory under `parent` (the test
    /// environment's), and waits until it is ready.
    pub async fn start(parent: &Path, config: &str) -> Result<Self> {
        Self::start_with_binary(Path::new(ALERTMANAGER_BIN), parent, config).await
    }

    /// [`Alertmanager::start`] with an explicit binary path.
    pub async fn start_with_binary(bin: &Path, parent: &Path, config: &str) -> Result<Self> {
        if !bin.exists() {
            return Err(AlertmanagerError::Missing(bin.to_path_buf()));
        }
        let port = free_port()?;
        let dir = parent.join(format!("alertmanager-{port}"));
        std::fs::create_dir_all(dir.join("data"))?;
        let config_path = dir.join("alertmanager.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("alertmanager.log"))?;
        let child = tokio::process::Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no gossip listener, so no cluster port and no peer search (a lone
            // instance also sends at once instead of waiting for peers to settle).
            .arg("--cluster.listen-address=")
            // Longer than any test's repeat_interval ([`webhooks_to`] sets 10 min): the
            // notification log must outlive it, or a repeat would not be deduplicated.
            .arg("--data.retention=1h")
            // Resolved alerts leave the API within a second instead of 30 minutes.
            .arg("--alerts.gc-interval=1s")
            // Debug: the log says what each group sent, which a failed test prints.
            .arg("--log.level=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let mut am = Self { child, port, dir };
        am.wait_ready(Duration::from_secs(30)).await?;
        Ok(am)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        match wait_http_ready(&mut self.child, self.port, timeout).await {
            Ok(()) => Ok(()),
            Err(Unready::Io(e)) => Err(e.into()),
            Err(Unready::Exited(status)) => Err(AlertmanagerError::Exited { status, log: self.log() }),
            Err(Unready::Timeout(last)) => {
                Err(AlertmanagerError::NotReady(timeout, format!("{last}\nlog:\n{}", self.log())))
            }
        }
    }

    /// `127.0.0.1:<port>`, as Prometheus' `alerting` configuration names it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// Alertmanager's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }

    /// The configuration it runs with (as written).
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.yml")).unwrap_or_default()
    }

    async fn get(&self, path_and_query: &str) -> Result<Value> {
        let (code, body) = http_get(self.port, path_and_query).await?;
        if code != 200 {
            return Err(AlertmanagerError::Api(format!("GET {path_and_query}: {code}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| AlertmanagerError::Api(format!("GET {path_and_query}: {e}: {body}")))
    }

    /// `GET /api/v2/alerts`: every alert it holds, active, silenced and inhibited, each with
    /// `labels`, `annotations`, `receivers` and `status` (`state`: `active`, `suppressed` or
    /// `unprocessed`; `inhibitedBy`: the fingerprints of the alerts inhibiting it).
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        match self.get("/api/v2/alerts").await? {
            Value::Array(alerts) => Ok(alerts),
            other => Err(AlertmanagerError::Api(format!("/api/v2/alerts: not a list: {other}"))),
        }
    }

    /// The alerts named `alertname` ([`Alertmanager::alerts`] with a label filter).
    pub async fn alerts_named(&self, alertname: &str) -> Result<Vec<Value>> {
        let filter = encode(&format!("alertname=\"{alertname}\""));
        match self.get(&format!("/api/v2/alerts?filter={filter}")).await? {
            Value::Array(alerts) => Ok(alerts),
            other => Err(AlertmanagerError::Api(format!("/api/v2/alerts: not a list: {other}"))),
        }
    }

    /// Posts one firing alert with `labels` (`POST /api/v2/alerts`, through `amtool alert
    /// add`), as a client other than Prometheus would: it fires from now until Alertmanager's
    /// `resolve_timeout` (5 minutes by default) passes.
    pub async fn add_alert(&self, labels: &[(&str, &str)]) -> Result<()> {
        let bin = Path::new(AMTOOL_BIN);
        if !bin.exists() {
            return Err(AlertmanagerError::Missing(bin.to_path_buf()));
        }
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let run = tokio::process::Command::new(bin)
            .args(["alert", "add", "--no-version-check"])
            .arg(format!("--alertmanager.url={}", self.url()))
            .arg(format!("--timeout={}s", AMTOOL_TIMEOUT.as_secs()))
            .args(&pairs)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let what = format!("amtool alert add {}", pairs.join(" "));
        let out = tokio::time::timeout(AMTOOL_TIMEOUT + Duration::from_secs(1), run)
            .await
            .map_err(|_| AlertmanagerError::Api(format!("{what}: no answer within {AMTOOL_TIMEOUT:?}")))??;
        if out.status.success() {
            Ok(())
        } else {
            Err(AlertmanagerError::Api(format!("{what}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr))))
        }
    }

    /// One line per alert it holds (name, state, who inhibits it, labels), for a failure
    /// message.
    pub async fn describe_alerts(&self) -> String {
        match self.alerts().await {
            Ok(alerts) if alerts.is_empty() => "(no alerts)".to_string(),
            Ok(alerts) => alerts.iter().map(describe_alert).collect::<Vec<_>>().join("\n"),
            Err(e) => e.to_string(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("E2E_SHOW_LOGS").is_some() {
            let log = self.log();
            let skip = log.len().saturating_sub(20_000);
            let tail = log.get(skip..).unwrap_or(&log);
            eprintln!("----- log of alertmanager (port {}) -----\n{tail}\n----- end of log -----", self.port);
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

/// Whether Alertmanager holds `alert` (an item of [`Alertmanager::alerts`]) inhibited:
/// `status.state` `suppressed` with at least one inhibiting alert.
pub fn is_inhibited(alert: &Value) -> bool {
    alert.pointer("/status/state").and_then(Value::as_str) == Some("suppressed")
        && alert.pointer("/status/inhibitedBy").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// One line of [`Alertmanager::describe_alerts`].
pub fn describe_alert(alert: &Value) -> String {
    format!(
        "{} state={} inhibitedBy={} receivers={} labels={}",
        alert.pointer("/labels/alertname").and_then(Value::as_str).unwrap_or("?"),
        alert.pointer("/status/state").and_then(Value::as_str).unwrap_or("?"),
        alert.pointer("/status/inhibitedBy").unwrap_or(&Value::Null),
        alert.get("receivers").unwrap_or(&Value::Null),
        alert.get("labels").unwrap_or(&Value::Null),
    )
}

/// Route timings for a test ([`webhooks_to`]): applied to the root route and to every child
/// route that sets its own.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// `group_wait`: how long a new group waits for more alerts before its first notification.
    pub group_wait: &'static str,
    /// `group_interval`: how long before a changed group is notified again.
    pub group_interval: &'static str,
    /// `repeat_interval`: how long before an unchanged group is notified again.
    pub repeat_interval: &'static str,
}

/// Seconds instead of the shipped minutes, so that a test sees a notification within a
/// second or two; `repeat_interval` stays longer than any test, so that every notification
/// a test counts is one a change caused, never a reminder.
pub const TEST_TIMINGS: Timings = Timings { group_wait: "1s", group_interval: "1s", repeat_interval: "10m" };

/// Rewrites an Alertmanager configuration (YAML text) for a test: each receiver's one
/// `webhook_configs` entry gets the URL `<base>/<receiver name>` (a [`WebhookReceiver`]
/// records by that path) and the routes get `timings`. Every receiver must have exactly one
/// webhook and nothing else to notify, as the shipped example has.
pub fn webhooks_to(config: &str, base: &str, timings: Timings) -> Result<String> {
    let mut doc: Value = serde_norway::from_str(config).map_err(|e| AlertmanagerError::Config(e.to_string()))?;
    let receivers = doc
        .get_mut("receivers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| AlertmanagerError::Config("no receivers".into()))?;
    for receiver in receivers.iter_mut() {
        let name = receiver["name"]
            .as_str()
            .ok_or_else(|| AlertmanagerError::Config(format!("a receiver without name: {receiver}")))?
            .to_string();
        let object = receiver.as_object_mut().ok_or_else(|| AlertmanagerError::Config(name.clone()))?;
        if let Some(other) = object.keys().find(|k| k.ends_with("_configs") && *k != "webhook_configs") {
            return Err(AlertmanagerError::Config(format!("receiver {name} also has {other}")));
        }
        match object.get_mut("webhook_configs").and_then(Value::as_array_mut) {
            Some(hooks) if hooks.len() == 1 => hooks[0]["url"] = Value::from(format!("{base}/{name}")),
            other => {
                return Err(AlertmanagerError::Config(format!(
                    "receiver {name}: want exactly one webhook_configs entry, got {other:?}"
                )))
            }
        }
    }
    let route = doc.get_mut("route").ok_or_else(|| AlertmanagerError::Config("no route".into()))?;
    set_timings(route, timings, true);
    serde_norway::to_string(&doc).map_err(|e| AlertmanagerError::Config(e.to_string()))
}

fn set_timings(route: &mut Value, timings: Timings, root: bool) {
    for (key, value) in [
        ("group_wait", timings.group_wait),
        ("group_interval", timings.group_interval),
        ("repeat_interval", timings.repeat_interval),
    ] {
        if root || route.get(key).is_some() {
            route[key] = Value::from(value);
        }
    }
    for child in route.get_mut("routes").and_then(Value::as_array_mut).into_iter().flatten() {
        set_timings(child, timings, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
route:
  receiver: platform
  group_by: [alertname]
  group_wait: 30s
  routes:
    - receiver: team-a
      matchers: ['label_team="a"']
      group_interval: 5m
    - receiver: team-b
receivers:
  - name: platform
    webhook_configs:
      - url: http://example.invalid/hook
        send_resolved: false
  - name: team-a
    webhook_configs:
      - url: http://example.invalid/a
  - name: team-b
    webhook_configs:
      - url: http://example.invalid/b
"#;

    #[test]
    fn rewrites_every_webhook_and_the_timings() {
        let out = webhooks_to(CONFIG, "http://127.0.0.1:9", TEST_TIMINGS).unwrap();
        let doc: Value = serde_norway::from_str(&out).unwrap();
        for (i, name) in ["platform", "team-a", "team-b"].iter().enumerate() {
            assert_eq!(doc["receivers"][i]["webhook_configs"][0]["url"], format!("http://127.0.0.1:9/{name}"));
        }
        assert_eq!(doc["receivers"][0]["webhook_configs"][0]["send_resolved"], false);
        assert_eq!(doc["route"]["group_wait"], "1s");
        assert_eq!(doc["route"]["group_interval"], "1s");
        assert_eq!(doc["route"]["repeat_interval"], "10m");
        assert_eq!(doc["route"]["routes"][0]["group_interval"], "1s");
        assert!(doc["route"]["routes"][0].get("group_wait").is_none(), "{out}");
        assert!(doc["route"]["routes"][1].get("group_interval").is_none(), "{out}");
    }

    #[tokio::test]
    async fn a_missing_binary_names_what_to_install() {
        let dir = std::env::temp_dir();
        let e =
            Alertmanager::start_with_binary(Path::new("/nonexistent/alertmanager"), &dir, CONFIG).await.unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("install-tools.sh alertmanager") && message.contains("prometheus-alertmanager"),
            "{message}"
        );
    }

    #[test]
    fn refuses_a_receiver_with_two_webhooks_or_another_kind() {
        let two = CONFIG.replace("      - url: http://example.invalid/b\n", "      - url: x\n      - url: y\n");
        assert!(webhooks_to(&two, "http://h", TEST_TIMINGS).unwrap_err().to_string().contains("team-b"));
        let email = format!("{CONFIG}    email_configs:\n      - to: a@example.invalid\n");
        assert!(webhooks_to(&email, "http://h", TEST_TIMINGS).unwrap_err().to_string().contains("email_configs"));
    }
}
