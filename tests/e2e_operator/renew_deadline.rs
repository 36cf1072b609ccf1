//! The renew deadline: the leader's connection to the API server is cut by a loopback proxy that stops passing bytes (a hung network, not a refused one). Within the
//! renew deadline plus 2 s the cut replica stops exporting the leader families and exits
//! non-zero; the other replica leads; at no instant do both export them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sidecar_watch_harness::env::{kubeconfig_server, kubeconfig_via};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// A TCP proxy to `upstream` that can be cut: after [`Proxy::cut`] it forwards nothing,
/// in either direction, on old or new connections, and closes nothing.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listens");
        let port = listener.local_addr().expect("address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, flag.clone()));
                tokio::spawn(pipe(sr, cw, flag.clone()));
            }
        });
        Proxy { port, cut, task }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes until cut; then holds both ends open without a byte more.
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, cut: Arc<AtomicBool>) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            // Swallow everything from now on, as a dead link would.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn exports_leader_families(s: &Scrape) -> bool {
    !s.find("sidecar_alerts", &[]).is_empty() || !s.find("sidecar_policy_pods", &[]).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_steps_down_and_exits_within_the_renew_deadline() {
    let c = Cluster::start("renew").await;
    let ns = c.ns.clone();
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;

    // Replica a talks to the API through the proxy (TLS passes through it untouched) and
    // starts first, so that it leads.
    let server = kubeconfig_server(&c.operator_kubeconfig).expect("the API server's URL");
    let upstream = server.trim_start_matches("https://").trim_start_matches("http://").to_string();
    let proxy = Proxy::start(upstream.clone()).await;
    let proxied = c.env.dir().join("kubeconfig-proxied");
    let scheme = if server.starts_with("https://") { "https" } else { "http" };
    kubeconfig_via(&c.operator_kubeconfig, &proxied, &format!("{scheme}://127.0.0.1:{}", proxy.port))
        .expect("kubeconfig");
    let deadline = Duration::from_secs(2);
    let lease = ["--leader-elect=true", "--lease-duration", "3s", "--lease-renew-deadline", "2s"];
    let port_a = free_port();
    let mut args: Vec<String> = ["--metrics-addr", &format!("127.0.0.1:{port_a}")].map(String::from).into();
    args.extend(["--namespace", &ns, "--lease-namespace", &ns, "--identity", "op-a"].map(String::from));
    args.extend(["--status-interval", "1s"].map(String::from));
    args.extend(lease.map(String::from));
    let proxied_path = proxied.to_string_lossy().to_string();
    let mut a = Operator::spawn(&c, "op-a", port_a, &args, &[("KUBECONFIG", &proxied_path)]).await;
    a.wait_scrape("op-a leads", |s| match s.value("sidecar_watch_leader", &[]) {
        Some(1.0) => Ok(()),
        other => Err(format!("leader {other:?}")),
    })
    .await;
    let b = Operator::start(&c, "op-b", &lease).await;

    let x = c.create_pod(native_pod("x", "web", "app", "istio-proxy")).await;
    drive(&x, &[("app", true), ("istio-proxy", false)]).await;
    let firing = AlertSeries { namespace: &ns, pod: "x", ..MESH_NOT_READY }.labels();
    a.wait_alerts("the leader exports x's alert", vec![firing.clone()]).await;
    let standby = b.scrape().await.expect("scrape b");
    assert!(!exports_leader_families(&standby), "the standby exports leader families:\n{}", standby.text);

    let cut = Instant::now();
    proxy.cut();
    let mut a_quiet_at = None;
    let mut a_exited = None;
    let mut b_leads_at = None;
    while cut.elapsed() < Duration::from_secs(20) && (a_exited.is_none() || b_leads_at.is_none()) {
        if a_exited.is_none() {
            if let Some(status) = a.exit_status() {
                assert!(!status.success(), "a cut-off leader exits non-zero, got {status}");
                a_exited = Some(cut.elapsed());
            }
        }
        let sa = if a_exited.is_none() { a.scrape().await.ok() } else { None };
        let sb = b.scrape().await.ok();
        let a_exports = sa.as_ref().is_some_and(exports_leader_families);
        let b_exports = sb.as_ref().is_some_and(exports_leader_families);
        assert!(!(a_exports && b_exports), "both replicas export the leader families at {:?}", cut.elapsed());
        if !a_exports && a_quiet_at.is_none() {
            a_quiet_at = Some(cut.elapsed());
        }
        if b_exports && sb.as_ref().is_some_and(|s| s.alerts() == vec![firing.clone()]) && b_leads_at.is_none() {
            b_leads_at = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quiet = a_quiet_at.expect("the cut replica stopped exporting");
    let exited = a_exited.expect("the cut replica exited");
    let led = b_leads_at.expect("the other replica leads");
    assert!(quiet <= deadline + Duration::from_secs(2), "stopped exporting {quiet:?} after the cut");
    assert!(exited <= deadline + Duration::from_secs(2), "exited {exited:?} after the cut");
    assert!(a.log().contains("renew deadline"), "the log says why:\n{}", a.log());
    eprintln!("cut leader quiet after {quiet:?}, exited after {exited:?}; the standby led after {led:?}");
    drop(proxy);
}
