//! Prometheus metrics.
//!
//! The operator's own metrics (histograms, counters) live in a `prometheus` registry. The
//! per-Pod series (`sidecar_alerts`, `sidecar_container_*`, `sidecar_policy_pods`) are
//! rendered at scrape time straight from the [`Index`], one segment at a time, so there is
//! no label map per series and no second copy of every series: a Pod that is deleted or no
//! longer selected simply has no series at the next scrape.

use std::fmt::Write as _;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::controller::index::Index;
use crate::engine::AlertState;

/// The operator's own metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
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
        let pods_tracked = IntGauge::new("sidecar_watch_pods_tracked", "Pods held in memory").expect("valid metric");
        let leader = IntGauge::new("sidecar_watch_leader", "1 when this replica is the leader").expect("valid metric");
        let build_info =
            IntGaugeVec::new(Opts::new("sidecar_watch_build_info", "Build information; always 1"), &["version"])
                .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for collector in [
            Box::new(startup_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(detection_latency.clone()),
            Box::new(reconcile_errors.clone()),
            Box::new(watch_restarts.clone()),
            Box::new(events.clone()),
            Box::new(pods_tracked.clone()),
            Box::new(leader.clone()),
            Box::new(build_info),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            startup_seconds,
            reconcile_duration,
            detection_latency,
            reconcile_errors,
            watch_restarts,
            events,
            pods_tracked,
            leader,
        }
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self, index: &Index) -> String {
        self.pods_tracked.set(i64::try_from(index.pod_count()).unwrap_or(i64::MAX));
        self.leader.set(i64::from(index.is_leader()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        // A standby would duplicate the leader's alert series; Prometheus sees them once.
        if index.is_leader() {
            render_index(index, &mut text);
        }
        text
    }
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}

/// Appends the per-Pod families rendered from the index.
pub fn render_index(index: &Index, out: &mut String) {
    out.push_str(
        "# HELP sidecar_alerts Active sidecar alerts, 1 per alert (pending or firing)\n# TYPE sidecar_alerts gauge\n",
    );
    index.for_each_pod(|pod| {
        for result in &pod.results {
            let policy = &result.policy;
            for alert in &result.alerts {
                let _ = writeln!(
                    out,
                    "sidecar_alerts{{alertname=\"{}\",alertstate=\"{}\",severity=\"{}\",policy=\"{}\",policy_namespace=\"{}\",namespace=\"{}\",pod=\"{}\",container=\"{}\",check=\"{}\"}} 1",
                    alert.name.as_str(),
                    match alert.state {
                        AlertState::Pending => "pending",
                        AlertState::Firing => "firing",
                    },
                    alert.severity.as_str(),
                    escape(&policy.name),
                    escape(policy.namespace.as_deref().unwrap_or("")),
                    escape(&pod.view.namespace),
                    escape(&pod.view.name),
                    escape(alert.container_name(&pod.view)),
                    alert.check.map_or("", |c| c.as_str()),
                );
            }
        }
    });
    out.push_str("# HELP sidecar_container_ready Whether a sidecar container is ready (1) or not (0)\n# TYPE sidecar_container_ready gauge\n");
    index.for_each_pod(|pod| {
        for (i, kind) in &pod.sidecars {
            let container = &pod.view.containers[*i];
            let _ = writeln!(
                out,
                "sidecar_container_ready{{namespace=\"{}\",pod=\"{}\",container=\"{}\",sidecar_type=\"{}\"}} {}",
                escape(&pod.view.namespace),
                escape(&pod.view.name),
                escape(&container.name),
                kind.as_str(),
                u8::from(container.is_ready())
            );
        }
    });
    out.push_str("# HELP sidecar_container_restarts_total Restarts of a sidecar container (the kubelet's restartCount)\n# TYPE sidecar_container_restarts_total counter\n");
    index.for_each_pod(|pod| {
        for (i, _) in &pod.sidecars {
            let container = &pod.view.containers[*i];
            let restarts = container.status.as_ref().map_or(0, |s| s.restart_count);
            let _ = writeln!(
                out,
                "sidecar_container_restarts_total{{namespace=\"{}\",pod=\"{}\",container=\"{}\"}} {restarts}",
                escape(&pod.view.namespace),
                escape(&pod.view.name),
                escape(&container.name),
            );
        }
    });
    out.push_str("# HELP sidecar_policy_pods Pods per policy: selected (matched) and with a firing alert (alerting)\n# TYPE sidecar_policy_pods gauge\n");
    for (policy, stats) in index.policy_stats() {
        for (state, value) in [("matched", stats.matched_pods), ("alerting", stats.alerting_pods)] {
            let _ = writeln!(
                out,
                "sidecar_policy_pods{{policy=\"{}\",policy_namespace=\"{}\",state=\"{state}\"}} {value}",
                escape(&policy.name),
                escape(policy.namespace.as_deref().unwrap_or("")),
            );
        }
    }
}
