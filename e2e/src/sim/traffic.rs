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
                .map(|(k, now)| {
                    let before = earlier.0.get(k).copied().unwrap_or_default();
                    let count = TrafficCount {
                        requests: now.requests.saturating_sub(before.requests),
                        bytes: now.bytes.saturating_sub(before.bytes),
                    };
                    (k.clone(), count)
                })
                .filter(|(_, c)| c.requests > 0 || c.bytes > 0)
                .collect(),
        )
    }

    /// The sum over keys whose user agent starts with `user_agent` and, when given, whose
    /// verb is `verb`.
    pub fn total(&self, user_agent: &str, verb: Option<&str>) -> TrafficCount {
        self.0.iter().filter(|(k, _)| k.user_agent.starts_with(user_agent) && verb.is_none_or(|v| k.verb == v)).fold(
            TrafficCount::default(),
            |sum, (_, c)| TrafficCount { requests: sum.requests + c.requests, bytes: sum.bytes + c.bytes },
        )
    }
}
