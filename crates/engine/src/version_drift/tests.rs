//! The workload half of `SidecarVersionDrift`: counts, the newest version, and the rule.

use jiff::Timestamp;
use serde_json::json;

use super::{counted, Counted, Newest, SidecarVersions};
use crate::alert::{AlertName, AlertState};
use crate::history::PodHistory;
use crate::pod::PodView;
use crate::policy::CompiledPolicy;
use crate::rules::{evaluate, Around};
use crate::{Interner, PolicyRef};
use sidecar_watch_api::{PolicySpec, SlimPod};

/// `shop/NAME` of Deployment `web` (through ReplicaSet `web-HASH`), created at 10:MM, with
/// a native `istio-proxy` of `proxyv2:TAG`; `phase` and `deleting` as given.
fn pod(names: &mut Interner, name: &str, hash: &str, tag: &str, minute: u32, phase: &str, deleting: bool) -> PodView {
    let created = format!("2025-06-03T10:{minute:02}:00Z");
    let mut metadata = json!({
        "name": name, "namespace": "shop", "uid": format!("u-{name}"), "creationTimestamp": created,
        "labels": {"pod-template-hash": hash},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{hash}"),
                             "uid": hash, "controller": true}],
    });
    if deleting {
        metadata["deletionTimestamp"] = json!("2025-06-03T11:59:00Z");
    }
    let pod = json!({
        "metadata": metadata,
        "spec": {"initContainers": [{"name": "istio-proxy", "image": format!("docker.io/istio/proxyv2:{tag}"),
                                     "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": phase, "startTime": created}
    });
    PodView::from_pod_in(&serde_json::from_value::<SlimPod>(pod).expect("a Pod"), names)
}

fn running(names: &mut Interner, name: &str, hash: &str, tag: &str, minute: u32) -> PodView {
    pod(names, name, hash, tag, minute, "Running", false)
}

fn proxy(view: &PodView) -> Vec<Counted> {
    counted(view, view.containers.iter().filter(|c| c.name.as_str() == "istio-proxy"))
}

fn newest(rollouts: &SidecarVersions, view: &PodView) -> Option<(String, String)> {
    let list = rollouts.newest_of(view);
    list.first().map(|(_, n): &(_, Newest)| (n.version.to_string(), n.since.to_string()))
}

#[test]
fn one_version_has_no_newest_and_a_second_one_makes_the_later_release_newest() {
    let names = &mut Interner::default();
    let old = running(names, "web-a", "aaa", "1.24.2", 0);
    let new = running(names, "web-b", "bbb", "1.25.0", 30);
    let mut rollouts = SidecarVersions::default();
    rollouts.replace(&[], &proxy(&old));
    assert_eq!(newest(&rollouts, &old), None);
    assert_eq!(rollouts.take_changed(), Vec::new(), "one version: nothing to compare with");
    rollouts.replace(&[], &proxy(&new));
    let want = Some(("1.25.0".to_string(), "2025-06-03T10:30:00Z".to_string()));
    assert_eq!(newest(&rollouts, &old), want);
    assert_eq!(newest(&rollouts, &new), want);
    assert_eq!(rollouts.take_changed().len(), 1, "the workload is compared with 1.25.0 now");
    // Another Pod on 1.25.0, created later: counts, but the newest stays the same.
    let newer = running(names, "web-c", "bbb", "1.25.0", 40);
    rollouts.replace(&[], &proxy(&newer));
    assert_eq!(newest(&rollouts, &old), want);
    assert_eq!(rollouts.take_changed(), Vec::new(), "no Pod is compared with anything else");
    // The old Pod goes: one version left.
    rollouts.replace(&proxy(&old), &[]);
    assert_eq!(newest(&rollouts, &new), None);
    assert_eq!(rollouts.take_changed().len(), 1);
}

#[test]
fn releases_order_by_number_and_other_tags_by_their_first_pod() {
    let names = &mut Interner::default();
    // 1.9 came later, but 1.10 is the higher release.
    let ten = running(names, "web-a", "aaa", "1.10.0", 0);
    let nine = running(names, "web-b", "bbb", "1.9.0", 30);
    let rollouts = SidecarVersions::of_pods([&ten, &nine], |p| p.containers.iter());
    assert_eq!(newest(&rollouts, &nine).map(|n| n.0).as_deref(), Some("1.10.0"));
    // `latest` names no release: the version whose first Pod came last is newest.
    let latest = running(names, "web-c", "ccc", "latest", 45);
    let rollouts = SidecarVersions::of_pods([&ten, &nine, &latest], |p| p.containers.iter());
    assert_eq!(newest(&rollouts, &ten).map(|n| n.0).as_deref(), Some("latest"));
}

#[test]
fn finished_deleting_and_ownerless_pods_do_not_count() {
    let names = &mut Interner::default();
    let done = pod(names, "web-a", "aaa", "1.24.2", 0, "Succeeded", false);
    let deleting = pod(names, "web-b", "aaa", "1.24.2", 0, "Running", true);
    assert_eq!(proxy(&done), Vec::new());
    assert_eq!(proxy(&deleting), Vec::new());
    let bare = PodView::from_pod(
        &serde_json::from_value::<SlimPod>(json!({
            "metadata": {"name": "solo", "namespace": "shop", "uid": "u-solo", "creationTimestamp": "2025-06-03T10:00:00Z"},
            "spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.24.2"}]},
        }))
        .expect("a Pod"),
    );
    assert_eq!(proxy(&bare), Vec::new());
}

fn policy(spec: &str) -> CompiledPolicy {
    let spec: PolicySpec = serde_norway::from_str(spec).expect("a spec");
    CompiledPolicy::compile(PolicyRef::namespaced("shop", "mesh"), &spec).expect("compiles")
}

/// `SidecarVersionDrift` alerts of `view` at 11:MM among `pods`.
fn drift(pods: &[&PodView], view: &PodView, policy: &CompiledPolicy, minute: u32) -> Vec<(AlertState, String)> {
    let rollouts = SidecarVersions::of_pods(pods.iter().copied(), |p| p.containers.iter());
    let newest = rollouts.newest_of(view);
    let around = Around { newest: &newest, ..Around::default() };
    let now: Timestamp = format!("2025-06-03T11:{minute:02}:00Z").parse().expect("a time");
    let evaluation = evaluate(view, policy, &PodHistory::default(), now, around);
    evaluation
        .alerts
        .into_iter()
        .filter(|a| a.name == AlertName::SidecarVersionDrift)
        .map(|a| (a.state, a.message))
        .collect()
}

#[test]
fn a_pod_behind_its_workload_fires_for_after_the_first_pod_on_the_newest() {
    let names = &mut Interner::default();
    let old = running(names, "web-a", "aaa", "1.24.2", 0);
    let new = running(names, "web-b", "bbb", "1.25.0", 20);
    let policy = policy("rules: {misconfiguration: {enabled: false}}");
    let message = "Sidecar istio-proxy (Istio) in Pod shop/web-a runs version \"1.24.2\", while the Pods of \
                   Deployment web created since 2025-06-03T10:20:00Z run \"1.25.0\": the workload has run more \
                   than one version of it since then; restart the workload: kubectl rollout restart \
                   deployment/web -n shop";
    // 11:10 is 50 minutes into the default 1h: pending, as a rollout in progress is.
    assert_eq!(drift(&[&old, &new], &old, &policy, 10), vec![(AlertState::Pending, message.to_string())]);
    assert_eq!(drift(&[&old, &new], &old, &policy, 20), vec![(AlertState::Firing, message.to_string())]);
    assert_eq!(drift(&[&old, &new], &new, &policy, 20), Vec::new(), "the newest Pod is not behind");
    assert_eq!(drift(&[&old], &old, &policy, 20), Vec::new(), "one version is no drift");
    // A Pod being deleted is on its way out.
    let leaving = pod(names, "web-a", "aaa", "1.24.2", 0, "Running", true);
    assert_eq!(drift(&[&old, &new], &leaving, &policy, 20), Vec::new());
    let off = crate::policy::CompiledPolicy::compile(
        PolicyRef::namespaced("shop", "mesh"),
        &serde_norway::from_str("rules: {versionDrift: {enabled: false}}").expect("a spec"),
    )
    .expect("compiles");
    assert_eq!(drift(&[&old, &new], &old, &off, 20), Vec::new(), "the rule turned off");
}

#[test]
fn a_pod_older_than_the_minimum_reports_that_once_not_its_workload_too() {
    let names = &mut Interner::default();
    let old = running(names, "web-a", "aaa", "1.24.2", 0);
    let new = running(names, "web-b", "bbb", "1.25.0", 20);
    let minimum = policy("sidecars: {minimumVersions: {istio: \"1.25\"}}\nrules: {misconfiguration: {enabled: false}}");
    let alerts = drift(&[&old, &new], &old, &minimum, 20);
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].1.contains("older than 1.25.0, the minimum"), "{}", alerts[0].1);
}

#[test]
fn a_workload_on_more_versions_than_any_rollout_runs_is_not_compared() {
    let names = &mut Interner::default();
    let pods: Vec<PodView> = (0..=super::MAX_COMPARED_VERSIONS)
        .map(|i| running(names, &format!("web-{i}"), "aaa", &format!("1.{i}.0"), 0))
        .collect();
    let mut rollouts = SidecarVersions::of_pods(pods[..super::MAX_COMPARED_VERSIONS].iter(), |p| p.containers.iter());
    assert_eq!(newest(&rollouts, &pods[0]).map(|n| n.0), Some(format!("1.{}.0", super::MAX_COMPARED_VERSIONS - 1)));
    rollouts.replace(&[], &proxy(&pods[super::MAX_COMPARED_VERSIONS]));
    assert_eq!(newest(&rollouts, &pods[0]), None);
    assert_eq!(rollouts.take_changed().len(), 1, "once, when it stops being compared");
    let another = running(names, "web-x", "aaa", "2.0.0", 0);
    rollouts.replace(&[], &proxy(&another));
    assert_eq!(rollouts.take_changed(), Vec::new(), "not compared: nothing to evaluate again");
}

#[test]
fn a_workload_of_the_same_name_in_another_namespace_is_another_workload() {
    let names = &mut Interner::default();
    let ours = running(names, "web-a", "aaa", "1.24.2", 0);
    let json = json!({
        "metadata": {"name": "web-b", "namespace": "tenant", "uid": "u-t", "creationTimestamp": "2025-06-03T10:30:00Z",
            "labels": {"pod-template-hash": "bbb"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-bbb", "uid": "t",
                                 "controller": true}]},
        "spec": {"initContainers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.99.0",
                                     "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": "Running"}
    });
    let theirs = PodView::from_pod_in(&serde_json::from_value::<SlimPod>(json).expect("a Pod"), names);
    let rollouts = SidecarVersions::of_pods([&ours, &theirs], |p| p.containers.iter());
    assert_eq!(newest(&rollouts, &ours), None, "another namespace's Deployment web is not ours");
    assert_eq!(newest(&rollouts, &theirs), None);
}
