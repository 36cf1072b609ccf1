//! Manifest and kubeconfig files: YAML documents parsed, a kubeconfig's server read or
//! redirected, a client built from one.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::Value;

use super::*;

/// Parses every YAML document of a manifest file (empty documents are skipped).
pub fn read_manifests(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|source| HarnessError::Io { path: path.to_path_buf(), source })?;
    read_manifests_str(&text, path)
}

/// Parses every YAML document of `text` (empty documents are skipped); `origin` names it in
/// errors.
pub fn read_manifests_str(text: &str, origin: &Path) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(de)
            .map_err(|e| HarnessError::Manifest { path: origin.to_path_buf(), message: e.to_string() })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The server URL of a kubeconfig's current context.
pub fn kubeconfig_server(path: &Path) -> Result<String> {
    let err = |message: String| HarnessError::Kubeconfig { path: path.to_path_buf(), message };
    let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let context = kc.current_context.clone().unwrap_or_default();
    let cluster = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| err(format!("no context {context:?}")))?;
    kc.clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| err(format!("no server for cluster {cluster:?}")))
}

/// Copies the kubeconfig `src` to `dst` with every cluster's server set to `server` (the
/// same credentials and CA: a proxy in front of the same API server).
pub fn kubeconfig_via(src: &Path, dst: &Path, server: &str) -> Result<()> {
    let err = |path: &Path, message: String| HarnessError::Kubeconfig { path: path.to_path_buf(), message };
    let mut kc = Kubeconfig::read_from(src).map_err(|e| err(src, e.to_string()))?;
    for cluster in kc.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
        cluster.server = Some(server.to_string());
    }
    let text = serde_norway::to_string(&kc).map_err(|e| err(dst, e.to_string()))?;
    std::fs::write(dst, text).map_err(|source| HarnessError::Io { path: dst.to_path_buf(), source })
}

/// How long the tests' kube client waits for a connection to the API server.
pub const API_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the tests' kube client waits for the next bytes of a response, or to write a
/// request: an API call of a test never waits longer on a server that stopped answering.
/// Just over the 290 s a watch of the benchmark asks the server for (bench/src/latency.rs;
/// kube-rs's watcher asks for the same): a watch must end sooner on the server's side, or
/// it fails here between two quiet events. A test's whole-run bound stops a hang sooner.
pub const API_READ_TIMEOUT: Duration = Duration::from_secs(295);

/// Builds a kube client from a kubeconfig file, with the harness' bounds
/// ([`API_CONNECT_TIMEOUT`], [`API_READ_TIMEOUT`]): kube's default waits for ever for a
/// response.
pub async fn client_from(path: &Path) -> Result<Client> {
    client_with_timeouts(path, API_CONNECT_TIMEOUT, API_READ_TIMEOUT).await
}

/// [`client_from`] with other bounds (the harness' own tests of them).
pub(crate) async fn client_with_timeouts(path: &Path, connect: Duration, read: Duration) -> Result<Client> {
    let err = |message: String| HarnessError::Kubeconfig { path: path.to_path_buf(), message };
    let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    cfg.connect_timeout = Some(connect);
    cfg.read_timeout = Some(read);
    cfg.write_timeout = Some(read);
    // Without it, the time a pooled connection sat idle counts against the next response's
    // read timeout (kube-client 5's `Config::read_timeout` documentation).
    cfg.reset_reader_on_write = true;
    Ok(Client::try_from(cfg)?)
}
