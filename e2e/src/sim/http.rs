//! HTTP routing: the Kubernetes REST API, discovery and the `/__sim/...` control endpoints.
//!
//! Control endpoints (all `POST`, no body needed; `GET /__sim/state` reports the latest
//! resourceVersion):
//! - `/__sim/drop-watches` — end every open watch;
//! - `/__sim/fail?count=N&code=500|429&retryAfter=S` — fail the next N API requests;
//! - `/__sim/latency?ms=N` — add N ms to every API request;
//! - `/__sim/compact` — drop the watch history (older resourceVersions give 410);
//! - `/__sim/restart` — close all connections and watches, keep state and port.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::channel::mpsc;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::api::{parse_rv, served_json, stored_is_served, to_served, Caller, Filter, ListPage, Params};
use super::error::{ApiError, ApiResult};
use super::patch::Scope;
use super::resources::ResourceInfo;
use super::store::{EventType, StoredEvent, StoredObject};
use super::table::{self, IncludeObject};
use super::{discovery, ApiCall, Shared};

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
    match route(&shared, &method, &path, &q, &headers, &body) {
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

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn accept_has(headers: &HeaderMap, needle: &str) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|s| s.contains(needle)))
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    q: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [] => {
            return Ok(ok(&json!({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz", "/readyz", "/livez"]})))
        }
        ["version"] => return Ok(ok(&discovery::version())),
        ["healthz"] | ["readyz"] | ["livez"] => return Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => return Ok(ok(&discovery::core_versions(&shared.addr().to_string()))),
        ["apis"] => return Ok(ok(&discovery::group_list(&shared.state().registry))),
        ["openapi", "v3"] => return Ok(ok(&discovery::openapi_v3_root(&shared.state().registry))),
        ["openapi", "v3", "api", v] => {
            return discovery::openapi_v3_gv(&shared.state().registry, "", v)
                .map(|d| ok(&d))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["openapi", "v3", "apis", g, v] => {
            return discovery::openapi_v3_gv(&shared.state().registry, g, v)
                .map(|d| ok(&d))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["openapi", ..] => return Err(ApiError::no_route(path)),
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g] => {
            return discovery::group(&shared.state().registry, g)
                .map(|d| ok(&d))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Err(ApiError::no_route(path)),
    };
    if rest.is_empty() {
        return discovery::resource_list(&shared.state().registry, &group, &version)
            .map(|d| ok(&d))
            .ok_or_else(|| ApiError::no_route(path));
    }
    let owned = |s: &&str| s.to_string();
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if tail.len() <= 2 && !(group.is_empty() && *plural == "status" || *plural == "finalize") =>
        {
            Target {
                group: group.clone(),
                version: version.clone(),
                namespace: Some(ns.to_string()),
                plural: plural.to_string(),
                name: tail.first().map(owned),
                sub: tail.get(1).map(owned),
            }
        }
        [plural, tail @ ..] if tail.len() <= 2 => Target {
            group: group.clone(),
            version: version.clone(),
            namespace: None,
            plural: plural.to_string(),
            name: tail.first().map(owned),
            sub: tail.get(1).map(owned),
        },
        _ => return Err(ApiError::no_route(path)),
    };
    if method == Method::POST && target.name.is_none() && super::authn::is_review(&target.group, &target.plural) {
        if let Some(user_agent) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
            shared.note_call(ApiCall {
                user_agent: user_agent.to_string(),
                verb: "create".into(),
                group: target.group.clone(),
                resource: target.plural.clone(),
                namespaced: false,
            });
        }
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
    let scope = match target.sub.as_deref() {
        None => {
            if info.has_status {
                Scope::Main
            } else {
                Scope::All
            }
        }
        Some("status") if info.has_status => Scope::Status,
        Some(_) => return Err(ApiError::no_route(path)),
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        if !body.is_empty() && (ct.contains("protobuf") || ct.contains("cbor")) {
            return Err(ApiError::unsupported_media_type(ct));
        }
    }
    let ns = target.namespace.as_deref();
    let version = target.version.as_str();
    let ua_manager = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split('/').next().unwrap_or(s).to_string())
        .unwrap_or_else(|| "unknown".into());
    let field_manager = q.get("fieldManager").cloned();
    let caller = Caller {
        manager: field_manager.clone().unwrap_or(ua_manager),
        dry_run: q.get("dryRun").is_some_and(|d| !d.is_empty()),
    };
    let as_table = accept_has(headers, "as=Table");
    let as_meta = accept_has(headers, "as=PartialObjectMetadata");
    let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    if let Some(user_agent) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        let verb = match (method.as_str(), target.name.is_some()) {
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("GET", true) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", false) => "deletecollection",
            ("DELETE", true) => "delete",
            (other, _) => other,
        };
        let resource = match &target.sub {
            Some(sub) => format!("{}/{sub}", target.plural),
            None => target.plural.clone(),
        };
        shared.note_call(ApiCall {
            user_agent: user_agent.to_string(),
            verb: verb.to_string(),
            group: target.group.clone(),
            resource,
            namespaced: target.namespace.is_some(),
        });
    }
    let render_one = |v: Value| -> Response {
        if as_table {
            let meta = json!({"resourceVersion": v.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
            ok(&table::table(&info, &[v], include, true, meta))
        } else if as_meta {
            ok(&partial(&v))
        } else {
            ok(&v)
        }
    };
    match (method.as_str(), &target.name) {
        ("GET", None) if watch => start_watch(shared, &info, version, ns, q, as_table, as_meta, include),
        ("GET", None) => {
            // The lock is held only while the page is picked; serving it copies no object.
            let page = shared.state().list(&info, version, ns, q)?;
            if as_table {
                let items: Vec<Value> = page.items.iter().map(|o| to_served(&info, version, o.value())).collect();
                return Ok(ok(&table::table(&info, &items, include, true, page.meta)));
            }
            if as_meta {
                // Conversions keep `metadata` as it is: take it from the stored objects.
                let items: Vec<Value> = page.items.iter().map(|o| partial(o.value())).collect();
                return Ok(ok(
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": page.meta, "items": items}),
                ));
            }
            Ok(json_bytes_response(StatusCode::OK, list_body(&info, version, &page)))
        }
        ("GET", Some(name)) if !as_table && !as_meta => {
            let obj = shared.state().get_stored(&info, ns, name)?;
            Ok(json_bytes_response(StatusCode::OK, served_json(&info, version, &obj)))
        }
        ("GET", Some(name)) => Ok(render_one(shared.state().get(&info, version, ns, name)?)),
        ("POST", None) => {
            let v = parse_body(body)?;
            let created = shared.state().create(&info, version, ns, v, &caller, false)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        ("PUT", Some(name)) => {
            let v = parse_body(body)?;
            Ok(ok(&shared.state().update(&info, version, ns, name, v, scope, &caller)?))
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
            let caller = if ct == "application/apply-patch+yaml" {
                Caller { manager: field_manager.unwrap_or_default(), ..caller }
            } else {
                caller
            };
            let force = q.get("force").is_some_and(|f| f == "true" || f == "1");
            let existed = shared.state().get_stored(&info, ns, name).is_ok();
            let v = shared.state().patch(&info, version, ns, name, &ct, body, scope, &caller, force)?;
            let code = if existed { StatusCode::OK } else { StatusCode::CREATED };
            Ok(json_response(code, &v))
        }
        ("DELETE", Some(name)) => {
            let opts = if body.is_empty() { json!({}) } else { parse_body(body)? };
            Ok(ok(&shared.state().delete(&info, version, ns, name, &opts, q, &caller)?))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    let v = super::patch::parse_json_or_yaml(body)?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

/// The body of a JSON LIST response: the list envelope around the items' served JSON, which
/// is concatenated from each object's cached serialization (see [`served_json`]) rather than
/// built as a `Value` and serialized again.
fn list_body(info: &ResourceInfo, version: &str, page: &ListPage) -> Vec<u8> {
    let items: Vec<Bytes> = page.items.iter().map(|o| served_json(info, version, o)).collect();
    let envelope =
        json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(version), "metadata": page.meta});
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

fn partial(v: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": v.get("metadata").cloned().unwrap_or(json!({}))})
}

struct WatchCtx {
    info: ResourceInfo,
    version: String,
    filter: Filter,
    as_table: bool,
    as_meta: bool,
    include: IncludeObject,
    headers_sent: bool,
    /// Plain JSON watch whose selectors can be matched on the stored form: events are sent
    /// from the stored object's shared serialization, without per-watch clones.
    fast: bool,
}

impl WatchCtx {
    fn render(&mut self, etype: &str, obj: &Value) -> Value {
        let object = if self.as_table {
            let meta =
                json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
            let t = table::table(&self.info, std::slice::from_ref(obj), self.include, !self.headers_sent, meta);
            self.headers_sent = true;
            t
        } else if self.as_meta {
            partial(obj)
        } else {
            obj.clone()
        };
        json!({"type": etype, "object": object})
    }

    /// Converts a stored change into the event line seen by this watch (None = filtered out).
    fn translate(&mut self, ev: &StoredEvent) -> Option<Bytes> {
        if ev.key != self.info.storage_key() {
            return None;
        }
        if self.serves_stored(&ev.object) {
            // Same decision as below, on the stored objects: label and namespace selectors
            // see the same metadata in both forms.
            let new_match = self.filter.matches(ev.object.value());
            let old_match = ev.old.as_ref().is_some_and(|o| self.filter.matches(o.value()));
            let etype = Self::event_type(ev.kind, old_match, new_match)?;
            return Some(event_line(etype, ev.object.json()));
        }
        let new = to_served(&self.info, &self.version, ev.object.value());
        let new_match = self.filter.matches(&new);
        let old_match = ev.kind == EventType::Modified
            && ev.old.as_ref().is_some_and(|o| {
                let mut o = to_served(&self.info, &self.version, o.value());
                o["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                self.filter.matches(&o)
            });
        let etype = Self::event_type(ev.kind, old_match, new_match)?;
        Some(line(&self.render(etype, &new)))
    }

    /// The ADDED event line of an object listed at the start of the watch (None = filtered out).
    fn initial(&mut self, obj: &StoredObject) -> Option<Bytes> {
        if self.serves_stored(obj) {
            return self.filter.matches(obj.value()).then(|| event_line("ADDED", obj.json()));
        }
        let served = to_served(&self.info, &self.version, obj.value());
        if !self.filter.matches(&served) {
            return None;
        }
        Some(line(&self.render("ADDED", &served)))
    }

    /// Whether this watch can send `obj`'s cached JSON as is.
    fn serves_stored(&self, obj: &StoredObject) -> bool {
        self.fast && stored_is_served(&self.info, &self.version, obj.value())
    }

    /// The event type a watch sees, from whether the old and new objects match its filter.
    fn event_type(kind: EventType, old_match: bool, new_match: bool) -> Option<&'static str> {
        match kind {
            EventType::Added => new_match.then_some("ADDED"),
            EventType::Deleted => new_match.then_some("DELETED"),
            EventType::Modified => match (old_match, new_match) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {"kind": self.info.kind, "apiVersion": self.info.api_version(&self.version), "metadata": meta}})
    }
}

/// A watch event line around an object's JSON, without parsing or re-serializing it.
fn event_line(etype: &str, object_json: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object_json.len() + 40);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(etype.as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(object_json);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

#[allow(clippy::too_many_arguments)]
fn start_watch(
    shared: &Arc<Shared>,
    info: &ResourceInfo,
    version: &str,
    ns: Option<&str>,
    q: &Params,
    as_table: bool,
    as_meta: bool,
    include: IncludeObject,
) -> ApiResult<Response> {
    let filter = Filter::from_params(ns, q)?;
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true" || b == "1");
    let send_initial = q.get("sendInitialEvents").map(|s| s == "true" || s == "1");
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).filter(|t| *t > 0);
    if send_initial.is_some() && q.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if send_initial == Some(true) && !bookmarks {
        return Err(ApiError::invalid(
            "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    let fast = !as_table && !as_meta && filter.fields.0.is_empty() && filter.matches_stored(info);
    let mut ctx = WatchCtx {
        info: info.clone(),
        version: version.to_string(),
        filter,
        as_table,
        as_meta,
        include,
        headers_sent: false,
        fast,
    };
    let mut first: Vec<Bytes> = Vec::new();
    let (mut rx, mut last_rv, expired) = {
        let st = shared.state();
        let cur = st.store.rv();
        let requested = parse_rv(q.get("resourceVersion"))?;
        let synthetic =
            send_initial == Some(true) || (send_initial.is_none() && (rv_param.is_empty() || rv_param == "0"));
        let mut expired = false;
        let mut last = cur;
        if synthetic {
            let nsf = if info.namespaced { ns } else { None };
            first.extend(st.store.list(&info.storage_key(), nsf).into_iter().filter_map(|obj| ctx.initial(obj)));
            if send_initial == Some(true) {
                first.push(line(&ctx.bookmark(cur, true)));
            }
        } else if let Some(from) = requested {
            if from < st.store.floor() {
                expired = true;
                shared.note_expired_watch();
                let err = ApiError::expired(format!("too old resource version: {from} ({})", st.store.floor()));
                first.push(line(&json!({"type": "ERROR", "object": err.to_status()})));
            } else {
                for ev in st.store.events_since(&info.storage_key(), from) {
                    if let Some(e) = ctx.translate(&ev) {
                        first.push(e);
                    }
                }
                last = cur.max(from);
            }
        }
        (st.store.subscribe(), last, expired)
    };
    let (mut tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let shared = shared.clone();
    let mut epoch = shared.watch_epoch();
    let bookmark_interval = shared.config().bookmark_interval;
    tokio::spawn(async move {
        for b in first {
            if tx.send(Ok(b)).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs(t));
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        loop {
            let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
            tokio::select! {
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = epoch.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let cur = shared.resource_version();
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                if ev.rv <= last_rv { continue; }
                                last_rv = ev.rv;
                                if let Some(e) = ctx.translate(&ev) {
                                    if tx.send(Ok(e)).await.is_err() { return; }
                                }
                            }
                            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                            Err(_) => {
                                let err = ApiError::expired("watch fell behind; too old resource version");
                                let _ = tx.send(Ok(line(&json!({"type": "ERROR", "object": err.to_status()})))).await;
                                return;
                            }
                        }
                    }
                    let rv = cur.max(last_rv);
                    last_rv = rv;
                    if tx.send(Ok(line(&ctx.bookmark(rv, false)))).await.is_err() { return; }
                }
                r = rx.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last_rv { continue; }
                        last_rv = ev.rv;
                        if let Some(e) = ctx.translate(&ev) {
                            if tx.send(Ok(e)).await.is_err() { return; }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let err = ApiError::expired("watch fell behind; too old resource version");
                        let _ = tx.send(Ok(line(&json!({"type": "ERROR", "object": err.to_status()})))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body_rx));
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}
