//! Pods relayed with a field of the wrong type, as only a broken server or an aggregated API
//! sends them: kube-apiserver refuses to store a string `restartCount`, so the proxy writes
//! it into what it relays ([`super::FaultProxy::corrupt_restart_count`]).
//!
//! A Pod list or watch that may carry such a Pod is asked for in JSON alone: protobuf's
//! `restartCount` is an `int32` on the wire and cannot hold a string, and a server that
//! answers JSON to a client that prefers protobuf is what the operator's Pod client expects
//! now and then (`src/controller/pod_protobuf.rs` passes JSON on as it came).

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use super::{full, ProxyBody};

/// Pod name → the text its containers' `restartCount` is relayed as.
pub(super) type RestartCounts = BTreeMap<String, String>;

/// `GET /api/v1/pods` or `GET /api/v1/namespaces/<namespace>/pods`, list or watch.
pub(super) fn reads_pod_collection<B>(request: &Request<B>) -> bool {
    if request.method() != http::Method::GET {
        return false;
    }
    let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"])
}

/// Asks for the answer in plain JSON: no protobuf, no compression, so that it can be rewritten.
pub(super) fn ask_for_plain_json<B>(request: &mut Request<B>) {
    request.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    request.headers_mut().remove(header::ACCEPT_ENCODING);
}

/// Whether the request is a watch (`watch=true` or `watch=1`), answered as JSON lines.
pub(super) fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

/// Writes the restart counts of a Pod named in `counts` as their text; whether it was one.
fn corrupt_pod(pod: &mut Value, counts: &RestartCounts) -> bool {
    let Some(text) = pod.pointer("/metadata/name").and_then(Value::as_str).and_then(|name| counts.get(name)) else {
        return false;
    };
    let text = Value::String(text.clone());
    for list in ["containerStatuses", "initContainerStatuses"] {
        let statuses = pod.get_mut("status").and_then(|s| s.get_mut(list)).and_then(Value::as_array_mut);
        for status in statuses.into_iter().flatten() {
            if let Some(count) = status.get_mut("restartCount") {
                *count = text.clone();
            }
        }
    }
    true
}

/// A PodList's JSON with the named Pods' restart counts as text; without such a Pod, or not
/// JSON (an error page), as it came.
fn corrupt_list(body: &[u8], counts: &RestartCounts) -> Vec<u8> {
    let Ok(mut list) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let items = list.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten();
    // Every item looked at: `any` would stop at the first.
    let corrupted = items.fold(false, |any, pod| corrupt_pod(pod, counts) | any);
    match corrupted {
        true => serde_json::to_vec(&list).unwrap_or_else(|_| body.to_vec()),
        false => body.to_vec(),
    }
}

/// One JSON watch event line (without its newline), with its newline: rewritten when it
/// carries a named Pod, as it came otherwise.
fn corrupt_event(line: &[u8], counts: &RestartCounts) -> Vec<u8> {
    let mut out = line.to_vec();
    if let Ok(mut event) = serde_json::from_slice::<Value>(line) {
        let kind = event.get("type").cloned().unwrap_or_default();
        if let Some(pod) = event.get_mut("object").filter(|_| kind.is_string()) {
            if corrupt_pod(pod, counts) {
                // `type` first, as kube-apiserver writes it: kube-rs reads the event's
                // object borrowed from the line (the operator's Pods are `RawValue`s), which
                // serde can do only once it knows the type. (`serde_json::Value` would sort
                // the keys.)
                out = format!("{{\"type\":{kind},\"object\":{pod}}}").into_bytes();
            }
        }
    }
    out.push(b'\n');
    out
}

/// kube-apiserver's answer to a Pod list or watch, with the named Pods' restart counts as
/// text; a watch still streams, an event at a time.
pub(super) async fn corrupt_answer(
    response: Response<kube::client::Body>,
    watch: bool,
    counts: RestartCounts,
) -> std::io::Result<Response<ProxyBody>> {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if !watch {
        let encoded = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        return Ok(Response::from_parts(parts, full(corrupt_list(&encoded, &counts))));
    }
    struct Reading {
        chunks: BodyDataStream<Pin<Box<kube::client::Body>>>,
        pending: BytesMut,
        counts: RestartCounts,
    }
    let start = Reading { chunks: BodyDataStream::new(Box::pin(body)), pending: BytesMut::new(), counts };
    let events = futures::stream::unfold(Some(start), |state| async move {
        let mut reading = state?;
        loop {
            let mut out = Vec::new();
            while let Some(end) = reading.pending.iter().position(|b| *b == b'\n') {
                let line = reading.pending.split_to(end + 1);
                out.extend(corrupt_event(&line[..end], &reading.counts));
            }
            if !out.is_empty() {
                return Some((Ok(Frame::data(Bytes::from(out))), Some(reading)));
            }
            match reading.chunks.next().await {
                Some(Ok(chunk)) => reading.pending.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                // The stream's end: an unfinished last line is passed on as it came.
                None if reading.pending.is_empty() => return None,
                None => return Some((Ok(Frame::data(reading.pending.split().freeze())), None)),
            }
        }
    });
    Ok(Response::from_parts(parts, StreamBody::new(events).boxed_unsync()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn counts() -> RestartCounts {
        RestartCounts::from([("broken".to_string(), "SECRET".to_string())])
    }

    fn pod(name: &str) -> Value {
        json!({"kind": "Pod", "metadata": {"name": name}, "status": {
            "containerStatuses": [{"name": "app", "restartCount": 1}],
            "initContainerStatuses": [{"name": "proxy", "restartCount": 2}]}})
    }

    #[test]
    fn a_named_pods_restart_counts_become_its_text_in_a_list() {
        let list = json!({"kind": "PodList", "items": [pod("broken"), pod("fine")]});
        let out: Value = serde_json::from_slice(&corrupt_list(list.to_string().as_bytes(), &counts())).unwrap();
        assert_eq!(out["items"][0]["status"]["containerStatuses"][0]["restartCount"], json!("SECRET"));
        assert_eq!(out["items"][0]["status"]["initContainerStatuses"][0]["restartCount"], json!("SECRET"));
        assert_eq!(out["items"][1], pod("fine"));
        let untouched = json!({"kind": "PodList", "items": [pod("fine")]}).to_string();
        assert_eq!(corrupt_list(untouched.as_bytes(), &counts()), untouched.as_bytes());
    }

    fn out_line(event: &str) -> Vec<u8> {
        corrupt_event(event.as_bytes(), &counts())
    }

    #[test]
    fn a_watch_event_is_rewritten_and_keeps_its_line() {
        let event = json!({"type": "MODIFIED", "object": pod("broken")}).to_string();
        let out = corrupt_event(event.as_bytes(), &counts());
        assert_eq!(out.last(), Some(&b'\n'));
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["object"]["status"]["containerStatuses"][0]["restartCount"], json!("SECRET"));
        // Anything else passes as it came.
        assert!(String::from_utf8(out_line(&event)).unwrap().starts_with("{\"type\":\"MODIFIED\","));
        let fine = json!({"type": "MODIFIED", "object": pod("fine")}).to_string();
        assert_eq!(corrupt_event(fine.as_bytes(), &counts()), format!("{fine}\n").into_bytes());
        assert_eq!(corrupt_event(b"not json", &counts()), b"not json\n");
        assert_eq!(corrupt_list(b"not json", &counts()), b"not json");
    }

    #[test]
    fn only_pod_collection_reads_are_rewritten() {
        let get = |uri: &str| Request::get(uri).body(()).unwrap();
        assert!(reads_pod_collection(&get("/api/v1/pods?watch=true")));
        assert!(reads_pod_collection(&get("/api/v1/namespaces/a/pods")));
        assert!(!reads_pod_collection(&get("/api/v1/namespaces/a/pods/p")));
        assert!(!reads_pod_collection(&Request::post("/api/v1/namespaces/a/pods").body(()).unwrap()));
        assert!(is_watch(&"/api/v1/pods?limit=5&watch=1".parse().unwrap()));
        assert!(!is_watch(&"/api/v1/pods?limit=5".parse().unwrap()));
        let mut request = get("/api/v1/pods");
        request.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf"));
        request.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        ask_for_plain_json(&mut request);
        assert_eq!(request.headers()[header::ACCEPT], "application/json");
        assert!(request.headers().get(header::ACCEPT_ENCODING).is_none());
    }
}
