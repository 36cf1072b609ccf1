//! The per-Pod families (`sidecar_alerts`, `sidecar_container_*`), `sidecar_policy_pods` and
//! the per-workload ones (`sidecar_info`, [`super::info`]; `sidecar_resource_*`,
//! [`super::resources`]), rendered from the index at scrape time.

use std::collections::HashMap;

use super::identity::with_identity;
use super::info::{InfoCounts, HELD_SERIES};
use super::namespace_labels::{NamespaceLabels, NamespacePairs};
use super::writer::{Family, LabelSet, Sample, SampleWriter};
use super::RenderOptions;
use crate::api::Severity;
use crate::engine::{AlertName, AlertState, CatalogId, ContainerView, Name, NamespaceMeta, PolicyRef};
use crate::index::{Index, TrackedPod};

const ALERTS: Family =
    Family { name: "sidecar_alerts", help: "Active sidecar alerts, 1 per alert (pending or firing)", kind: "gauge" };

const READY: Family = Family {
    name: "sidecar_container_ready",
    help: "Whether a sidecar container is ready (1) or not (0)",
    kind: "gauge",
};

const RESTARTS: Family = Family {
    name: "sidecar_container_restarts_total",
    help: "Restarts of a sidecar container (the kubelet's restartCount)",
    kind: "counter",
};

const POLICY_PODS: Family = Family {
    name: "sidecar_policy_pods",
    help: "Pods per policy: selected (matched) and with a firing alert (alerting)",
    kind: "gauge",
};

/// The namespaces by name, read under their lock while a segment is rendered, for the
/// labels `--namespace-labels` copies; `None` when it names none.
type Namespaces<'a> = Option<&'a HashMap<String, NamespaceMeta>>;

/// A per-Pod family and how to write the samples of one Pod.
struct PodFamily {
    family: Family,
    samples: fn(&TrackedPod, &mut SampleWriter, &mut Scratch, Namespaces<'_>),
    /// Whether the Pod has samples of it: the first thing `samples` reads.
    has_samples: fn(&TrackedPod) -> bool,
    /// Whether it reads every sidecar container of every Pod, as `sidecar_info` does.
    walks_sidecars: bool,
    /// Whether its series carry the namespace's `label_*` labels.
    reads_namespaces: bool,
}

/// The per-Pod families, in the order they are exported.
const POD_FAMILIES: [PodFamily; 3] = [
    PodFamily {
        family: ALERTS,
        samples: alert_samples,
        has_samples: has_alerts,
        walks_sidecars: false,
        reads_namespaces: true,
    },
    PodFamily {
        family: READY,
        samples: ready_samples,
        has_samples: TrackedPod::has_sidecars,
        walks_sidecars: true,
        reads_namespaces: true,
    },
    PodFamily {
        family: RESTARTS,
        samples: restart_samples,
        has_samples: TrackedPod::has_sidecars,
        walks_sidecars: true,
        reads_namespaces: false,
    },
];

/// Renders the per-Pod families and `sidecar_policy_pods` from the index, handing each
/// chunk to `emit`, which returns false to stop early. A namespace exports at most
/// `max_series_per_namespace` `sidecar_alerts` series; returns whether one had more. Only for
/// tests and benchmarks (feature `test-support`): the server streams an [`IndexRender`].
#[cfg(any(test, feature = "test-support"))]
pub fn render_index(index: &Index, options: &RenderOptions, mut emit: impl FnMut(String) -> bool) -> bool {
    let mut render = IndexRender::new(options);
    while let Some(chunk) = render.next_chunk(index) {
        if !emit(chunk) {
            break;
        }
    }
    render.limited()
}

/// A render of the per-Pod families, `sidecar_policy_pods` and the per-workload ones that goes one
/// chunk at a time and can wait between chunks as long as its client does: it holds no lock
/// and no render slot in between, only where it is and what the next chunk needs (the
/// per-namespace series counts, the per-workload counts so far).
///
/// The text format wants every family's samples together, so a family is rendered across
/// every segment before the next one starts: one chunk per family and segment, rendered
/// under that segment's lock and handed on after releasing it (a slow client must not
/// stall evaluation), so that no more than a segment's share of a family is ever held.
///
/// The per-workload families are counted during the first family that walks every Pod's sidecars, not
/// in a walk of its own (unless its counts outgrow [`HELD_SERIES`]): a walk over the Pods'
/// sidecars is bound by the memory it reads, not by the text it writes (docs/benchmarks.md,
/// "What does `/metrics` cost, and can clients hold it up?").
pub(crate) struct IndexRender {
    families: Vec<&'static PodFamily>,
    /// The family being rendered (an index into `families`), `families.len()` for
    /// `sidecar_policy_pods`, one more for the per-workload families, past that when done.
    family: usize,
    /// The next segment of that family.
    segment: usize,
    policy_pods: bool,
    /// The per-workload counts, `None` when none of those families is exported.
    info: Option<InfoCounts>,
    /// The family (an index into `families`) during which `info` is counted; `None` counts
    /// it in a walk of its own.
    info_counted_in: Option<usize>,
    out: SampleWriter,
    scratch: Scratch,
}

impl IndexRender {
    /// A render at its start, exporting what `options` allow.
    pub(crate) fn new(options: &RenderOptions) -> Self {
        let families: Vec<&PodFamily> =
            POD_FAMILIES.iter().filter(|f| options.families.exports(f.family.name)).collect();
        IndexRender {
            info_counted_in: families.iter().position(|f| f.walks_sidecars),
            families,
            family: 0,
            segment: 0,
            policy_pods: options.families.exports(POLICY_PODS.name),
            info: InfoCounts::new(&options.families),
            out: SampleWriter::default(),
            scratch: Scratch {
                max_series_per_namespace: options.max_series_per_namespace,
                namespace_labels: options.namespace_labels.clone(),
                ..Scratch::default()
            },
        }
    }

    /// The next chunk of text, `None` once everything is rendered. A chunk is never empty.
    pub(crate) fn next_chunk(&mut self, index: &Index) -> Option<String> {
        self.out.reserve();
        while let Some(PodFamily { family, samples, has_samples, reads_namespaces, .. }) =
            self.families.get(self.family).copied()
        {
            if self.segment == 0 {
                self.out.header(family);
            }
            let segment = self.segment;
            let (out, scratch) = (&mut self.out, &mut self.scratch);
            // A namespace's labels may change between chunks: look them up again in each.
            scratch.namespace.forget();
            let copies_labels = *reads_namespaces && !scratch.namespace_labels.is_empty();
            let mut info = self.info.as_mut().filter(|_| self.info_counted_in == Some(self.family));
            let mut walk = |namespaces: Namespaces<'_>| {
                // Read first what each Pod's samples start from, in a pass of its own: its
                // loads do not wait on each other, so their cache misses overlap, and the
                // render's pass finds the Pods in cache (measured: docs/benchmarks.md,
                // "A first pass that reads ahead").
                index.for_each_pod_in_segment(segment, |pod| {
                    std::hint::black_box(has_samples(pod));
                });
                index.for_each_pod_in_segment(segment, |pod| {
                    samples(pod, out, scratch, namespaces);
                    if let Some(info) = info.as_mut() {
                        info.count(pod);
                    }
                })
            };
            if copies_labels {
                index.with_namespaces(|namespaces| walk(Some(namespaces)));
            } else {
                walk(None);
            }
            let last_segment = segment + 1 >= index.segment_count();
            if family.name == ALERTS.name && last_segment {
                let (out, scratch) = (&mut self.out, &mut self.scratch);
                index.with_namespaces(|namespaces| workload_alert_samples(index, out, scratch, namespaces));
            }
            if let Some(info) = self.info.as_mut().filter(|info| info.series() > HELD_SERIES) {
                *info = info.emptied();
                self.info_counted_in = None;
            }
            self.segment += 1;
            if self.segment >= index.segment_count() {
                self.family += 1;
                self.segment = 0;
            }
            if !self.out.is_empty() {
                return Some(self.out.take());
            }
        }
        if self.family == self.families.len() {
            self.family += 1;
            if self.policy_pods {
                self.out.header(&POLICY_PODS);
                policy_samples(index, &mut self.out, &mut self.scratch);
            }
        }
        if self.family == self.families.len() + 1 {
            self.family += 1;
            if let Some(mut info) = self.info.take() {
                if self.info_counted_in.is_none() {
                    index.for_each_pod(|pod| info.count(pod));
                }
                let (out, scratch) = (&mut self.out, &mut self.scratch);
                scratch.namespace.forget();
                let write = |namespaces: Namespaces<'_>| {
                    info.write(
                        out,
                        scratch.max_series_per_namespace,
                        &scratch.namespace_labels,
                        &mut scratch.namespace,
                        namespaces,
                    )
                };
                let limited = if scratch.namespace_labels.is_empty() {
                    write(None)
                } else {
                    index.with_namespaces(|namespaces| write(Some(namespaces)))
                };
                self.scratch.limited |= limited;
            }
        }
        (!self.out.is_empty()).then(|| self.out.take())
    }

    /// Whether a namespace had more `sidecar_alerts` series than it may export.
    pub(crate) fn limited(&self) -> bool {
        self.scratch.limited
    }
}

/// What is reused from Pod to Pod: the label pairs that several samples share, escaped
/// once, and the per-namespace series count.
#[derive(Default)]
struct Scratch {
    /// `namespace`, `pod`.
    pod: LabelSet,
    /// `policy`, `policy_namespace`.
    policy: LabelSet,
    /// `sidecar_alerts` series written per namespace in this render.
    series_per_namespace: HashMap<Name, u32>,
    max_series_per_namespace: u32,
    /// Whether a namespace had more series than it may export.
    limited: bool,
    /// The labels `--namespace-labels` copies.
    namespace_labels: NamespaceLabels,
    /// Their pairs for the last namespace looked up in this chunk: a namespace's labels are
    /// looked up and escaped once per run of its Pods.
    namespace: NamespacePairs,
}

/// The labels that name a Pod.
fn pod_labels(pod: &TrackedPod) -> [(&str, &str); 2] {
    [("namespace", pod.view().namespace()), ("pod", pod.view().name())]
}

/// The labels that name a policy (`policy_namespace` is empty for a cluster policy).
fn policy_labels(policy: &PolicyRef) -> [(&str, &str); 2] {
    [("policy", &policy.name), ("policy_namespace", policy.namespace.as_deref().unwrap_or(""))]
}

/// Whether the Pod has an active alert.
fn has_alerts(pod: &TrackedPod) -> bool {
    pod.results.iter().any(|r| !r.alerts.is_empty())
}

/// `sidecar_alerts`: one sample per active alert of the Pod.
fn alert_samples(pod: &TrackedPod, out: &mut SampleWriter, scratch: &mut Scratch, namespaces: Namespaces<'_>) {
    if !has_alerts(pod) {
        return;
    }
    let namespace_pairs = scratch.namespace.of(&scratch.namespace_labels, pod.view().namespace(), namespaces);
    let written = scratch.series_per_namespace.entry(pod.view().namespace().clone()).or_default();
    scratch.pod.set(&pod_labels(pod));
    for result in pod.results.iter().filter(|r| !r.alerts.is_empty()) {
        scratch.policy.set(&policy_labels(result.policy_ref()));
        for alert in &result.alerts {
            if *written >= scratch.max_series_per_namespace {
                scratch.limited = true;
                return;
            }
            *written += 1;
            let series = AlertSeries {
                name: alert.name,
                state: alert.state,
                severity: alert.severity,
                container: result.container_name(alert, pod.view()),
                check: alert.check.map_or("", |c| c.as_str()),
                workload: pod.view().workload(),
                catalog: result.catalog_of(alert, pod.view()),
            };
            series.write(out, &scratch.policy, &scratch.pod, namespace_pairs);
        }
    }
}

/// `sidecar_alerts` of the alerts on workloads (`pod` empty), within the same per-namespace
/// series cap as the Pods' alerts.
fn workload_alert_samples(
    index: &Index,
    out: &mut SampleWriter,
    scratch: &mut Scratch,
    namespaces: &HashMap<String, NamespaceMeta>,
) {
    index.for_each_workload_alert(|a| {
        let namespace = Name::from(a.workload.namespace.as_str());
        let written = scratch.series_per_namespace.entry(namespace.clone()).or_default();
        if *written >= scratch.max_series_per_namespace {
            scratch.limited = true;
            return;
        }
        *written += 1;
        let namespace_pairs = scratch.namespace.of(&scratch.namespace_labels, &namespace, Some(namespaces));
        scratch.pod.set(&[("namespace", &namespace), ("pod", "")]);
        scratch.policy.set(&policy_labels(&a.policy));
        let series = AlertSeries {
            name: a.alert.name,
            state: a.alert.state,
            severity: a.alert.severity,
            container: &a.alert.container,
            check: "",
            workload: (a.workload.kind.as_str(), &a.workload.name),
            catalog: a.catalog,
        };
        series.write(out, &scratch.policy, &scratch.pod, namespace_pairs);
    });
}

/// One `sidecar_alerts` series, of a Pod's alert or a workload's: the one writer of the
/// family's labels, so that both carry the same ones in the same order.
struct AlertSeries<'a> {
    name: AlertName,
    state: AlertState,
    severity: Severity,
    container: &'a str,
    check: &'a str,
    /// Kind and name.
    workload: (&'a str, &'a str),
    catalog: Option<CatalogId>,
}

impl AlertSeries<'_> {
    /// Writes the series with the policy's, the Pod's (`pod` empty for a workload's) and the
    /// namespace's label pairs.
    fn write(&self, out: &mut SampleWriter, policy: &LabelSet, pod: &LabelSet, namespace_pairs: &LabelSet) {
        let sample = out
            .sample(ALERTS.name)
            .label("alertname", self.name.as_str())
            .label("alertstate", self.state.as_str())
            .label("severity", self.severity.as_str())
            .labels(policy)
            .labels(pod)
            .label("container", self.container)
            .label("check", self.check);
        with_identity(sample, self.workload, self.catalog, namespace_pairs).value(1u32);
    }
}

/// `sidecar_container_ready`: one sample per sidecar container of the Pod, with the
/// sidecar's identity (workload, product, namespace labels) for rules that join a product's
/// own per-Pod series on `namespace, pod` (and `container`).
fn ready_samples(pod: &TrackedPod, out: &mut SampleWriter, scratch: &mut Scratch, namespaces: Namespaces<'_>) {
    if !pod.has_sidecars() {
        return;
    }
    let namespace_pairs = scratch.namespace.of(&scratch.namespace_labels, pod.view().namespace(), namespaces);
    let workload = pod.view().workload();
    sidecar_samples(pod, out, &mut scratch.pod, &READY, |sample, container, kind| {
        let sample = sample.label("sidecar_type", kind);
        with_identity(sample, workload, container.catalog, namespace_pairs).value(u32::from(container.is_ready()))
    });
}

/// `sidecar_container_restarts_total`: one sample per sidecar container of the Pod.
fn restart_samples(pod: &TrackedPod, out: &mut SampleWriter, scratch: &mut Scratch, _: Namespaces<'_>) {
    sidecar_samples(pod, out, &mut scratch.pod, &RESTARTS, |sample, container, _| {
        sample.value(container.status().map_or(0, |s| s.restart_count()))
    });
}

/// One sample of `family` per sidecar container of the Pod, labelled with the Pod and the
/// container; `finish` adds the family's own labels and the value.
fn sidecar_samples(
    pod: &TrackedPod,
    out: &mut SampleWriter,
    pod_pairs: &mut LabelSet,
    family: &Family,
    finish: impl Fn(Sample<'_>, &ContainerView, &'static str),
) {
    if !pod.has_sidecars() {
        return;
    }
    pod_pairs.set(&pod_labels(pod));
    for (container, kind) in pod.sidecar_containers() {
        finish(out.sample(family.name).labels(pod_pairs).label("container", &container.name), container, kind.as_str());
    }
}

/// `sidecar_policy_pods`: matched and alerting Pods of every policy.
fn policy_samples(index: &Index, out: &mut SampleWriter, scratch: &mut Scratch) {
    for (policy, stats) in index.policy_stats() {
        scratch.policy.set(&policy_labels(&policy));
        for (state, value) in [("matched", stats.matched_pods), ("alerting", stats.alerting_pods)] {
            out.sample(POLICY_PODS.name).labels(&scratch.policy).label("state", state).value(value);
        }
    }
}
