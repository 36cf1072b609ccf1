//! [`Operator`]: `sidecar-watch run` as a child process, its scrapes and log, and timing
//! checks of when an alert fired.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::install;

use super::*;

/// A free loopback port.
pub fn free_port() -> u16 {
    sidecar_watch_harness::env::free_port().expect("a free loopback port")
}

/// `sidecar-watch run` as a child process (killed on drop; its log printed by the test
/// environment if the test panics: [`sidecar_watch_harness::env::TestEnv::logs`]).
pub struct Operator {
    child: Option<tokio::process::Child>,
    /// The `--identity`.
    pub identity: String,
    /// The metrics port.
    pub port: u16,
    /// Whether the metrics listener speaks TLS (`SIDECAR_WATCH_METRICS_SECURE=true`).
    pub tls: bool,
    /// The bearer token scrapes send.
    pub token: Option<String>,
    log: PathBuf,
}

impl Operator {
    /// Starts `sidecar-watch run` against the cluster with the default test flags
    /// (`--namespace <ns> --lease-namespace <ns> --status-interval 1s`) plus `extra`.
    pub async fn start(cluster: &Cluster, identity: &str, extra: &[&str]) -> Self {
        Self::start_with_env(cluster, identity, extra, &[]).await
    }

    /// [`Operator::start`] with environment variables (`SIDECAR_WATCH_METRICS_SECURE=true`
    /// for TLS and tokens; then set [`Operator::token`] to scrape).
    pub async fn start_with_env(cluster: &Cluster, identity: &str, extra: &[&str], vars: &[(&str, &str)]) -> Self {
        let (port, args) = Self::default_args(cluster, identity, extra);
        Self::spawn(cluster, identity, port, &args, vars).await
    }

    /// Starts `sidecar-watch run` with exactly `args` and the environment variables `vars`
    /// (the caller passes the metrics address, by flag or `SIDECAR_WATCH_METRICS_ADDR`) and
    /// waits until it is ready.
    pub async fn spawn(cluster: &Cluster, identity: &str, port: u16, args: &[String], vars: &[(&str, &str)]) -> Self {
        let mut op = Self::launch(cluster, identity, port, args, vars);
        op.wait_ready().await;
        op
    }

    /// [`Operator::spawn`] without waiting for `/readyz`.
    pub fn launch(cluster: &Cluster, identity: &str, port: u16, args: &[String], vars: &[(&str, &str)]) -> Self {
        let log = cluster.env.dir().join(format!("operator-{identity}-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidecar-watch"));
        // `vars` come last so that a test can point one replica at another kubeconfig.
        cmd.arg("run")
            .args(args)
            .env("KUBECONFIG", &cluster.operator_kubeconfig)
            // Plain HTTP unless a test asks for TLS and tokens (metrics_secure.rs).
            .env("SIDECAR_WATCH_METRICS_SECURE", "false")
            .envs(vars.iter().copied())
            .env("RUST_LOG", std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let child = cmd.spawn().expect("operator started");
        // The test environment prints it if the test fails or outlives its bound.
        cluster.env.logs().add_file(format!("operator {identity} (port {port})"), log.clone());
        let tls = vars.iter().any(|(k, v)| *k == "SIDECAR_WATCH_METRICS_SECURE" && *v == "true");
        Self { child: Some(child), identity: identity.to_string(), port, tls, token: None, log }
    }

    /// Starts `sidecar-watch run` without leader election, watching `namespaces` (status
    /// written every second): a tenant's namespace beside the test's own.
    pub async fn start_watching(cluster: &Cluster, identity: &str, namespaces: &[&str]) -> Self {
        let port = free_port();
        let args: Vec<String> = [
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--namespace",
            &namespaces.join(","),
            "--leader-elect=false",
            "--status-interval",
            "1s",
        ]
        .map(String::from)
        .into();
        Self::spawn(cluster, identity, port, &args, &[]).await
    }

    /// The default test arguments ([`Operator::start`]) plus `extra`, on a free port.
    pub fn default_args(cluster: &Cluster, identity: &str, extra: &[&str]) -> (u16, Vec<String>) {
        let port = free_port();
        let mut args: Vec<String> = ["--metrics-addr", &format!("127.0.0.1:{port}")].map(String::from).into();
        args.extend(
            ["--namespace", &cluster.ns, "--lease-namespace", &cluster.ns, "--identity", identity].map(String::from),
        );
        args.extend(["--status-interval", "1s"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        (port, args)
    }

    /// Waits for `/readyz` 200.
    pub async fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("operator {} exited early ({status})", self.identity);
            }
            let request = sidecar_watch_harness::http::Request { tls: self.tls, ..Default::default() };
            if sidecar_watch_harness::http::get(self.port, "/readyz", &request).await.is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(start.elapsed() < WAIT, "operator {} not ready within {WAIT:?}", self.identity);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The raw `/metrics` text.
    pub async fn metrics_text(&self) -> Result<String, String> {
        let headers = self.token.iter().map(|t| ("authorization", format!("Bearer {t}"))).collect();
        let request = sidecar_watch_harness::http::Request { tls: self.tls, headers, ..Default::default() };
        match sidecar_watch_harness::http::get(self.port, "/metrics", &request).await {
            Ok(r) if r.status == 200 => r.text().map_err(|e| format!("/metrics: {e}")),
            Ok(r) => Err(format!("/metrics: {}: {}", r.status, r.text().unwrap_or_default())),
            Err(e) => Err(format!("/metrics: {e}")),
        }
    }

    /// Scrapes and parses `/metrics`.
    pub async fn scrape(&self) -> Result<Scrape, String> {
        Scrape::parse(&self.metrics_text().await?).map_err(|e| e.to_string())
    }

    /// Waits until the `sidecar_alerts` series equal `expected` (sorted label sets).
    pub async fn wait_alerts(&self, what: &str, expected: Vec<Labels>) -> Scrape {
        let expected = sorted(expected);
        wait_until(WAIT, &format!("{}: alerts {what}", self.identity), || async {
            let scrape = self.scrape().await?;
            if scrape.alerts() == expected {
                Ok(scrape)
            } else {
                Err(format!("got {:?}\nwanted {:?}", scrape.alerts(), expected))
            }
        })
        .await
        .unwrap()
    }

    /// Waits until `check` accepts a scrape.
    pub async fn wait_scrape(&self, what: &str, check: impl Fn(&Scrape) -> Result<(), String>) -> Scrape {
        wait_until(WAIT, &format!("{}: {what}", self.identity), || async {
            let scrape = self.scrape().await?;
            check(&scrape)?;
            Ok::<_, String>(scrape)
        })
        .await
        .unwrap()
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines that report a call the API server refused ([`install::refused_calls`]).
    pub fn forbidden_calls(&self) -> Vec<String> {
        install::refused_calls(&self.log()).into_iter().map(str::to_owned).collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("operator running")
    }

    /// Sends SIGTERM and asserts a clean exit (status 0) within 10 s.
    pub async fn terminate(&mut self) {
        let pid = self.pid();
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM {pid}: {status}");
        let mut child = self.child.take().expect("operator running");
        let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("operator {} did not exit within 10 s of SIGTERM\n{}", self.identity, self.log())
            })
            .expect("wait");
        assert!(exit.success(), "operator {} exited with {exit} after SIGTERM\n{}", self.identity, self.log());
        assert!(self.log().contains("stopped"), "no clean shutdown in the log:\n{}", self.log());
    }

    /// The exit status, once the process has ended by itself.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL (no chance to release the lease).
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("operator running");
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // Its log is printed by the test environment, which has it ([`Operator::launch`]).
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Polls the scrapes of `op` until `alertname` on `pod` is firing; returns when it was
/// first seen pending (if it was) and when firing.
pub async fn observe_firing(op: &Operator, pod: &str, alertname: &str) -> (Option<Instant>, Instant) {
    let mut pending_at = None;
    let start = Instant::now();
    loop {
        if let Ok(scrape) = op.scrape().await {
            let states: Vec<String> = scrape
                .find("sidecar_alerts", &[("pod", pod), ("alertname", alertname)])
                .iter()
                .map(|s| s.labels["alertstate"].clone())
                .collect();
            if states.iter().any(|s| s == "firing") {
                return (pending_at, Instant::now());
            }
            if pending_at.is_none() && states.iter().any(|s| s == "pending") {
                pending_at = Some(Instant::now());
            }
        }
        assert!(start.elapsed() < WAIT, "{alertname} on {pod} did not fire within {WAIT:?}\n{}", op.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that something that should happen `expected` after `t0` happened at `at`, within
/// `-early` (API timestamps have whole seconds) and `+late` (scheduling on a loaded box).
pub fn assert_on_time(what: &str, t0: Instant, at: Instant, expected: Duration) {
    let took = at.duration_since(t0);
    let early = Duration::from_millis(1500);
    let late = Duration::from_millis(3500);
    assert!(took + early >= expected, "{what} too early: after {took:?}, expected {expected:?}");
    assert!(took <= expected + late, "{what} too late: after {took:?}, expected {expected:?}");
}
