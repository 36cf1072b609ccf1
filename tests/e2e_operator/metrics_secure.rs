//! `/metrics` as a platform team runs it: TLS, a bearer token (a real ServiceAccount token from
//! the TokenRequest API) reviewed with TokenReview and SubjectAccessReview against the
//! shipped `sidecar-watch-metrics-reader` role, probes open, a renewed certificate served
//! without a restart, gzip, and family selection.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::http::{get, Request, Response};

use crate::support::*;

async fn scrape(op: &Operator, token: Option<&str>, gzip: bool) -> Response {
    let mut headers = Vec::new();
    if let Some(token) = token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    if gzip {
        headers.push(("accept-encoding", "gzip".to_string()));
    }
    get(op.port, "/metrics", &Request { tls: true, headers, ..Default::default() }).await.expect("GET /metrics")
}

/// The DER of the certificate the listener presents.
async fn presented_certificate(port: u16) -> Vec<u8> {
    sidecar_watch_harness::http::presented_certificate(port).await.expect("a TLS handshake")
}

fn write_certificate(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string(), "localhost".into()]).unwrap();
    // The key first: a reader that sees the new certificate then finds its key.
    std::fs::write(dir.join("tls.key.tmp"), c.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls.crt.tmp"), c.cert.pem()).unwrap();
    std::fs::rename(dir.join("tls.key.tmp"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.tmp"), dir.join("tls.crt")).unwrap();
    c.cert.der().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_authorised_token_over_tls() {
    let c = Cluster::start("secure").await;
    let tokens = sidecar_watch_harness::install::scrape_tokens(&c.env, &c.ns).await.expect("scrape tokens");
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let certs = c.env.dir().join("metrics-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let first = write_certificate(&certs, "first");

    let port = free_port();
    let cert_dir = certs.to_string_lossy().to_string();
    let args: Vec<String> = [
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--namespace",
        &c.ns,
        "--leader-elect=false",
        "--metrics-cert-dir",
        &cert_dir,
        "--metric-denylist",
        "sidecar_container_restarts_total,process_.*",
    ]
    .map(String::from)
    .into();
    let op = Operator::spawn(&c, "op", port, &args, &[("SIDECAR_WATCH_METRICS_SECURE", "true")]).await;
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;

    // Probes stay open; plain HTTP is not served.
    let readyz = get(port, "/readyz", &Request { tls: true, ..Default::default() }).await.unwrap();
    assert_eq!(readyz.status, 200);
    assert!(
        !get(port, "/metrics", &Request::default()).await.is_ok_and(|r| r.status == 200),
        "plain HTTP served /metrics"
    );

    assert_eq!(scrape(&op, None, false).await.status, 401, "no token");
    assert_eq!(scrape(&op, Some("forged-token"), false).await.status, 401, "unknown token");
    assert_eq!(scrape(&op, Some(&tokens.unauthorised), false).await.status, 403, "authenticated, not authorised");

    let plain = wait_until(WAIT, "the alert in an authorised scrape", || async {
        let response = scrape(&op, Some(&tokens.reader), false).await;
        let text = response.text().map_err(|e| e.to_string())?;
        if response.status == 200 && text.contains("alertname=\"SidecarContainerNotReady\",alertstate=\"firing\"") {
            Ok(text)
        } else {
            Err(format!("{}: {text}", response.status))
        }
    })
    .await
    .unwrap();
    // Family selection: exactly the denied families are gone.
    assert!(plain.contains("# TYPE sidecar_container_ready gauge"), "{plain}");
    assert!(!plain.contains("sidecar_container_restarts_total"), "{plain}");
    assert!(!plain.contains("process_"), "{plain}");
    assert!(plain.contains("sidecar_watch_build_info{"), "{plain}");

    // gzip when asked: the same text, compressed (equal once the operator is idle between
    // the two scrapes), and valid exposition format.
    let (zipped, unzipped) = wait_until(WAIT, "a gzip scrape equal to a plain one", || async {
        let plain = scrape(&op, Some(&tokens.reader), false).await.text().map_err(|e| e.to_string())?;
        let zipped = scrape(&op, Some(&tokens.reader), true).await;
        let unzipped = zipped.text().map_err(|e| e.to_string())?;
        if zipped.headers.get("content-encoding").is_some_and(|v| v == "gzip") && unzipped == plain {
            Ok((zipped, unzipped))
        } else {
            Err(format!("{:?}", zipped.headers))
        }
    })
    .await
    .unwrap();
    assert!(zipped.body.len() * 2 < unzipped.len(), "{} bytes gzipped of {}", zipped.body.len(), unzipped.len());
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test installs it)");
    use tokio::io::AsyncWriteExt;
    promtool.stdin.take().unwrap().write_all(unzipped.as_bytes()).await.unwrap();
    let checked = promtool.wait_with_output().await.unwrap();
    assert!(checked.status.success(), "promtool: {}", String::from_utf8_lossy(&checked.stderr));

    // A renewed certificate is served without a restart.
    assert_eq!(presented_certificate(port).await, first);
    std::thread::sleep(Duration::from_millis(10));
    let second = write_certificate(&certs, "second");
    wait_until(WAIT, "the renewed certificate", || async {
        if presented_certificate(port).await == second {
            Ok(())
        } else {
            Err("still the first certificate".to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(scrape(&op, Some(&tokens.reader), false).await.status, 200);
}

/// The resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib * 1024
}

/// Sixty clients that ask for /metrics and never read: the operator's memory stays within
/// 50 MiB of where it was, and a normal scrape still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_cannot_grow_the_operator() {
    use tokio::io::AsyncWriteExt;
    let c = Cluster::start("slow").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let op = Operator::start(&c, "op", &["--leader-elect=false"]).await;
    for i in 0..20 {
        let pod = c.create_pod(native_pod(&format!("web-{i}"), "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    }
    op.wait_scrape("twenty Pods alerting", |s| {
        let n = s.find("sidecar_alerts", &[("alertstate", "firing")]).len();
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} firing"))
        }
    })
    .await;
    let before = rss_bytes(op.pid());
    let mut stuck = Vec::new();
    for _ in 0..60 {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", op.port)).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        stuck.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_bytes(op.pid());
    assert!(
        during.saturating_sub(before) <= 50 << 20,
        "60 clients that never read grew the operator by {} MiB",
        (during - before) >> 20
    );
    let normal = op.scrape().await.expect("a normal scrape still succeeds");
    assert!(normal.find("sidecar_alerts", &[]).len() >= 20);
    drop(stuck);
}
