//! Properties of `evaluate` over arbitrary Pod views, observed histories and policies: it
//! never panics, is deterministic, reports only sidecars (never a main or a plain init
//! container), and its `next_change` is in the future and no later than any pending alert's
//! due time.

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use sidecar_watch_api::{
    ForRuleSpec, InstantRuleSpec, PolicySpec, RestartsRuleSpec, RulesSpec, Severity, SidecarSelector, WindowRuleSpec,
};
use sidecar_watch_engine::{
    evaluate, AlertName, AlertState, Around, Check, CompiledPolicy, ContainerKind, ContainerView, IdentifiedBy,
    ObservedPod, PodView, PolicyRef, Stamp,
};
use sidecar_watch_engine::{ConditionView, ContainerSpec, ContainerState, ContainerStatusView, SpecFlags, Termination};
use sidecar_watch_testkit::engine::{at, plus};

const NAMES: [&str; 10] = [
    "app",
    "worker",
    "envoy",
    "istio-proxy",
    "log-sidecar",
    "init-sidecar",
    "vault-agent",
    "envoy-config",
    "db-init",
    "x",
];

/// Images: well-known sidecars' (with registries, tags, digests) and look-alikes that are not.
const IMAGES: [&str; 8] = [
    "docker.io/istio/proxyv2:1.22.0",
    "cr.l5d.io/linkerd/proxy:stable-2.14.10",
    "envoyproxy/envoy:v1.30.1",
    "hashicorp/vault:1.16.1",
    "mycorp/proxy:1.0",
    "envoyproxy/ratelimit:3",
    "shop/web@sha256:0123",
    "proxy",
];

/// A time within two hours of 10:30, or none.
fn time() -> impl Strategy<Value = Option<Stamp>> {
    prop_oneof![1 => Just(None), 6 => (-7200i64..7200).prop_map(|s| Some(plus(at("10:30:00"), s).into()))]
}

fn termination() -> BoxedStrategy<Termination> {
    (prop::sample::select(vec!["OOMKilled", "Error", "Completed", "ContainerCannotRun"]), 0i32..256, time(), time())
        .prop_map(|(reason, exit_code, started_at, finished_at)| Termination {
            reason: Some(reason.into()),
            exit_code,
            started_at,
            finished_at,
            message: None,
            verdict: Default::default(),
        })
        .boxed()
}

fn state() -> BoxedStrategy<ContainerState> {
    prop_oneof![
        prop::sample::select(vec!["CrashLoopBackOff", "ContainerCreating", "PodInitializing", "ImagePullBackOff"])
            .prop_map(|r| ContainerState::Waiting { reason: Some(r.into()) }),
        Just(ContainerState::Waiting { reason: None }),
        time().prop_map(|started_at| ContainerState::Running { started_at }),
        termination().prop_map(|t| ContainerState::Terminated(Box::new(t))),
        Just(ContainerState::Unknown),
    ]
    .boxed()
}

fn status() -> BoxedStrategy<ContainerStatusView> {
    (
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop_oneof![8 => 0u32..12, 1 => 0u32..5000],
        state(),
        prop::option::of(termination()),
    )
        .prop_map(|(ready, started, restart_count, state, last_termination)| {
            let mut status = ContainerStatusView::new(ready, started, restart_count, state);
            status.last_termination = last_termination.map(Box::new);
            status
        })
        .boxed()
}

fn flags() -> impl Strategy<Value = SpecFlags> {
    any::<[bool; 6]>().prop_map(|bits| {
        let all = [
            SpecFlags::READINESS_PROBE,
            SpecFlags::STARTUP_PROBE,
            SpecFlags::LIVENESS_PROBE,
            SpecFlags::RESOURCES,
            SpecFlags::LATEST_IMAGE,
            SpecFlags::PORT_CONFLICT,
        ];
        let mut flags = SpecFlags::default();
        for (bit, flag) in bits.iter().zip(all) {
            if *bit {
                flags.insert(flag);
            }
        }
        flags
    })
}

fn kind() -> impl Strategy<Value = ContainerKind> {
    prop::sample::select(vec![ContainerKind::Init, ContainerKind::RestartableInit, ContainerKind::Regular])
}

/// A Pod skeleton: containers with unique names, kinds and flags, and Pod-level facts.
fn pod() -> BoxedStrategy<PodView> {
    let containers = prop::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len())
        .prop_shuffle()
        .prop_flat_map(|names| {
            let n = names.len();
            let image = (prop::option::of(prop::sample::select(IMAGES.to_vec())), any::<bool>());
            (Just(names), prop::collection::vec((kind(), flags(), prop::option::weighted(0.9, status()), image), n))
        })
        .prop_map(|(names, parts)| {
            names
                .into_iter()
                .zip(parts)
                .map(|(name, (kind, flags, status, (image, agent)))| {
                    let catalog = sidecar_watch_engine::CatalogId::recognise(name, image, agent);
                    let spec = ContainerSpec {
                        name: name.into(),
                        kind,
                        flags,
                        catalog,
                        liveness_target: None,
                        version: None,
                        resources: None,
                    };
                    ContainerView::new(spec, status)
                })
                .collect::<Vec<_>>()
        });
    let condition =
        prop::option::of((any::<bool>(), time()).prop_map(|(status, since)| ConditionView { status, since }));
    (containers, any::<bool>(), time(), time(), prop::option::weighted(0.2, time()), condition)
        .prop_map(|(containers, owned_by_job, created_at, started_at, deleting, ready_condition)| {
            let mut view = PodView::new("uid", "web-1");
            view.group_mut().namespace = "shop".into();
            view.group_mut().owned_by_job = owned_by_job;
            view.created_at = created_at;
            view.started_at = started_at;
            view.deleting_since = deleting.flatten();
            view.set_ready_condition(ready_condition);
            view.containers = containers.into();
            view
        })
        .boxed()
}

/// Later states of the same Pod: same containers, new statuses.
fn states_of(view: PodView) -> impl Strategy<Value = Vec<(PodView, i64)>> {
    let n = view.containers.len();
    prop::collection::vec((prop::collection::vec(prop::option::weighted(0.9, status()), n), 1i64..900), 0..4).prop_map(
        move |steps| {
            steps
                .into_iter()
                .map(|(statuses, gap)| {
                    let mut next = view.clone();
                    for (c, s) in next.containers.iter_mut().zip(statuses) {
                        c.set_status(s);
                    }
                    (next, gap)
                })
                .collect()
        },
    )
}

fn duration() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop::sample::select(vec!["0s", "1s", "30s", "2m", "5m", "15m", "1h", "1h30m", "1d"]).prop_map(String::from),
    )
}

fn severity() -> impl Strategy<Value = Option<Severity>> {
    prop::option::of(prop::sample::select(vec![Severity::Info, Severity::Warning, Severity::Critical]))
}

fn for_rule() -> impl Strategy<Value = Option<ForRuleSpec>> {
    prop::option::of(
        (prop::option::of(any::<bool>()), severity(), duration()).prop_map(|(enabled, severity, for_)| ForRuleSpec {
            enabled,
            severity,
            for_,
        }),
    )
}

fn instant_rule() -> impl Strategy<Value = Option<InstantRuleSpec>> {
    prop::option::of(
        (prop::option::of(any::<bool>()), severity())
            .prop_map(|(enabled, severity)| InstantRuleSpec { enabled, severity }),
    )
}

fn policy() -> BoxedStrategy<CompiledPolicy> {
    let sidecars = prop::option::of(
        (
            (any::<bool>(), any::<bool>()),
            prop::sample::subsequence(NAMES.to_vec(), 0..3),
            prop::option::of(prop::sample::select(vec![
                ".*-sidecar|istio-proxy|envoy",
                "envoy.*",
                ".*",
                "app",
                "[a-z]+-init",
            ])),
        )
            .prop_map(|((native, catalog), names, pattern)| SidecarSelector {
                native,
                catalog,
                names: names.into_iter().map(String::from).collect(),
                pattern: pattern.map(String::from),
                required: Vec::new(),
                minimum_versions: Default::default(),
            }),
    );
    let restarts = prop::option::of(
        (prop::option::of(any::<bool>()), severity(), prop::option::of(1u32..6), duration()).prop_map(
            |(enabled, severity, threshold, window)| RestartsRuleSpec { enabled, severity, threshold, window },
        ),
    );
    let oom = prop::option::of(
        (prop::option::of(any::<bool>()), severity(), duration())
            .prop_map(|(enabled, severity, window)| WindowRuleSpec { enabled, severity, window }),
    );
    let rules = prop::option::of(
        (
            (for_rule(), for_rule(), restarts, for_rule(), oom),
            (instant_rule(), for_rule(), instant_rule(), instant_rule(), instant_rule(), for_rule()),
        )
            .prop_map(|((a, b, c, d, e), (f, g, h, i, j, k))| RulesSpec {
                sidecar_not_ready: a,
                main_ready_sidecar_not_ready: b,
                restarts: c,
                crash_loop: d,
                oom_killed: e,
                startup_order: f,
                job_blocked: g,
                shutdown_order: h,
                misconfiguration: i,
                sidecar_missing: j,
                version_drift: k,
                // On workloads: never raised by a Pod's evaluation.
                injection_failed: None,
                rollout_blocked: None,
            }),
    );
    (sidecars, rules)
        .prop_map(|(sidecars, rules)| {
            let spec = PolicySpec { selector: None, sidecars, rules, events: true };
            CompiledPolicy::compile(PolicyRef::namespaced("shop", "p"), &spec)
        })
        .prop_filter_map("invalid specs are rejected, not evaluated", Result::ok)
        .boxed()
}

/// `t + d`, saturating at the end of time as the engine's clocks do (a policy's `for` may be
/// absurdly long).
fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|sd| t.checked_add(sd).ok()).unwrap_or(Timestamp::MAX)
}

/// The `for` of the rule behind a pending alert.
fn for_of(policy: &CompiledPolicy, name: AlertName) -> Duration {
    let rules = &policy.rules;
    match name {
        AlertName::SidecarContainerNotReady => rules.sidecar_not_ready.for_,
        AlertName::MainContainerReadyButSidecarNot => rules.main_ready_sidecar_not_ready.for_,
        AlertName::SidecarCrashLooping => rules.crash_loop.for_,
        AlertName::JobBlockedBySidecar => rules.job_blocked.for_,
        other => panic!("{other} is never pending"),
    }
}

/// A Pod whose native sidecars each have a `startupProbe`, a `postStart` hook or both: the
/// kubelet starts the main containers only once they have started.
fn gated_pod() -> BoxedStrategy<PodView> {
    (pod(), prop::collection::vec(1u8..4, NAMES.len()))
        .prop_map(|(mut view, gates)| {
            let mut containers = view.containers.to_vec();
            for (c, gate) in containers.iter_mut().zip(gates).filter(|(c, _)| c.kind == ContainerKind::RestartableInit)
            {
                c.spec_mut().flags.set(SpecFlags::STARTUP_PROBE, gate & 1 != 0);
                c.spec_mut().flags.set(SpecFlags::POST_START, gate & 2 != 0);
            }
            view.containers = containers.into();
            view
        })
        .boxed()
}

/// A Pod, a history built by observing it through a few states, the last state, a policy and `now`.
fn case() -> impl Strategy<Value = (PodView, ObservedPod, CompiledPolicy, Timestamp)> {
    case_of(pod())
}

/// [`case`] with Pods from `pods`.
fn case_of(pods: BoxedStrategy<PodView>) -> impl Strategy<Value = (PodView, ObservedPod, CompiledPolicy, Timestamp)> {
    (pods, policy(), -3600i64..3600)
        .prop_flat_map(|(first, policy, offset)| {
            let steps = states_of(first.clone());
            (Just(first), steps, Just(policy), Just(offset))
        })
        .prop_map(|(first, steps, policy, offset)| {
            let mut seen = at("10:00:00");
            let mut history = ObservedPod::new(first.clone(), seen);
            let mut last = first;
            for (view, gap) in steps {
                seen = plus(seen, gap);
                history.observe(view.clone(), seen);
                last = view;
            }
            (last, history, policy, plus(at("10:30:00"), offset))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_is_sound((view, history, policy, now) in case()) {
        let evaluation = evaluate(&view, &policy, history.history(), now, Around::default());

        // Deterministic: the same input gives the same output, with or without history clones.
        prop_assert_eq!(&evaluate(&view, &policy, &history.history().clone(), now, Around::default()), &evaluation);

        for alert in &evaluation.alerts {
            // Only sidecars: never a main container or a plain init container.
            if alert.container.is_empty() {
                prop_assert_eq!(alert.check, Some(Check::SidecarSprawl), "{:?}", alert);
            } else {
                let container = view.containers.iter().find(|c| c.name == alert.container);
                let container = container.expect("the alert names a container of the Pod");
                prop_assert_ne!(container.kind, ContainerKind::Init, "{:?}", alert);
                prop_assert!(sidecar_watch_testkit::engine::sidecar_type(&policy, &view, container).is_some(), "not a sidecar: {:?}", alert);
                // The catalog names a regular container a sidecar only beside a container it
                // does not know: a Pod made only of well-known proxies runs them as its mains.
                if matches!(alert.identified_by, Some(IdentifiedBy::Catalog(_))) && container.kind == ContainerKind::Regular {
                    prop_assert!(
                        view.containers.iter().any(|c| c.kind == ContainerKind::Regular && c.catalog.is_none()),
                        "a lone catalog container became a sidecar: {:?}", alert
                    );
                }
            }
            prop_assert_eq!(alert.identified_by.is_some(), !alert.container.is_empty(), "{:?}", alert);
            prop_assert!(alert.since.is_some(), "{:?}", alert);
            prop_assert!(!alert.message.is_empty());
            prop_assert_eq!(alert.check.is_some(), alert.name == AlertName::SidecarMisconfigured);
            // Pending alerts are due at since+for, and the evaluation wakes up no later.
            if alert.state == AlertState::Pending {
                let due = add(alert.since.unwrap(), for_of(&policy, alert.name));
                prop_assert!(due > now, "{:?} pending past its due time {}", alert, due);
                let next = evaluation.next_change.expect("a pending alert sets next_change");
                prop_assert!(next <= due, "next_change {} after {:?} is due at {}", next, alert, due);
            }
        }
        if let Some(next) = evaluation.next_change {
            prop_assert!(next > now, "next_change {} not after now {}", next, now);
        }
        // One alert per (name, container, check), in the documented order.
        let keys: Vec<_> = evaluation.alerts.iter().map(|a| (a.name, a.container.clone(), a.check)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(keys, sorted);
        // Every condition without an API start is one of the reported alerts.
        for (name, container) in &evaluation.clocked {
            prop_assert!(
                evaluation.alerts.iter().any(|a| a.name.as_str() == *name && a.container == *container),
                "clocked {} {} without an alert", name, container
            );
        }
    }

    /// A native sidecar the kubelet waits for (a `startupProbe` or a `postStart` hook) is never
    /// reported out of start order, whatever statuses the operator saw.
    #[test]
    fn a_gated_native_sidecar_is_never_out_of_order((view, history, policy, now) in case_of(gated_pod())) {
        let evaluation = evaluate(&view, &policy, history.history(), now, Around::default());
        for alert in evaluation.alerts.iter().filter(|a| a.name == AlertName::MainStartedBeforeSidecarReady) {
            let sidecar = view.containers.iter().find(|c| c.name == alert.container).expect("a container");
            prop_assert_ne!(sidecar.kind, ContainerKind::RestartableInit, "{:?}", alert);
        }
    }

    /// Observing any state keeps the history bounded: one entry per container that is not a
    /// plain init container and has a status, in container order, and a bounded list of
    /// restart times each.
    #[test]
    fn observe_keeps_history_bounded((view, mut history, _policy, now) in case()) {
        history.observe(view.clone(), now);
        prop_assert!(history.history().containers.iter().all(|h| h.restarts.len() <= sidecar_watch_engine::MAX_RECORDED_RESTARTS));
        let observed: Vec<u32> = view.containers.iter().enumerate()
            .filter(|(_, c)| c.kind != ContainerKind::Init && c.status().is_some())
            .map(|(at, _)| at as u32)
            .collect();
        let kept: Vec<u32> = history.history().containers.iter().map(|h| h.at).collect();
        prop_assert_eq!(kept, observed);
    }
}
