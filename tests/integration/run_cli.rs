//! `sidecar-watch run` start-up as a user sees it, without a cluster: which kubeconfig and
//! context it connects with (`--kubeconfig`, `--context` and their environment variables), and
//! how a fatal start-up error is reported (one line; one JSON object with `--log-format json`).

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar-watch"));
    cmd.env_remove("KUBECONFIG")
        .env_remove("SIDECAR_WATCH_KUBECONFIG")
        .env_remove("SIDECAR_WATCH_CONTEXT")
        .env_remove("SIDECAR_WATCH_LOG_FORMAT")
        .env("RUST_LOG", "info");
    cmd
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sidecar-watch-run-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A kubeconfig with two contexts, `first` (current) and `second`, each on its own local port.
fn two_context_kubeconfig(dir: &std::path::Path, first: u16, second: u16) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: first\n\
         clusters:\n- name: first\n  cluster: {{server: 'http://127.0.0.1:{first}'}}\n\
         - name: second\n  cluster: {{server: 'http://127.0.0.1:{second}'}}\n\
         users:\n- name: u\n  user: {{token: t}}\n\
         contexts:\n- name: first\n  context: {{cluster: first, user: u}}\n\
         - name: second\n  context: {{cluster: second, user: u}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The first request line an API server on `listener` receives within `wait`, if any.
fn first_request(listener: &TcpListener, wait: Duration) -> Option<String> {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    while start.elapsed() < wait {
        if let Ok((mut stream, _)) = listener.accept() {
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).unwrap_or(0);
            return Some(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Starts the operator with `configure`, and returns the first request each API server saw.
fn which_server(
    name: &str,
    configure: impl FnOnce(&mut Command, &std::path::Path),
) -> (Option<String>, Option<String>) {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir(name);
    let kubeconfig =
        two_context_kubeconfig(&dir, first.local_addr().unwrap().port(), second.local_addr().unwrap().port());
    let mut cmd = binary();
    cmd.args(["run", "--metrics-addr=127.0.0.1:0", "--lease-namespace=default"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut cmd, &kubeconfig);
    let mut child = cmd.spawn().unwrap();
    let seen_second = first_request(&second, Duration::from_secs(20));
    let seen_first = first_request(&first, Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
    (seen_first, seen_second)
}

#[test]
fn kubeconfig_and_context_flags_pick_the_server() {
    // KUBECONFIG names a file that does not exist: only --kubeconfig can make this work.
    let (first, second) = which_server("flags", |cmd, kubeconfig| {
        cmd.env("KUBECONFIG", "/nonexistent/kubeconfig").arg("--kubeconfig").arg(kubeconfig).arg("--context=second");
    });
    assert!(first.is_none(), "the current-context's server was contacted: {first:?}");
    let line = second.expect("no request reached the --context server");
    assert!(line.contains("/apis/") || line.contains("/api/"), "not an API request: {line}");
}

#[test]
fn kubeconfig_and_context_from_the_environment() {
    let (first, second) = which_server("env", |cmd, kubeconfig| {
        cmd.env("SIDECAR_WATCH_KUBECONFIG", kubeconfig).env("SIDECAR_WATCH_CONTEXT", "second");
    });
    assert!(first.is_none(), "the current-context's server was contacted: {first:?}");
    assert!(second.is_some(), "no request reached SIDECAR_WATCH_CONTEXT's server");
}

#[test]
fn context_alone_selects_within_kubeconfig_variable() {
    let (first, second) = which_server("ctx", |cmd, kubeconfig| {
        cmd.env("KUBECONFIG", kubeconfig).arg("--context=second");
    });
    assert!(first.is_none(), "the current-context's server was contacted: {first:?}");
    assert!(second.is_some(), "no request reached the --context server");
}

#[test]
fn missing_kubeconfig_is_one_json_line_with_its_chain() {
    let out = binary()
        .args(["run", "--metrics-addr=127.0.0.1:0", "--log-format=json", "--kubeconfig=/nonexistent/kc.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines {
        let _: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    let fatal: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .collect();
    assert_eq!(fatal.len(), 1, "exactly one error line:\n{stderr}");
    let fatal = &fatal[0];
    assert_eq!(fatal["msg"], "sidecar-watch failed");
    assert_eq!(fatal["error"], "--kubeconfig /nonexistent/kc.yaml: cannot read the kubeconfig");
    let chain = fatal["errorChain"].as_array().expect("errorChain is an array");
    assert_eq!(chain[0], fatal["error"]);
    let text = fatal.to_string();
    assert_eq!(text.matches("No such file or directory").count(), 1, "the OS error once: {text}");
}

#[test]
fn missing_context_names_it_in_plain_text() {
    let dir = temp_dir("missing-ctx");
    let kubeconfig = two_context_kubeconfig(&dir, 1, 2);
    let out = binary()
        .args(["run", "--metrics-addr=127.0.0.1:0", "--log-format=text", "--context=third"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("sidecar-watch failed: --kubeconfig "), "{stderr}");
    assert!(last.contains("third"), "the error names the context: {stderr}");
}

#[test]
fn inferred_config_failure_says_each_cause_once() {
    // Today's default path: no flags, KUBECONFIG naming a missing file, not in a cluster.
    let out = binary()
        .env("KUBECONFIG", "/nonexistent/kc")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["run", "--metrics-addr=127.0.0.1:0", "--log-format=json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v| v["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(errors[0]["error"], "no Kubernetes configuration (kubeconfig or in-cluster)");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/kc"), "the file is named: {stderr}");
}

/// Starts `run` with `args` against a kubeconfig whose server never answers, and returns the
/// child and its first log line.
fn first_log_line(name: &str, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir(name);
    let port = api.local_addr().unwrap().port();
    let kubeconfig = two_context_kubeconfig(&dir, port, port);
    let mut child = binary()
        .env("NO_COLOR", "1")
        .args(["run", "--leader-elect=false", "--log-format=text"])
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    // Keep draining, so that the operator never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    std::mem::forget(api);
    (child, line)
}

/// The port of `http(s)://127.0.0.1:<port>/metrics` in `line`.
fn metrics_port(line: &str, scheme: &str) -> u16 {
    let prefix = format!("{scheme}://127.0.0.1:");
    let at = line.find(&prefix).unwrap_or_else(|| panic!("no {prefix} in {line}")) + prefix.len();
    line[at..].split('/').next().unwrap().parse().unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// One plain HTTP/1.1 GET, the whole answer as text.
fn plain_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// `--metrics-addr 127.0.0.1:0` on a laptop: the first line logged names the port the kernel
/// gave (never 0) and the command that reads /metrics there, and that command works.
#[test]
fn the_first_line_says_where_plain_metrics_are_and_how_to_read_them() {
    let (mut child, line) =
        first_log_line("plain-first-line", &["--metrics-addr=127.0.0.1:0", "--metrics-secure=false"]);
    let port = metrics_port(&line, "http");
    assert_ne!(port, 0, "{line}");
    let bound = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let expected = sidecar_watch::server::how_to_read(bound, false);
    assert_eq!(
        expected,
        format!(
            "/metrics on http://127.0.0.1:{port}/metrics (listening on 127.0.0.1:{port}; plain HTTP, no authentication): \
             curl http://127.0.0.1:{port}/metrics; /healthz and /readyz too"
        )
    );
    assert!(line.contains(&expected), "the first line is the hint:\n{line}");
    assert!(line.contains(&format!("metrics_addr=127.0.0.1:{port}")), "{line}");
    let answer = plain_get(port, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("sidecar_watch_build_info"), "{answer}");
}

/// The default, TLS with tokens: the first line gives the curl command with a token of a
/// ServiceAccount bound to sidecar-watch-metrics-reader, and plain HTTP sent to that port (the
/// newcomer's `curl http://…`) is answered with what to do, not a TLS alert.
#[test]
fn the_first_line_says_how_to_read_secure_metrics_and_plain_http_is_told_what_to_do() {
    let (mut child, line) = first_log_line("secure-first-line", &["--metrics-addr=127.0.0.1:0"]);
    let port = metrics_port(&line, "https");
    let bound = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let expected = sidecar_watch::server::how_to_read(bound, true);
    assert_eq!(
        expected,
        format!(
            "/metrics on https://127.0.0.1:{port}/metrics (listening on 127.0.0.1:{port}; TLS, bearer token): \
             curl -k -H \"Authorization: Bearer $(kubectl create token NAME -n NAMESPACE)\" https://127.0.0.1:{port}/metrics \
             with a ServiceAccount bound to the ClusterRole sidecar-watch-metrics-reader \
             (kubectl create clusterrolebinding NAME --clusterrole=sidecar-watch-metrics-reader --serviceaccount=NAMESPACE:NAME); \
             --metrics-secure=false serves plain HTTP for a local run; /healthz and /readyz are open"
        )
    );
    assert!(line.contains(&expected), "the first line is the hint:\n{line}");
    let answer = plain_get(port, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.ends_with(sidecar_watch::server::PLAIN_HTTP_ON_TLS), "{answer}");
    assert!(answer.contains("--metrics-secure=false"), "{answer}");
}

/// A wildcard address is read on the loopback address of its family.
#[test]
fn the_hint_for_a_wildcard_address_names_loopback() {
    let hint = sidecar_watch::server::how_to_read("0.0.0.0:8080".parse().unwrap(), false);
    assert!(hint.starts_with("/metrics on http://127.0.0.1:8080/metrics (listening on 0.0.0.0:8080;"), "{hint}");
    let hint = sidecar_watch::server::how_to_read("[::]:8443".parse().unwrap(), true);
    assert!(hint.starts_with("/metrics on https://[::1]:8443/metrics (listening on [::]:8443;"), "{hint}");
}

/// Threads of process `pid` named as tokio's runtime names its workers (and blocking threads).
fn runtime_threads(pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tokio-rt-worker"))
        .count()
}

/// The runtime has the workers `--worker-threads` asks for, whatever the machine's cores;
/// none is refused with the flag's name.
#[test]
fn worker_threads_are_what_the_flag_says() {
    let (mut child, line) = first_log_line("workers", &["--metrics-addr=127.0.0.1:0", "--worker-threads=5"]);
    // Each worker names itself once its OS thread starts, which can come after the first log
    // line (one CI run saw 3 of 5), so the count is read until it is reached or 10 s pass.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut workers = runtime_threads(child.id());
    while workers < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        workers = runtime_threads(child.id());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(workers >= 5, "{workers} runtime threads; first line: {line}");

    let refused = binary().args(["run", "--worker-threads=0"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--worker-threads"), "{stderr}");
}
