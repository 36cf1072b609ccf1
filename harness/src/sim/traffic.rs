//! What clients cost the API server: requests and response bytes per user agent, verb and
//! resource. Watch bytes are counted as they are streamed, so a snapshot taken at any time
//! includes what open watches have sent so far.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;

/// Who asked for what: the `User-Agent`, the RBAC verb and the resource (with subresource).
/// Requests that did not reach a resource (discovery, errors before routing) have verb
/// `other` and the path's first segment as resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrafficKey {
    /// The `User-Agent` header ("" when absent).
    pub user_agent: String,
    /// get, list, watch, create, update, patch, delete, deletecollection or other.
    pub verb: String,
    /// The resource, e.g. `pods` or `pods/status`.
    pub resource: String,
}

#[derive(Debug, Default)]
struct Counter {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// Requests and response-body bytes served for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCount {
    /// Requests answered (errors included).
    pub requests: u64,
    /// Response body bytes sent so far.
    pub bytes: u64,
}

impl std::ops::Add for TrafficCount {
    type Output = TrafficCount;
    fn add(self, other: TrafficCount) -> TrafficCount {
        TrafficCount { requests: self.requests + other.requests, bytes: self.bytes + other.bytes }
    }
}

/// What was served between two counts of the same key (never negative).
impl std::ops::Sub for TrafficCount {
    type Output = TrafficCount;
    fn sub(self, earlier: TrafficCount) -> TrafficCount {
        TrafficCount {
            requests: self.requests.saturating_sub(earlier.requests),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

impl std::iter::Sum for TrafficCount {
    fn sum<I: Iterator<Item = TrafficCount>>(counts: I) -> TrafficCount {
        counts.fold(TrafficCount::default(), |sum, c| sum + c)
    }
}

/// The counters of every key seen; cheap to clone into each request.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    counters: Arc<Mutex<HashMap<TrafficKey, Arc<Counter>>>>,
}

impl Traffic {
    fn counter(&self, key: TrafficKey) -> Arc<Counter> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.entry(key).or_default().clone()
    }

    /// Counts one request and wraps its body so that every byte sent is counted.
    pub fn count(&self, key: TrafficKey, response: Response) -> Response {
        let counter = self.counter(key);
        counter.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = response.into_parts();
        let body = body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            frame
        });
        Response::from_parts(parts, Body::new(body))
    }

    /// Every key's count so far.
    pub fn snapshot(&self) -> TrafficSnapshot {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        TrafficSnapshot(
            counters
                .iter()
                .map(|(k, c)| {
                    let count = TrafficCount {
                        requests: c.requests.load(Ordering::Relaxed),
                        bytes: c.bytes.load(Ordering::Relaxed),
                    };
                    (k.clone(), count)
                })
                .collect(),
        )
    }
}

/// Counts at one instant, to be diffed against a later one.
#[derive(Clone, Debug, Default)]
pub struct TrafficSnapshot(pub HashMap<TrafficKey, TrafficCount>);

impl TrafficSnapshot {
    /// What happened since `earlier`.
    pub fn since(&self, earlier: &TrafficSnapshot) -> TrafficSnapshot {
        TrafficSnapshot(
            self.0
                .iter()
                .map(|(k, now)| (k.clone(), *now - earlier.0.get(k).copied().unwrap_or_default()))
                .filter(|(_, c)| c.requests > 0 || c.bytes > 0)
                .collect(),
        )
    }

    /// The sum over keys whose user agent starts with `user_agent` and, when given, whose
    /// verb is `verb`.
    pub fn total(&self, user_agent: &str, verb: Option<&str>) -> TrafficCount {
        self.0
            .iter()
            .filter(|(k, _)| k.user_agent.starts_with(user_agent) && verb.is_none_or(|v| k.verb == v))
            .map(|(_, c)| *c)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user_agent: &str, verb: &str) -> TrafficKey {
        TrafficKey { user_agent: user_agent.into(), verb: verb.into(), resource: "pods".into() }
    }

    async fn serve(traffic: &Traffic, key: TrafficKey, body: &'static str) {
        let response = traffic.count(key, Response::new(Body::from(body)));
        let sent = response.into_body().collect().await.expect("the body is read").to_bytes();
        assert_eq!(sent, body.as_bytes(), "counting leaves the body as it is");
    }

    #[tokio::test]
    async fn counts_requests_and_bytes_sent_per_client_and_verb() {
        let traffic = Traffic::default();
        serve(&traffic, key("sidecar-watch/0.1.0", "list"), "0123456789").await;
        let before = traffic.snapshot();
        serve(&traffic, key("sidecar-watch/0.1.0", "list"), "01234").await;
        serve(&traffic, key("sidecar-watch/0.1.0", "watch"), "012").await;
        serve(&traffic, key("kubectl/v1.33", "list"), "0123456").await;
        let now = traffic.snapshot();
        assert_eq!(now.total("sidecar-watch/", Some("list")), TrafficCount { requests: 2, bytes: 15 });
        assert_eq!(now.total("sidecar-watch/", None), TrafficCount { requests: 3, bytes: 18 });
        let since = now.since(&before);
        assert_eq!(since.total("sidecar-watch/", Some("list")), TrafficCount { requests: 1, bytes: 5 });
        assert_eq!(since.total("sidecar-watch/", None), TrafficCount { requests: 2, bytes: 8 });
        assert_eq!(since.total("", None), TrafficCount { requests: 3, bytes: 15 });
    }
}
