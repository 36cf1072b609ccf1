//! The Prometheus runner scrapes a target every second and evaluates alert rules.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use sidecar_watch_harness::both_servers::fixtures;
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::prometheus::Prometheus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_fires_alerts() {
    let value = Arc::new(AtomicI64::new(0));
    let v = value.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let v = v.clone();
            async move { format!("# TYPE e2e_test_gauge gauge\ne2e_test_gauge {}\n", v.load(Ordering::Relaxed)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let prom = Prometheus::start(&fixtures().join("test-rules.yaml"), &target).await.unwrap();
    wait_until(Duration::from_secs(30), "gauge scraped as 0", || async {
        let data = prom.query("e2e_test_gauge").await.map_err(|e| e.to_string())?;
        match data["result"][0]["value"][1].as_str() {
            Some("0") => Ok(()),
            _ => Err(data.to_string()),
        }
    })
    .await
    .unwrap();
    assert!(prom.firing_alerts().await.unwrap().is_empty());
    value.store(5, Ordering::Relaxed);
    wait_until(Duration::from_secs(30), "TestGaugeHigh firing", || async {
        let firing = prom.firing_alerts().await.map_err(|e| e.to_string())?;
        if firing.iter().any(|a| a == "TestGaugeHigh") {
            Ok(())
        } else {
            Err(prom.alerts().await.map(|a| format!("{a:?}")).unwrap_or_default())
        }
    })
    .await
    .unwrap();
}
