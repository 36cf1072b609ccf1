//! Connecting to a cluster the way kubectl does: `--kubeconfig` and `--context` when given,
//! else `$KUBECONFIG`, `~/.kube/config`, then the in-cluster service account. Shared by
//! `run` and the live `audit`.

use std::path::Path;

use anyhow::Context;

/// The `User-Agent` of every API request, so that API server audit logs (and the e2e
/// suite's RBAC check) can tell the operator's calls apart.
pub const USER_AGENT: &str = concat!("sidecar-watch/", env!("CARGO_PKG_VERSION"));

/// The client configuration for `kubeconfig`/`context`, else inferred.
pub(crate) async fn client_config(kubeconfig: Option<&Path>, context: Option<&str>) -> anyhow::Result<kube::Config> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
    let mut config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}: cannot read the kubeconfig", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("--kubeconfig {}: unusable", path.display()))?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("--context {context}: not usable from $KUBECONFIG or ~/.kube/config"))?,
        (None, None) => {
            kube::Config::infer().await.context("no Kubernetes configuration (kubeconfig or in-cluster)")?
        }
    };
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(USER_AGENT)));
    Ok(config)
}
