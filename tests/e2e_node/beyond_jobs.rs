//! `JobBlockedBySidecar` beyond Jobs: Argo Workflows, Tekton TaskRuns, Airflow and bare
//! `restartPolicy: Never` Pods hang the same way when a legacy sidecar outlives the main
//! container. Played with a bare Pod and a Pod owned by another kind of object (a ConfigMap
//! here: the garbage collector keeps a Pod whose owner exists).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::{container, pod, Scenario, MINUTE};

#[tokio::test(flavor = "multi_thread")]
async fn run_to_completion_pods_of_any_owner_held_open_by_a_sidecar() {
    let s = Scenario::start("node-run-to-completion").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(s.env.client.clone(), &s.ns);
    let owner = serde_json::from_value(json!({"metadata": {"name": "workflow-state"}})).expect("a ConfigMap");
    let owner = configmaps.create(&PostParams::default(), &owner).await.expect("owner created");
    let step = |name: &str| {
        // The shipper first: the kubelet starts regular containers in order.
        let mut p = pod(
            name,
            vec![],
            vec![container("log-sidecar", "exec sleep 3600", json!({})), container("main", "sleep 2", json!({}))],
        );
        p["spec"]["restartPolicy"] = json!("Never");
        p
    };
    s.apply(step("bare")).await;
    let mut owned = step("owned");
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
        "name": "workflow-state", "uid": owner.metadata.uid.clone().unwrap_or_default()}]);
    s.apply(owned).await;
    let shipper = "spec.containers{log-sidecar}";
    s.expect_warnings(
        2 * MINUTE,
        std::time::Duration::from_secs(10),
        &[("JobBlockedBySidecar", "bare", shipper), ("JobBlockedBySidecar", "owned", shipper)],
    )
    .await;
    let notes: Vec<(String, String)> = s
        .events()
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("JobBlockedBySidecar"))
        .map(|e| {
            let pod = e.regarding.and_then(|r| r.name).unwrap_or_default();
            (pod, e.note.unwrap_or_default())
        })
        .collect();
    for (pod, note) in notes {
        let expected = if pod == "bare" {
            format!("Pod {}/bare: every main container finished", s.ns)
        } else {
            format!("ConfigMap Pod {}/owned: every main container finished", s.ns)
        };
        assert!(note.starts_with(&expected), "{pod}: {note}");
    }
}
