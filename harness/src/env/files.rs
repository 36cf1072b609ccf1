//! Manifest and kubeconfig files: YAML documents parsed, a kubeconfig's server read or
//! redirected, a client built from one.

use std::path::Path;

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

/// Builds a kube client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<Client> {
    let err = |message: String| HarnessError::Kubeconfig { path: path.to_path_buf(), message };
    let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(Client::try_from(cfg)?)
}
