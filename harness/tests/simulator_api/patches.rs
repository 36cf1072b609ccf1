//! Patches: merge, strategic merge and apply patches, and server-side apply with `force`, as
//! the operator applies its policies' status (the simulator reports no conflicts).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use sidecar_watch_harness::kubelet::{test_pod, PodDriver};

use crate::{pod_from, widget_api};
use sidecar_watch_harness::both_servers::{fixtures, namespace, Server};

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
}

/// Apply with `force`, the operator's only kind: it creates, a second manager's forced apply
/// changes what the first applied, and a controller applies the status through `/status`.
pub(crate) async fn server_side_apply_with_force(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "ssa").await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let api = widget_api(&env.client, &ns);
    let obj = |size: i64| json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": size}});
    let created = api.patch("s", &PatchParams::apply("alice").force(), &Patch::Apply(obj(1))).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 1);
    let forced = api.patch("s", &PatchParams::apply("carol").force(), &Patch::Apply(obj(3))).await.unwrap();
    assert_eq!(forced.data["spec"]["size"], 3);
    let st = json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "status": {"matchedPods": 2}});
    let s = api.patch_status("s", &PatchParams::apply("controller").force(), &Patch::Apply(st)).await.unwrap();
    assert_eq!((&s.data["status"]["matchedPods"], &s.data["spec"]["size"]), (&json!(2), &json!(3)));
    let st = json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "status": {"matchedPods": 5}});
    let s = api.patch_status("s", &PatchParams::apply("controller").force(), &Patch::Apply(st)).await.unwrap();
    assert_eq!(s.data["status"]["matchedPods"], 5);
}
