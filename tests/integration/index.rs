//! The operator's core without a cluster: Pods and policies in the index, and what the
//! operator makes of it out: series (`/metrics`), Events announced once across leaders, and
//! policy status. The index on its own is tested in its crate, `crates/index/tests/index/`.

use std::collections::{BTreeMap, HashSet};

use sidecar_watch::api::{ClusterPolicySpec, PolicySpec, SlimPod};
use sidecar_watch::engine::{AlertName, AlertState, CompiledPolicy, NamespaceMeta, PodUid, PodView, PolicyRef};
use sidecar_watch::events::{announced_from_events, Announcer};
use sidecar_watch::index::{Index, PolicyEntry, TransitionKind};
use sidecar_watch_testkit::pod::{Container, PodBuilder};

use sidecar_watch::index::Writes;
use sidecar_watch_harness::backstop::{test_name, Backstop, Logs};
use sidecar_watch_testkit::index::{alert_names, mesh_policy, ts, web_pod, CREATED};

/// The per-Pod families as one text, chunks joined.
fn scrape(index: &Index) -> String {
    let mut text = String::new();
    sidecar_watch::metrics::render_index(index, &Default::default(), |chunk| {
        text.push_str(&chunk);
        true
    });
    text
}
#[test]
fn series_follow_pod_and_policy_lifecycle() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    let (policy, e) = mesh_policy(serde_json::json!({"matchLabels": {"app": "web"}}));
    index.apply_policy(policy.clone(), e, now);
    index.apply_pod(web_pod("web-1", "u1", &[("app", "web")], false), now);
    index.apply_pod(web_pod("other", "u2", &[("app", "batch")], false), now);

    let text = scrape(&index);
    assert!(text.contains("sidecar_alerts{alertname=\"SidecarContainerNotReady\",alertstate=\"firing\",severity=\"warning\",policy=\"mesh\",policy_namespace=\"shop\",namespace=\"shop\",pod=\"web-1\",container=\"istio-proxy\",check=\"\",workload_kind=\"Pod\",workload=\"web-1\",product=\"istio\"} 1"), "{text}");
    assert!(text.contains(
        "sidecar_container_ready{namespace=\"shop\",pod=\"web-1\",container=\"istio-proxy\",sidecar_type=\"native\",workload_kind=\"Pod\",workload=\"web-1\",product=\"istio\"} 0"
    ));
    assert!(!text.contains("pod=\"other\""), "an unselected Pod has no series");
    assert!(text.contains("sidecar_policy_pods{policy=\"mesh\",policy_namespace=\"shop\",state=\"matched\"} 1"));
    assert!(text.contains("sidecar_policy_pods{policy=\"mesh\",policy_namespace=\"shop\",state=\"alerting\"} 1"));

    // Relabelled out of scope: its series go, without a Resolved transition.
    let outcome = index.apply_pod(web_pod("web-1", "u1", &[("app", "api")], false), now);
    assert!(outcome.transitions.is_empty());
    let text = scrape(&index);
    assert!(!text.contains("sidecar_alerts{"), "{text}");

    // Selector changed to match it again, then the policy is deleted.
    let (policy, e) = mesh_policy(serde_json::json!({"matchLabels": {"app": "api"}}));
    index.apply_policy(policy.clone(), e, now);
    assert_eq!(index.policy_stats()[&policy].matched_pods, 1);
    index.delete_policy(&policy, now);
    assert!(index.policy_stats().is_empty());
    assert!(alert_names(&index, AlertState::Firing).is_empty());

    // A deleted Pod is forgotten.
    index.delete_pod(PodUid::parse("u1"), now);
    index.delete_pod(PodUid::parse("u2"), now);
    assert_eq!(index.pod_count(), 0);
}

#[test]
fn invalid_policy_evaluates_nothing_and_others_keep_working() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    let bad_spec: PolicySpec =
        serde_json::from_value(serde_json::json!({"sidecars": {"pattern": "envoy("}})).expect("spec decodes");
    let bad = PolicyRef::namespaced("shop", "broken");
    let compiled = CompiledPolicy::compile(bad.clone(), &bad_spec);
    let error = compiled.as_ref().expect_err("invalid").clone();
    assert_eq!(error.field, "spec.sidecars.pattern");
    index.apply_policy(bad.clone(), PolicyEntry::new(compiled), now);
    let (good, e) = mesh_policy(serde_json::json!({}));
    index.apply_policy(good.clone(), e, now);
    index.apply_pod(web_pod("web-1", "u1", &[("app", "web")], false), now);

    let stats = index.policy_stats();
    assert_eq!(stats[&bad].matched_pods, 0);
    assert_eq!(stats[&good].matched_pods, 1);
    let status =
        sidecar_watch::controller::status::desired_status(&index.policies()[&bad], &stats[&bad], Default::default());
    assert_eq!(status.conditions[0].status, "False");
    assert_eq!(status.conditions[0].reason, "InvalidSpec");
    assert!(status.conditions[0].message.contains("spec.sidecars.pattern"), "{}", status.conditions[0].message);
}

/// A namespace labelled for injection after its Pods were created: they run without the
/// proxy, and say so at once; the label taken away, the alert resolves.
#[test]
fn a_namespace_labelled_for_injection_after_its_pods_reports_them_missing() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    index.apply_policy(
        PolicyRef::cluster("all"),
        PolicyEntry::new(CompiledPolicy::compile_cluster("all", &ClusterPolicySpec::default())),
        now,
    );
    index.apply_namespace("shop", NamespaceMeta::default(), now);
    let without_proxy =
        PodBuilder::new("shop", "web-1").uid("u1").created(CREATED).container(Container::new("app", "shop/web:1.0"));
    index.apply_pod(PodView::from_pod(&without_proxy.decode::<SlimPod>()), now);
    let missing = |outcome: &sidecar_watch::index::Outcome| {
        outcome
            .transitions
            .iter()
            .filter(|t| t.alert.name == AlertName::SidecarMissing)
            .map(|t| t.kind)
            .collect::<Vec<_>>()
    };
    // A label that no injector reads changes nothing.
    let team = BTreeMap::from([("team".to_string(), "a".to_string())]);
    let outcome = index.apply_namespace("shop", NamespaceMeta::new(team.clone(), &BTreeMap::new()), now);
    assert!(outcome.transitions.is_empty() && outcome.wakeups.is_empty(), "{outcome:?}");
    let mut labelled = team.clone();
    labelled.insert("istio-injection".into(), "enabled".into());
    let outcome = index.apply_namespace("shop", NamespaceMeta::new(labelled, &BTreeMap::new()), now);
    assert_eq!(missing(&outcome), [TransitionKind::Fired]);
    // The Event names the missing container in its action (it has no fieldPath to name):
    // a new leader reads it back and publishes nothing again.
    let fired = outcome.transitions.iter().find(|t| t.alert.name == AlertName::SidecarMissing).expect("fired");
    assert_eq!(sidecar_watch::events::action(fired), "istio-proxy");
    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "e-missing", "namespace": "shop"}, "eventTime": "2026-11-22T10:10:00.000000Z",
        "reason": "SidecarMissing", "type": "Warning", "reportingController": "sidecar-watch",
        "reportingInstance": "old-leader", "action": "istio-proxy",
        "regarding": {"kind": "Pod", "apiVersion": "v1", "name": "web-1", "namespace": "shop", "uid": "u1"},
        "related": {"kind": "ClusterSidecarPolicy", "apiVersion": "sidecarwatch.io/v1alpha1", "name": "all"}
    }))
    .expect("an Event");
    let mut announcer = Announcer::from_announced(announced_from_events(&[event]));
    let published = announcer.reconcile(index.firing_now(now), |uid| index.contains_pod(uid));
    assert!(published.fire.iter().all(|t| t.alert.name != AlertName::SidecarMissing), "{:?}", published.fire);
    assert!(published.resolve.is_empty());
    let outcome = index.apply_namespace("shop", NamespaceMeta::new(team, &BTreeMap::new()), now);
    assert_eq!(missing(&outcome), [TransitionKind::Resolved]);
}

/// A long-lived leader remembers only what fires now: resolved alerts and deleted Pods
/// leave nothing behind, however many Pods come and go.
#[test]
fn announcements_are_forgotten_when_resolved_or_the_pod_is_gone() {
    let index = Index::new();
    let (policy, e) = mesh_policy(serde_json::json!({}));
    index.apply_policy(policy, e, ts("2026-11-22T10:00:00Z"));
    let mut announcer = Announcer::default();
    for i in 0..100 {
        let uid = format!("u{i}");
        let fired = index.apply_pod(web_pod(&format!("web-{i}"), &uid, &[], false), ts("2026-11-22T10:10:00Z"));
        assert!(fired.transitions.iter().all(|t| announcer.should_publish(t)), "each firing alert is announced once");
        assert!(!fired.transitions.is_empty());
        if i % 2 == 0 {
            let resolved = index.apply_pod(web_pod(&format!("web-{i}"), &uid, &[], true), ts("2026-11-22T10:11:00Z"));
            assert!(resolved.transitions.iter().all(|t| announcer.should_publish(t)), "each resolution once");
        } else {
            index.delete_pod(PodUid::parse(&uid), ts("2026-11-22T10:11:00Z"));
            announcer.forget_untracked(|uid| index.contains_pod(uid));
        }
    }
    assert_eq!(announcer.len(), 0, "nothing fires any more, nothing is remembered");
    assert_eq!(index.pod_count(), 50);
}

#[test]
fn restarted_leader_announces_only_what_changed() {
    let index = Index::new();
    let (policy, e) = mesh_policy(serde_json::json!({}));
    index.apply_policy(policy, e, ts("2026-11-22T10:00:00Z"));
    index.apply_pod(web_pod("web-1", "u1", &[], false), ts("2026-11-22T10:10:00Z"));
    let firing = index.firing_now(ts("2026-11-22T10:10:00Z"));
    assert_eq!(firing.len(), 2, "{firing:#?}");

    // Events a previous leader published: NotReady announced, MainReady announced and
    // resolved, and a crash loop announced that has since cleared.
    let event = |reason: &str, container: &str, time: &str| -> k8s_openapi::api::events::v1::Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("e-{reason}"), "namespace": "shop"},
            "eventTime": time,
            "reason": reason,
            "type": if reason.ends_with("Resolved") {"Normal"} else {"Warning"},
            "reportingController": "sidecar-watch",
            "reportingInstance": "old-leader",
            "action": "Alert",
            "regarding": {"kind": "Pod", "apiVersion": "v1", "name": "web-1", "namespace": "shop", "uid": "u1",
                          "fieldPath": format!("spec.initContainers{{{container}}}")},
            "related": {"kind": "SidecarPolicy", "apiVersion": "sidecarwatch.io/v1alpha1", "name": "mesh", "namespace": "shop"}
        }))
        .expect("event")
    };
    let events = vec![
        event("SidecarContainerNotReady", "istio-proxy", "2026-11-22T10:05:00.000000Z"),
        event("MainContainerReadyButSidecarNot", "istio-proxy", "2026-11-22T10:02:00.000000Z"),
        event("MainContainerReadyButSidecarNotResolved", "istio-proxy", "2026-11-22T10:03:00.000000Z"),
        event("SidecarCrashLooping", "istio-proxy", "2026-11-22T10:04:00.000000Z"),
    ];
    let mut announcer = Announcer::from_announced(announced_from_events(&events));
    let published = announcer.reconcile(firing, |uid| index.contains_pod(uid));
    let mut summary: Vec<_> = published.fire.iter().map(|t| (t.kind, t.alert.name)).collect();
    summary.extend(published.resolve.iter().map(|key| (TransitionKind::Resolved, key.alert.name)));
    summary.sort_by_key(|(k, a)| (format!("{k:?}"), *a));
    assert_eq!(
        summary,
        [
            (TransitionKind::Fired, AlertName::MainContainerReadyButSidecarNot),
            (TransitionKind::Resolved, AlertName::SidecarCrashLooping),
        ]
    );
}

/// Streamed a segment at a time, every family still comes once, with all its samples
/// together after its `# HELP`/`# TYPE` (the text format rejects split families), and
/// `promtool` accepts the whole scrape.
#[test]
fn streamed_scrape_keeps_families_whole() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    let (policy, e) = mesh_policy(serde_json::json!({}));
    index.apply_policy(policy, e, now);
    for i in 0..300 {
        index.apply_pod(web_pod(&format!("web-{i}"), &format!("u{i}"), &[], i % 3 == 0), now);
    }
    let metrics = sidecar_watch::metrics::Metrics::new();
    let mut chunks = Vec::new();
    metrics.render(&index, true, |chunk| {
        chunks.push(chunk);
        true
    });
    assert!(chunks.len() > 64, "one chunk per segment and family, not {}", chunks.len());
    let text = chunks.concat();
    let mut calls = 0;
    metrics.render(&index, true, |_| {
        calls += 1;
        false
    });
    assert_eq!(calls, 1, "rendering stops once the client is gone");

    let mut seen: HashSet<String> = HashSet::new();
    let mut current = String::new();
    let mut samples: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            current = help.split(' ').next().unwrap_or_default().to_string();
            assert!(seen.insert(current.clone()), "{current} has a second # HELP");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            // Histograms' samples carry suffixes of their family's name.
            assert!(name.starts_with(current.as_str()), "{name} sample outside its family (in {current})");
            *samples.entry(current.clone()).or_default() += 1;
        }
    }
    // Two firing alerts on each of the 200 Pods whose sidecar is not ready.
    assert_eq!(samples["sidecar_alerts"], 200 * 2);
    assert_eq!(samples["sidecar_container_ready"], 300);
    assert_eq!(samples["sidecar_container_restarts_total"], 300);
    assert_eq!(samples["sidecar_policy_pods"], 2);

    // `scripts/test` installs promtool (Debian's `prometheus`); a missing one is a failure.
    // A promtool that never ends would hold the suite: the backstop ends it instead.
    let _bound = Backstop::arm(test_name(), std::time::Duration::from_secs(120), Logs::default());
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus, or run scripts/test)");
    {
        use std::io::Write as _;
        let mut stdin = promtool.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("promtool reads the scrape");
    }
    let output = promtool.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Pod with more sidecars than the limit: the first ones are evaluated and exported, the
/// Pod reports sprawl, the outcome counts the limit; a namespace exports at most its share
/// of alert series while its policy status counts every alert.
#[test]
fn one_pod_and_one_namespace_cost_at_most_their_limits() {
    let index = Index::with_max_sidecars(3);
    let now = ts("2026-11-22T10:10:00Z");
    let spec: PolicySpec = serde_json::from_value(serde_json::json!({})).expect("spec");
    let policy = PolicyRef::namespaced("flood", "all");
    index.apply_policy(policy.clone(), PolicyEntry::new(CompiledPolicy::compile(policy.clone(), &spec)), now);
    let sidecars: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"name": format!("s{i}-sidecar"), "image": "busybox", "restartPolicy": "Always"}))
        .collect();
    let pod: SlimPod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "flood", "namespace": "flood", "uid": "f1", "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {"initContainers": sidecars, "containers": [{"name": "app", "image": "busybox"}]}
    }))
    .expect("pod");
    let outcome = index.apply_pod(PodView::from_pod(&pod), now);
    assert_eq!(outcome.limited_pods, 1);
    let mut checked = Vec::new();
    index.for_each_pod(|p| {
        assert_eq!(p.sidecar_containers().count(), 3);
        for a in &p.results[0].alerts {
            checked.push(format!(
                "{}/{}",
                p.results[0].container_name(a, p.view()),
                a.check.map_or("", |c| c.as_str())
            ));
        }
    });
    checked.sort();
    let mut expected: Vec<String> = (0..3)
        .flat_map(|i| {
            ["latest-image", "no-readiness-probe", "no-resources", "no-startup-probe"]
                .map(|c| format!("s{i}-sidecar/{c}"))
        })
        .collect();
    expected.push("/sidecar-sprawl".into());
    expected.sort();
    assert_eq!(checked, expected);

    let mut text = String::new();
    let options = sidecar_watch::metrics::RenderOptions { max_series_per_namespace: 5, ..Default::default() };
    let limited = sidecar_watch::metrics::render_index(&index, &options, |chunk| {
        text.push_str(&chunk);
        true
    });
    assert!(limited);
    assert_eq!(text.lines().filter(|l| l.starts_with("sidecar_alerts{")).count(), 5);
    assert_eq!(
        index.policy_stats()[&policy].pending_alerts + index.policy_stats()[&policy].firing.values().sum::<u32>(),
        13
    );
}
