//! Patches: merge, strategic merge and apply patches, and server-side apply's conflicts and
//! `force`.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use sidecar_watch_harness::kubelet::{test_pod, PodDriver};

use crate::{pod_from, widget_api};
use sidecar_watch_harness::both_servers::{code, fixtures, namespace, Server};

/// Merge patches, strategic merge patches and server-side apply: the patch types the
/// operator, kube-lease-manager (strategic, on Leases), kubectl apply `--server-side` and the
/// suite send (the simulator answers JSON patches with 415, see
/// `what_the_simulator_does_not_serve`).
pub(crate) async fn merge_strategic_and_apply_patches(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "patch").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    pod_from(&pods, test_pod("p", &[("a", "1")], &["app", "other"], &["side"])).await;

    let p = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"b": "2", "a": null}}})))
        .await
        .unwrap();
    let labels = p.metadata.labels.unwrap();
    assert_eq!((labels.get("a"), labels.get("b").map(String::as_str)), (None, Some("2")));

    // strategic merge: containers merged by name
    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "other", "image": "new"}]}})),
        )
        .await
        .unwrap();
    let images: Vec<_> =
        p.spec.unwrap().containers.into_iter().map(|c| (c.name, c.image.unwrap_or_default())).collect();
    assert_eq!(images, [("app".to_string(), "busybox".to_string()), ("other".to_string(), "new".to_string())]);
    // strategic merge on status: conditions merged by type, container statuses replaced
    // (`+listType=atomic` in k8s.io/api core/v1 types.go)
    let driver = PodDriver::new(env.client.clone(), &ns, "p");
    driver.run_all().await.unwrap();
    let p = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {
                "containerStatuses": [{"name": "app", "ready": false}],
                "conditions": [{"type": "Ready", "status": "False"}]
            }})),
        )
        .await
        .unwrap();
    let st = p.status.unwrap();
    let ready: Vec<_> = st.container_statuses.unwrap().into_iter().map(|c| (c.name, c.ready)).collect();
    assert_eq!(ready, [("app".to_string(), false)]);
    let mut conditions: Vec<_> = st.conditions.unwrap().into_iter().map(|c| (c.type_, c.status)).collect();
    conditions.sort();
    let want = [
        ("ContainersReady", "True"),
        ("Initialized", "True"),
        ("PodReadyToStartContainers", "True"),
        ("PodScheduled", "True"),
        ("Ready", "False"),
    ];
    assert_eq!(conditions, want.map(|(t, s)| (t.to_string(), s.to_string())));
    assert_eq!(st.init_container_statuses.unwrap().len(), 1);

    // apply (YAML body)
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    applied: \"yes\"\n";
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("/api/v1/namespaces/{ns}/pods/p?fieldManager=yaml-applier"))
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .unwrap();
    let v: Value = env.client.request(req).await.unwrap();
    assert_eq!(v["metadata"]["labels"]["applied"], "yes");
    let managers: Vec<&str> =
        v["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
    assert!(managers.contains(&"yaml-applier"), "{managers:?}");
    // apply without fieldManager is rejected
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("/api/v1/namespaces/{ns}/pods/p"))
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .unwrap();
    let err = env.client.request::<Value>(req).await.unwrap_err();
    assert_eq!(code(&err), 422);
}

pub(crate) async fn server_side_apply_conflicts_and_force(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "ssa").await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let api = widget_api(&env.client, &ns);
    let obj = |size: i64| json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": size}});
    // apply creates
    let created = api.patch("s", &PatchParams::apply("alice"), &Patch::Apply(obj(1))).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 1);
    // same value from another manager: shared, no conflict
    api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(obj(1))).await.unwrap();
    // alice changes its own field while bob co-owns it → conflict with bob
    let err = api.patch("s", &PatchParams::apply("alice"), &Patch::Apply(obj(2))).await.unwrap_err();
    assert_eq!(code(&err), 409);
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.message, "Apply failed with 1 conflict: conflict with \"bob\": .spec.size")
        }
        _ => unreachable!(),
    }
    // carol conflicts with both; force takes ownership
    assert_eq!(code(&api.patch("s", &PatchParams::apply("carol"), &Patch::Apply(obj(3))).await.unwrap_err()), 409);
    let forced = api.patch("s", &PatchParams::apply("carol").force(), &Patch::Apply(obj(3))).await.unwrap();
    assert_eq!(forced.data["spec"]["size"], 3);
    // Ownership is per field: carol took `spec.size`; alice and bob keep `spec` itself.
    let mut owned: Vec<(String, Value)> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.fields_v1.map(|f| f.0).unwrap_or_default()))
        .collect();
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        owned,
        [
            ("alice".to_string(), json!({"f:spec": {}})),
            ("bob".to_string(), json!({"f:spec": {}})),
            ("carol".to_string(), json!({"f:spec": {".": {}, "f:size": {}}})),
        ]
    );
    // an update (merge patch) takes ownership without conflict, then apply conflicts with it
    api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}}))).await.unwrap();
    assert_eq!(code(&api.patch("s", &PatchParams::apply("carol"), &Patch::Apply(obj(5))).await.unwrap_err()), 409);
    // status applied through /status by a controller
    let st = json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "status": {"matchedPods": 2}});
    let s = api.patch_status("s", &PatchParams::apply("controller"), &Patch::Apply(st)).await.unwrap();
    assert_eq!(s.data["status"]["matchedPods"], 2);
    assert_eq!(s.data["spec"]["size"], 4);
}
