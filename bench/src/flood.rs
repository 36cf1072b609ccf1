//! A flood of made-up bearer tokens against a secure operator (`--metrics-secure=true`,
//! TokenReviews answered by the simulator): how many TokenReviews reach the API server
//! (in all and in the busiest second), what the flood's requests get (401 or 429), how an
//! authorised Prometheus scrape fares meanwhile, and the operator's RSS.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sidecar_watch_harness::http::{self, Request};
use sidecar_watch_harness::sim::Shared;

use super::operator::Operator;
use super::prom::{sample_quantile, Scrape};

/// The token the simulator knows, allowed to `get /metrics`.
const PROMETHEUS_TOKEN: &str = "bench-prometheus";
/// Addresses the flood comes from (127.0.0.2 and up), each on its own connections.
const FLOOD_ADDRESSES: usize = 20;

/// Results of the flood phase.
#[derive(Debug, Default, Clone)]
pub struct Flood {
    pub seconds: f64,
    /// Made-up tokens sent, and the answers: 401 (reviewed) or 429 (over the budget).
    pub sent: usize,
    pub unauthorized: usize,
    pub throttled: usize,
    pub other: usize,
    /// TokenReviews the simulator answered during the flood, and most in any second.
    pub token_reviews: u64,
    pub max_reviews_in_a_second: u64,
    /// Authorised gzip scrapes meanwhile: times of those that succeeded, and failures.
    pub scrapes_ms: Vec<f64>,
    pub scrapes_failed: usize,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
}

impl Flood {
    /// One line for the log and the table.
    pub fn describe_reviews(&self) -> String {
        format!(
            "{} TokenReviews in {:.1} s ({:.1}/s; at most {} in a second)",
            self.token_reviews,
            self.seconds,
            self.token_reviews as f64 / self.seconds.max(1e-9),
            self.max_reviews_in_a_second
        )
    }

    /// The authorised scrapes meanwhile.
    pub fn describe_scrapes(&self) -> String {
        let q = |p| super::fmt(sample_quantile(&self.scrapes_ms, p), 1.0, 1);
        format!(
            "p50 {} / p99 {} ms over {} scrapes, {} failed",
            q(0.5),
            q(0.99),
            self.scrapes_ms.len(),
            self.scrapes_failed
        )
    }
}

fn prometheus(gzip: bool) -> Request<'static> {
    let mut headers = vec![("authorization", format!("Bearer {PROMETHEUS_TOKEN}"))];
    if gzip {
        headers.push(("accept-encoding", "gzip".to_string()));
    }
    Request { tls: true, headers, ..Request::default() }
}

/// Waits until the secure operator is ready (`/readyz`, open) and its scrape shows `pods`
/// tracked Pods. Not scraped before it is ready, as the first operator is not: full scrapes
/// during its initial list left it at 268–340 MiB at 100k Pods instead of ~120 MiB
/// (measured), which is not what the flood costs.
async fn wait_tracked(port: u16, pods: usize, deadline: Duration) -> Result<()> {
    let started = Instant::now();
    let readyz = Request { tls: true, ..Request::default() };
    while !http::get(port, "/readyz", &readyz).await.is_ok_and(|r| r.status == 200) {
        if started.elapsed() > deadline {
            bail!("the secure operator was never ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        if let Ok(r) = http::get(port, "/metrics", &prometheus(false)).await {
            if r.status == 200 && Scrape::parse(&r.text()?)?.sum("sidecar_watch_pods_tracked", &[]) as usize >= pods {
                return Ok(());
            }
        }
        if started.elapsed() > deadline {
            bail!("the secure operator never tracked {pods} Pods");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a secure operator on the simulator, floods it for `seconds` and stops it.
pub async fn phase(
    program: &Path,
    kubeconfig: &Path,
    dir: &Path,
    shared: &Arc<Shared>,
    pods: usize,
    seconds: u64,
) -> Result<Flood> {
    {
        let mut reviews = shared.reviews();
        reviews.add_token(PROMETHEUS_TOKEN, "system:serviceaccount:monitoring:prometheus", &["system:serviceaccounts"]);
        reviews.allow("system:serviceaccount:monitoring:prometheus", "/metrics");
    }
    let op = Operator::spawn_serving(program, kubeconfig, &dir.join("operator-secure.log"), true, &[], &[])?;
    wait_tracked(op.port, pods, Duration::from_secs(600)).await?;
    let mut f = Flood { rss_before_kib: op.proc.settled_rss().await, ..Flood::default() };
    let reviews_before = shared.reviews().token_reviews();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let port = op.port;
    let floods: Vec<_> = (0..FLOOD_ADDRESSES)
        .map(|a| {
            tokio::spawn(async move {
                let source = Some(IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + a as u32)));
                let mut statuses = Vec::new();
                let mut round = 0;
                while Instant::now() < until {
                    round += 1;
                    let sent = http::get_many(port, "/metrics", true, source, 50, |i| {
                        let token = format!("made-up-{a}-{round}-{i}-{:x}", fastrand::u64(..));
                        Request {
                            tls: true,
                            headers: vec![("authorization", format!("Bearer {token}"))],
                            source,
                            ..Request::default()
                        }
                    })
                    .await;
                    match sent {
                        Ok(responses) => statuses.extend(responses.iter().map(|r| r.status)),
                        Err(_) => statuses.push(0),
                    }
                }
                statuses
            })
        })
        .collect();
    // Prometheus scrapes every 500 ms meanwhile.
    let scrapes = tokio::spawn(async move {
        let (mut times, mut failed) = (Vec::new(), 0);
        while Instant::now() < until {
            let t = Instant::now();
            match tokio::time::timeout(Duration::from_secs(10), http::get(port, "/metrics", &prometheus(true))).await {
                Ok(Ok(r)) if r.status == 200 => times.push(t.elapsed().as_secs_f64() * 1e3),
                _ => failed += 1,
            }
            tokio::time::sleep_until((t + Duration::from_millis(500)).into()).await;
        }
        (times, failed)
    });
    // Sample the simulator's count every 100 ms for the busiest second.
    let mut counts = vec![(0.0, 0_u64)];
    while Instant::now() < until {
        counts.push((started.elapsed().as_secs_f64(), shared.reviews().token_reviews() - reviews_before));
        f.rss_peak_kib = f.rss_peak_kib.max(op.proc.rss());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (f.scrapes_ms, f.scrapes_failed) = scrapes.await?;
    for flood in floods {
        for status in flood.await? {
            f.sent += 1;
            match status {
                401 => f.unauthorized += 1,
                429 => f.throttled += 1,
                _ => f.other += 1,
            }
        }
    }
    f.seconds = started.elapsed().as_secs_f64();
    f.token_reviews = shared.reviews().token_reviews() - reviews_before;
    counts.push((f.seconds, f.token_reviews));
    f.max_reviews_in_a_second = counts
        .iter()
        .map(|(t0, c0)| {
            let in_second = counts.iter().filter(|(t, _)| *t >= *t0 && *t <= t0 + 1.0);
            in_second.map(|(_, c)| c.saturating_sub(*c0)).max().unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    op.proc.stop().await;
    say!(
        "flood: {} made-up tokens from {FLOOD_ADDRESSES} addresses: {} × 401, {} × 429, {} other; {}; Prometheus meanwhile {}; RSS {} → peak {} MiB",
        f.sent,
        f.unauthorized,
        f.throttled,
        f.other,
        f.describe_reviews(),
        f.describe_scrapes(),
        f.rss_before_kib / 1024,
        f.rss_peak_kib / 1024
    );
    Ok(f)
}
