//! From an HTTP request to its handler: `/version` and health paths, then resource paths
//! (`/api/v1/...`, `/apis/<group>/<version>/...`) to the verbs of [`State`](crate::sim::api::State).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_bytes_response, json_response, ok, watch, Form};
use crate::sim::api::{ListPage, Params};
use crate::sim::error::{ApiError, ApiResult};
use crate::sim::patch::Scope;
use crate::sim::resources::ResourceInfo;
use crate::sim::traffic::TrafficKey;
use crate::sim::{authn, Shared};

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    /// Subresource, e.g. `status`.
    sub: Option<String>,
}

impl Target {
    /// `api/<version>/...` or `apis/<group>/<version>/...`, then an optional
    /// `namespaces/<ns>`, the resource, an optional name and subresource.
    fn parse(segs: &[&str]) -> Option<Self> {
        let (group, version, rest) = match segs {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        // `/api/v1/namespaces/<ns>/status` and `.../finalize` are subresources of a
        // Namespace, not resources inside one.
        let (namespace, plural, tail) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if tail.len() <= 2 && !(group.is_empty() && *plural == "status" || *plural == "finalize") =>
            {
                (Some(ns.to_string()), plural, tail)
            }
            [plural, tail @ ..] if tail.len() <= 2 => (None, plural, tail),
            _ => return None,
        };
        Some(Target {
            group: group.to_string(),
            version: version.to_string(),
            namespace,
            plural: plural.to_string(),
            name: tail.first().map(|s| s.to_string()),
            sub: tail.get(1).map(|s| s.to_string()),
        })
    }

    /// The resource as RBAC names it, a subresource as `resource/subresource`.
    fn rbac_resource(&self) -> String {
        match &self.sub {
            Some(sub) => format!("{}/{sub}", self.plural),
            None => self.plural.clone(),
        }
    }
}

/// The RBAC verb of a resource request.
fn verb(method: &Method, named: bool, watch: bool) -> &str {
    match (method.as_str(), named) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        (other, _) => other,
    }
}

/// A request path, split and parsed once for both the traffic count and the route.
pub(super) struct ApiPath<'a> {
    text: &'a str,
    segs: Vec<&'a str>,
    /// `None` for a path that names no resource (version, health, or no route at all).
    target: Option<Target>,
}

impl<'a> ApiPath<'a> {
    pub(super) fn parse(text: &'a str) -> Self {
        let segs: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
        let target = Target::parse(&segs);
        ApiPath { text, segs, target }
    }
}

/// How [`Traffic`](crate::sim::traffic::Traffic) files a request: its RBAC verb and resource,
/// or `other` and the path's first segment when it is not a resource path.
pub(super) fn traffic_key(method: &Method, path: &ApiPath, q: &Params, headers: &HeaderMap) -> TrafficKey {
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match &path.target {
        Some(target) => {
            let verb = verb(method, target.name.is_some(), watch).to_string();
            TrafficKey { user_agent, verb, resource: target.rbac_resource() }
        }
        None => TrafficKey {
            user_agent,
            verb: "other".into(),
            resource: path.segs.first().copied().unwrap_or("").to_string(),
        },
    }
}

/// `/version` and health paths; None for a resource path. Discovery (`/api`, `/apis`,
/// OpenAPI) is not served: 404, as for any path without a route.
fn non_resource(segs: &[&str], path: &str) -> Option<ApiResult<Response>> {
    Some(match segs {
        ["version"] => Ok(ok(&crate::sim::version())),
        ["healthz"] | ["readyz"] | ["livez"] => Ok((StatusCode::OK, "ok").into_response()),
        ["api", _, _, ..] | ["apis", _, _, _, ..] => return None,
        _ => Err(ApiError::no_route(path)),
    })
}

/// Serves an API request (faults already applied).
pub(super) fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: ApiPath,
    q: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let ApiPath { text: path, segs, target } = path;
    if let Some(response) = non_resource(&segs, path) {
        return response;
    }
    let target = target.ok_or_else(|| ApiError::no_route(path))?;
    if method == Method::POST && target.name.is_none() && authn::is_review(&target.group, &target.plural) {
        let answer = shared.reviews().answer(&target.plural, &parse_body(body)?)?;
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let info = shared
        .state()
        .registry
        .find(&target.group, &target.version, &target.plural)
        .cloned()
        .ok_or_else(|| ApiError::no_route(path))?;
    if info.namespaced != target.namespace.is_some() && target.name.is_some() {
        return Err(ApiError::no_route(path));
    }
    if !info.namespaced && target.namespace.is_some() {
        return Err(ApiError::no_route(path));
    }
    if target.sub.as_deref() == Some("binding") && info.group.is_empty() && info.plural == "pods" {
        let name = target.name.as_deref().ok_or_else(|| ApiError::no_route(path))?;
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(format!("{method} is not allowed on pods/binding")));
        }
        let node = parse_body(body)?.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
        shared.state().bind_pod(&info, target.namespace.as_deref(), name, &node)?;
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
        return Ok(json_response(StatusCode::CREATED, &status));
    }
    let scope = match target.sub.as_deref() {
        None if info.has_status => Scope::Main,
        None => Scope::All,
        Some("status") if info.has_status => Scope::Status,
        Some(_) => return Err(ApiError::no_route(path)),
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        if !body.is_empty() && (ct.contains("protobuf") || ct.contains("cbor")) {
            return Err(ApiError::unsupported_media_type(ct, !info.is_custom));
        }
    }
    let ns = target.namespace.as_deref();
    // Nothing that runs on the simulator asks for a dry run: refused rather than written.
    if q.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request("the simulator does not serve dryRun"));
    }
    let form = Form::from_request(headers)?;
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), &target.name) {
        ("GET", None) if watch => watch::start(shared, &info, ns, q, form),
        ("GET", None) => {
            // The lock is held only while the page is picked; serving it copies no object.
            let page = shared.state().list(&info, ns, q)?;
            Ok(json_bytes_response(StatusCode::OK, list_body(&info, &page, form)))
        }
        ("GET", Some(name)) => {
            let obj = shared.state().get_stored(&info, ns, name)?;
            Ok(json_bytes_response(StatusCode::OK, form.json(&obj)))
        }
        ("POST", None) => {
            let v = parse_body(body)?;
            let created = shared.state().create(&info, ns, v)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        ("PUT", Some(name)) => {
            let v = parse_body(body)?;
            Ok(ok(&shared.state().update(&info, ns, name, v, scope)?))
        }
        ("PATCH", Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let existed = shared.state().get_stored(&info, ns, name).is_ok();
            let v = shared.state().patch(&info, ns, name, &ct, body, scope)?;
            let code = if existed { StatusCode::OK } else { StatusCode::CREATED };
            Ok(json_response(code, &v))
        }
        ("DELETE", Some(name)) => {
            let opts = if body.is_empty() { json!({}) } else { parse_body(body)? };
            Ok(ok(&shared.state().delete(&info, ns, name, &opts, q)?))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    let v = crate::sim::patch::parse_json_or_yaml(body)?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

/// The body of a JSON LIST response: the list envelope around the items' served JSON, which
/// is concatenated from each object's cached serialization rather than
/// built as a `Value` and serialized again.
fn list_body(info: &ResourceInfo, page: &ListPage, form: Form) -> Vec<u8> {
    let items: Vec<Bytes> = page.items.iter().map(|o| form.json(o)).collect();
    let envelope = match form {
        Form::Object => {
            json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": page.meta})
        }
        Form::Metadata => {
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": page.meta})
        }
    };
    let mut body = serde_json::to_vec(&envelope).unwrap_or_default();
    body.reserve(items.iter().map(|i| i.len() + 1).sum::<usize>() + 16);
    // The envelope is a non-empty object: reopen it (drop its closing brace) to add `items`.
    body.pop();
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}
