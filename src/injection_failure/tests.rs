//! How the object an Event names is read: which workload it stands for, its UID, its
//! template's labels and containers.

use serde_json::json;

use super::*;

fn involved(kind: &str, name: &str, uid: &str) -> Involved {
    Involved { namespace: "shop".into(), kind: WorkloadKind::parse(kind), name: name.into(), uid: uid.into() }
}

/// An object's metadata with its UID and controller owner (`kind`, `name`, `uid`), whose API
/// version is the kind's own (Argo Rollouts' for another kind).
fn meta(uid: &str, owner: Option<(&str, &str, &str)>) -> ObjectMeta {
    let owners = owner.map(|(kind, name, uid)| {
        vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: WorkloadKind::parse(kind).api_version().unwrap_or("argoproj.io/v1alpha1").into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]
    });
    ObjectMeta { uid: Some(uid.into()), owner_references: owners, ..ObjectMeta::default() }
}

/// A ReplicaSet stands for its Deployment (with the Deployment's UID); only what the
/// template says of its containers' names and kinds is kept.
#[test]
fn a_replicaset_is_read_as_its_deployment() {
    let body = json!({"spec": {"template": {
        "metadata": {"labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"}},
        "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always", "image": "envoy:1"}],
                 "containers": [{"name": "app", "image": "web:2", "env": [{"name": "A", "value": "b"}]}]},
    }}});
    let object = read_object(
        &involved("ReplicaSet", "web-7d9f8c6b5", "rs-uid"),
        &meta("rs-uid", Some(("Deployment", "web", "deploy-uid"))),
        &body,
    )
    .expect("same UID");
    assert_eq!(object.workload.to_string(), "Deployment/web");
    assert_eq!(object.uid, "deploy-uid");
    // Adopted by an Argo Rollouts `Rollout`, or orphaned: the ReplicaSet is the workload.
    for owner in [Some(("Rollout", "web", "rollout-uid")), None] {
        let rs = involved("ReplicaSet", "web-7d9f8c6b5", "rs-uid");
        let object = read_object(&rs, &meta("rs-uid", owner), &body).expect("same UID");
        assert_eq!((object.workload.to_string(), object.uid.as_str()), ("ReplicaSet/web-7d9f8c6b5".into(), "rs-uid"));
    }
    assert_eq!(object.template_labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(
        object.declared,
        [("proxy".to_string(), ContainerKind::RestartableInit), ("app".to_string(), ContainerKind::Regular)]
    );
}

/// An object whose UID is not the Event's (a forged Event, or the object made again since)
/// is not read; a Job of a CronJob stands for the CronJob; a CronJob's template is its
/// Job template's.
#[test]
fn uids_owners_and_templates_by_kind() {
    assert!(read_object(&involved("ReplicaSet", "web-1", "rs-uid"), &meta("other", None), &json!({})).is_none());
    let job = read_object(
        &involved("Job", "backup-29148600", "job-uid"),
        &meta("job-uid", Some(("CronJob", "backup", "cj-uid"))),
        &json!({}),
    )
    .expect("same UID");
    assert_eq!((job.workload.to_string(), job.uid.as_str()), ("CronJob/backup".to_string(), "cj-uid"));
    assert_eq!(job.declared, []);
    let body = json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "backup"}}}}}}});
    let cronjob = read_object(&involved("CronJob", "backup", "cj-uid"), &meta("cj-uid", None), &body).expect("same");
    assert_eq!(cronjob.workload.to_string(), "CronJob/backup");
    assert_eq!(cronjob.template_labels.get("app").map(String::as_str), Some("backup"));
    // A StatefulSet names itself, whatever owns it.
    let sts = read_object(
        &involved("StatefulSet", "db", "sts-uid"),
        &meta("sts-uid", Some(("Deployment", "odd", "x"))),
        &json!({}),
    )
    .expect("same UID");
    assert_eq!((sts.workload.to_string(), sts.uid.as_str()), ("StatefulSet/db".to_string(), "sts-uid"));
}

/// Whether an object still needs Pods, from its own state, kind by kind; a status not yet
/// written for its generation proves nothing.
#[test]
fn what_no_longer_needs_pods() {
    let needs = |kind: &str, body: serde_json::Value| needs_pods(&WorkloadKind::parse(kind), Some(2), &body);
    assert!(needs("ReplicaSet", json!({"spec": {"replicas": 2}, "status": {"observedGeneration": 2, "replicas": 1}})));
    assert!(!needs("ReplicaSet", json!({"spec": {"replicas": 2}, "status": {"observedGeneration": 2, "replicas": 2}})));
    assert!(needs("ReplicaSet", json!({"spec": {"replicas": 2}, "status": {"observedGeneration": 1, "replicas": 2}})));
    assert!(!needs("ReplicaSet", json!({"spec": {"replicas": 0}})), "scaled to zero, as after rollout undo");
    assert!(needs("StatefulSet", json!({"spec": {}})));
    assert!(needs("DaemonSet", json!({})));
    let ds = json!({"status": {"observedGeneration": 2, "desiredNumberScheduled": 3, "currentNumberScheduled": 3}});
    assert!(!needs("DaemonSet", ds));
    assert!(needs("Job", json!({"spec": {"parallelism": 2}, "status": {"active": 1}})));
    assert!(!needs("Job", json!({"spec": {"completions": 3}, "status": {"active": 1, "succeeded": 2}})));
    assert!(!needs("Job", json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})));
    assert!(!needs("Job", json!({"spec": {"suspend": true}})));
    assert!(needs("CronJob", json!({"spec": {}})));
    assert!(!needs("CronJob", json!({"spec": {"suspend": true}})));
}
