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
