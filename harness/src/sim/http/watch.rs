//! WATCH: the initial events (synthetic ADDED or the history since a resourceVersion), then
//! live changes and bookmarks, each as one JSON line of a chunked response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::channel::mpsc;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{partial, Form};
use crate::sim::api::{parse_rv, Filter, Params};
use crate::sim::error::{ApiError, ApiResult};
use crate::sim::resources::ResourceInfo;
use crate::sim::store::{EventType, StoredEvent, StoredObject};
use crate::sim::Shared;

/// One watch: what it serves and how far it got.
struct WatchCtx {
    info: ResourceInfo,
    filter: Filter,
    form: Form,
    /// resourceVersion of the last change seen: changes up to it are not sent again.
    last_rv: u64,
    /// resourceVersion of the last event or bookmark sent: a bookmark goes out only with a
    /// later one, as kube-apiserver's cacheWatcher sends it (apiserver
    /// `pkg/storage/cacher/cache_watcher.go`, process).
    sent_rv: u64,
}

impl WatchCtx {
    /// Converts a stored change into the event line seen by this watch (None = filtered out).
    /// Label and namespace selectors see the stored objects as served.
    fn translate(&mut self, ev: &StoredEvent) -> Option<Bytes> {
        if ev.key != self.info.storage_key() {
            return None;
        }
        let (new_match, old_match) = if self.filter.is_everything() {
            // Only the namespace to check: objects kept as JSON are not parsed.
            let here = self.filter.namespace.as_ref().is_none_or(|ns| *ns == ev.namespace);
            (here, here && ev.old.is_some())
        } else {
            (self.filter.matches(ev.object.value()), ev.old.as_ref().is_some_and(|o| self.filter.matches(o.value())))
        };
        let etype = match ev.kind {
            EventType::Added => new_match.then_some("ADDED"),
            EventType::Deleted => new_match.then_some("DELETED"),
            EventType::Modified => match (old_match, new_match) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        }?;
        self.sent_rv = ev.rv;
        Some(event_line(etype, &self.form.json(&ev.object)))
    }

    /// The event line of a live change (None = already sent or filtered out).
    fn live(&mut self, ev: &StoredEvent) -> Option<Bytes> {
        if ev.rv <= self.last_rv {
            return None;
        }
        self.last_rv = ev.rv;
        self.translate(ev)
    }

    /// The ADDED event line of an object listed at the start of the watch (None = filtered out).
    fn initial(&self, obj: &StoredObject) -> Option<Bytes> {
        // Without selectors the object is not parsed (see `StoredObject::from_json`).
        let matched = self.filter.is_everything() || self.filter.matches(obj.value());
        matched.then(|| event_line("ADDED", &self.form.json(obj)))
    }

    fn bookmark(&mut self, rv: u64, initial_end: bool) -> Bytes {
        self.sent_rv = rv;
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.form {
            Form::Object => json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta}),
            Form::Metadata => partial(meta),
        };
        line(&json!({"type": "BOOKMARK", "object": object}))
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

/// The ERROR event line that ends a watch.
fn error_line(err: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": err.to_status()}))
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// kube-apiserver's checks of a watch's query (apimachinery
/// `pkg/apis/meta/internalversion/validation`, validateWatchOptions) as 1.37 makes them with
/// the WatchList feature gate on, as it ships.
fn validate(q: &Params, send_initial: Option<bool>) -> ApiResult<()> {
    let rv_match = q.get("resourceVersionMatch").map(String::as_str).filter(|m| !m.is_empty());
    let mut forbidden: Vec<(&str, String)> = Vec::new();
    let mut forbid = |field, detail: &str| forbidden.push((field, detail.to_string()));
    if send_initial.is_some() {
        if rv_match != Some("NotOlderThan") {
            forbid("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
        }
    } else if rv_match.is_some() {
        forbid(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        );
    }
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_list_options(&forbidden))
    }
}

/// Starts a watch of `info`'s objects (in `ns`, or all) as `q` asks: `resourceVersion`,
/// `sendInitialEvents`, `allowWatchBookmarks`, `timeoutSeconds` and selectors.
pub(super) fn start(
    shared: &Arc<Shared>,
    info: &ResourceInfo,
    ns: Option<&str>,
    q: &Params,
    form: Form,
) -> ApiResult<Response> {
    let filter = Filter::from_params(info, ns, q)?;
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true" || b == "1");
    let send_initial = q.get("sendInitialEvents").map(|s| s == "true" || s == "1");
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).filter(|t| *t > 0);
    validate(q, send_initial)?;
    // With the WatchList feature gate on (as 1.37 ships it), a watch from "" or "0" that says nothing of initial
    // events is a streaming list (apimachinery `pkg/apis/meta/internalversion/defaults.go`,
    // SetListOptionsDefaults): its initial events end with a bookmark too.
    let legacy_start = rv_param.is_empty() || rv_param == "0";
    let streams = q.get("resourceVersionMatch").is_none();
    let send_initial = send_initial.or((streams && legacy_start).then_some(true));
    let mut ctx = WatchCtx { info: info.clone(), filter, form, last_rv: 0, sent_rv: 0 };
    let mut first: Vec<Bytes> = Vec::new();
    let (mut rx, expired) = {
        let st = shared.state();
        let cur = st.store.rv();
        let requested = parse_rv(q.get("resourceVersion"))?;
        let synthetic = send_initial == Some(true) || (send_initial.is_none() && legacy_start);
        let mut expired = false;
        ctx.last_rv = cur;
        // The watch starts at `cur`, or at the version it resumes from.
        ctx.sent_rv = match (synthetic, requested) {
            (false, Some(from)) if from > 0 => from,
            _ => cur,
        };
        if synthetic {
            let nsf = if info.namespaced { ns } else { None };
            first.extend(st.store.list(&info.storage_key(), nsf).into_iter().filter_map(|obj| ctx.initial(obj)));
            if send_initial == Some(true) && bookmarks {
                first.push(ctx.bookmark(cur, true));
            }
        } else if let Some(from) = requested {
            if from < st.store.floor() {
                expired = true;
                shared.note_expired_watch();
                first.push(error_line(&ApiError::expired(format!(
                    "too old resource version: {from} ({})",
                    st.store.floor()
                ))));
            } else {
                for ev in st.store.events_since(&info.storage_key(), from) {
                    if let Some(e) = ctx.translate(&ev) {
                        first.push(e);
                    }
                }
                ctx.last_rv = cur.max(from);
            }
        }
        (st.store.subscribe(), expired)
    };
    let (mut tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let shared = shared.clone();
    let mut epoch = shared.watch_epoch();
    let mut expire = shared.expire_epoch();
    let bookmark_interval = shared.config().bookmark_interval;
    let fell_behind = || error_line(&ApiError::expired("watch fell behind; too old resource version"));
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
                _ = expire.changed() => {
                    shared.note_expired_watch();
                    let _ = tx.send(Ok(error_line(&ApiError::expired("too old resource version")))).await;
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    let cur = shared.resource_version();
                    // Changes already committed go out before the bookmark that covers them.
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                if let Some(e) = ctx.live(&ev) {
                                    if tx.send(Ok(e)).await.is_err() { return; }
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(_) => {
                                shared.note_expired_watch();
                                let _ = tx.send(Ok(fell_behind())).await;
                                return;
                            }
                        }
                    }
                    ctx.last_rv = cur.max(ctx.last_rv);
                    if ctx.last_rv > ctx.sent_rv {
                        let bookmark = ctx.bookmark(ctx.last_rv, false);
                        if tx.send(Ok(bookmark)).await.is_err() { return; }
                    }
                }
                r = rx.recv() => match r {
                    Ok(ev) => {
                        if let Some(e) = ctx.live(&ev) {
                            if tx.send(Ok(e)).await.is_err() { return; }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        shared.note_expired_watch();
                        let _ = tx.send(Ok(fell_behind())).await;
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
