//! The operator (`sidecar-watch run`): watches, reconcile, timers, status, leadership.
//!
//! Layout: [`watch`] turns API events into inputs, [`reconciler`] applies them to the
//! [`index`] (the pure core) and schedules re-evaluations, [`status`] writes policy status,
//! [`leader`] runs the election; metrics, Events and HTTP live in their own crate modules.

pub mod index;
pub mod leader;
pub mod reconciler;
pub mod shard;
pub mod status;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use index::Index;
use leader::{Election, LeaseConfig};
use shard::Shard;

/// How long SIGTERM waits for queued Events, then for the last status write.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);

pub use crate::logging::LogFormat;

/// Arguments of `sidecar-watch run`. Every flag can also be set from its environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig file to connect with [default: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account].
    #[arg(long, env = "SIDECAR_WATCH_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context to use [default: the kubeconfig's current-context].
    #[arg(long, env = "SIDECAR_WATCH_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIDECAR_WATCH_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Namespaces to watch Pods and SidecarPolicies in (repeatable or comma-separated); all
    /// namespaces when absent.
    #[arg(long = "namespace", env = "SIDECAR_WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Elect a leader among replicas on a Lease; only the leader publishes Events and status
    /// and exports alert series.
    #[arg(long, env = "SIDECAR_WATCH_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the Lease (a shard suffix `-N` is added when sharded).
    #[arg(long, env = "SIDECAR_WATCH_LEASE_NAME", default_value = "sidecar-watch")]
    pub lease_name: String,
    /// Namespace of the Lease [default: $POD_NAMESPACE, else "default"].
    #[arg(long, env = "SIDECAR_WATCH_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration: a standby takes over this long after the leader stops renewing.
    #[arg(long, env = "SIDECAR_WATCH_LEASE_DURATION", default_value = "15s", value_parser = parse_duration_arg)]
    pub lease_duration: Duration,
    /// This replica's identity in the election [default: $POD_NAME, else the hostname].
    #[arg(long, env = "SIDECAR_WATCH_IDENTITY")]
    pub identity: Option<String>,
    /// Minimum time between two status writes of one policy.
    #[arg(long, env = "SIDECAR_WATCH_STATUS_INTERVAL", default_value = "5s", value_parser = parse_duration_arg)]
    pub status_interval: Duration,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "SIDECAR_WATCH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Number of shards Pods are split into (one replica, or one leader, per shard).
    #[arg(long, env = "SIDECAR_WATCH_SHARD_COUNT", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub shard_count: u32,
    /// This replica's shard [default: the ordinal at the end of the identity, e.g. a
    /// StatefulSet Pod name].
    #[arg(long, env = "SIDECAR_WATCH_SHARD_INDEX")]
    pub shard_index: Option<u32>,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).map_err(|e| e.to_string())
}

impl RunArgs {
    fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("sidecar-watch-{}", std::process::id()))
    }

    fn shard(&self, identity: &str) -> anyhow::Result<Shard> {
        if self.shard_count <= 1 {
            return Ok(Shard::default());
        }
        let index = match self.shard_index {
            Some(i) => i,
            None => shard::ordinal_of(identity)
                .with_context(|| format!("--shard-index is not set and identity {identity:?} has no ordinal suffix"))?,
        };
        anyhow::ensure!(
            index < self.shard_count,
            "--shard-index {index} must be below --shard-count {}",
            self.shard_count
        );
        Ok(Shard { index, count: self.shard_count })
    }
}

/// Runs the operator until SIGTERM or SIGINT.
pub fn run_blocking(args: RunArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_format);
    if let Err(e) = crate::memory::disable_transparent_huge_pages() {
        tracing::warn!(error = %e, "cannot opt out of transparent huge pages; RSS may run higher");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(run(args))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The `User-Agent` of every API request, so that API server audit logs (and the e2e
/// suite's RBAC check) can tell the operator's calls apart.
pub const USER_AGENT: &str = concat!("sidecar-watch/", env!("CARGO_PKG_VERSION"));

/// A client from `--kubeconfig`/`--context`, else inferred (KUBECONFIG, ~/.kube/config,
/// in-cluster).
async fn client(args: &RunArgs) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: args.context.clone(), ..KubeConfigOptions::default() };
    let mut config = match (&args.kubeconfig, &args.context) {
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
    config.headers.push((axum::http::header::USER_AGENT, axum::http::HeaderValue::from_static(USER_AGENT)));
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// The operator.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let identity = args.identity();
    let shard = args.shard(&identity)?;
    let client = client(&args).await?;
    tracing::info!(%identity, shard = shard.index, shards = shard.count, namespaces = ?args.namespaces, "starting sidecar-watch");

    let index = Arc::new(Index::new());
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();

    let server = tokio::spawn(crate::server::serve(args.metrics_addr, index.clone(), metrics.clone(), {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    }));

    let election = if args.leader_elect {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let name =
            if shard.count > 1 { format!("{}-{}", args.lease_name, shard.index) } else { args.lease_name.clone() };
        Election::start(
            client.clone(),
            LeaseConfig { name, namespace, identity: identity.clone(), duration: args.lease_duration },
        )
        .await?
    } else {
        Election::always_leader()
    };

    let (events, publisher) =
        crate::events::spawn_publisher(client.clone(), identity.clone(), metrics.clone(), index.clone());
    let status_dirty = Arc::new(Notify::new());
    let status_writer = status::StatusWriter {
        client: client.clone(),
        index: index.clone(),
        metrics: metrics.clone(),
        interval: args.status_interval,
        dirty: status_dirty.clone(),
        shard,
    };
    let status_task = tokio::spawn(status_writer.run(shutdown.clone()));
    tokio::spawn(crate::memory::trim_when_idle(shutdown.clone()));

    let scope = watch::Scope { namespaces: args.namespaces.clone(), shard };
    // Bounded: a flood of Pod updates slows the watchers down instead of growing memory.
    let (tx, rx) = mpsc::channel(8192);
    let watchers = watch::spawn_watchers(client.clone(), scope.clone(), tx, metrics.clone());
    let reconciler = reconciler::Reconciler {
        index: index.clone(),
        metrics: metrics.clone(),
        events,
        initial_lists: scope.initial_lists(),
        leader: election.leader.clone(),
        status_dirty,
    };
    let reconcile_task = tokio::spawn(reconciler.run(rx, shutdown.clone()));

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        result = server => {
            shutdown.cancel();
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e.into()),
            };
        }
    }
    shutdown.cancel();
    for task in watchers {
        task.abort();
    }
    let _ = reconcile_task.await;
    // The reconciler held the only Event sink: the publisher now drains what is queued (as
    // leader still) and ends. Bounded, so that an unreachable API cannot hold up the exit.
    if tokio::time::timeout(SHUTDOWN_FLUSH, publisher).await.is_err() {
        tracing::warn!("queued Events not all published within {SHUTDOWN_FLUSH:?}; the next leader reconciles them");
    }
    // The status writer flushes once more before it returns.
    let _ = tokio::time::timeout(SHUTDOWN_FLUSH, status_task).await;
    let leader = election.leader.clone();
    index.set_leader(false);
    election.step_down(leader).await;
    tracing::info!("stopped");
    Ok(())
}
