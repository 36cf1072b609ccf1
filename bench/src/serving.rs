//! Serving `/metrics`: body size and time plain and gzip, memory while clients ask and never
//! read (from addresses of their own, four each: the operator's bound per address) and how
//! long normal gzip scrapes take meanwhile, and series per Pod with the default families
//! against a `--metric-denylist`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use sidecar_watch_harness::http::{self, Request};
use tokio::io::AsyncWriteExt;

use super::operator::{scrape_parsed, Operator};
use super::prom::sample_quantile;

/// Results of the serving phase.
#[derive(Debug, Default, Clone)]
pub struct Serving {
    /// Median of 5: body bytes as sent and time to the last byte.
    pub plain_bytes: usize,
    pub plain_ms: f64,
    pub gzip_bytes: usize,
    pub gzip_ms: f64,
    pub stuck_clients: usize,
    pub hold_s: u64,
    pub rss_before_kib: u64,
    /// The highest RSS sampled while the stuck clients were held.
    pub rss_stuck_peak_kib: u64,
    /// Normal gzip scrapes during the hold, one every 250 ms: times of those that succeeded,
    /// and how many failed.
    pub during_ms: Vec<f64>,
    pub during_failed: usize,
    /// Series per Pod, default families and with the denylist (second operator).
    pub series_default: usize,
    pub series_denied: usize,
    pub pods: usize,
}

async fn timed(port: u16, gzip: bool) -> Result<(usize, f64)> {
    let headers = if gzip { vec![("accept-encoding", "gzip".to_string())] } else { vec![] };
    let r = http::get(port, "/metrics", &Request { headers, ..Request::default() }).await?;
    if r.status != 200 {
        anyhow::bail!("/metrics answered {}", r.status);
    }
    let encoded = r.headers.get("content-encoding").is_some_and(|v| v == "gzip");
    if gzip != encoded {
        anyhow::bail!("asked gzip={gzip}, got Content-Encoding gzip={encoded}");
    }
    Ok((r.body.len(), r.elapsed.as_secs_f64() * 1e3))
}

async fn median_of_5(port: u16, gzip: bool) -> Result<(usize, f64)> {
    let mut sizes = Vec::new();
    let mut times = Vec::new();
    for _ in 0..5 {
        let (size, ms) = timed(port, gzip).await?;
        sizes.push(size as f64);
        times.push(ms);
    }
    let med = |v: &[f64]| sample_quantile(v, 0.5).unwrap_or(0.0);
    Ok((med(&sizes) as usize, med(&times)))
}

/// Size, time and slow clients against the running operator.
pub async fn phase(op: &Operator, clients: usize, hold_s: u64) -> Result<Serving> {
    let mut s = Serving { stuck_clients: clients, hold_s, ..Serving::default() };
    (s.plain_bytes, s.plain_ms) = median_of_5(op.port, false).await?;
    (s.gzip_bytes, s.gzip_ms) = median_of_5(op.port, true).await?;
    say!(
        "serving: /metrics plain {} KiB in {:.1} ms, gzip {} KiB in {:.1} ms (medians of 5)",
        s.plain_bytes / 1024,
        s.plain_ms,
        s.gzip_bytes / 1024,
        s.gzip_ms
    );
    s.rss_before_kib = op.proc.settled_rss().await;
    let mut stuck = Vec::with_capacity(clients);
    for i in 0..clients {
        // 127.0.0.2 and up, four clients each.
        let source = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)) + (i / 4) as u32);
        let mut conn = http::connect(op.port, Some(source.into()), None).await?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n").await?;
        stuck.push(conn);
    }
    let held = Instant::now();
    let port = op.port;
    let normal = tokio::spawn(async move {
        let (mut times, mut failed) = (Vec::new(), 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        while held.elapsed() + Duration::from_millis(500) < Duration::from_secs(hold_s) {
            let scraped = tokio::time::timeout(Duration::from_secs(30), timed(port, true)).await;
            match scraped {
                Ok(Ok((_, ms))) => times.push(ms),
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (times, failed)
    });
    while held.elapsed() < Duration::from_secs(hold_s) {
        s.rss_stuck_peak_kib = s.rss_stuck_peak_kib.max(op.proc.rss());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (s.during_ms, s.during_failed) = normal.await?;
    drop(stuck);
    say!(
        "serving: {clients} clients that never read for {hold_s} s: RSS {} → peak {} MiB; normal gzip scrapes meanwhile: {}",
        s.rss_before_kib / 1024,
        s.rss_stuck_peak_kib / 1024,
        s.describe_during()
    );
    Ok(s)
}

impl Serving {
    /// The normal scrapes during the hold: p50 / p99 / max and failures.
    pub fn describe_during(&self) -> String {
        let q = |p| super::fmt(sample_quantile(&self.during_ms, p), 1.0, 1);
        format!(
            "p50 {} / p99 {} / max {} ms over {} scrapes, {} failed",
            q(0.5),
            q(0.99),
            q(1.0),
            self.during_ms.len(),
            self.during_failed
        )
    }
}

/// Series of a second operator started with `--metric-denylist denylist` once it tracks
/// `pods` Pods (run it after the first one stopped).
pub async fn denied_series(
    program: &Path,
    kubeconfig: &Path,
    dir: &Path,
    denylist: &str,
    pods: usize,
) -> Result<usize> {
    let op =
        Operator::spawn(program, kubeconfig, &dir.join("operator-denylist.log"), &["--metric-denylist", denylist])?;
    op.wait_ready(Duration::from_secs(600)).await?;
    op.wait_tracked(pods, Duration::from_secs(600)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let series = scrape_parsed(op.port).await?.samples.len();
    op.proc.stop().await;
    Ok(series)
}
