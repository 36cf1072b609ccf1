//! The alerts on workloads, `SidecarInjectionFailed` and `RolloutBlockedBySidecar`, computed
//! by the operator's own code: the audit's policies, namespaces, the conditions of the
//! `FailedCreate` Events it read (through [`crate::injection_failure`], as the operator reads
//! them) and the Pods that matter are given to an [`Index`] at the audit's instant, which
//! judges the rollouts and evaluates the alerts exactly as the operator would.
//!
//! Only the Pods that can change an answer go into the index: those of a workload an Event
//! names (a Pod created after the Event's last time says it creates Pods again), and those of
//! a Deployment, StatefulSet or DaemonSet whose Pods carry two revisions or more, one of them
//! firing an alert that can block a rollout (the audit's own evaluation says which). A
//! healthy workload's Pods, or those of a workload not rolling out, are not evaluated twice
//! (docs/benchmarks.md#what-does-the-offline-audit-cost).

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use super::{Finding, Inventory};
use crate::engine::{
    AlertState, CompiledPolicy, IdentifiedBy, InjectionFailure, PodView, WorkloadId, WorkloadKind, BLOCKING,
    DEFAULT_MAX_SIDECARS,
};
use crate::index::Writes;
use crate::index::{CreateFailures, Index, IndexResource, PolicyEntry};
use crate::injection_failure::{condition_of, Involved, ReadObject};

/// Events kept at most, as the operator remembers at most this many
/// ([`crate::controller::create_failures`]); the rest are counted and said.
const MAX_EVENTS: usize = 20_000;

/// The `FailedCreate` Events of the input that name a sidecar's cause, and the objects such
/// an Event may name.
#[derive(Default)]
pub(super) struct Failures {
    /// Each Event (only its times), its failure and the object it names.
    events: Vec<(Event, InjectionFailure, Involved)>,
    /// The workload objects of the input (or read from the cluster), by the reference an
    /// Event holds: namespace, kind, name and UID.
    pub(super) objects: HashMap<Involved, ReadObject>,
    /// Events past [`MAX_EVENTS`].
    cut: usize,
}

impl Failures {
    /// Keeps an Event that names a sidecar's cause (its times only).
    pub(super) fn add(&mut self, event: Event, failure: InjectionFailure, involved: Involved) {
        if self.events.len() >= MAX_EVENTS {
            self.cut += 1;
            return;
        }
        self.events.push((event, failure, involved));
    }

    /// Keeps what an Event about a workload object of the input would read of it.
    pub(super) fn insert_object(&mut self, object: Option<(Involved, ReadObject)>) {
        if let Some((involved, read)) = object {
            self.objects.insert(involved, read);
        }
    }

    /// The objects the Events name, each once.
    pub(super) fn involved(&self) -> HashSet<&Involved> {
        self.events.iter().map(|(_, _, involved)| involved).collect()
    }
}

/// The Pods of a workload of `workload_of` in the input, with its id.
fn pods_of<'a>(inventory: &'a Inventory) -> impl Iterator<Item = (WorkloadId, &'a PodView)> + 'a {
    inventory.pods.iter().filter(|a| !a.view.is_template).map(|a| (a.view.workload_id(), &a.view))
}

/// Of `workloads`, those whose Pods carry more than one revision: a rollout is blocked only
/// while Pods of an older revision still run, so a workload of one revision (most of those
/// with a failing Pod) need not be judged.
fn in_rollout(inventory: &Inventory, workloads: HashSet<WorkloadId>) -> HashSet<WorkloadId> {
    if workloads.is_empty() {
        return workloads;
    }
    let mut revisions: HashMap<WorkloadId, HashSet<String>> = HashMap::new();
    for (id, view) in pods_of(inventory) {
        let Some(label) = id.kind.revision_label() else { continue };
        let Some(revision) = view.labels().get(label) else { continue };
        if workloads.contains(&id) {
            revisions.entry(id).or_default().insert(revision.to_string());
        }
    }
    revisions.into_iter().filter(|(_, r)| r.len() > 1).map(|(id, _)| id).collect()
}

/// Of an Event, only what its condition reads (its times): the message may be long, and
/// there may be many Events.
pub(super) fn times_only(event: Event) -> Event {
    Event {
        first_timestamp: event.first_timestamp,
        last_timestamp: event.last_timestamp,
        event_time: event.event_time,
        series: event.series,
        ..Event::default()
    }
}

/// The workload alerts at `now` under `policies`, given the Pod `findings` the audit made:
/// one finding per workload, alert and policy, with an empty `pod`.
pub(super) fn findings(
    inventory: &Inventory,
    policies: &[CompiledPolicy],
    pod_findings: &[Finding],
    now: Timestamp,
) -> Vec<Finding> {
    let failures = &inventory.failures;
    if failures.cut > 0 {
        eprintln!(
            "sidecar-watch audit: {} FailedCreate Events past the first {MAX_EVENTS} were not read, as the operator would not",
            failures.cut
        );
    }
    // An Event whose object is not in the input is not reported: the operator reads the
    // object, and believes the Event only if it exists with the UID the Event names and
    // still needs Pods (`injection_failure::needs_pods`).
    let conditions: Vec<_> = failures
        .events
        .iter()
        .filter_map(|(event, failure, involved)| {
            let object = failures.objects.get(involved).filter(|o| o.needs_pods)?;
            Some((object.workload.clone(), condition_of(event, failure, object, now)))
        })
        .collect();
    let mut wanted: HashSet<WorkloadId> = conditions.iter().map(|(w, _)| w.clone()).collect();
    let blocking = |f: &&Finding| {
        f.kind == "Pod"
            && f.state == AlertState::Firing
            && WorkloadKind::controller(&f.workload_kind, None).and_then(|k| k.revision_label()).is_some()
            && BLOCKING.iter().any(|a| a.as_str() == f.alertname)
    };
    let rollouts: HashSet<WorkloadId> = pod_findings
        .iter()
        .filter(blocking)
        .map(|f| WorkloadId::new(&f.namespace, &f.workload_kind, &f.workload))
        .collect();
    wanted.extend(in_rollout(inventory, rollouts));
    if wanted.is_empty() {
        return Vec::new();
    }

    // The audit evaluates every policy of a namespace: so does this index.
    let index = Index::with_limits(DEFAULT_MAX_SIDECARS, usize::MAX);
    for (name, meta) in &inventory.namespaces {
        index.apply_namespace(name, meta.clone(), now);
    }
    for policy in policies {
        index.apply_policy(policy.policy.clone(), PolicyEntry::new(Ok(policy.clone())), now);
    }
    // The conditions before the Pods, as the operator heard of the failures first.
    let mut limited = 0;
    for condition in conditions {
        limited += IndexResource::<CreateFailures>::apply(&index, condition, now).limited_workloads;
    }
    if limited > 0 {
        eprintln!(
            "sidecar-watch audit: {limited} workloads past the operator's limit of {} per namespace ({} in all) are not reported as SidecarInjectionFailed",
            crate::index::MAX_PER_NAMESPACE,
            crate::index::MAX_WORKLOADS
        );
    }
    for (id, view) in pods_of(inventory) {
        if wanted.contains(&id) {
            index.apply_pod(view.clone(), now);
        }
    }
    // Judges the rollouts the Pods marked, then evaluates every workload alert at `now`;
    // the candidates' controllers answer from the input, as the API server does the operator.
    let reads = index.revisit_workloads(now).rollout_reads;
    for read in &reads {
        index.set_rollout_controller(read.workload.clone(), inventory.rollout_objects.answer(read), now);
    }
    if !reads.is_empty() {
        index.revisit_workloads(now);
    }

    let mut findings = Vec::new();
    index.for_each_workload_alert(|a| {
        findings.push(Finding {
            alertname: a.alert.name.as_str().to_string(),
            severity: a.alert.severity,
            namespace: a.workload.namespace.clone(),
            pod: String::new(),
            container: a.alert.container.clone(),
            kind: a.workload.kind.to_string(),
            policy: a.policy.name.clone(),
            policy_namespace: a.policy.namespace.clone().unwrap_or_default(),
            state: a.alert.state,
            since: a.alert.since.map(|t| t.to_string()),
            message: a.alert.message.clone(),
            identified_by: a.catalog.map(|c| IdentifiedBy::Catalog(c).to_string()),
            check: None,
            workload_kind: a.workload.kind.to_string(),
            workload: a.workload.name.clone(),
            file: None,
        });
    });
    findings
}
