//! Helpers shared by the simulator tests.
#![allow(dead_code)]

use std::path::PathBuf;

use kube::Client;
use serde_json::Value;

/// Directory of the test fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// A raw request through the kube client; returns the JSON body or the API error.
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Value, kube::Error> {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        b = b.header("content-type", "application/json");
    }
    let body = body.map(|v| serde_json::to_vec(&v).expect("serializable")).unwrap_or_default();
    client.request::<Value>(b.body(body).expect("valid request")).await
}

/// HTTP status code of an API error (panics for other errors).
pub fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The simulator tests run only against the simulator.
pub async fn sim_env() -> sidecar_watch_e2e::harness::TestEnv {
    sidecar_watch_e2e::harness::TestEnv::start_simulator(Default::default()).await.expect("simulator starts")
}
