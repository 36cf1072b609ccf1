//! The `kube-sim` binary: kubeconfig, HTTP control endpoints for fault injection.

use std::process::Stdio;
use std::time::Duration;

use sidecar_watch_e2e::http::{get, Request};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A request without a body; returns (status line and headers as text, body).
async fn http(port: u16, method: &str, path: &str) -> (String, String) {
    let response = get(port, path, &Request { method: Some(method), ..Request::default() }).await.unwrap();
    let mut head = format!("HTTP/1.1 {} \r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
    }
    (head, response.text().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_control_endpoints() {
    let dir = std::env::temp_dir().join(format!("kube-sim-bin-{}", std::process::id()));
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--port", "0", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        if let Some(url) = line.strip_prefix("listening on http://127.0.0.1:") {
            break url.parse().unwrap();
        }
    };
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(kc.contains(&format!("server: http://127.0.0.1:{port}")), "{kc}");

    let (head, _) = http(port, "GET", "/api/v1/namespaces/default").await;
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");

    http(port, "POST", "/__sim/fail?count=2&code=429&retryAfter=3").await;
    for _ in 0..2 {
        let (head, body) = http(port, "GET", "/api/v1/pods").await;
        assert!(head.contains(" 429 "), "{head}");
        assert!(head.to_ascii_lowercase().contains("retry-after: 3"), "{head}");
        assert!(body.contains("\"kind\":\"Status\"") && body.contains("TooManyRequests"), "{body}");
    }
    http(port, "POST", "/__sim/fail?count=1&code=500").await;
    let (head, _) = http(port, "GET", "/api/v1/pods").await;
    assert!(head.contains(" 500 "), "{head}");
    let (head, _) = http(port, "GET", "/api/v1/pods").await;
    assert!(head.contains(" 200 "), "{head}");

    http(port, "POST", "/__sim/latency?ms=300").await;
    let t = std::time::Instant::now();
    http(port, "GET", "/api/v1/pods").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    http(port, "POST", "/__sim/latency?ms=0").await;

    let (_, state) = http(port, "GET", "/__sim/state").await;
    assert!(state.contains("resourceVersion"), "{state}");
    for ep in ["/__sim/drop-watches", "/__sim/compact", "/__sim/restart"] {
        let (head, _) = http(port, "POST", ep).await;
        assert!(head.contains(" 200 "), "{ep}: {head}");
    }
    // same port, state kept after restart
    sidecar_watch_e2e::harness::wait_until(
        Duration::from_secs(5),
        "namespace default served after restart",
        || async {
            let (head, body) = http(port, "GET", "/api/v1/namespaces/default").await;
            if head.contains(" 200 ") && body.contains("\"name\":\"default\"") {
                Ok(())
            } else {
                Err(head)
            }
        },
    )
    .await
    .unwrap();
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
