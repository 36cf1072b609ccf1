//! HTTP routing: the Kubernetes REST API, discovery and the `/__sim/...` control endpoints.
//!
//! Control endpoints (all `POST`, no body needed; `GET /__sim/state` reports the latest
//! resourceVersion):
//! - `/__sim/drop-watches` — end every open watch;
//! - `/__sim/fail?count=N&code=500|429&retryAfter=S` — fail the next N API requests;
//! - `/__sim/latency?ms=N` — add N ms to every API request;
//! - `/__sim/compact` — drop the watch history (older resourceVersions give 410);
//! - `/__sim/restart` — close all connections and watches, keep state and port.
//!
//! [`routes`] maps a request to its handler, [`watch`] streams watch events.

mod routes;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::api::Params;
use super::error::ApiError;
use super::store::{json_bytes, StoredObject};
use super::Shared;

/// Builds the router serving everything.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    json_bytes_response(code, serde_json::to_vec(v).unwrap_or_default())
}

/// A response whose body is already JSON.
fn json_bytes_response(code: StatusCode, body: impl Into<Body>) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q: Params = Query::<Params>::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let path = uri.path().trim_end_matches('/').to_string();
    if let Some(ctl) = path.strip_prefix("/__sim/") {
        return control(&shared, ctl, &q);
    }
    let api_path = routes::ApiPath::parse(&path);
    let key = routes::traffic_key(&method, &api_path, &q, &headers);
    let response = serve(&shared, &method, api_path, &q, &headers, &body).await;
    shared.traffic().count(key, response)
}

/// An API request with the injected faults applied.
async fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    path: routes::ApiPath<'_>,
    q: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let (latency, fail) = {
        let mut f = shared.faults();
        let fail = if f.fail_remaining > 0 {
            f.fail_remaining -= 1;
            Some((f.fail_code, f.retry_after_secs))
        } else {
            None
        };
        (f.latency, fail)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some((code, retry)) = fail {
        shared.note_failed_request();
        if code == 429 {
            let mut r = ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later (injected)",
            )
            .with_details(json!({"retryAfterSeconds": retry}))
            .into_response();
            if let Ok(v) = retry.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        return ApiError::new(
            code,
            "InternalError",
            "an error on the server (\"injected fault\") has prevented the request from succeeding",
        )
        .into_response();
    }
    match routes::route(shared, method, path, q, headers, body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn control(shared: &Arc<Shared>, ctl: &str, q: &Params) -> Response {
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    match ctl {
        "drop-watches" => shared.drop_watches(),
        "fail" => {
            let code = num("code").unwrap_or(500) as u16;
            shared.fail_next(num("count").unwrap_or(1) as u32, code, num("retryAfter").unwrap_or(1));
        }
        "latency" => shared.set_latency(Duration::from_millis(num("ms").unwrap_or(0))),
        "compact" => shared.compact(),
        "restart" => {
            // Respond first, then close connections.
            let s = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.restart();
            });
        }
        "state" => {}
        _ => return ApiError::no_route(ctl).into_response(),
    }
    ok(&json!({"ok": true, "resourceVersion": shared.resource_version().to_string()}))
}

/// How the client asked to see objects: the first form of its `Accept` header the simulator
/// serves. It serves no `Table`s: a client that accepts nothing else gets 406 Not Acceptable
/// (kubectl asks for a Table, then for `application/json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// As they are.
    Object,
    /// Their metadata only (`as=PartialObjectMetadata`, what kube's metadata watchers ask).
    Metadata,
}

impl Form {
    fn from_request(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut asked = false;
        for range in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
            asked = true;
            let mut parts = range.split(';').map(str::trim);
            if !matches!(parts.next(), Some("application/json" | "application/*" | "*/*")) {
                continue;
            }
            match parts.find_map(|p| p.strip_prefix("as=")) {
                None => return Ok(Form::Object),
                Some("PartialObjectMetadata" | "PartialObjectMetadataList") => return Ok(Form::Metadata),
                Some(_) => {}
            }
        }
        if !asked {
            return Ok(Form::Object);
        }
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Err(ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "the simulator serves objects and their metadata as application/json, no Tables (Accept: {accept})"
            ),
        ))
    }

    /// An object's JSON as the client asked to see it.
    fn json(self, obj: &StoredObject) -> Bytes {
        match self {
            Form::Object => obj.json().clone(),
            Form::Metadata => json_bytes(&partial(obj.value().get("metadata").cloned().unwrap_or(json!({})))),
        }
    }
}

/// A `meta.k8s.io/v1` `PartialObjectMetadata` of `metadata`.
fn partial(metadata: Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
}
