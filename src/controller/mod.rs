//! The operator (`sidecar-watch run`): watches, reconcile, timers, status, leadership.
//!
//! The wiring: [`watch`] turns API events into inputs, [`reconciler`] applies them to the
//! [`Index`] and schedules re-evaluations, [`status`] writes policy status, [`leader`] runs
//! the election. This module starts them with the Event publisher and the HTTP server,
//! around one [role](crate::leadership) signal.

pub(crate) mod create_failures;
mod initial_list;
mod leader;
mod pod_protobuf;
pub(crate) mod queue;
pub(crate) mod reconciler;
pub mod status;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::fair_reader::{Lookup, Read, Reader};
use crate::index::shard::{self, Shard};
use crate::index::Index;
use crate::metrics::Metrics;
use leader::{Election, LeaseConfig};

/// How long SIGTERM waits for queued Events, then for the last status write.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);

use crate::logging::LogFormat;

/// Arguments of `sidecar-watch run`. Every flag can also be set from its environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig file to connect with [default: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account].
    #[arg(long, env = "SIDECAR_WATCH_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context to use [default: the kubeconfig's current-context].
    #[arg(long, env = "SIDECAR_WATCH_CONTEXT", value_name = "NAME")]
    context: Option<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIDECAR_WATCH_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Serve /metrics over TLS and only to bearer tokens that a TokenReview authenticates and
    /// a SubjectAccessReview allows to `get` the non-resource URL /metrics (/healthz and
    /// /readyz stay open). `false`: plain HTTP without authentication, for local runs.
    #[arg(long, env = "SIDECAR_WATCH_METRICS_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    metrics_secure: bool,
    /// Directory with `tls.crt` and `tls.key` for the metrics listener, reloaded when they
    /// change [default: a self-signed certificate made at start].
    #[arg(long, env = "SIDECAR_WATCH_METRICS_CERT_DIR")]
    metrics_cert_dir: Option<std::path::PathBuf>,
    /// Metric families not to export: comma-separated regular expressions, each matching a
    /// whole family name (e.g. `sidecar_container_.*`); exclusive with --metric-allowlist.
    #[arg(long, env = "SIDECAR_WATCH_METRIC_DENYLIST", value_delimiter = ',', conflicts_with = "metric_allowlist")]
    metric_denylist: Vec<String>,
    /// The only metric families to export (same form as --metric-denylist).
    #[arg(long, env = "SIDECAR_WATCH_METRIC_ALLOWLIST", value_delimiter = ',')]
    metric_allowlist: Vec<String>,
    /// Namespace label keys (comma-separated, at most 16) copied onto `sidecar_alerts` and
    /// `sidecar_info` as `label_<key>`, every character outside [a-zA-Z0-9_] made `_`
    /// (e.g. `team` gives `label_team`), empty where a namespace lacks the label; values are
    /// cut to 63 bytes.
    #[arg(long, env = "SIDECAR_WATCH_NAMESPACE_LABELS", value_delimiter = ',', value_name = "KEY,...")]
    namespace_labels: Vec<String>,
    /// Namespaces to watch Pods and SidecarPolicies in (repeatable or comma-separated); all
    /// namespaces when absent.
    #[arg(long = "namespace", env = "SIDECAR_WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Elect a leader among replicas on a Lease; only the leader publishes Events and status
    /// and exports alert series.
    #[arg(long, env = "SIDECAR_WATCH_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the Lease (a shard suffix `-N` is added when sharded).
    #[arg(long, env = "SIDECAR_WATCH_LEASE_NAME", default_value = "sidecar-watch")]
    lease_name: String,
    /// Namespace of the Lease [default: $POD_NAMESPACE, else "default"].
    #[arg(long, env = "SIDECAR_WATCH_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Lease duration: a standby takes over this long after the leader stops renewing.
    #[arg(long, env = "SIDECAR_WATCH_LEASE_DURATION", default_value = "15s", value_parser = parse_duration_arg)]
    lease_duration: Duration,
    /// A leader that has not renewed its Lease for this long stops leading at once and exits
    /// non-zero, so that two replicas never both lead [default: 10s, or two thirds of a
    /// shorter --lease-duration].
    #[arg(long, env = "SIDECAR_WATCH_LEASE_RENEW_DEADLINE", value_parser = parse_duration_arg)]
    lease_renew_deadline: Option<Duration>,
    /// This replica's identity in the election [default: $POD_NAME, else the hostname].
    #[arg(long, env = "SIDECAR_WATCH_IDENTITY")]
    identity: Option<String>,
    /// Minimum time between two status writes of one policy.
    #[arg(long, env = "SIDECAR_WATCH_STATUS_INTERVAL", default_value = "5s", value_parser = parse_duration_arg)]
    status_interval: Duration,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "SIDECAR_WATCH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Sidecars evaluated per Pod: a Pod with more is evaluated for the first ones and
    /// reported as `sidecar-sprawl`, so one tenant's Pod cannot cost more than this many.
    #[arg(long, env = "SIDECAR_WATCH_MAX_SIDECARS_PER_POD", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_sidecars_per_pod: u32,
    /// `sidecar_alerts` series one namespace may export; the rest are not exported (policy
    /// status still counts them), so one tenant cannot flood the scrape.
    #[arg(long, env = "SIDECAR_WATCH_MAX_SERIES_PER_NAMESPACE", default_value_t = crate::metrics::DEFAULT_MAX_SERIES_PER_NAMESPACE,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_series_per_namespace: u32,
    /// SidecarPolicies evaluated per namespace: the oldest ones (by creation, then name);
    /// the rest get `Ready=False`, reason `TooManyPolicies`, and are not evaluated, so one
    /// tenant cannot make each of its Pod updates cost more than this many evaluations.
    #[arg(long, env = "SIDECAR_WATCH_MAX_POLICIES_PER_NAMESPACE", default_value_t = crate::index::DEFAULT_MAX_POLICIES_PER_NAMESPACE as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_policies_per_namespace: u32,
    /// Number of shards the workloads, with all their Pods, are split into (one replica, or one
    /// leader, per shard); at most 1024, the entries the CRD's `status.shards` holds.
    #[arg(long, env = "SIDECAR_WATCH_SHARD_COUNT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=crate::api::bounds::MAX_SHARDS as i64))]
    shard_count: u32,
    /// This replica's shard [default: the ordinal at the end of the identity, e.g. a
    /// StatefulSet Pod name].
    #[arg(long, env = "SIDECAR_WATCH_SHARD_INDEX")]
    shard_index: Option<u32>,
    /// How watchers get their initial state: `streaming` lists (a watch with
    /// `sendInitialEvents`, served from the API server's watch cache one object at a time:
    /// Kubernetes 1.27+ with the WatchList feature gate, on by default from 1.34),
    /// `paginated` lists (Pods in pages of 500 read from etcd), or `auto` (streaming unless
    /// the server reports a version before 1.27). A watcher whose server rejects streaming
    /// lists falls back to paginated lists.
    #[arg(long, env = "SIDECAR_WATCH_INITIAL_LIST", value_enum, default_value = "auto")]
    pub(crate) initial_list: initial_list::InitialList,
    /// How long a streaming list may take to end its initial state before the watcher gives
    /// up on it and lists in pages: a server or proxy that accepts the watch but ignores
    /// `sendInitialEvents` never ends it. The default is ten times the slowest start measured
    /// (400,000 Pods: docs/benchmarks.md#how-far-does-one-replica-go-and-what-does-sharding-change).
    #[arg(long, env = "SIDECAR_WATCH_INITIAL_STATE_DEADLINE", default_value = "5m", value_parser = parse_duration_arg)]
    initial_state_deadline: Duration,
    /// How long an API request other than a watch may wait for its answer before it fails
    /// (and is retried or counted as its caller does): a Lease, Event, status or read that
    /// hangs must not hold up the rest. The default is kube-apiserver's own 60 s plus 10 s.
    #[arg(long, env = "SIDECAR_WATCH_REQUEST_TIMEOUT", default_value = "70s", value_parser = parse_request_timeout)]
    request_timeout: Duration,
    /// How Pods are read: `protobuf` (kube-apiserver's own encoding, far less of the API
    /// server's CPU for a start than JSON:
    /// docs/benchmarks.md#what-does-the-operator-cost-the-api-server; a server that answers
    /// in JSON is read as JSON) or `json`.
    #[arg(long, env = "SIDECAR_WATCH_POD_ENCODING", value_enum, default_value = "protobuf")]
    pub(crate) pod_encoding: pod_protobuf::PodEncoding,
    /// Runtime worker threads. Not one per core of the node: every figure of
    /// docs/benchmarks.md (Pod updates, a `/metrics` render beside them) was measured on two,
    /// and each more worker holds allocator pages and a stack of its own (tokio's default on
    /// a 64-core node would be 64 workers; what one costs:
    /// docs/benchmarks.md#figures-the-codes-comments-cite).
    #[arg(long, env = "SIDECAR_WATCH_WORKER_THREADS", default_value_t = DEFAULT_WORKER_THREADS,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: u16,
}

/// [`RunArgs::worker_threads`]' default.
const DEFAULT_WORKER_THREADS: u16 = 2;

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).map_err(|e| e.to_string())
}

/// A request timeout from 1 s (less cuts answers a loaded API server gives in time) to 10 m.
fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration_arg(text)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&timeout) {
        return Err(format!("{text}: must be from 1s to 10m"));
    }
    Ok(timeout)
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
    // Said after the first line (where /metrics is), which must come first.
    let huge_pages = crate::memory::disable_transparent_huge_pages().err().map(|e| e.to_string());
    crate::memory::purge_freed_pages_at_once();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .enable_all()
        .on_thread_park(crate::memory::on_thread_idle)
        .build()
        .context("starting the runtime")?;
    // On a worker, not this thread: workers hand freed memory back when they go idle
    // (`memory::on_thread_idle`); the thread that blocks on the runtime never does.
    let result =
        runtime.block_on(async { tokio::spawn(run(args, huge_pages)).await.context("the operator's task failed")? });
    // A render still blocked on a client that does not read must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The operator; `huge_pages` says why it could not opt out of transparent huge pages.
async fn run(args: RunArgs, huge_pages: Option<String>) -> anyhow::Result<()> {
    let identity = args.identity();
    let shard = args.shard(&identity)?;
    // Checked before anything starts, so that a mistyped key stops the operator at once.
    let namespace_labels = crate::metrics::NamespaceLabels::new(&args.namespace_labels)?;
    let renew_deadline = leader::LeaseTimings::new(args.lease_duration, args.lease_renew_deadline)
        .map_err(anyhow::Error::msg)?
        .renew_deadline;
    // Bound first, so that the first line logged says where /metrics is (the bound port of
    // `--metrics-addr 127.0.0.1:0`) and how to read it.
    let listener = crate::server::bind(args.metrics_addr).await?;
    let bound = listener.local_addr().context("the metrics listener has no address")?;
    tracing::info!(metrics_addr = %bound, "{}", crate::server::how_to_read(bound, args.metrics_secure));
    if let Some(error) = huge_pages {
        tracing::warn!(%error, "cannot opt out of transparent huge pages; RSS may run higher");
    }
    let (kubeconfig, context) = (args.kubeconfig.as_deref(), args.context.as_deref());
    let config = crate::kubeconfig::client_config(kubeconfig, context, args.request_timeout).await?;
    // Two clients, so that a hung request is cut at --request-timeout while a quiet watch
    // is not: every request but the watches' goes through `client`. Both carry the watches'
    // layer (it rewrites only the Pod watch's GETs), so that both are one type and one copy
    // of kube's client code ("One client" in docs/benchmarks.md).
    let client = args.pod_encoding.client(config.clone()).context("building the Kubernetes client")?;
    let watch_config = crate::kubeconfig::for_watches(&config);
    let watch_client = args.pod_encoding.client(watch_config).context("building the Kubernetes client")?;
    tracing::info!(%identity, shard = shard.index, shards = shard.count, namespaces = ?args.namespaces, "starting sidecar-watch");

    let index =
        Arc::new(Index::with_limits(args.max_sidecars_per_pod as usize, args.max_policies_per_namespace as usize));
    let families = crate::metrics::FamilyFilter::new(&args.metric_allowlist, &args.metric_denylist)?;
    let metrics = Metrics::with_options(shard.index, args.max_series_per_namespace)
        .with_families(families)
        .with_namespace_labels(namespace_labels);
    let shutdown = CancellationToken::new();
    let (role_tx, role) = crate::leadership::channel();
    // Cancelled when this replica led and missed its renew deadline: it must exit.
    let lease_lost = CancellationToken::new();

    let security = if args.metrics_secure {
        crate::server::Security::Secure { cert_dir: args.metrics_cert_dir.clone(), client: client.clone() }
    } else {
        crate::server::Security::Plain
    };
    let server =
        tokio::spawn(crate::server::serve_on(listener, security, index.clone(), metrics.clone(), role.clone(), {
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
        let lease =
            LeaseConfig { name, namespace, identity: identity.clone(), duration: args.lease_duration, renew_deadline };
        tokio::select! {
            election = Election::start_retrying(config, lease, role_tx.clone(), lease_lost.clone()) => election?,
            _ = shutdown_signal() => {
                tracing::info!("stopped before the Lease was reached");
                return Ok(());
            }
        }
    } else {
        Election::always_leader(&role_tx)
    };

    let (events, publisher) =
        crate::events::spawn_publisher(client.clone(), identity.clone(), metrics.clone(), index.clone(), role.clone());
    let status_dirty = Arc::new(Notify::new());
    let status_writer = status::StatusWriter {
        client: client.clone(),
        index: index.clone(),
        role: role.clone(),
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
    let strategy = initial_list::resolve(args.initial_list, &client).await;
    let plan = initial_list::Plan { strategy, deadline: args.initial_state_deadline };
    let (controllers, create_reads) = spawn_readers(&client, &metrics, &tx);
    let watchers = watch::spawn_watchers(watch_client, scope.clone(), plan, tx, metrics.clone(), index.clone());
    let reconciler = reconciler::Reconciler {
        index: index.clone(),
        metrics: metrics.clone(),
        events,
        initial_lists: scope.initial_lists(),
        role: role_tx.clone(),
        status_dirty,
        controllers,
        create_reads,
        shard,
        first_reads_wait: reconciler::FIRST_READS_WAIT,
    };
    let reconcile_task = tokio::spawn(reconciler.run(rx, shutdown.clone()));

    let mut lost = false;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = lease_lost.cancelled() => {
            tracing::error!("leadership lost without stepping down; exiting so that a restart rejoins the election");
            lost = true;
        }
        result = server => {
            shutdown.cancel();
            return result?;
        }
    }
    shutdown.cancel();
    for task in watchers {
        task.abort();
    }
    if lost {
        // A standby already (the role changed before this): nothing may be written, and the
        // API is unreachable anyway, so there is nothing to flush or release. Exit now.
        reconcile_task.abort();
        publisher.abort();
        status_task.abort();
        anyhow::bail!("the Lease was not renewed within the renew deadline ({renew_deadline:?})");
    }
    let _ = reconcile_task.await;
    // The reconciler held the only Event sink: the publisher now drains what is queued (as
    // leader still) and ends. Bounded, so that an unreachable API cannot hold up the exit;
    // aborted past that, so that nothing it still sends lands after the Lease is released.
    let mut publisher = publisher;
    if tokio::time::timeout(SHUTDOWN_FLUSH, &mut publisher).await.is_err() {
        publisher.abort();
        tracing::warn!("queued Events not all published within {SHUTDOWN_FLUSH:?}; the next leader reconciles them");
    }
    // The status writer flushes once more before it returns.
    let mut status_task = status_task;
    if tokio::time::timeout(SHUTDOWN_FLUSH, &mut status_task).await.is_err() {
        status_task.abort();
    }
    election.step_down().await;
    tracing::info!("stopped");
    Ok(())
}

/// The reconciler's readers, whose answers join its `inputs` in their namespace's turn: of
/// candidate blocked rollouts' controllers ([`crate::rollout_controller`]) and of the objects
/// `FailedCreate` Events name ([`create_failures`]).
pub(super) fn spawn_readers(
    client: &kube::Client,
    metrics: &Metrics,
    inputs: &mpsc::Sender<queue::Change>,
) -> (Reader<crate::index::RolloutRead>, Reader<crate::injection_failure::Involved>) {
    let (limit, queued) = ("rollout-controller-reads", crate::index::MAX_WORKLOADS);
    let controllers = spawn_reader(client, metrics, limit, queued, inputs, queue::Change::Controller);
    let (limit, queued) = (create_failures::READ_LIMIT, create_failures::MAX_EVENTS);
    (controllers, spawn_reader(client, metrics, limit, queued, inputs, queue::Change::FailedCreateRead))
}

/// A reader of `L`s whose answers, as `change`, join the reconciler's `inputs`.
fn spawn_reader<L: Lookup>(
    client: &kube::Client,
    metrics: &Metrics,
    limit: &'static str,
    queued: usize,
    inputs: &mpsc::Sender<queue::Change>,
    change: fn(Read<L>) -> queue::Change,
) -> Reader<L> {
    let (answers, mut answered) = mpsc::channel(256);
    let reader = Reader::spawn(client.clone(), metrics.clone(), limit, queued, answers);
    let inputs = inputs.clone();
    tokio::spawn(async move {
        while let Some(read) = answered.recv().await {
            if inputs.send(change(read)).await.is_err() {
                return;
            }
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// `sidecar-watch run` with nothing but its flags.
    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        args: super::RunArgs,
    }

    fn namespace_labels(flag: &str) -> anyhow::Result<Vec<String>> {
        let run = Run::try_parse_from(["sidecar-watch", "--namespace-labels", flag])?;
        let labels = crate::metrics::NamespaceLabels::new(&run.args.namespace_labels)?;
        Ok(labels.names().map(str::to_string).collect())
    }

    #[test]
    fn namespace_labels_flag_is_a_checked_comma_separated_list() {
        assert_eq!(
            namespace_labels("team,app.kubernetes.io/part-of").expect("valid"),
            ["label_team", "label_app_kubernetes_io_part_of"]
        );
        assert_eq!(
            namespace_labels("team,example.com/a-b,example-com/a.b").expect_err("refused").to_string(),
            "--namespace-labels: \"example.com/a-b\" and \"example-com/a.b\" would both be exported as \
             label_example_com_a_b"
        );
        assert_eq!(
            namespace_labels("team,Team/x").expect_err("refused").to_string(),
            "--namespace-labels: \"Team/x\" is not a Kubernetes label key: the prefix \"Team\" must be a DNS \
             subdomain (lowercase letters, digits, '-' and '.', at most 253)"
        );
    }
}
