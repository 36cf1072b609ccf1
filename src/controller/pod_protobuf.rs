//! The Pod watch's client asks kube-apiserver for protobuf and hands kube-rs JSON.
//!
//! A layer on kube's client stack ([`PodsAsProtobuf`]): for a GET of a Pod collection (a list
//! page or a watch) it asks for `application/vnd.kubernetes.protobuf` with JSON as the
//! fallback, and turns what comes back into the JSON of the fields the operator reads
//! ([`crate::api::protobuf`]), a page at a time or an event at a time, so kube-runtime's
//! watcher (relists, bookmarks, `410 Gone`, backoff) runs unchanged. An answer in any other
//! media type (a server or proxy that does not speak protobuf) is passed on as it came.
//!
//! Protobuf is kube-apiserver's cheap encoding; what it saves the API server and the
//! operator at a start: docs/benchmarks.md#what-does-the-operator-cost-the-api-server.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};

use crate::api::protobuf::{list_to_json, take_frame, watch_event_to_json, TranscodeError, MEDIA_TYPE};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body as the layer hands it to kube: transcoded or passed on.
type PodBody = UnsyncBoxBody<Bytes, BoxError>;

/// `--pod-encoding`: how Pods travel from kube-apiserver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PodEncoding {
    /// Protobuf, the cheapest for kube-apiserver to write (JSON where a server answers so).
    Protobuf,
    /// JSON, as every other request.
    Json,
}

impl PodEncoding {
    /// The watches' client, carrying [`PodsAsProtobuf`] for protobuf. The layer rewrites
    /// only GETs of Pod collections, which only the Pod watch makes, so the other watches'
    /// requests pass through it as they came. One client for every watch: a client per
    /// watch cost code and allocations for nothing the live heap showed ("One client" in
    /// docs/benchmarks.md#the-fixed-footprint-fat-lto-in-one-codegen-unit-real-control-plane-2026-11-25).
    pub(crate) fn client(self, config: kube::Config) -> Result<kube::Client, kube::Error> {
        let builder = kube::client::ClientBuilder::try_from(config)?;
        Ok(match self {
            PodEncoding::Json => builder.build(),
            PodEncoding::Protobuf => builder.with_layer(&PodsAsProtobuf).build(),
        })
    }
}

/// The layer for the client of the Pod watch: see the module's documentation.
#[derive(Clone, Copy, Debug, Default)]
struct PodsAsProtobuf;

impl<S> tower::Layer<S> for PodsAsProtobuf {
    type Service = AskForProtobuf<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AskForProtobuf { inner }
    }
}

/// The service [`PodsAsProtobuf`] wraps around the client's stack.
#[derive(Clone, Debug)]
struct AskForProtobuf<S> {
    inner: S,
}

/// `GET /api/v1/pods` or `GET /api/v1/namespaces/<namespace>/pods`, list or watch.
fn reads_pod_collection<B>(request: &http::Request<B>) -> bool {
    if request.method() != http::Method::GET {
        return false;
    }
    let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"])
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AskForProtobuf<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<PodBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let asked = reads_pod_collection(&request);
        if asked {
            let accept = HeaderValue::from_static("application/vnd.kubernetes.protobuf, application/json");
            request.headers_mut().insert(ACCEPT, accept);
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            let (mut parts, body) = response.into_parts();
            let media_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let Some(parameters) = media_type.strip_prefix(MEDIA_TYPE).filter(|_| asked) else {
                return Ok(http::Response::from_parts(parts, body.map_err(Into::into).boxed_unsync()));
            };
            let watch = parameters.split(';').any(|p| p.trim() == "stream=watch");
            parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.remove(CONTENT_LENGTH);
            let body = if watch {
                watch_as_json_lines(body)
            } else {
                let encoded = body.collect().await.map_err(Into::into)?.to_bytes();
                let json = list_to_json(&encoded).map_err(|e| format!("reading Pods as protobuf: {e}"))?;
                http_body_util::Full::new(Bytes::from(json)).map_err(|never| match never {}).boxed_unsync()
            };
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A protobuf watch stream (frames of a 4-byte big-endian length and a `WatchEvent`) as the
/// JSON lines kube-rs reads, each event handed on as soon as its frame is complete.
fn watch_as_json_lines<B>(body: B) -> PodBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    struct Reading<B> {
        chunks: BodyDataStream<Pin<Box<B>>>,
        pending: BytesMut,
    }
    let start = Reading { chunks: BodyDataStream::new(Box::pin(body)), pending: BytesMut::new() };
    let lines = futures::stream::unfold(Some(start), |state| async move {
        let mut reading = state?;
        loop {
            let mut lines = Vec::new();
            match complete_frames(&mut reading.pending, &mut lines) {
                Err(e) => return Some((Err(e), None)),
                Ok(()) if !lines.is_empty() => return Some((Ok(Frame::data(Bytes::from(lines))), Some(reading))),
                Ok(()) => {}
            }
            match reading.chunks.next().await {
                Some(Ok(chunk)) => reading.pending.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e.into()), None)),
                None if reading.pending.is_empty() => return None,
                None => return Some((Err("the Pod watch ended inside an event".into()), None)),
            }
        }
    });
    StreamBody::new(lines).boxed_unsync()
}

/// Transcodes every complete frame at the front of `pending` into `lines`.
fn complete_frames(pending: &mut BytesMut, lines: &mut Vec<u8>) -> Result<(), BoxError> {
    let reading = |e: TranscodeError| format!("reading a Pod watch event: {e}");
    while let Some(frame) = take_frame(pending).map_err(reading)? {
        watch_event_to_json(frame, lines).map_err(reading)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
