//! `/metrics` stays available whatever its clients send (issue 22): clients that never read
//! a scrape larger than the loopback socket buffers hold up no one else's, and a flood of
//! made-up tokens costs the API server at most the review budget while Prometheus keeps
//! scraping.
//!
//! Each stalled or flooding client connects from an address of its own in 127.0.0.0/8, as
//! distinct Pods would: the operator bounds every client address on its own. The tests
//! depend only on the suite's `Cluster`/`Operator` and on a token [`reader_token`] obtains:
//! from the TokenRequest API for a ServiceAccount bound to the shipped metrics-reader role
//! (a real one: the suite runs on kube-apiserver).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::json;
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::http::{self, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The operator's limits (src/server/open_scrapes.rs, src/server/budget.rs).
const OPEN_PER_CLIENT: usize = 4;
const REVIEW_BURST_IN_ALL: f64 = 5.0;
const REVIEWS_PER_SECOND_IN_ALL: f64 = 5.0;

/// A bearer token that may `get /metrics`: the shipped metrics-reader role's, real on a
/// real server ([`sidecar_watch_harness::install::scrape_tokens`]).
async fn reader_token(c: &Cluster) -> String {
    sidecar_watch_harness::install::scrape_tokens(&c.env, &c.ns).await.expect("a reader token").reader
}

/// The `n`th client address other than 127.0.0.1.
fn client_address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + n as u32))
}

/// A GET of `/metrics` over TLS from `source` with `token`, gzip if asked.
fn scrape_request(token: &str, gzip: bool, source: Option<IpAddr>) -> Request<'static> {
    let mut headers = vec![("authorization", format!("Bearer {token}"))];
    if gzip {
        headers.push(("accept-encoding", "gzip".to_string()));
    }
    Request { tls: true, headers, source, ..Default::default() }
}

fn sysctl_max(path: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{path}: {text}"))
}

/// The receive buffer each stalled client asks for; the kernel doubles it.
const STALLED_RECEIVE_BUFFER: u32 = 64 * 1024;

/// A client that asks for `/metrics`, reads the response head, and never reads again.
struct Stalled {
    _stream: http::Stream,
    head: String,
}

/// Sends the requests on every connection first, then reads each response head: the
/// requests reach the operator within milliseconds of each other.
async fn stall(streams: Vec<http::Stream>, token: &str) -> Vec<Stalled> {
    let mut streams = streams;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    for stream in &mut streams {
        stream.write_all(request.as_bytes()).await.expect("request sent");
    }
    let mut stalled = Vec::new();
    for mut stream in streams {
        let mut head = vec![0_u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut head)).await.expect("a response head").expect("read");
        head.truncate(n);
        let head = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
        stalled.push(Stalled { _stream: stream, head });
    }
    stalled
}

/// Long names make long series: 45 Pods of 250 native sidecars give about 5.8 MiB of text.
fn wide_pod(i: usize) -> serde_json::Value {
    let name = format!("stall-{i:03}-{}", "p".repeat(90));
    let sidecars: Vec<String> = (0..250).map(|s| format!("s{s:03}-{}", "c".repeat(58))).collect();
    let sidecars: Vec<&str> = sidecars.iter().map(String::as_str).collect();
    sidecar_watch_harness::kubelet::test_pod(&name, &[("app", "web")], &["app"], &sidecars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_scrapers_hold_up_no_other_scrape() {
    let c = Cluster::start("stall").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1h", "severity": "warning"}})).await;
    let token = reader_token(&c).await;
    let extra = ["--leader-elect=false", "--max-sidecars-per-pod", "256"];
    let mut op = Operator::start_with_env(&c, "op", &extra, &[("SIDECAR_WATCH_METRICS_SECURE", "true")]).await;
    op.token = Some(token.clone());
    let pods = 45;
    for i in 0..pods {
        c.create_pod(wide_pod(i)).await;
    }
    op.wait_scrape("every wide Pod's sidecars", |s| {
        let n = s.find("sidecar_container_ready", &[]).len();
        if n == pods * 250 {
            Ok(())
        } else {
            Err(format!("{n} sidecars"))
        }
    })
    .await;
    let plain = http::get(op.port, "/metrics", &scrape_request(&token, false, None)).await.expect("a scrape");
    assert_eq!(plain.status, 200);
    // Larger than what the kernel buffers for a client that does not read: the server's
    // send buffer at its largest and the client's (doubled) receive buffer.
    let buffered = sysctl_max("/proc/sys/net/ipv4/tcp_wmem") + 2 * STALLED_RECEIVE_BUFFER as usize;
    assert!(plain.body.len() > buffered + (1 << 20), "a scrape of {} B is too small to stall on", plain.body.len());

    // What a normal gzip scrape takes alone (a debug build renders and compresses far
    // slower than a release build: the bound below allows for it).
    let alone = Instant::now();
    let normal = http::get(op.port, "/metrics", &scrape_request(&token, true, None)).await.expect("a scrape");
    assert_eq!(normal.status, 200);
    let alone = alone.elapsed();
    let rss_before = rss_kib(op.pid());
    // 60 clients from 15 addresses, four each (each address's bound), that never read.
    let mut connections = Vec::new();
    for i in 0..60 {
        let source = Some(client_address(i / OPEN_PER_CLIENT));
        connections.push(http::open(op.port, true, source, Some(STALLED_RECEIVE_BUFFER)).await.expect("connected"));
    }
    // The first address's four, then one more from it right behind them.
    let mut stalled = stall(connections.drain(..OPEN_PER_CLIENT).collect(), &token).await;
    let refused = http::get_many(op.port, "/metrics", true, Some(client_address(0)), 1, |_| {
        scrape_request(&token, false, Some(client_address(0)))
    });
    let refused = tokio::time::timeout(Duration::from_secs(5), refused).await.expect("refused at once").unwrap();
    assert_eq!(refused[0].status, 429, "a fifth scrape from one address: {}", refused[0].text().unwrap_or_default());
    assert!(refused[0].headers.contains_key("retry-after"));
    stalled.extend(stall(connections, &token).await);
    let heads: Vec<&str> = stalled.iter().map(|s| s.head.as_str()).collect();
    assert!(heads.iter().all(|h| *h == "HTTP/1.1 200 OK"), "{heads:?}");

    // Let them fill every buffer (the operator goes idle once all 60 wait for their
    // clients), then a normal scrape (Prometheus asks for gzip).
    wait_idle(op.pid()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rss_stalled = rss_kib(op.pid());
    let started = Instant::now();
    let normal = http::get(op.port, "/metrics", &scrape_request(&token, true, None)).await.expect("a scrape");
    let took = started.elapsed();
    assert_eq!(normal.status, 200);
    assert_eq!(normal.headers.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    let text = normal.text().expect("gzip");
    assert_eq!(text.lines().filter(|l| l.starts_with("sidecar_container_ready{")).count(), pods * 250);
    // Was 10 s (503) when stalled clients held the render slots.
    let bound = Duration::from_secs(1) + 2 * alone;
    assert!(took < bound, "a normal scrape beside 60 stalled clients took {took:?} ({alone:?} alone)");
    eprintln!("a normal gzip scrape of {} B alone: {alone:?}; beside 60 stalled clients: {took:?}", plain.body.len());

    // The first address, at its bound with clients stalled for over a second: a new scrape
    // from it cuts one of them off and is served.
    let again = http::get(op.port, "/metrics", &scrape_request(&token, true, Some(client_address(0)))).await;
    assert_eq!(again.expect("a scrape").status, 200);
    let rss_during = rss_kib(op.pid());
    eprintln!(
        "RSS {rss_before} KiB; with 60 stalled clients {rss_stalled} KiB; after two more scrapes {rss_during} KiB"
    );
    assert!(
        rss_during.saturating_sub(rss_before) <= 50 * 1024,
        "60 stalled clients grew the operator from {rss_before} to {rss_stalled} KiB, {rss_during} KiB after two more scrapes"
    );
    let metrics = op.scrape().await.expect("a scrape");
    let limited = |limit: &str| metrics.sum("sidecar_watch_limited_total", &[("limit", limit)]);
    assert_eq!(limited("scrapes-per-client"), 1.0);
    assert!(limited("stalled-scrapes") >= 1.0);
    drop(stalled);
}

/// CPU time of a process in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime and stime 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
}

/// Waits until the process uses under a tenth of a core for half a second.
async fn wait_idle(pid: u32) {
    wait_until(Duration::from_secs(120), "the operator idle", || async {
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let used = cpu_ticks(pid) - before;
        if used <= 5 {
            Ok(())
        } else {
            Err(format!("{used} ticks in 500 ms"))
        }
    })
    .await
    .unwrap();
}

/// The resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// TokenReviews the operator sent, from its own metric.
fn token_reviews(s: &Scrape) -> f64 {
    s.sum("sidecar_watch_reviews_total", &[("kind", "TokenReview")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tokens_cost_at_most_the_review_budget() {
    let c = Cluster::start("flood").await;
    let token = reader_token(&c).await;
    let mut op =
        Operator::start_with_env(&c, "op", &["--leader-elect=false"], &[("SIDECAR_WATCH_METRICS_SECURE", "true")])
            .await;
    op.token = Some(token.clone());
    let before = op.scrape().await.expect("an authorised scrape");

    // 2,000 requests with made-up tokens from 20 addresses, 100 each on one connection,
    // while Prometheus keeps scraping from 127.0.0.1.
    let started = Instant::now();
    let floods = (0..20).map(|a| {
        let port = op.port;
        tokio::spawn(async move {
            let source = Some(client_address(a));
            http::get_many(port, "/metrics", true, source, 100, |i| {
                scrape_request(&format!("made-up-{a}-{i}-{}", fastrand_token()), false, source)
            })
            .await
            .expect("the flood's requests answered")
        })
    });
    let floods: Vec<_> = floods.collect();
    let mut prometheus = Vec::new();
    while floods.iter().any(|f| !f.is_finished()) {
        let scraped = http::get(op.port, "/metrics", &scrape_request(&token, true, None)).await.expect("a scrape");
        prometheus.push(scraped.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut responses: Vec<Response> = Vec::new();
    for flood in floods {
        responses.extend(flood.await.expect("flood task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(!prometheus.is_empty() && prometheus.iter().all(|s| *s == 200), "Prometheus meanwhile: {prometheus:?}");

    let status = |code: u16| responses.iter().filter(|r| r.status == code).count();
    let (unauthorized, throttled) = (status(401), status(429));
    assert_eq!(unauthorized + throttled, 2000, "every made-up token is refused, 401 or 429");
    assert!(responses.iter().filter(|r| r.status == 429).all(|r| r.headers.contains_key("retry-after")));

    let after = op.scrape().await.expect("an authorised scrape");
    let reviews = token_reviews(&after) - token_reviews(&before);
    let unknown =
        |s: &Scrape| s.sum("sidecar_watch_reviews_total", &[("kind", "TokenReview"), ("result", "unauthenticated")]);
    assert_eq!(unknown(&after) - unknown(&before), unauthorized as f64, "one TokenReview per 401, none per 429");
    eprintln!(
        "2,000 made-up tokens in {elapsed:.1} s: {unauthorized} × 401, {throttled} × 429, {reviews} TokenReviews; \
         Prometheus {} × 200",
        prometheus.len()
    );
    let budget = REVIEW_BURST_IN_ALL + REVIEWS_PER_SECOND_IN_ALL * elapsed;
    assert!(reviews <= budget, "{reviews} TokenReviews in {elapsed:.1} s: over the budget of {budget:.0}");
    let limited = |s: &Scrape| {
        s.sum("sidecar_watch_limited_total", &[("limit", "reviews")])
            + s.sum("sidecar_watch_limited_total", &[("limit", "reviews-per-client")])
    };
    assert_eq!(limited(&after) - limited(&before), throttled as f64);
}

/// A few random characters, so that no two runs share made-up tokens.
fn fastrand_token() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{nanos:x}")
}
