//! The HTTP endpoints as a kubelet and Prometheus see them: `/healthz` always, `/readyz`
//! only once the initial lists are done, `/metrics` with Pod series only on the leader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sidecar_watch::index::Index;
use sidecar_watch::metrics::Metrics;
use sidecar_watch_harness::env::{free_port, http_get, wait_until};

#[tokio::test]
async fn readyz_waits_for_the_initial_lists_and_standbys_export_no_pod_series() {
    let index = Arc::new(Index::new());
    let (role_tx, role) = sidecar_watch::leadership::channel();
    let port = free_port().expect("a free port");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sidecar_watch::server::serve(
        SocketAddr::from(([127, 0, 0, 1], port)),
        sidecar_watch::server::Security::Plain,
        Arc::clone(&index),
        Metrics::new(),
        role,
        async {
            let _ = stopped.await;
        },
    ));
    wait_until(Duration::from_secs(10), "the server listens", || http_get(port, "/healthz")).await.expect("listening");

    assert_eq!(http_get(port, "/healthz").await.expect("GET"), (200, "ok\n".to_string()));
    assert_eq!(http_get(port, "/readyz").await.expect("GET"), (503, "initial lists not done\n".to_string()));
    sidecar_watch::leadership::set_synced(&role_tx);
    assert_eq!(http_get(port, "/readyz").await.expect("GET"), (200, "ok\n".to_string()));

    // A standby: its own metrics, no policy or Pod families (the leader exports those).
    let (code, body) = http_get(port, "/metrics").await.expect("GET");
    assert_eq!(code, 200);
    assert!(body.contains("sidecar_watch_leader{shard=\"0\"} 0"), "{body}");
    assert!(!body.contains("sidecar_policy_pods"), "{body}");
    sidecar_watch::leadership::set_leader(&role_tx, true);
    let (_, body) = http_get(port, "/metrics").await.expect("GET");
    assert!(
        body.contains("sidecar_watch_leader{shard=\"0\"} 1") && body.contains("# TYPE sidecar_policy_pods gauge"),
        "{body}"
    );

    let _ = stop.send(());
    server.await.expect("server task").expect("server stops cleanly");
}
