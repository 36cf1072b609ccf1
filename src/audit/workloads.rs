//! What each kind of object in the input means to `audit`: a Pod, a workload's Pod template
//! (shift-left: `helm template`, `kubectl kustomize`), a Namespace's labels, a controller's
//! `FailedCreate` Event naming a sidecar's cause, or nothing.
//!
//! CronJobs name what they make: a CronJob's template is `CronJob/<name>`, and so is the
//! template of a Job that a CronJob controls (its owner reference says so; the Job's name is
//! `<cronjob>-<minutes>`), so that `kubectl get cronjobs,jobs,pods` audits one workload, as the
//! operator names it; a Job's Pods are named by `cronjob_of_job`, in the engine, as the
//! operator names them.

use std::collections::HashSet;

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::{clip, is_injection_annotation, kept_annotation_key, Lenient, LenientEvent, SlimPod};
use crate::engine::{cronjob_concurrency, InjectionFailure, Interner, NamespaceMeta, PodView};
use crate::injection_failure::{failed_create_kind, read_object, sidecar_failure, Involved, ReadObject};

/// One object of the input, decoded.
pub(super) enum Decoded {
    /// A Pod, or a workload's Pod template, as a compact view.
    Pod(PodView),
    /// A Namespace's name, labels and injection annotations.
    Namespace(String, NamespaceMeta),
    /// A workload's Pod template; a CronJob's `spec.concurrencyPolicy` (`Allow` when unset, as
    /// the API defaults it); and what a `FailedCreate` Event about the object would read of it
    /// (an object from a cluster, with a UID, of a kind whose controller reports one).
    Template(PodView, Option<String>, Option<(Involved, ReadObject)>),
    /// A core/v1 `FailedCreate` Event whose message names a sidecar's cause.
    Failure(Box<Event>, InjectionFailure, Involved),
    /// Any other kind (Services, ConfigMaps, …): not audited, not an error.
    Skipped,
}

/// Decodes one object; an error names the field (`spec.template.spec.containers[1].name: …`).
pub(super) fn decode(object: &Value, names: &mut Interner) -> Result<Decoded, String> {
    let kind = object.get("kind").and_then(Value::as_str).ok_or("kind: missing")?;
    match kind {
        "Pod" => {
            unique_container_names(object.get("spec"), "spec")?;
            Ok(Decoded::Pod(PodView::from_pod_in(&slim(object, "")?, names)))
        }
        "Namespace" => {
            let namespace: k8s_openapi::api::core::v1::Namespace =
                crate::api::decode(object.clone()).map_err(|e| e.to_string())?;
            let meta = NamespaceMeta::new(
                namespace.metadata.labels.unwrap_or_default(),
                &namespace.metadata.annotations.unwrap_or_default(),
            );
            Ok(Decoded::Namespace(namespace.metadata.name.unwrap_or_default(), meta))
        }
        // core/v1 only (`kubectl get events`); events.k8s.io/v1 spells its fields otherwise.
        "Event" if object.get("apiVersion").and_then(Value::as_str) == Some("v1") => failure(object),
        "CronJob" => {
            let policy = object.pointer("/spec/concurrencyPolicy").and_then(Value::as_str).unwrap_or("Allow");
            let view = template(object, kind, "/spec/jobTemplate/spec/template", None)?;
            Ok(Decoded::Template(view, Some(clip(policy)), involved_object(object, kind)))
        }
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "PodTemplate" => {
            // Where the kind keeps its Pod template.
            let pointer = if kind == "PodTemplate" { "/template" } else { "/spec/template" };
            let cronjob = controlling_cronjob(object).filter(|_| kind == "Job");
            let view = template(object, kind, pointer, cronjob)?;
            Ok(Decoded::Template(view, None, involved_object(object, kind)))
        }
        _ => Ok(Decoded::Skipped),
    }
}

/// A `FailedCreate` Event naming a sidecar's cause, kept with only its times.
/// Any other Event, and one nobody can decode (a tenant's, with a time past jiff's range),
/// is skipped: a dump of a cluster holds every tenant's Events.
fn failure(object: &Value) -> Result<Decoded, String> {
    if object.get("reason").and_then(Value::as_str) != Some("FailedCreate") {
        return Ok(Decoded::Skipped);
    }
    let event: Event = match serde_json::from_str::<LenientEvent>(&object.to_string()).map(Lenient::into_object) {
        Ok(Ok(event)) => event,
        Ok(Err(bad)) => {
            super::input::skipping("Event", &bad);
            return Ok(Decoded::Skipped);
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some((failure, involved)) = sidecar_failure(&event) else { return Ok(Decoded::Skipped) };
    Ok(Decoded::Failure(Box::new(super::workload_alerts::times_only(event)), failure, involved))
}

/// What a `FailedCreate` Event about `object` (of `kind`) would read of it, keyed by the
/// reference such an Event holds; `None` for an object no controller reports on, or one not
/// read from a cluster (no UID).
fn involved_object(object: &Value, kind: &str) -> Option<(Involved, ReadObject)> {
    let kind = failed_create_kind(kind)?;
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let owners = object.pointer("/metadata/ownerReferences").cloned();
    let meta = ObjectMeta {
        uid: Some(text("/metadata/uid")?),
        owner_references: owners.and_then(|o| serde_json::from_value::<Vec<OwnerReference>>(o).ok()),
        generation: object.pointer("/metadata/generation").and_then(Value::as_i64),
        ..ObjectMeta::default()
    };
    let involved = Involved {
        namespace: text("/metadata/namespace").unwrap_or_else(|| "default".into()),
        kind,
        name: text("/metadata/name")?,
        uid: meta.uid.clone()?,
    };
    let read = read_object(&involved, &meta, object)?;
    Some((involved, read))
}

/// The CronJob that controls a Job, from its owner references (what the CronJob controller
/// writes: `metav1.NewControllerRef(cj, controllerKind)`, kubernetes/kubernetes
/// pkg/controller/cronjob/utils.go `getJobFromTemplate2`; v1.29.15, v1.35.8, v1.37.2).
fn controlling_cronjob(job: &Value) -> Option<&str> {
    let owners = job.pointer("/metadata/ownerReferences").and_then(Value::as_array)?;
    let controller = owners.iter().find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))?;
    let is_cronjob = controller.get("kind").and_then(Value::as_str) == Some("CronJob")
        && controller.get("apiVersion").and_then(Value::as_str) == Some("batch/v1");
    is_cronjob.then(|| controller.get("name").and_then(Value::as_str)).flatten().filter(|n| !n.is_empty())
}

/// `message` of a `JobBlockedBySidecar` on `CronJob/<name>`, with what the CronJob's
/// `concurrencyPolicy` (from the input, when it holds the CronJob) does to its next runs.
pub(super) fn with_concurrency(message: String, cronjob: &str, policy: Option<&str>) -> String {
    match policy.and_then(|p| cronjob_concurrency(cronjob, p)) {
        Some(sentence) => format!("{message} ({sentence})"),
        None => message,
    }
}

/// The view of a workload's Pod template, named `<Kind>/<name>` in the workload's namespace,
/// or `CronJob/<cronjob>` for a Job a CronJob controls.
fn template(object: &Value, kind: &str, pointer: &str, cronjob: Option<&str>) -> Result<PodView, String> {
    let field = pointer.trim_start_matches('/').replace('/', ".");
    let name = object.pointer("/metadata/name").and_then(Value::as_str).ok_or("metadata.name: missing")?;
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let template = object.pointer(pointer).ok_or_else(|| format!("{field}: missing"))?;
    unique_container_names(template.get("spec"), &format!("{field}.spec"))?;
    // A template is not injected yet, so its injection markers are left out; the annotations
    // that switch a catalog sidecar's own signal (`dapr.io/enable-metrics`) are read as on a Pod.
    let annotations: Option<serde_json::Map<String, Value>> =
        template.pointer("/metadata/annotations").and_then(Value::as_object).map(|annotations| {
            annotations
                .iter()
                .filter(|(key, _)| kept_annotation_key(key).is_some() && !is_injection_annotation(key))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
    let pod = json!({
        "metadata": {"namespace": namespace, "labels": template.pointer("/metadata/labels"), "annotations": annotations},
        "spec": template.get("spec"),
    });
    let slim = slim(&pod, &field)?;
    Ok(match cronjob {
        Some(cronjob) => PodView::from_template(&slim, "CronJob", cronjob),
        None => PodView::from_template(&slim, kind, name),
    })
}

/// Decodes a Pod (or a template shaped like one); `prefix` is where it sits in the object.
/// The path (which holds map keys) and serde's message (which quotes the value) are both
/// the input's, so both are clipped.
fn slim(pod: &Value, prefix: &str) -> Result<SlimPod, String> {
    serde_path_to_error::deserialize(pod).map_err(|e| {
        let path = e.path().to_string();
        let path = match (prefix, path.as_str()) {
            (_, ".") => prefix.to_string(),
            ("", _) => path,
            _ => format!("{prefix}.{path}"),
        };
        format!("{}: {}", clip(&path), clip(&e.into_inner().to_string()))
    })
}

/// The API server rejects a Pod whose containers share a name; a hand-written manifest may
/// not be checked yet. Reported once, as invalid, rather than as alerts twice.
fn unique_container_names(spec: Option<&Value>, field: &str) -> Result<(), String> {
    let mut seen = HashSet::new();
    for list in ["initContainers", "containers"] {
        let containers = spec.and_then(|s| s.get(list)).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for (i, container) in containers.iter().enumerate() {
            if let Some(name) = container.get("name").and_then(Value::as_str) {
                if !seen.insert(name) {
                    return Err(format!(
                        "{field}.{list}[{i}].name: duplicate container name {}",
                        crate::api::quote(name)
                    ));
                }
            }
        }
    }
    Ok(())
}
