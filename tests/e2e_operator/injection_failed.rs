//! `SidecarInjectionFailed` on kube-apiserver, from `FailedCreate` Events as the controllers
//! write them (core/v1, reason `FailedCreate`, about the ReplicaSet). There is no
//! controller-manager here, so the test writes the Event the ReplicaSet controller would
//! (the node suite proves the real controllers' Events) — which is also what any tenant who
//! may create Events can do: the forged ones below must stay in their own namespace, name
//! objects that exist, and be bounded.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::server_side::{compact_history, initial_states, outage};
use crate::support::*;
use crate::workload_events::{deployment_with_replica_set, replica_pod, HASH};
use sidecar_watch_harness::control_plane::{AuditLog, Options};
use sidecar_watch_harness::env::wait_until;

/// What the ReplicaSet controller records when Istio's webhook fails closed and istiod is
/// down (`Error creating: ` + kube-apiserver's `failed calling webhook`).
const ISTIO_DOWN: &str = "Error creating: Internal error occurred: failed calling webhook \
    \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \
    \"https://istiod.istio-system.svc:443/inject?timeout=10s\": dial tcp 10.96.0.10:443: connect: connection refused";

/// A `FailedCreate` Event in `namespace` about the object `involved` (kind, name, uid) of
/// `object_namespace`, first and last seen a minute ago.
fn failed_create(namespace: &str, object_namespace: &str, involved: (&str, &str, &str), message: &str) -> CoreEvent {
    let minute_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    let (kind, name, uid) = involved;
    serde_json::from_value(json!({
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {"apiVersion": "apps/v1", "kind": kind, "name": name, "namespace": object_namespace, "uid": uid},
        "reason": "FailedCreate", "type": "Warning", "message": message,
        "source": {"component": "replicaset-controller"},
        "firstTimestamp": minute_ago.to_string(), "lastTimestamp": minute_ago.to_string(), "count": 3,
    }))
    .expect("an Event")
}

/// Records the ReplicaSet controller's Event of Istio's injector being down, about the
/// `kind` object `name` with `uid` in the test namespace.
pub(crate) async fn record_istio_down(c: &Cluster, kind: &str, name: &str, uid: &str) {
    record(c, &c.ns, &failed_create(&c.ns, &c.ns, (kind, name, uid), ISTIO_DOWN)).await;
}

async fn record(c: &Cluster, namespace: &str, event: &CoreEvent) {
    let api: Api<CoreEvent> = Api::namespaced(c.env.client.clone(), namespace);
    api.create(&PostParams::default(), event).await.expect("Event created");
}

/// The series of `SidecarInjectionFailed` on Deployment `web` of `namespace`.
fn injection_failed(namespace: &str, state: AlertState) -> Labels {
    let series = AlertSeries {
        alert: AlertName::SidecarInjectionFailed,
        state,
        severity: Severity::Critical,
        policy: "mesh",
        namespace,
        pod: "",
        container: "istio-proxy",
        product: "istio",
    };
    owned_by(series.labels(), "Deployment", "web")
}

/// Fires on the Deployment; a Pod of the workload (an old revision's replacement) does not
/// resolve it; its ReplicaSet's own status counting every replica does, within one re-read
/// of the object (15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_whose_injector_is_down_fires_and_resolves_when_its_replicaset_has_its_pods() {
    let c = Cluster::start("injection").await;
    c.apply_policy("mesh", json!({"rules": rules(json!({"injectionFailed": {"for": "1s"}}))})).await;
    let (uid, owner) = deployment_with_replica_set(&c, "web").await;
    let rs_uid = owner["uid"].as_str().expect("the ReplicaSet's UID").to_string();
    let rs_name = format!("web-{HASH}");
    let op = Operator::start(&c, "op-0", &[]).await;
    record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", &rs_name, &rs_uid), ISTIO_DOWN)).await;
    op.wait_alerts("the Deployment fires", vec![injection_failed(&c.ns, AlertState::Firing)]).await;
    let events = c.wait_events("web", "Warning", "SidecarInjectionFailed", 1).await;
    let warning = the_event(&events, "web", "SidecarInjectionFailed");
    let regarding = warning.regarding.clone().unwrap_or_default();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.uid.as_deref()),
        (Some("Deployment"), Some(uid.as_str())),
        "{warning:?}"
    );
    let note = warning.note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("SidecarInjectionFailed on sidecar container istio-proxy of Deployment/web: ")
            && note.contains("namespace.sidecar-injector.istio.io"),
        "{note}"
    );
    c.wait_status("mesh", "one workload alert", |s| status_counts(s, 0, 0, json!({"SidecarInjectionFailed": 1}), 0))
        .await;
    // A Pod of web appears (an old revision's replacement, say): the failure is not over.
    c.create_pod(replica_pod(&format!("web-{HASH}-p0"), "web", &owner)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scrape = op.scrape().await.expect("a scrape");
    assert_eq!(scrape.alerts(), vec![injection_failed(&c.ns, AlertState::Firing)], "{}", op.log());
    // The injector is back: the ReplicaSet's status counts its 5 replicas.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), &c.ns);
    let generation = replica_sets.get(&rs_name).await.expect("the ReplicaSet").metadata.generation;
    let status = json!({"status": {"observedGeneration": generation, "replicas": 5}});
    replica_sets.patch_status(&rs_name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    let began = Instant::now();
    op.wait_alerts("resolved by its ReplicaSet's own state", Vec::new()).await;
    assert!(began.elapsed() < RESOLVED_WITHIN, "resolved after {:?}\n{}", began.elapsed(), op.log());
    c.wait_events("web", "Normal", "SidecarInjectionFailedResolved", 1).await;
}

/// One re-read of the failing object (15 s) and the wait for its answer.
const RESOLVED_WITHIN: Duration = Duration::from_secs(20);

/// `rollout undo` with `maxUnavailable: 0` scales the failing new ReplicaSet to zero and
/// creates no Pod: the alert resolves within one re-read though the Event stays. The rollout
/// done again fails again: the Event's update is a failure after the clear, so the alert is
/// pending for its whole `for` again, counted from that failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_resolves_it_and_a_new_failure_honours_for() {
    let c = Cluster::start("injection-undo").await;
    let hold = 20;
    c.apply_policy("mesh", json!({"rules": rules(json!({"injectionFailed": {"for": format!("{hold}s")}}))})).await;
    let (_, owner) = deployment_with_replica_set(&c, "web").await;
    let rs_name = format!("web-{HASH}");
    let rs_uid = owner["uid"].as_str().expect("a UID").to_string();
    let op = Operator::start(&c, "op-0", &[]).await;
    let events: Api<CoreEvent> = Api::namespaced(c.env.client.clone(), &c.ns);
    let event = events
        .create(&PostParams::default(), &failed_create(&c.ns, &c.ns, ("ReplicaSet", &rs_name, &rs_uid), ISTIO_DOWN))
        .await
        .expect("Event created");
    // First seen a minute ago: past its `for` already.
    op.wait_alerts("the Deployment fires", vec![injection_failed(&c.ns, AlertState::Firing)]).await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), &c.ns);
    let scale = |replicas: i32| json!({"spec": {"replicas": replicas}});
    replica_sets.patch(&rs_name, &PatchParams::default(), &Patch::Merge(&scale(0))).await.expect("scaled to 0");
    let began = Instant::now();
    op.wait_alerts("resolved by the undo", Vec::new()).await;
    assert!(began.elapsed() < RESOLVED_WITHIN, "resolved after {:?}\n{}", began.elapsed(), op.log());
    c.wait_events("web", "Normal", "SidecarInjectionFailedResolved", 1).await;
    // Rolled forward again: the controller fails again and updates its Event.
    replica_sets.patch(&rs_name, &PatchParams::default(), &Patch::Merge(&scale(5))).await.expect("scaled to 5");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failed_at = jiff::Timestamp::now();
    let update = json!({"count": 4, "lastTimestamp": failed_at.to_string()});
    let name = event.metadata.name.expect("a name");
    events.patch(&name, &PatchParams::default(), &Patch::Merge(&update)).await.expect("Event updated");
    op.wait_alerts("pending again", vec![injection_failed(&c.ns, AlertState::Pending)]).await;
    op.wait_alerts("firing after its for", vec![injection_failed(&c.ns, AlertState::Firing)]).await;
    let waited = (jiff::Timestamp::now() - failed_at).get_seconds();
    // The API's times are whole seconds: the clock started at most 1 s before `failed_at`.
    assert!(waited >= hold - 1, "fired {waited} s after the new failure, for is {hold} s\n{}", op.log());
}

/// A tenant writes 20,000 `FailedCreate` Events naming Istio's webhook about its own real
/// ReplicaSet of 0 replicas: read once, believed never, cut past 1,000 and counted. Another
/// namespace's Deployment then fails behind Istio's webhook: its alert is exported within
/// 10 s of its Event, and its Warning is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_flood_of_failed_create_events_blinds_no_other_namespace() {
    let c = Cluster::start("injection-flood").await;
    let tenant = format!("{}-flood", c.ns);
    c.env.create_namespace(&tenant).await.expect("tenant namespace");
    c.apply_policy("mesh", json!({"rules": rules(json!({"injectionFailed": {"for": "1s"}}))})).await;
    let (_, owner) = deployment_with_replica_set(&c, "web").await;
    let op = Operator::start(&c, "op-0", &["--namespace", &tenant]).await;
    let idle_api: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), &tenant);
    let idle = create_replica_set(&idle_api, "idle").await;
    idle_api.patch("idle", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 0}}))).await.expect("0");
    let flood = 20_000;
    let tenant_events: Api<CoreEvent> = Api::namespaced(c.env.client.clone(), &tenant);
    let forged = failed_create(&tenant, &tenant, ("ReplicaSet", "idle", &idle), ISTIO_DOWN);
    let began = Instant::now();
    let created = futures::stream::iter(0..flood)
        .map(|_| {
            let (api, event) = (tenant_events.clone(), forged.clone());
            async move { api.create(&PostParams::default(), &event).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(created, flood);
    eprintln!("created {flood} FailedCreate Events in {:?}", began.elapsed());
    let cut = (flood - 1_000) as f64;
    op.wait_scrape("the flood is cut past 1,000 Events", |s| {
        match s.sum("sidecar_watch_limited_total", &[("limit", "failed-create-events")]) {
            n if n == cut => Ok(()),
            n => Err(format!("cut {n}")),
        }
    })
    .await;
    let recorded = Instant::now();
    record_istio_down(&c, "ReplicaSet", &format!("web-{HASH}"), owner["uid"].as_str().expect("a UID")).await;
    op.wait_alerts("the other namespace fires", vec![injection_failed(&c.ns, AlertState::Firing)]).await;
    let took = recorded.elapsed();
    assert!(took < Duration::from_secs(10), "alerted {took:?} after its Event\n{}", op.log());
    eprintln!("the other namespace alerted {took:?} after its Event");
    c.wait_events("web", "Warning", "SidecarInjectionFailed", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_failed_create_events_stay_in_their_namespace_and_are_bounded() {
    let c = Cluster::start("injection-forged").await;
    let tenant = format!("{}-tenant", c.ns);
    c.env.create_namespace(&tenant).await.expect("tenant namespace");
    c.apply_policy("mesh", json!({"rules": rules(json!({"injectionFailed": {"for": "1s"}}))})).await;
    let (_, owner) = deployment_with_replica_set(&c, "web").await;
    let rs_uid = owner["uid"].as_str().expect("a UID").to_string();
    let rs_name = format!("web-{HASH}");
    let op = Operator::start(&c, "op-0", &[]).await;
    // A tenant cannot write an Event in its namespace about the victim's ReplicaSet: the
    // API server refuses it (the operator would not believe it either).
    let tenant_events: Api<CoreEvent> = Api::namespaced(c.env.client.clone(), &tenant);
    let forged = failed_create(&tenant, &c.ns, ("ReplicaSet", &rs_name, &rs_uid), ISTIO_DOWN);
    let refused = tenant_events.create(&PostParams::default(), &forged).await;
    assert!(matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422), "{refused:?}");
    // It can write them about an object that does not exist, and one with the right name but
    // another UID.
    record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", "ghost-1", "uid-ghost"), ISTIO_DOWN)).await;
    record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", &rs_name, "uid-forged"), ISTIO_DOWN)).await;
    // An unrelated cause is not ours.
    let quota = "Error creating: pods \"web-1\" is forbidden: exceeded quota: compute, requested: cpu=2";
    record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", &rs_name, &rs_uid), quota)).await;
    // A marker Event that is ours, written last: once it fires, the ones before were read.
    let own: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), &c.ns);
    let marker = create_replica_set(&own, "marker").await;
    record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", "marker", &marker), ISTIO_DOWN)).await;
    let mut marker_alert = injection_failed(&c.ns, AlertState::Firing);
    marker_alert.insert("workload_kind".into(), "ReplicaSet".into());
    marker_alert.insert("workload".into(), "marker".into());
    op.wait_alerts("only the genuine Event fires", vec![marker_alert]).await;
    // Flood: more failing workloads in one namespace than it may hold (the marker is one);
    // each cut is counted, and nothing reaches another namespace.
    let flood = sidecar_watch::index::MAX_PER_NAMESPACE + 5;
    for i in 0..flood {
        let name = format!("flood-{i}");
        let uid = create_replica_set(&own, &name).await;
        record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", &name, &uid), ISTIO_DOWN)).await;
    }
    let limit = sidecar_watch::index::MAX_PER_NAMESPACE as f64;
    let scrape = op
        .wait_scrape("the flood is bounded", |s| {
            let cut = s.sum("sidecar_watch_limited_total", &[("limit", "workloads-per-namespace")]);
            let firing = s.series_with(&[("alertname", "SidecarInjectionFailed"), ("alertstate", "firing")]);
            if cut == 6.0 && firing as f64 == limit {
                Ok(())
            } else {
                Err(format!("cut {cut}, firing {firing}"))
            }
        })
        .await;
    assert_eq!(scrape.series_with(&[("namespace", &tenant)]), 0);
    record(&c, &c.ns, &failed_create(&c.ns, &c.ns, ("ReplicaSet", &rs_name, &rs_uid), ISTIO_DOWN)).await;
    // web is one more workload in a full namespace: cut, counted again.
    op.wait_scrape("web is cut too", |s| {
        let cut = s.sum("sidecar_watch_limited_total", &[("limit", "workloads-per-namespace")]);
        if cut == 7.0 {
            Ok(())
        } else {
            Err(format!("cut {cut}"))
        }
    })
    .await;
}

/// A bare ReplicaSet `name` (no Deployment) in `api`'s namespace; returns its UID.
/// With `--namespace a,b` each namespace's Events are watched, and relisted, on their own.
/// After an outage and a compacted history both relist; each namespace's failure still stands
/// and still resolves by its own ReplicaSet's state, whichever namespace relisted last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaces_relist_forgets_no_other_namespaces_failure() {
    let audit = AuditLog::new().expect("an audit policy");
    let options = Options { apiserver_args: audit.apiserver_args(), ..Options::default() };
    let (c, proxy) = Cluster::start_behind_fault_proxy("injection-relist", options).await;
    let tenant = format!("{}-b", c.ns);
    c.env.create_namespace(&tenant).await.expect("tenant namespace");
    let namespaces = [c.ns.clone(), tenant.clone()];
    for ns in &namespaces {
        let policy = json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
            "metadata": {"name": "mesh", "namespace": ns},
            "spec": {"rules": rules(json!({"injectionFailed": {"for": "1s"}}))}});
        c.apply_in(ns, &policy.to_string()).await;
        let uid = create_replica_set(&Api::namespaced(c.env.client.clone(), ns), "web").await;
        record(&c, ns, &failed_create(ns, ns, ("ReplicaSet", "web", &uid), ISTIO_DOWN)).await;
    }
    // This test is about the Events watches' relists; leadership loss is `leader::`'s.
    let args = ["--namespace", &tenant, "--lease-duration", "40s", "--lease-renew-deadline", "30s"];
    let op = Operator::start(&c, "op-0", &args).await;
    let firing_in = |s: &Scrape, ns: &str| {
        s.find(
            "sidecar_alerts",
            &[("alertname", "SidecarInjectionFailed"), ("namespace", ns), ("alertstate", "firing")],
        )
        .len()
    };
    let namespaces = &namespaces;
    let each = |want: usize| {
        move |s: &Scrape| match namespaces.iter().map(|ns| firing_in(s, ns)).collect::<Vec<_>>() {
            n if n.iter().all(|n| *n == want) => Ok(()),
            n => Err(format!("firing per namespace {n:?}: {:?}", s.alerts())),
        }
    };
    op.wait_scrape("each namespace's ReplicaSet fires", each(1)).await;
    let served = || {
        let states = initial_states(&audit, "events");
        states.streamed + states.listed
    };
    let before = served();
    outage(&proxy).await;
    compact_history(&c).await;
    proxy.heal();
    wait_until(WAIT, "both namespaces' Events watches to be served a new initial state", || async {
        match served() {
            n if n >= before + 2 => Ok(()),
            n => Err(n - before),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log()));
    op.wait_scrape("each namespace's failure stands after the relists", each(1)).await;
    for ns in namespaces {
        let api: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), ns);
        let generation = api.get("web").await.expect("the ReplicaSet").metadata.generation;
        let status = json!({"status": {"observedGeneration": generation, "replicas": 1}});
        api.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    }
    op.wait_scrape("each resolved by its own ReplicaSet", each(0)).await;
}

async fn create_replica_set(api: &Api<ReplicaSet>, name: &str) -> String {
    let labels = json!({"app": name});
    let template: Value =
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
    }))
    .expect("a ReplicaSet");
    let created = api.create(&PostParams::default(), &replica_set).await.expect("ReplicaSet created");
    created.metadata.uid.expect("a UID")
}

/// A StatefulSet, a DaemonSet, a Job and a CronJob (Pods labelled `app=web`), each with the
/// `FailedCreate` Event its controller writes when Istio's injector is down, in each
/// controller's own words: the operator reads each object (`get` on each kind).
pub(crate) async fn failing_workloads_of_every_kind(c: &Cluster) {
    let down = ISTIO_DOWN.trim_start_matches("Error creating: ");
    let template = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "busybox"}]}});
    let selector = json!({"matchLabels": {"app": "web"}});
    let mut always = template.clone();
    always["spec"]["restartPolicy"] = json!("Always");
    let objects = [
        (
            "apps/v1",
            "StatefulSet",
            "statefulsets",
            json!({"serviceName": "db", "selector": selector, "template": always}),
            format!("create Pod db-0 in StatefulSet db failed error: {down}"),
        ),
        (
            "apps/v1",
            "DaemonSet",
            "daemonsets",
            json!({"selector": selector, "template": always}),
            format!("Error creating: {down}"),
        ),
        ("batch/v1", "Job", "jobs", json!({"template": template}), format!("Error creating: {down}")),
        (
            "batch/v1",
            "CronJob",
            "cronjobs",
            json!({"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": template}}}),
            format!("Error creating job: {down}"),
        ),
    ];
    for (api_version, kind, plural, spec, message) in objects {
        let name = format!("{}-x", kind.to_lowercase());
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = kube::core::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(c.env.client.clone(), &c.ns, &resource);
        let object: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec,
        }))
        .expect("an object");
        let created = api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        let uid = created.metadata.uid.expect("a UID");
        let mut event = failed_create(&c.ns, &c.ns, (kind, &name, &uid), &message);
        event.involved_object.api_version = Some(api_version.into());
        record(c, &c.ns, &event).await;
    }
}

/// An Event outlives the object it is about (by up to an hour): the alert goes with the
/// workload, once the operator's next read of its object finds it gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_of_a_deleted_workload_goes_with_it() {
    let c = Cluster::start("injection-deleted").await;
    c.apply_policy("mesh", json!({"rules": rules(json!({"injectionFailed": {"for": "1s"}}))})).await;
    let (_, owner) = deployment_with_replica_set(&c, "web").await;
    let rs_name = format!("web-{HASH}");
    let op = Operator::start(&c, "op-0", &[]).await;
    record_istio_down(&c, "ReplicaSet", &rs_name, owner["uid"].as_str().expect("a UID")).await;
    op.wait_alerts("the Deployment fires", vec![injection_failed(&c.ns, AlertState::Firing)]).await;
    // No garbage collector here: delete both, as `kubectl delete deployment` ends up doing.
    c.env.kubectl(["delete", "deployment", "web", "-n", &c.ns, "--wait=false"]).await.expect("deleted");
    c.env.kubectl(["delete", "replicaset", &rs_name, "-n", &c.ns, "--wait=false"]).await.expect("deleted");
    op.wait_alerts("gone with its workload", Vec::new()).await;
}

/// A tenant's `FailedCreate` Events that nobody can decode (a time past jiff's range, which
/// kube-apiserver stores as written), one listed at start and one arriving by watch: the
/// operator becomes ready with paginated and with streaming lists alike, counts and logs
/// each, and a real failure in the same namespace still fires, from the watch and from the
/// list the bad Event is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_failed_create_events_are_skipped_not_their_list() {
    let c = Cluster::start("injection-undecodable").await;
    c.apply_policy("mesh", json!({"rules": rules(json!({"injectionFailed": {"for": "1s"}}))})).await;
    let (_, owner) = deployment_with_replica_set(&c, "web").await;
    let rs_uid = owner["uid"].as_str().expect("the ReplicaSet's UID").to_string();
    // Untyped: the typed client cannot write the far-future time.
    let resource = kube::core::ApiResource::erase::<CoreEvent>(&());
    let events: Api<kube::api::DynamicObject> = Api::namespaced_with(c.env.client.clone(), &c.ns, &resource);
    let far = |name: String| {
        let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": c.ns},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{HASH}"),
                "namespace": c.ns, "uid": rs_uid},
            "reason": "FailedCreate", "type": "Warning", "message": format!("{ISTIO_DOWN} SECRET"),
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "9999-12-31T23:59:59Z", "count": 1});
        serde_json::from_value::<kube::api::DynamicObject>(event).expect("an object")
    };
    events.create(&PostParams::default(), &far("far-listed".into())).await.expect("kube-apiserver stores it");
    for (n, mode) in ["paginated", "streaming"].into_iter().enumerate() {
        let op = Operator::start(&c, &format!("op-{mode}"), &["--initial-list", mode, "--leader-elect=false"]).await;
        events.create(&PostParams::default(), &far(format!("far-watched-{n}"))).await.expect("stored");
        if n == 0 {
            record_istio_down(&c, "ReplicaSet", &format!("web-{HASH}"), &rs_uid).await;
        }
        op.wait_alerts(&format!("{mode}: the real failure fires"), vec![injection_failed(&c.ns, AlertState::Firing)])
            .await;
        // The second operator lists the first one's watched Event too.
        let bad = 2 + n;
        op.wait_scrape(&format!("{mode}: every bad Event counted"), |s| {
            match s.value("sidecar_watch_decode_errors_total", &[("kind", "Event")]) {
                Some(counted) if counted == bad as f64 => Ok(()),
                counted => Err(format!("counted {counted:?}")),
            }
        })
        .await;
        let log = op.log();
        assert!(log.contains("far-listed") && log.contains("lastTimestamp"), "named with its field:\n{log}");
        assert!(!log.contains("SECRET"), "an Event's body reached the log:\n{log}");
    }
}
