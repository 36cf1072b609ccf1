//! The harness' bounds hold against a server that accepts and never answers, and a check
//! that never completes: each wait fails within its bound, saying what it waited for.

use std::time::{Duration, Instant};

use super::*;

/// A loopback listener that accepts every connection and never writes a byte; its port.
async fn silent_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

/// Far below any bound here but far above what a loaded 2-core machine adds to one.
const SLACK: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_wait_whose_check_never_completes_fails_at_its_bound() {
    let started = Instant::now();
    let bound = Duration::from_millis(300);
    let never = || std::future::pending::<std::result::Result<(), String>>();
    let err = wait_until(bound, "a check that never answers", never).await.expect_err("a timeout");
    assert!(started.elapsed() < bound + SLACK, "took {:?}", started.elapsed());
    assert_eq!(
        err.to_string(),
        "timed out after 300ms waiting for a check that never answers; last observed: check did not complete before \
         the deadline"
    );
}

#[tokio::test]
async fn a_get_from_a_server_that_never_answers_fails_at_its_bound() {
    let port = silent_server().await;
    let started = Instant::now();
    let request = crate::http::Request::default();
    let err =
        crate::http::get_within(port, "/metrics", &request, Duration::from_millis(300)).await.expect_err("a timeout");
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK, "took {:?}", started.elapsed());
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(err.to_string(), format!("GET /metrics on 127.0.0.1:{port}: no whole response within 300ms"));
}

#[tokio::test]
async fn an_api_call_to_a_server_that_never_answers_fails_at_the_read_timeout() {
    let port = silent_server().await;
    let dir = std::env::temp_dir().join(format!("sidecar-watch-bounds-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let kubeconfig = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
         users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
    );
    std::fs::write(&kubeconfig, text).expect("the kubeconfig written");
    let client =
        client_with_timeouts(&kubeconfig, Duration::from_secs(1), Duration::from_millis(300)).await.expect("a client");
    let started = Instant::now();
    let err = client.apiserver_version().await.expect_err("a timeout");
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(took < Duration::from_millis(300) + SLACK, "took {took:?}: {err}");
    assert!(format!("{err:?}").contains("TimedOut"), "{err:?}");
}

#[test]
fn a_node_command_that_never_ends_is_killed_at_its_bound() {
    let started = Instant::now();
    let err = crate::node::chart::run_within(
        std::path::Path::new("/nonexistent"),
        "sleep",
        &["30"],
        Duration::from_millis(300),
    )
    .expect_err("a timeout");
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK, "took {:?}", started.elapsed());
    assert!(err.to_string().starts_with("sleep 30: killed after 3"), "{err}");
}

#[test]
fn the_default_bounds_are_the_documented_ones() {
    assert_eq!(API_CONNECT_TIMEOUT, Duration::from_secs(10));
    assert_eq!(API_READ_TIMEOUT, Duration::from_secs(295));
    assert_eq!(KUBECTL_TIMEOUT, Duration::from_secs(120));
    assert_eq!(crate::http::TIMEOUT, Duration::from_secs(60));
}
