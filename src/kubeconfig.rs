//! Connecting to a cluster the way kubectl does: `--kubeconfig` and `--context` when given,
//! else `$KUBECONFIG`, `~/.kube/config`, then the in-cluster service account. Shared by
//! `run` and the live `audit`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// The `User-Agent` of every API request, so that API server audit logs (and the e2e
/// suite's RBAC check) can tell the operator's calls apart.
pub const USER_AGENT: &str = concat!("sidecar-watch/", env!("CARGO_PKG_VERSION"));

/// How long a request other than a watch may go without an answer, by default:
/// kube-apiserver ends a request it has not answered within its own `--request-timeout` (60 s
/// by default) with a 504, so an answer still missing 10 s after that is not coming (a
/// connection a proxy or a half-dead peer holds open). kube's own default is no limit.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(70);

/// How long a watch may go without a byte. kube-runtime asks kube-apiserver to end every
/// watch after 290 s (its `timeoutSeconds`), so a healthy watch, however quiet, never waits
/// this long for a read; a list page or the start of a watch that hangs is cut here.
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The client configuration for `kubeconfig`/`context`, else inferred, whose requests wait
/// at most `request_timeout` for each read of their answer (counted from the request's
/// sending, not from when its pooled connection went idle). Watches need
/// [`for_watches`].
pub(crate) async fn client_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    request_timeout: Duration,
) -> anyhow::Result<kube::Config> {
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
    config.read_timeout = Some(request_timeout);
    config.reset_reader_on_write = true;
    Ok(config)
}

/// `config` for the watches: reads bounded by [`WATCH_READ_TIMEOUT`] rather than the
/// request timeout, which a quiet watch would outlast.
pub(crate) fn for_watches(config: &kube::Config) -> kube::Config {
    let mut watches = config.clone();
    watches.read_timeout = Some(WATCH_READ_TIMEOUT);
    watches
}
