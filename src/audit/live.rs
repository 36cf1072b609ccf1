//! The live audit: the Pods of the current kubeconfig context, listed in pages and decoded one
//! at a time, against the cluster's own policies (or the built-in policy where the CRDs are not
//! installed). Read-only: `list` on pods, sidecarpolicies, clustersidecarpolicies and
//! namespaces (the last is optional); for the alerts on workloads, `list` on events (only
//! those with reason `FailedCreate`, selected by the API server) and `get` on the
//! replicasets, statefulsets, daemonsets, jobs and cronjobs such an Event names when it tells
//! of a sidecar's cause (both optional: without them `SidecarInjectionFailed` is not audited,
//! and the audit says so).

use std::collections::HashSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::Client;

use super::input::compile_policy;
use super::input::skipping;
use super::workload_alerts::times_only;
use super::{AuditArgs, AuditError, Audited, Inventory};
use crate::api::{ClusterSidecarPolicy, Lenient, LenientEvent, LenientPod, SidecarPolicy};
use crate::engine::{CompiledPolicy, Interner, NamespaceMeta, PodView};
use crate::injection_failure::{read_involved, sidecar_failure, Involved};
use crate::paging::for_each_page;

/// The Pods (and namespace labels) of the cluster, and its valid policies (none when the
/// CRDs are not installed: the caller then uses the built-in policy).
pub(super) fn load(args: &AuditArgs) -> Result<(Inventory, Vec<CompiledPolicy>), AuditError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AuditError::Cluster(format!("starting the runtime: {e}")))?;
    runtime.block_on(load_async(args))
}

fn cluster_error(what: &str) -> impl Fn(kube::Error) -> AuditError + '_ {
    move |e| AuditError::Cluster(format!("{what}: {e}"))
}

async fn load_async(args: &AuditArgs) -> Result<(Inventory, Vec<CompiledPolicy>), AuditError> {
    let timeout = crate::kubeconfig::DEFAULT_REQUEST_TIMEOUT;
    let config = crate::kubeconfig::client_config(args.kubeconfig.as_deref(), args.context.as_deref(), timeout)
        .await
        .map_err(|e| AuditError::Cluster(format!("{e:#}")))?;
    let namespace = (!args.all_namespaces).then(|| args.namespace.clone().unwrap_or(config.default_namespace.clone()));
    let client = Client::try_from(config).map_err(cluster_error("building the Kubernetes client"))?;

    let mut inventory = Inventory::default();
    let pods: Api<LenientPod> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut names = Interner::default();
    for_each_page(&pods, &ListParams::default(), |pod| match pod {
        LenientPod::Object(pod) => {
            inventory.pods.push(Audited { view: PodView::from_pod_in(&pod, &mut names), file: None });
        }
        LenientPod::Undecodable(bad) => skipping("Pod", &bad),
    })
    .await
    .map_err(cluster_error("listing pods"))?;
    failed_creates(&client, namespace.as_deref(), &mut inventory).await;
    namespace_labels(&client, &mut inventory).await;
    inventory.label_namespaces();
    let policies = policies(&client, namespace.as_deref()).await?;
    Ok((inventory, policies))
}

/// The `FailedCreate` Events, listed with a field selector on the reason (never every
/// Event), and the object each that names a sidecar's cause is about, read once as the
/// operator reads it ([`crate::injection_failure`]). What cannot be read is said and not reported.
async fn failed_creates(client: &Client, namespace: Option<&str>, inventory: &mut Inventory) {
    let events: Api<LenientEvent> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let params = ListParams::default().fields("reason=FailedCreate");
    let failures = &mut inventory.failures;
    let listed = for_each_page(&events, &params, |event| match event {
        LenientEvent::Object(event) => {
            if let Some((failure, involved)) = sidecar_failure(&event) {
                failures.add(times_only(*event), failure, involved);
            }
        }
        LenientEvent::Undecodable(bad) => skipping("Event", &bad),
    })
    .await;
    if let Err(e) = listed {
        eprintln!("sidecar-watch audit: listing FailedCreate events: {e}; SidecarInjectionFailed is not audited");
        return;
    }
    let involved: Vec<Involved> = failures.involved().into_iter().cloned().collect();
    // One message per kind that cannot be read (a tenant without `get` on jobs), not per object.
    let mut unreadable = HashSet::new();
    for involved in involved {
        match read_involved(client, &involved).await {
            Ok(Some(read)) => {
                failures.objects.insert(involved, read);
            }
            // Gone, or not the object the Event names: not reported, as by the operator.
            Ok(None) => {}
            Err(e) => {
                if unreadable.insert(involved.kind.clone()) {
                    // The name is the Event's, which no API server checks: quoted, so that
                    // it cannot rewrite the terminal or the log.
                    eprintln!(
                        "sidecar-watch audit: reading {} {}/{}: {}; SidecarInjectionFailed is not audited on what cannot be read",
                        involved.kind,
                        crate::api::mention(&involved.namespace),
                        crate::api::mention(&involved.name),
                        crate::api::mention(&e.to_string()),
                    );
                }
            }
        }
    }
}

/// Namespace labels for cluster policies' `namespaceSelector`, and the labels and annotations
/// injectors read (`SidecarMissing`). Tenants often may not list namespaces; then only the
/// `kubernetes.io/metadata.name` label is known, and that is said.
async fn namespace_labels(client: &Client, inventory: &mut Inventory) {
    let namespaces: Api<Lenient<k8s_openapi::api::core::v1::Namespace>> = Api::all(client.clone());
    let result = for_each_page(&namespaces, &ListParams::default(), |ns| {
        let ns = match ns.into_object() {
            Ok(ns) => ns,
            Err(bad) => return skipping("Namespace", &bad),
        };
        if let Some(name) = ns.metadata.name {
            let meta = NamespaceMeta::new(
                ns.metadata.labels.unwrap_or_default(),
                &ns.metadata.annotations.unwrap_or_default(),
            );
            inventory.namespaces.insert(name, meta);
        }
    })
    .await
    .map_err(cluster_error("listing namespaces"));
    if let Err(e) = result {
        eprintln!(
            "sidecar-watch audit: {e}; cluster policies see only each namespace's kubernetes.io/metadata.name label, and no namespace's injection markers count"
        );
    }
}

/// The cluster's valid policies; an invalid one is skipped with a message naming the field, as
/// the operator would mark it `InvalidSpec`. No CRDs (404): none, and the built-in policy.
async fn policies(client: &Client, namespace: Option<&str>) -> Result<Vec<CompiledPolicy>, AuditError> {
    let namespaced = ApiResource::erase::<SidecarPolicy>(&());
    let cluster = ApiResource::erase::<ClusterSidecarPolicy>(&());
    let scoped: Api<Lenient<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &namespaced),
        None => Api::all_with(client.clone(), &namespaced),
    };
    let mut objects = Vec::new();
    for (api, kind) in [(scoped, "SidecarPolicy"), (Api::all_with(client.clone(), &cluster), "ClusterSidecarPolicy")] {
        let each = |object: Lenient<DynamicObject>| match object.into_object() {
            Ok(object) => objects.push((kind, object)),
            Err(bad) => skipping(kind, &bad),
        };
        match for_each_page(&api, &ListParams::default(), each).await {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                eprintln!("sidecar-watch audit: the {kind} CRD is not installed; using the built-in policy");
            }
            Err(e) => return Err(cluster_error("listing policies")(e)),
        }
    }
    let mut compiled = Vec::new();
    for (kind, object) in objects {
        let value = serde_json::to_value(&object).map_err(|e| AuditError::Cluster(e.to_string()))?;
        match compile_policy(kind, value) {
            Ok(policy) => compiled.push(policy),
            Err(e) => eprintln!(
                "sidecar-watch audit: skipping {kind} {}{}: {e}",
                object.metadata.namespace.as_deref().map(|ns| format!("{ns}/")).unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default()
            ),
        }
    }
    Ok(compiled)
}
