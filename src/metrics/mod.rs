//! Prometheus metrics.
//!
//! The operator's own metrics (histograms, counters) live in a `prometheus` registry. The
//! per-Pod series (`sidecar_alerts`, `sidecar_container_*`, `sidecar_policy_pods`) are
//! rendered at scrape time straight from the [`Index`] and streamed, one segment at a
//! time, so there is no label map per series and no second copy of every series, not even
//! as one response body: a Pod that is deleted or no longer selected simply has no series
//! at the next scrape.

mod identity;
mod info;
mod namespace_labels;
mod pods;
mod resources;
mod undecodable;
mod writer;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::index::Index;

pub(crate) use namespace_labels::CUT_LIMIT as NAMESPACE_LABEL_CUT_LIMIT;
pub use namespace_labels::{
    label_name, NamespaceLabels, MAX_KEYS as MAX_NAMESPACE_LABELS, MAX_VALUE_BYTES as MAX_NAMESPACE_LABEL_BYTES,
};
#[cfg(any(test, feature = "test-support"))]
pub use pods::render_index;
pub(crate) use pods::IndexRender;
pub(crate) use undecodable::Undecodables;

/// Default of `--max-series-per-namespace`.
pub(crate) const DEFAULT_MAX_SERIES_PER_NAMESPACE: u32 = 10_000;

/// Which metric families are exported (`--metric-allowlist`/`--metric-denylist`, with
/// kube-state-metrics' semantics: each entry is a regular expression that must match a
/// whole family name, and the two lists exclude each other).
#[derive(Clone, Debug, Default)]
pub struct FamilyFilter {
    allow: Option<regex::RegexSet>,
    deny: Option<regex::RegexSet>,
}

impl FamilyFilter {
    /// A filter from the two lists (empty: not set).
    pub fn new(allow: &[String], deny: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            allow.is_empty() || deny.is_empty(),
            "--metric-allowlist and --metric-denylist are mutually exclusive"
        );
        let set = |list: &[String], flag: &str| -> anyhow::Result<Option<regex::RegexSet>> {
            if list.is_empty() {
                return Ok(None);
            }
            for entry in list {
                regex::Regex::new(entry)
                    .map_err(|e| anyhow::anyhow!("{flag}: invalid regular expression {entry:?}: {e}"))?;
            }
            let anchored = list.iter().map(|entry| format!("^(?:{entry})$"));
            Ok(Some(regex::RegexSet::new(anchored).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?))
        };
        Ok(FamilyFilter { allow: set(allow, "--metric-allowlist")?, deny: set(deny, "--metric-denylist")? })
    }

    /// Whether the family `name` is exported.
    fn exports(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.is_match(name)) && !self.deny.as_ref().is_some_and(|d| d.is_match(name))
    }
}

/// What a render of the per-Pod families may export.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// `sidecar_alerts` series one namespace may export (`--max-series-per-namespace`).
    pub max_series_per_namespace: u32,
    pub families: FamilyFilter,
    /// The Namespace labels copied onto the series that carry a sidecar's identity
    /// (`--namespace-labels`).
    pub namespace_labels: NamespaceLabels,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            max_series_per_namespace: DEFAULT_MAX_SERIES_PER_NAMESPACE,
            families: FamilyFilter::default(),
            namespace_labels: NamespaceLabels::default(),
        }
    }
}

/// The operator's own metrics (a `prometheus` registry), and what `/metrics` adds to them
/// from the index.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    options: RenderOptions,
    /// `sidecar_startup_seconds{namespace, container}`.
    pub(crate) startup_seconds: HistogramVec,
    /// `sidecar_watch_reconcile_duration_seconds`.
    pub(crate) reconcile_duration: Histogram,
    /// `sidecar_watch_detection_latency_seconds`.
    pub(crate) detection_latency: Histogram,
    /// `sidecar_watch_reconcile_errors_total`.
    pub(crate) reconcile_errors: IntCounter,
    /// `sidecar_watch_watch_restarts_total`.
    pub(crate) watch_restarts: IntCounter,
    /// `sidecar_watch_events_total{reason, result}`.
    pub(crate) events: IntCounterVec,
    /// `sidecar_watch_pods_tracked`.
    pods_tracked: IntGauge,
    /// `sidecar_watch_leader`.
    leader: IntGauge,
    /// `sidecar_watch_runtime_tasks`: tokio tasks alive in the operator's runtime, so that a
    /// task leak (a watch, connection or timer task that never ends) shows as a slope.
    runtime_tasks: IntGauge,
    /// `sidecar_watch_limited_total{limit}`: times a per-tenant or per-client limit cut work
    /// short or refused a request.
    pub(crate) limited: IntCounterVec,
    /// `sidecar_watch_reviews_total{kind, result}`: TokenReviews and SubjectAccessReviews
    /// sent to the API server for `/metrics` clients.
    pub(crate) reviews: IntCounterVec,
    /// `sidecar_watch_decode_errors_total{kind}`: objects skipped because they cannot be read.
    pub(crate) decode_errors: IntCounterVec,
    /// `sidecar_watch_initial_list{resource, strategy}`: watchers by how they get their
    /// initial state (`streaming` or `paginated` lists); shows the fall back to paginated.
    pub(crate) initial_list: IntGaugeVec,
    /// `sidecar_watch_heap_bytes{kind}` and `sidecar_watch_heap_allocations`: the live heap,
    /// only in a build that counts it (`--features heap-counts`).
    heap: Option<(IntGaugeVec, IntGauge)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, for shard 0 with the default per-namespace limit.
    pub fn new() -> Self {
        Self::with_options(0, DEFAULT_MAX_SERIES_PER_NAMESPACE)
    }

    /// Creates and registers every metric. `shard` labels the per-replica gauges (so that
    /// alerts can tell a shard without a leader); one namespace exports at most
    /// `max_series_per_namespace` `sidecar_alerts` series.
    pub(crate) fn with_options(shard: u32, max_series_per_namespace: u32) -> Self {
        let shard = shard.to_string();
        let registry = Registry::new();
        let latency_buckets = vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
        let startup_seconds = HistogramVec::new(
            HistogramOpts::new("sidecar_startup_seconds", "Time from a sidecar container's start to its first ready")
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]),
            &["namespace", "container"],
        )
        .registered(&registry);
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sidecar_watch_reconcile_duration_seconds",
                "Time to process one change (Pod, policy, namespace or timer)",
            )
            .buckets(latency_buckets.clone()),
        )
        .registered(&registry);
        let detection_latency = Histogram::with_opts(
            HistogramOpts::new(
                "sidecar_watch_detection_latency_seconds",
                "Time from receiving a watch event to alerts and series being updated",
            )
            .buckets(latency_buckets),
        )
        .registered(&registry);
        let reconcile_errors = IntCounter::new(
            "sidecar_watch_reconcile_errors_total",
            "Policy status writes that failed (retried at the next status interval)",
        )
        .registered(&registry);
        let watch_restarts =
            IntCounter::new("sidecar_watch_watch_restarts_total", "Watch streams that failed and were restarted")
                .registered(&registry);
        let events = IntCounterVec::new(
            Opts::new(
                "sidecar_watch_events_total",
                "Kubernetes Events published, by reason and result (ok, error, dropped)",
            ),
            &["reason", "result"],
        )
        .registered(&registry);
        let pods_tracked = IntGauge::with_opts(
            Opts::new("sidecar_watch_pods_tracked", "Pods held in memory").const_label("shard", &shard),
        )
        .registered(&registry);
        let leader = IntGauge::with_opts(
            Opts::new("sidecar_watch_leader", "1 when this replica leads its shard").const_label("shard", &shard),
        )
        .registered(&registry);
        let runtime_tasks = IntGauge::new(
            "sidecar_watch_runtime_tasks",
            "Tokio tasks alive in the operator's runtime (spawned and not yet finished)",
        )
        .registered(&registry);
        let limited = IntCounterVec::new(
            Opts::new(
                "sidecar_watch_limited_total",
                "Times a per-tenant or per-client limit cut work short or refused a request, by limit",
            ),
            &["limit"],
        )
        .registered(&registry);
        let reviews = IntCounterVec::new(
            Opts::new(
                "sidecar_watch_reviews_total",
                "TokenReviews and SubjectAccessReviews sent for /metrics clients, by kind and result",
            ),
            &["kind", "result"],
        )
        .registered(&registry);
        let decode_errors = IntCounterVec::new(
            Opts::new("sidecar_watch_decode_errors_total", "Objects skipped because they cannot be decoded, by kind"),
            &["kind"],
        )
        .registered(&registry);
        let initial_list = IntGaugeVec::new(
            Opts::new(
                "sidecar_watch_initial_list",
                "Watchers by resource and how they get their initial state (streaming or paginated lists)",
            ),
            &["resource", "strategy"],
        )
        .registered(&registry);
        let build_info = IntGaugeVec::new(
            Opts::new("sidecar_watch_build_info", "Build information; always 1"),
            &["version", "revision"],
        )
        .registered(&registry);
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("SIDECAR_WATCH_REVISION")]).set(1);
        let heap = crate::memory::heap_counts().map(|_| {
            let bytes = IntGaugeVec::new(
                Opts::new(
                    "sidecar_watch_heap_bytes",
                    "Live heap bytes: asked for, and given by the allocator's size classes",
                ),
                &["kind"],
            )
            .registered(&registry);
            let allocations =
                IntGauge::new("sidecar_watch_heap_allocations", "Live heap allocations").registered(&registry);
            (bytes, allocations)
        });
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        Metrics {
            registry,
            options: RenderOptions { max_series_per_namespace, ..RenderOptions::default() },
            startup_seconds,
            reconcile_duration,
            detection_latency,
            reconcile_errors,
            watch_restarts,
            events,
            pods_tracked,
            leader,
            runtime_tasks,
            limited,
            reviews,
            decode_errors,
            initial_list,
            heap,
        }
    }

    /// Exports only the families `families` lets through.
    pub(crate) fn with_families(mut self, families: FamilyFilter) -> Self {
        self.options.families = families;
        self
    }

    /// Copies the Namespace labels `labels` names onto the series that carry a sidecar's
    /// identity (`sidecar_alerts`, `sidecar_container_ready`, `sidecar_info`).
    pub fn with_namespace_labels(mut self, labels: NamespaceLabels) -> Self {
        self.options.namespace_labels = labels;
        self
    }

    /// The Namespace labels copied onto the series: what the Namespace watch keeps.
    pub(crate) fn namespace_labels(&self) -> &NamespaceLabels {
        &self.options.namespace_labels
    }

    /// Renders everything in the Prometheus text format, handing it to `emit` chunk by chunk
    /// (see [`Metrics::start_render`]); `emit` returns false to stop early, when the client
    /// went away. Only for tests and benchmarks (feature `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn render(&self, index: &Index, leader: bool, mut emit: impl FnMut(String) -> bool) {
        let mut render = self.start_render(index, leader);
        while let Some(chunk) = render.next_chunk(index) {
            if !emit(chunk) {
                return;
            }
        }
    }

    /// A render that goes one chunk at a time ([`Render::next_chunk`]): the registry's
    /// metrics (gathered now), then, on the `leader`, the per-Pod families a segment at a
    /// time. It holds nothing of the index between chunks.
    pub(crate) fn start_render(&self, index: &Index, leader: bool) -> Render {
        self.refresh_gauges(index, leader);
        let mut out = Vec::new();
        let mut families = self.registry.gather();
        families.retain(|f| self.options.families.exports(f.name()));
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        Render {
            registry: Some(String::from_utf8(out).unwrap_or_default()),
            // A standby would duplicate the leader's alert series; Prometheus sees them once.
            index: leader.then(|| IndexRender::new(&self.options)),
            limited: self.limited.clone(),
        }
    }

    /// Sets the gauges that describe the index and the process, before a render.
    fn refresh_gauges(&self, index: &Index, leader: bool) {
        self.pods_tracked.set(i64::try_from(index.pod_count()).unwrap_or(i64::MAX));
        self.leader.set(i64::from(leader));
        // One atomic load (tokio's stable runtime metrics); no runtime outside the operator's
        // own (a unit test rendering without one) leaves the gauge at 0.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks.set(i64::try_from(runtime.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        if let (Some((bytes, allocations)), Some(counts)) = (&self.heap, crate::memory::heap_counts()) {
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            bytes.with_label_values(&["asked"]).set(gauge(counts.asked));
            bytes.with_label_values(&["usable"]).set(gauge(counts.usable));
            allocations.set(gauge(counts.allocations));
        }
    }
}

/// A metric just made, registered as it is bound: one list of the metrics, not two.
trait Registered<M> {
    /// Registers the metric (its options valid and its name unique: all are constants) and
    /// returns it.
    fn registered(self, registry: &Registry) -> M;
}

impl<M: prometheus::core::Collector + Clone + 'static> Registered<M> for prometheus::Result<M> {
    fn registered(self, registry: &Registry) -> M {
        let metric = self.expect("valid metric");
        registry.register(Box::new(metric.clone())).expect("metric names are unique");
        metric
    }
}

/// A `/metrics` render in progress (from [`Metrics::start_render`]).
pub(crate) struct Render {
    /// The registry's text, until handed out.
    registry: Option<String>,
    /// The per-Pod families (the leader only).
    index: Option<IndexRender>,
    /// `sidecar_watch_limited_total`, counted once the render is dropped.
    limited: IntCounterVec,
}

impl Render {
    /// The next chunk of text, `None` once everything is rendered.
    pub(crate) fn next_chunk(&mut self, index: &Index) -> Option<String> {
        if let Some(text) = self.registry.take() {
            return Some(text);
        }
        self.index.as_mut()?.next_chunk(index)
    }
}

impl Drop for Render {
    fn drop(&mut self) {
        if self.index.as_ref().is_some_and(IndexRender::limited) {
            self.limited.with_label_values(&["series-per-namespace"]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(text: &str, name: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
    }

    /// The tasks gauge counts what the runtime holds now: three tasks that never finish, then
    /// none once they are aborted.
    #[test]
    fn runtime_tasks_counts_the_tasks_alive_at_the_scrape() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (metrics, index) = (Metrics::new(), Index::new());
        let scrape = || {
            let mut text = String::new();
            metrics.render(&index, false, |chunk| {
                text.push_str(&chunk);
                true
            });
            text
        };
        runtime.block_on(async {
            let tasks: Vec<_> = (0..3).map(|_| tokio::spawn(std::future::pending::<()>())).collect();
            assert_eq!(gauge(&scrape(), "sidecar_watch_runtime_tasks").as_deref(), Some("3"));
            for task in tasks {
                task.abort();
                let _ = task.await;
            }
            assert_eq!(gauge(&scrape(), "sidecar_watch_runtime_tasks").as_deref(), Some("0"));
        });
    }
}
