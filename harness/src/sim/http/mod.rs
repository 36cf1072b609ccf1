//! HTTP routing: the Kubernetes REST API and discovery. [`routes`] maps a request to its handler, [`watch`] streams watch events.

mod routes;
mod watch;

use std::sync::Arc;

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
    let api_path = routes::ApiPath::parse(&path);
    let key = routes::traffic_key(&method, &api_path, &q, &headers);
    let response = serve(&shared, &method, api_path, &q, &headers, &body);
    shared.traffic().count(key, response)
}

/// An API request's response.
fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    path: routes::ApiPath<'_>,
    q: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    match routes::route(shared, method, path, q, headers, body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
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
