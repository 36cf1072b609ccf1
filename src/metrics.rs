//! Prometheus metrics.
//!
//! The operator's own metrics (histograms, counters) live in a `prometheus` registry. The
//! per-Pod series (`sidecar_alerts`, `sidecar_container_*`, `sidecar_policy_pods`) are
//! rendered at scrape time straight from the [`Index`] and streamed, one segment at a
//! time, so there is no label map per series and no second copy of every series, not even
//! as one response body: a Pod that is deleted or no longer selected simply has no series
//! at the next scrape.

use std::collections::HashMap;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::engine::{AlertState, ContainerView, Name, PolicyRef};
use crate::index::{Index, TrackedPod};

/// Default of `--max-series-per-namespace`.
pub const DEFAULT_MAX_SERIES_PER_NAMESPACE: u32 = 10_000;

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
    pub fn exports(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.is_match(name)) && !self.deny.as_ref().is_some_and(|d| d.is_match(name))
    }
}

/// What a render of the per-Pod families may export.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// `sidecar_alerts` series one namespace may export (`--max-series-per-namespace`).
    pub max_series_per_namespace: u32,
    /// Families exported.
    pub families: FamilyFilter,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { max_series_per_namespace: DEFAULT_MAX_SERIES_PER_NAMESPACE, families: FamilyFilter::default() }
    }
}

/// The operator's own metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    options: RenderOptions,
    /// `sidecar_startup_seconds{namespace, container}`.
    pub startup_seconds: HistogramVec,
    /// `sidecar_watch_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `sidecar_watch_detection_latency_seconds`.
    pub detection_latency: Histogram,
    /// `sidecar_watch_reconcile_errors_total`.
    pub reconcile_errors: IntCounter,
    /// `sidecar_watch_watch_restarts_total`.
    pub watch_restarts: IntCounter,
    /// `sidecar_watch_events_total{reason, result}`.
    pub events: IntCounterVec,
    /// `sidecar_watch_pods_tracked`.
    pub pods_tracked: IntGauge,
    /// `sidecar_watch_leader`.
    pub leader: IntGauge,
    /// `sidecar_watch_limited_total{limit}`: times a per-tenant limit cut work short.
    pub limited: IntCounterVec,
    /// `sidecar_watch_decode_errors_total{kind}`: objects skipped because they cannot be read.
    pub decode_errors: IntCounterVec,
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
    pub fn with_options(shard: u32, max_series_per_namespace: u32) -> Self {
        let shard = shard.to_string();
        let registry = Registry::new();
        let latency_buckets = vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
        let startup_seconds = HistogramVec::new(
            HistogramOpts::new("sidecar_startup_seconds", "Time from a sidecar container's start to its first ready")
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]),
            &["namespace", "container"],
        )
        .expect("valid metric");
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sidecar_watch_reconcile_duration_seconds",
                "Time to process one change (Pod, policy, namespace or timer)",
            )
            .buckets(latency_buckets.clone()),
        )
        .expect("valid metric");
        let detection_latency = Histogram::with_opts(
            HistogramOpts::new(
                "sidecar_watch_detection_latency_seconds",
                "Time from receiving a watch event to alerts and series being updated",
            )
            .buckets(latency_buckets),
        )
        .expect("valid metric");
        let reconcile_errors =
            IntCounter::new("sidecar_watch_reconcile_errors_total", "Failed status writes and undecodable objects")
                .expect("valid metric");
        let watch_restarts =
            IntCounter::new("sidecar_watch_watch_restarts_total", "Watch streams that failed and were restarted")
                .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new(
                "sidecar_watch_events_total",
                "Kubernetes Events published, by reason and result (ok, error, dropped)",
            ),
            &["reason", "result"],
        )
        .expect("valid metric");
        let pods_tracked = IntGauge::with_opts(
            Opts::new("sidecar_watch_pods_tracked", "Pods held in memory").const_label("shard", &shard),
        )
        .expect("valid metric");
        let leader = IntGauge::with_opts(
            Opts::new("sidecar_watch_leader", "1 when this replica leads its shard").const_label("shard", &shard),
        )
        .expect("valid metric");
        let limited = IntCounterVec::new(
            Opts::new("sidecar_watch_limited_total", "Times a per-tenant limit cut work short, by limit"),
            &["limit"],
        )
        .expect("valid metric");
        let decode_errors = IntCounterVec::new(
            Opts::new("sidecar_watch_decode_errors_total", "Objects skipped because they cannot be decoded, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("sidecar_watch_build_info", "Build information; always 1"),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("SIDECAR_WATCH_REVISION")]).set(1);
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        for collector in [
            Box::new(startup_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(detection_latency.clone()),
            Box::new(reconcile_errors.clone()),
            Box::new(watch_restarts.clone()),
            Box::new(events.clone()),
            Box::new(pods_tracked.clone()),
            Box::new(leader.clone()),
            Box::new(limited.clone()),
            Box::new(decode_errors.clone()),
            Box::new(build_info),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            options: RenderOptions { max_series_per_namespace, families: FamilyFilter::default() },
            startup_seconds,
            reconcile_duration,
            detection_latency,
            reconcile_errors,
            watch_restarts,
            events,
            pods_tracked,
            leader,
            limited,
            decode_errors,
        }
    }

    /// Exports only the families `families` lets through.
    pub fn with_families(mut self, families: FamilyFilter) -> Self {
        self.options.families = families;
        self
    }

    /// Renders everything in the Prometheus text format, handing it to `emit` chunk by chunk
    /// (the registry's metrics, then, on the `leader`, the per-Pod families a segment at a
    /// time); `emit` returns false to stop early, when the client went away.
    pub fn render(&self, index: &Index, leader: bool, mut emit: impl FnMut(String) -> bool) {
        self.pods_tracked.set(i64::try_from(index.pod_count()).unwrap_or(i64::MAX));
        self.leader.set(i64::from(leader));
        let mut out = Vec::new();
        let mut families = self.registry.gather();
        families.retain(|f| self.options.families.exports(f.name()));
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        if !emit(String::from_utf8(out).unwrap_or_default()) {
            return;
        }
        // A standby would duplicate the leader's alert series; Prometheus sees them once.
        if leader && render_index(index, &self.options, emit) {
            self.limited.with_label_values(&["series-per-namespace"]).inc();
        }
    }
}

/// A per-Pod metric family: its `# HELP`/`# TYPE` lines and the samples of one Pod.
struct Family {
    name: &'static str,
    header: &'static str,
    samples: fn(&TrackedPod, &mut String, &mut Scratch),
}

/// The per-Pod families, in the order they are exported.
const POD_FAMILIES: [Family; 3] = [
    Family {
        name: "sidecar_alerts",
        header: "# HELP sidecar_alerts Active sidecar alerts, 1 per alert (pending or firing)\n# TYPE sidecar_alerts gauge\n",
        samples: alert_samples,
    },
    Family {
        name: "sidecar_container_ready",
        header: "# HELP sidecar_container_ready Whether a sidecar container is ready (1) or not (0)\n# TYPE sidecar_container_ready gauge\n",
        samples: ready_samples,
    },
    Family {
        name: "sidecar_container_restarts_total",
        header: "# HELP sidecar_container_restarts_total Restarts of a sidecar container (the kubelet's restartCount)\n# TYPE sidecar_container_restarts_total counter\n",
        samples: restart_samples,
    },
];

/// Renders the per-Pod families and `sidecar_policy_pods` from the index, handing each
/// chunk to `emit`, which returns false to stop early. A namespace exports at most
/// `max_series_per_namespace` `sidecar_alerts` series; returns whether one had more.
///
/// The text format wants every family's samples together, so a family is rendered across
/// every segment before the next one starts: one chunk per family and segment, rendered
/// under that segment's lock and handed on after releasing it (a slow client must not
/// stall evaluation), so that no more than a segment's share of a family is ever held.
pub fn render_index(index: &Index, options: &RenderOptions, mut emit: impl FnMut(String) -> bool) -> bool {
    let mut chunk = String::new();
    let mut scratch = Scratch { max_series_per_namespace: options.max_series_per_namespace, ..Scratch::default() };
    for family in POD_FAMILIES.iter().filter(|f| options.families.exports(f.name)) {
        chunk.push_str(family.header);
        for segment in 0..index.segment_count() {
            index.for_each_pod_in_segment(segment, |pod| (family.samples)(pod, &mut chunk, &mut scratch));
            if chunk.is_empty() {
                continue;
            }
            // Segments are about the same size: the next chunk rarely needs to grow.
            let next = String::with_capacity(chunk.len() + chunk.len() / 4);
            if !emit(std::mem::replace(&mut chunk, next)) {
                return scratch.limited;
            }
        }
    }
    if options.families.exports("sidecar_policy_pods") {
        chunk.push_str("# HELP sidecar_policy_pods Pods per policy: selected (matched) and with a firing alert (alerting)\n# TYPE sidecar_policy_pods gauge\n");
        policy_samples(index, &mut chunk, &mut scratch);
    }
    emit(chunk);
    scratch.limited
}

/// Buffers reused from Pod to Pod for the label pieces that several samples share, escaped
/// once: escaping checks every byte, and this runs for every series on every scrape.
#[derive(Default)]
struct Scratch {
    pod: String,
    policy: String,
    /// `sidecar_alerts` series written per namespace in this render.
    series_per_namespace: HashMap<Name, u32>,
    max_series_per_namespace: u32,
    /// Whether a namespace had more series than it may export.
    limited: bool,
}

/// `namespace="…",pod="…"`, written into `buf`.
fn pod_labels<'b>(buf: &'b mut String, pod: &TrackedPod) -> &'b str {
    buf.clear();
    buf.push_str("namespace=\"");
    push_escaped(buf, &pod.view.namespace);
    buf.push_str("\",pod=\"");
    push_escaped(buf, &pod.view.name);
    buf.push('"');
    buf
}

/// `policy="…",policy_namespace="…"`, written into `buf`.
fn policy_labels<'b>(buf: &'b mut String, policy: &PolicyRef) -> &'b str {
    buf.clear();
    buf.push_str("policy=\"");
    push_escaped(buf, &policy.name);
    buf.push_str("\",policy_namespace=\"");
    push_escaped(buf, policy.namespace.as_deref().unwrap_or(""));
    buf.push('"');
    buf
}

// The sample writers below append each sample's pieces in order instead of going through
// `format!`: this runs for every series on every scrape.

/// `sidecar_alerts`: one sample per active alert of the Pod.
fn alert_samples(pod: &TrackedPod, out: &mut String, scratch: &mut Scratch) {
    if pod.results.iter().all(|r| r.alerts.is_empty()) {
        return;
    }
    let written = scratch.series_per_namespace.entry(pod.view.namespace.clone()).or_default();
    let pod_labels = pod_labels(&mut scratch.pod, pod);
    for result in pod.results.iter().filter(|r| !r.alerts.is_empty()) {
        let policy_labels = policy_labels(&mut scratch.policy, &result.policy);
        for alert in &result.alerts {
            if *written >= scratch.max_series_per_namespace {
                scratch.limited = true;
                return;
            }
            *written += 1;
            out.push_str("sidecar_alerts{alertname=\"");
            out.push_str(alert.name.as_str());
            out.push_str("\",alertstate=\"");
            out.push_str(match alert.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "firing",
            });
            out.push_str("\",severity=\"");
            out.push_str(alert.severity.as_str());
            out.push_str("\",");
            out.push_str(policy_labels);
            out.push(',');
            out.push_str(pod_labels);
            out.push_str(",container=\"");
            push_escaped(out, alert.container_name(&pod.view));
            out.push_str("\",check=\"");
            out.push_str(alert.check.map_or("", |c| c.as_str()));
            out.push_str("\"} 1\n");
        }
    }
}

/// `sidecar_container_ready`: one sample per sidecar container of the Pod.
fn ready_samples(pod: &TrackedPod, out: &mut String, scratch: &mut Scratch) {
    sidecar_samples(pod, out, scratch, "sidecar_container_ready", true, |c| u32::from(c.is_ready()));
}

/// `sidecar_container_restarts_total`: one sample per sidecar container of the Pod.
fn restart_samples(pod: &TrackedPod, out: &mut String, scratch: &mut Scratch) {
    sidecar_samples(pod, out, scratch, "sidecar_container_restarts_total", false, |c| {
        c.status.as_ref().map_or(0, |s| s.restart_count)
    });
}

/// One sample of `metric` per sidecar container of the Pod:
/// `metric{namespace,pod,container[,sidecar_type]} value`.
fn sidecar_samples(
    pod: &TrackedPod,
    out: &mut String,
    scratch: &mut Scratch,
    metric: &str,
    with_type: bool,
    value: fn(&ContainerView) -> u32,
) {
    if pod.sidecars.is_empty() {
        return;
    }
    let pod_labels = pod_labels(&mut scratch.pod, pod);
    for (i, kind) in &pod.sidecars {
        let Some(container) = pod.view.containers.get(*i) else { continue };
        out.push_str(metric);
        out.push('{');
        out.push_str(pod_labels);
        out.push_str(",container=\"");
        push_escaped(out, &container.name);
        if with_type {
            out.push_str("\",sidecar_type=\"");
            out.push_str(kind.as_str());
        }
        out.push_str("\"} ");
        push_u32(out, value(container));
        out.push('\n');
    }
}

/// `sidecar_policy_pods`: matched and alerting Pods of every policy.
fn policy_samples(index: &Index, out: &mut String, scratch: &mut Scratch) {
    for (policy, stats) in index.policy_stats() {
        let policy_labels = policy_labels(&mut scratch.policy, &policy);
        for (state, value) in [("matched", stats.matched_pods), ("alerting", stats.alerting_pods)] {
            out.push_str("sidecar_policy_pods{");
            out.push_str(policy_labels);
            out.push_str(",state=\"");
            out.push_str(state);
            out.push_str("\"} ");
            push_u32(out, value);
            out.push('\n');
        }
    }
}

/// Appends a label value escaped for the text format.
fn push_escaped(out: &mut String, value: &str) {
    // Label values rarely need escaping: copy them whole unless they do. `fold` rather
    // than `any`: without the early exit, the check is vectorized.
    if !value.bytes().fold(false, |found, b| found | matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a number in decimal without the formatting machinery (it runs per series).
fn push_u32(out: &mut String, n: u32) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        let mut out = String::new();
        for n in [0, 7, 10, 4_294_967_295] {
            push_u32(&mut out, n);
            out.push(' ');
        }
        assert_eq!(out, "0 7 10 4294967295 ");
        let mut out = String::new();
        push_escaped(&mut out, "plain ");
        push_escaped(&mut out, "back\\slash \"quoted\"\nline");
        assert_eq!(out, "plain back\\\\slash \\\"quoted\\\"\\nline");
    }
}
