//! The registry of served resources: built-in kinds plus kinds defined by CRDs, each served
//! at one version (a CRD's storage version), in the form it is stored.

use serde_json::{json, Value};

/// A resource type served by the simulator.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// The version served (for a CRD, its storage version: the simulator converts nothing).
    pub version: String,
    /// Plural resource name (`pods`).
    pub plural: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether a `status` subresource exists.
    pub has_status: bool,
    /// Whether this kind was defined by a CRD.
    pub is_custom: bool,
}

impl ResourceInfo {
    /// The `apiVersion` of its objects (`v1` for core).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` or just `plural` for core; used in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Storage key of objects of this resource.
    pub fn storage_key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    /// Whether a field selector may name `label`; otherwise the message kube-apiserver refuses
    /// it with (400). Each kind's list is its field label conversion function's: for built-in
    /// kinds in `pkg/apis/<group>/v1/conversion.go` of Kubernetes, for CRD-defined kinds in
    /// apiextensions-apiserver's `pkg/apiserver/conversion/converter.go` (no `selectableFields`
    /// here), and apimachinery's `DefaultMetaV1FieldSelectorConversion` for the rest.
    pub fn check_field_label(&self, label: &str) -> Result<(), String> {
        let supported: &[&str] = match (self.group.as_str(), self.plural.as_str()) {
            ("", "pods") => &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            ("", "nodes") => &["metadata.name", "spec.unschedulable"],
            ("", "namespaces") => &["metadata.name", "status.phase"],
            // kube-apiserver's list for core/v1 Events (pkg/apis/core/v1/conversion.go).
            ("", "events") => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("events.k8s.io", "events") => &[
                "metadata.name",
                "metadata.namespace",
                "reason",
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reportingController",
                "type",
            ],
            _ if self.is_custom => &["metadata.name", "metadata.namespace"],
            _ => {
                return match label {
                    "metadata.name" | "metadata.namespace" => Ok(()),
                    _ => Err(format!(
                        "\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )),
                }
            }
        };
        match supported.contains(&label) {
            true => Ok(()),
            false => Err(format!("field label not supported: {label}")),
        }
    }
}

fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool, has_status: bool) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: "v1".into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
        has_status,
        is_custom: false,
    }
}

/// The built-in resources served from start-up: what the operator, its audit and the tests
/// use: Events as `events.k8s.io/v1`, the API the operator writes, and as core `v1`, which
/// it watches for `FailedCreate` (two stores here, one in kube-apiserver).
pub fn builtins() -> Vec<ResourceInfo> {
    vec![
        builtin("", "pods", "Pod", true, true),
        builtin("", "namespaces", "Namespace", false, true),
        // The Node test Pods are bound to (objects only: the simulator runs no kubelet).
        builtin("", "nodes", "Node", false, true),
        builtin("events.k8s.io", "events", "Event", true, false),
        builtin("", "events", "Event", true, false),
        builtin("coordination.k8s.io", "leases", "Lease", true, false),
        builtin("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition", false, true),
    ]
}

/// Derives the served resource from a CRD object; errors name the missing field.
pub fn from_crd(crd: &Value) -> Result<ResourceInfo, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let group = spec.get("group").and_then(Value::as_str).ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = names.get("plural").and_then(Value::as_str).ok_or("spec.names.plural is required")?;
    let kind = names.get("kind").and_then(Value::as_str).ok_or("spec.names.kind is required")?;
    let namespaced = spec.get("scope").and_then(Value::as_str).unwrap_or("Namespaced") == "Namespaced";
    let versions = spec.get("versions").and_then(Value::as_array).ok_or("spec.versions is required")?;
    let storage = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .ok_or("spec.versions must have exactly one version marked as storage version")?;
    let version = storage.get("name").and_then(Value::as_str).ok_or("spec.versions[].name is required")?;
    Ok(ResourceInfo {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
        has_status: storage.pointer("/subresources/status").is_some(),
        is_custom: true,
    })
}

/// CRD status written by the simulator when a CRD is stored (Established + NamesAccepted).
pub fn crd_status(crd: &Value, now: &str) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let versions: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": names,
        "storedVersions": versions,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ]
    })
}

/// The set of served resources.
#[derive(Debug, Clone)]
pub struct Registry {
    /// All resources, built-ins first.
    pub resources: Vec<ResourceInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        Self { resources: builtins() }
    }
}

impl Registry {
    /// Finds the resource served at `group/version` with the given plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources.iter().find(|r| r.group == group && r.plural == plural && r.version == version)
    }

    /// Adds or replaces the CRD-defined resource (keyed by group + plural).
    pub fn upsert_custom(&mut self, info: ResourceInfo) {
        self.resources.retain(|r| !(r.is_custom && r.group == info.group && r.plural == info.plural));
        self.resources.push(info);
    }

    /// Removes a CRD-defined resource.
    pub fn remove_custom(&mut self, group: &str, plural: &str) {
        self.resources.retain(|r| !(r.is_custom && r.group == group && r.plural == plural));
    }
}
