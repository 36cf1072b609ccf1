//! Discovery: the API groups and resources the server lists.

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use kube::discovery::{Discovery, Scope};
use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use sidecar_watch_harness::both_servers::{code, fixtures, raw, Server};

/// Discovery of built-in and CRD-defined kinds; deleting the CRD stops serving its kind.
pub(crate) async fn discovery_documents(server: Server) {
    let env = server.own_env().await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let discovery = Discovery::new(env.client.clone()).run().await.unwrap();
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            found.push((ar.group.clone(), ar.plural.clone(), caps.scope == Scope::Namespaced));
        }
    }
    for want in [
        ("", "pods", true),
        ("", "namespaces", false),
        ("", "nodes", false),
        ("events.k8s.io", "events", true),
        ("coordination.k8s.io", "leases", true),
        ("apiextensions.k8s.io", "customresourcedefinitions", false),
        ("e2e.sidecarwatch.io", "widgets", true),
        ("e2e.sidecarwatch.io", "clusterwidgets", false),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2);
        assert!(found.contains(&want), "{want:?} not in {found:?}");
    }
    let core = raw(&env.client, "GET", "/api/v1", &[], None).await.unwrap();
    let names: Vec<&str> = core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for sub in ["pods/status", "pods/binding"] {
        assert!(names.contains(&sub), "{sub} not in {names:?}");
    }
    let g = raw(&env.client, "GET", "/apis/e2e.sidecarwatch.io/v1alpha1", &[], None).await.unwrap();
    let w = g["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets").unwrap().clone();
    assert_eq!(w["shortNames"], json!(["wdg"]));
    assert_eq!(w["singularName"], "widget");
    assert_eq!(w["kind"], "Widget");
    let v = raw(&env.client, "GET", "/version", &[], None).await.unwrap();
    assert_eq!(v["major"], "1");

    // Deleting the CRD stops serving the resource (once its objects are gone: at once on the
    // simulator, after the CRD's finalizer on kube-apiserver).
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.client.clone());
    crds.delete("widgets.e2e.sidecarwatch.io", &DeleteParams::default()).await.unwrap();
    wait_until(Duration::from_secs(30), "widgets no longer served", || async {
        match raw(&env.client, "GET", "/apis/e2e.sidecarwatch.io/v1alpha1/widgets", &[], None).await {
            Err(e) if code(&e) == 404 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
}
