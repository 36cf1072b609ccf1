//! An in-process kube API for the unit tests of the layers that call it: the status writer,
//! the Event recorder, the Lease election and the Pod watch's protobuf layer.
//!
//! A `tower-test` mock stands where kube's HTTP stack would, behind a real [`kube::Client`]
//! (as kube-rs's controller-rs example does), and the test plays the API server: it takes
//! each request in turn ([`ApiServer::next`]), asserts its method, path, query and body, and
//! answers it, fails it, or holds it unanswered. What a layer sends and how it reacts to each
//! answer is then pinned in milliseconds; `tests/e2e_operator/` proves the same layers
//! against a real kube-apiserver.
//!
//! Tests run with `#[tokio::test(start_paused = true)]`: a layer's sleeps and deadlines then
//! pass as soon as nothing else can run, and so does [`PATIENCE`], so a request that never
//! comes fails the test at once instead of hanging it.

use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use kube::client::Body;
use tower_test::mock::{self, Handle, SendResponse};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An answer's body: whole, or streamed a chunk at a time ([`Call::respond_stream`]).
type MockBody = UnsyncBoxBody<Bytes, BoxError>;

/// The service a test puts under a [`kube::Client`], alone ([`client`]) or under the layer the
/// product adds to its client ([`service`]).
type MockService = mock::Mock<Request<Body>, Response<MockBody>>;

/// How long [`ApiServer::next`] waits for a request: under paused time this passes as soon as
/// every task is idle, so it only decides how a missing request fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(3600);

/// The test's side of the mock: the requests the client sends, in order.
pub(crate) struct ApiServer(Handle<Request<Body>, Response<MockBody>>);

/// The mock service and its API server, for a client built around a layer of the product.
pub(crate) fn service() -> (MockService, ApiServer) {
    let (service, handle) = mock::pair();
    (service, ApiServer(handle))
}

/// A client on the mock, with the default namespace `default`.
pub(crate) fn client() -> (kube::Client, ApiServer) {
    let (service, server) = service();
    (kube::Client::new(service, "default"), server)
}

impl ApiServer {
    /// The next request, its body read whole.
    pub(crate) async fn next(&mut self) -> Call {
        let (request, respond) = tokio::time::timeout(PATIENCE, self.0.next_request())
            .await
            .expect("the client sends another request")
            .expect("the client is still alive");
        let (parts, body) = request.into_parts();
        let body = body.collect().await.expect("the request body reads").to_bytes();
        Call { parts, body, respond }
    }

    /// Asserts that the client sends nothing for `quiet` (paused time: no real wait).
    pub(crate) async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(quiet, self.0.next_request()).await {
            panic!("expected no request for {quiet:?}, got {} {}", request.method(), request.uri());
        }
    }
}

/// One request, waiting for its answer. Dropping it unanswered fails the request as a closed
/// connection would; keeping it unanswered is a hung connection.
pub(crate) struct Call {
    pub(crate) parts: http::request::Parts,
    body: Bytes,
    respond: SendResponse<Response<MockBody>>,
}

impl Call {
    /// Asserts the method, the path and the query parameters, in any order (kube writes
    /// `?&force=true&fieldManager=…`; the order means nothing to the API server).
    #[track_caller]
    pub(crate) fn expect(&self, method: &str, path: &str, query: &[(&str, &str)]) -> &Self {
        let uri = &self.parts.uri;
        // kube's parameters here are plain words: no percent-decoding needed.
        let mut sent: Vec<(&str, &str)> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .collect();
        sent.sort_unstable();
        let mut expected = query.to_vec();
        expected.sort_unstable();
        assert_eq!(
            (self.parts.method.as_str(), uri.path(), sent),
            (method, path, expected),
            "request {} {uri}",
            self.parts.method
        );
        self
    }

    /// A request header, `""` when absent.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The body as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }

    /// Answers with `body` as JSON.
    pub(crate) fn respond_json(self, status: u16, body: &serde_json::Value) {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.respond_bytes(status, "application/json", bytes);
    }

    /// Answers with `body` as it is, in `content_type`.
    pub(crate) fn respond_bytes(self, status: u16, content_type: &str, body: impl Into<Bytes>) {
        let body = http_body_util::Full::new(body.into()).map_err(|never| match never {}).boxed_unsync();
        self.respond_body(status, content_type, body);
    }

    /// Fails the request with a `Status` as kube-apiserver writes it (`reason` such as
    /// `NotFound`, `Conflict`, `AlreadyExists`, `TooManyRequests`, `InternalError`).
    pub(crate) fn respond_status(self, code: u16, reason: &str) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{reason} (mock)"), "reason": reason, "code": code,
        });
        self.respond_json(code, &status);
    }

    /// Answers with a body the test streams a chunk at a time, or fails midway with an
    /// error, through the sender; dropping the sender ends the body.
    pub(crate) fn respond_stream(
        self,
        status: u16,
        content_type: &str,
    ) -> mpsc::UnboundedSender<Result<Bytes, BoxError>> {
        let (sender, chunks) = mpsc::unbounded::<Result<Bytes, BoxError>>();
        let frames = futures::StreamExt::map(chunks, |chunk| chunk.map(Frame::data));
        self.respond_body(status, content_type, StreamBody::new(frames).boxed_unsync());
        sender
    }

    /// Fails the request as a connection reset before any answer does.
    pub(crate) fn drop_connection(self) {
        self.respond.send_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    }

    fn respond_body(self, status: u16, content_type: &str, body: MockBody) {
        let response =
            Response::builder().status(status).header(CONTENT_TYPE, content_type).body(body).expect("a response");
        self.respond.send_response(response);
    }
}
