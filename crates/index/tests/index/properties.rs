//! The index's incremental per-policy counts equal a walk over every Pod after any sequence
//! of changes: Pods applied, re-evaluated, deleted and relisted; policies applied (valid,
//! invalid, namespaced, cluster-wide with and without namespace selectors), deleted and
//! relisted; namespace labels changed.

use std::collections::{BTreeMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use sidecar_watch_api::{ClusterPolicySpec, PolicyCounts, PolicySpec, SlimPod};
use sidecar_watch_engine::{AlertState, CompiledPolicy, NamespaceMeta, PodUid, PodUidBuf, PodView, PolicyRef};
use sidecar_watch_index::Writes;
use sidecar_watch_index::{Index, IndexResource, Labels, Pods, Policies, PolicyEntry, PolicyScope};
use sidecar_watch_testkit::pod::{Container, PodBuilder, Probes, Run};

const NAMESPACES: [&str; 3] = ["shop", "ops", "batch"];
const APPS: [&str; 3] = ["web", "api", "batch"];
const PODS: usize = 40;

/// The sidecar's state in a generated Pod.
#[derive(Clone, Copy, Debug)]
enum Sidecar {
    Ready,
    NotReady,
    CrashLooping,
}

/// A Pod with a native `istio-proxy` sidecar (probes optional, so that the static check
/// fires too) and optionally a legacy `log-sidecar`.
#[derive(Clone, Debug)]
struct PodSpec {
    uid: usize,
    app: &'static str,
    sidecar: Sidecar,
    restarts: u32,
    probes: bool,
    legacy: bool,
}

impl PodSpec {
    fn view(&self) -> PodView {
        let ready = matches!(self.sidecar, Sidecar::Ready);
        let run = if matches!(self.sidecar, Sidecar::CrashLooping) { Run::CrashLooping } else { Run::Running };
        let probes =
            if self.probes { Probes::Http { path: "/healthz/ready".into(), port: 15021 } } else { Probes::None };
        let proxy = Container::istio_proxy().probes(probes).ready(ready).restarts(self.restarts).run(run);
        let mut pod = PodBuilder::new(NAMESPACES[self.uid % NAMESPACES.len()], &format!("pod-{}", self.uid))
            .uid(format!("u{}", self.uid))
            .label("app", self.app)
            .created("2026-11-22T10:00:00Z")
            .native_sidecar(proxy)
            .container(Container::new("app", "shop/web:1.0"));
        if self.legacy {
            pod = pod.container(Container::new("log-sidecar", "fluent/fluent-bit:3.0").ready(ready));
        }
        PodView::from_pod(&pod.decode::<SlimPod>())
    }
}

/// One of a few policies, in one of a few variants.
#[derive(Clone, Debug)]
enum PolicyKind {
    /// Namespaced, with an empty selector or one app.
    Namespaced { namespace: &'static str, app: Option<&'static str>, events: bool },
    /// Cluster-wide, with a namespace selector or a rule disabled.
    Cluster { namespace_selector: bool },
    /// A pattern that does not compile.
    Invalid,
}

impl PolicyKind {
    fn entry(&self) -> (PolicyRef, PolicyEntry) {
        match self {
            PolicyKind::Namespaced { namespace, app, events } => {
                let selector = match app {
                    None => serde_json::json!({}),
                    Some(app) => serde_json::json!({"matchLabels": {"app": app}}),
                };
                let spec: PolicySpec =
                    serde_json::from_value(serde_json::json!({"selector": selector, "events": events})).expect("spec");
                let policy = PolicyRef::namespaced(*namespace, "mesh");
                let compiled = CompiledPolicy::compile(policy.clone(), &spec);
                (policy, PolicyEntry::new(compiled))
            }
            PolicyKind::Cluster { namespace_selector } => {
                let spec: ClusterPolicySpec = serde_json::from_value(if *namespace_selector {
                    serde_json::json!({"namespaceSelector": {"matchLabels": {"mesh": "on"}}})
                } else {
                    serde_json::json!({"rules": {"startupOrder": {"enabled": false}}})
                })
                .expect("spec");
                let compiled = CompiledPolicy::compile_cluster("platform", &spec);
                (PolicyRef::cluster("platform"), PolicyEntry::new(compiled))
            }
            PolicyKind::Invalid => {
                let spec: PolicySpec =
                    serde_json::from_value(serde_json::json!({"sidecars": {"pattern": "envoy("}})).expect("spec");
                let policy = PolicyRef::namespaced("shop", "broken");
                let compiled = CompiledPolicy::compile(policy.clone(), &spec);
                assert!(compiled.is_err());
                (policy, PolicyEntry::new(compiled))
            }
        }
    }
}

/// One change to the index, after `seconds` have passed.
#[derive(Clone, Debug)]
enum Change {
    ApplyPod(PodSpec),
    Reevaluate(usize),
    DeletePod(usize),
    ApplyPolicy(PolicyKind),
    DeletePolicy(PolicyKind),
    NamespaceLabels {
        namespace: &'static str,
        mesh: bool,
    },
    /// A relist of one namespace (or all) that saw only the Pods whose flag is true.
    RelistPods {
        namespace: Option<&'static str>,
        keep: Vec<bool>,
    },
    /// A relist of one policy kind that saw only the policies whose flag is true.
    RelistPolicies {
        cluster: bool,
        keep: Vec<bool>,
    },
}

fn sidecar() -> impl Strategy<Value = Sidecar> {
    prop_oneof![Just(Sidecar::Ready), Just(Sidecar::NotReady), Just(Sidecar::CrashLooping)]
}

fn policy_kind() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![
        2 => (prop::sample::select(&NAMESPACES[..2]), prop::option::of(prop::sample::select(&APPS[..])), any::<bool>())
            .prop_map(|(namespace, app, events)| PolicyKind::Namespaced { namespace, app, events }),
        1 => any::<bool>().prop_map(|namespace_selector| PolicyKind::Cluster { namespace_selector }),
        1 => Just(PolicyKind::Invalid),
    ]
}

fn change() -> impl Strategy<Value = (u8, Change)> {
    let uid = 0..PODS;
    let pod =
        (uid.clone(), prop::sample::select(&APPS[..]), sidecar(), 0..6_u32, any::<bool>(), any::<bool>()).prop_map(
            |(uid, app, sidecar, restarts, probes, legacy)| PodSpec { uid, app, sidecar, restarts, probes, legacy },
        );
    let change = prop_oneof![
        5 => pod.prop_map(Change::ApplyPod),
        2 => uid.clone().prop_map(Change::Reevaluate),
        1 => uid.prop_map(Change::DeletePod),
        2 => policy_kind().prop_map(Change::ApplyPolicy),
        1 => policy_kind().prop_map(Change::DeletePolicy),
        1 => (prop::sample::select(&NAMESPACES[..]), any::<bool>())
            .prop_map(|(namespace, mesh)| Change::NamespaceLabels { namespace, mesh }),
        1 => (prop::option::of(prop::sample::select(&NAMESPACES[..])), prop::collection::vec(any::<bool>(), PODS))
            .prop_map(|(namespace, keep)| Change::RelistPods { namespace, keep }),
        1 => (any::<bool>(), prop::collection::vec(any::<bool>(), 8))
            .prop_map(|(cluster, keep)| Change::RelistPolicies { cluster, keep }),
    ];
    (0..90_u8, change)
}

/// The counts the slow way, by walking every Pod: what the incremental counts must equal.
fn stats_by_walk(index: &Index) -> BTreeMap<PolicyRef, PolicyCounts> {
    let mut stats: BTreeMap<PolicyRef, PolicyCounts> =
        index.policies().into_keys().map(|p| (p, PolicyCounts::default())).collect();
    index.for_each_pod(|pod| {
        for result in &pod.results {
            let Some(entry) = stats.get_mut(result.policy_ref()) else { continue };
            entry.matched_pods += 1;
            let mut alerting = false;
            for alert in &result.alerts {
                match alert.state {
                    AlertState::Firing => {
                        alerting = true;
                        *entry.firing.entry(alert.name.as_str().to_string()).or_default() += 1;
                    }
                    AlertState::Pending => entry.pending_alerts += 1,
                }
            }
            entry.alerting_pods += u32::from(alerting);
        }
    });
    stats
}

/// An index with a cluster policy that stays, so that most Pods are selected by something.
fn fresh_index() -> (Index, Timestamp) {
    let index = Index::new();
    let now: Timestamp = "2026-11-22T10:00:00Z".parse().expect("time");
    let all: ClusterPolicySpec = serde_json::from_value(serde_json::json!({})).expect("spec");
    let entry = PolicyEntry::new(CompiledPolicy::compile_cluster("all", &all));
    index.apply_policy(PolicyRef::cluster("all"), entry, now);
    (index, now)
}

fn apply(index: &Index, change: &Change, now: Timestamp) {
    match change {
        Change::ApplyPod(pod) => {
            index.apply_pod(pod.view(), now);
        }
        Change::Reevaluate(uid) => {
            index.reevaluate(PodUid::parse(&format!("u{uid}")), now);
        }
        Change::DeletePod(uid) => {
            index.delete_pod(PodUid::parse(&format!("u{uid}")), now);
        }
        Change::ApplyPolicy(kind) => {
            let (policy, entry) = kind.entry();
            index.apply_policy(policy, entry, now);
        }
        Change::DeletePolicy(kind) => {
            index.delete_policy(&kind.entry().0, now);
        }
        Change::NamespaceLabels { namespace, mesh } => {
            let labels = if *mesh { Labels::from([("mesh".to_string(), "on".to_string())]) } else { Labels::new() };
            index.apply_namespace(namespace, NamespaceMeta::new(labels, &Labels::new()), now);
        }
        Change::RelistPods { namespace, keep } => {
            let seen: HashSet<PodUidBuf> =
                (0..PODS).filter(|uid| keep[*uid]).map(|uid| PodUidBuf::parse(&format!("u{uid}"))).collect();
            IndexResource::<Pods>::relisted(index, &namespace.map(String::from), &seen, now);
        }
        Change::RelistPolicies { cluster, keep } => {
            let seen: HashSet<PolicyRef> = index
                .policies()
                .into_keys()
                .enumerate()
                .filter(|(i, _)| keep[i % keep.len()])
                .map(|(_, p)| p)
                .collect();
            IndexResource::<Policies>::relisted(index, &PolicyScope { cluster: *cluster, namespace: None }, &seen, now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_policy_stats_equal_the_full_walk(changes in prop::collection::vec(change(), 1..200)) {
        let (index, mut now) = fresh_index();
        for (step, (seconds, change)) in changes.iter().enumerate() {
            now = now.checked_add(SignedDuration::from_secs(i64::from(*seconds))).expect("time");
            apply(&index, change, now);
            prop_assert_eq!(index.policy_stats(), stats_by_walk(&index), "step {}: {:?}", step, change);
        }
    }
}

/// The generated sequences reach firing, pending and mixed counts: the property above is
/// not checked on empty tables only.
#[test]
fn generated_sequences_reach_every_kind_of_count() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut saw = (false, false, false);
    for _ in 0..16 {
        let changes = prop::collection::vec(change(), 200).new_tree(&mut runner).expect("tree").current();
        let (index, mut now) = fresh_index();
        for (seconds, change) in &changes {
            now = now.checked_add(SignedDuration::from_secs(i64::from(*seconds))).expect("time");
            apply(&index, change, now);
            for counts in index.policy_stats().values() {
                saw.0 |= counts.firing.values().any(|n| *n > 0);
                saw.1 |= counts.pending_alerts > 0;
                saw.2 |= counts.matched_pods > counts.alerting_pods && counts.alerting_pods > 0;
            }
        }
    }
    assert_eq!(saw, (true, true, true), "the sequences reach firing, pending and mixed counts");
}
