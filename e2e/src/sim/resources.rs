//! The registry of served resources: built-in kinds plus kinds defined by CRDs.

use serde_json::{json, Value};

/// An `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `number`, `boolean`, `date`).
    pub type_: String,
    /// Optional format.
    pub format: String,
    pub description: String,
    /// Priority (0 = shown by default, >0 = only with `-o wide`).
    pub priority: i64,
    /// Simple JSONPath evaluated against the object.
    pub json_path: String,
}

/// A resource type served by the simulator.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    /// Plural resource name (`pods`).
    pub plural: String,
    /// Singular name (`pod`).
    pub singular: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Short names (`po`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether a `status` subresource exists.
    pub has_status: bool,
    /// Printer columns for CRD-defined kinds (None = built-in printing).
    pub printer_columns: Option<Vec<PrinterColumn>>,
    /// Group whose storage backs this resource (events.k8s.io events share core storage).
    pub storage_group: String,
    /// Whether this kind was defined by a CRD.
    pub is_custom: bool,
}

impl ResourceInfo {
    /// `group/version` string for a version (`v1` for core).
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// Whether `candidate` is [`ResourceInfo::api_version`] of `version` (without building it).
    pub fn is_api_version(&self, version: &str, candidate: &str) -> bool {
        if self.group.is_empty() {
            candidate == version
        } else {
            candidate.strip_prefix(self.group.as_str()).and_then(|rest| rest.strip_prefix('/')) == Some(version)
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
        (self.storage_group.clone(), self.plural.clone())
    }

    /// Verbs advertised in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    short: &[&str],
    namespaced: bool,
    has_status: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        versions: vec![version.into()],
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        namespaced,
        has_status,
        printer_columns: None,
        storage_group: group.into(),
        is_custom: false,
    }
}

/// The built-in resources served from start-up.
pub fn builtins() -> Vec<ResourceInfo> {
    let mut pods = builtin("", "v1", "pods", "pod", "Pod", &["po"], true, true);
    pods.categories = vec!["all".into()];
    let mut jobs = builtin("batch", "v1", "jobs", "job", "Job", &[], true, true);
    jobs.categories = vec!["all".into()];
    let mut ev2 = builtin("events.k8s.io", "v1", "events", "event", "Event", &[], true, false);
    ev2.storage_group = String::new();
    vec![
        pods,
        builtin("", "v1", "namespaces", "namespace", "Namespace", &["ns"], false, true),
        // The Node test Pods are bound to (objects only: the simulator runs no kubelet).
        builtin("", "v1", "nodes", "node", "Node", &["no"], false, true),
        builtin("", "v1", "events", "event", "Event", &["ev"], true, false),
        ev2,
        builtin("coordination.k8s.io", "v1", "leases", "lease", "Lease", &[], true, false),
        jobs,
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            &["crd", "crds"],
            false,
            true,
        ),
    ]
}

/// Derives the served resource from a CRD object; errors name the missing field.
pub fn from_crd(crd: &Value) -> Result<ResourceInfo, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let group = spec.get("group").and_then(Value::as_str).ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = names.get("plural").and_then(Value::as_str).ok_or("spec.names.plural is required")?;
    let kind = names.get("kind").and_then(Value::as_str).ok_or("spec.names.kind is required")?;
    let singular =
        names.get("singular").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let short_names = strs(names.get("shortNames"));
    let categories = strs(names.get("categories"));
    let namespaced = spec.get("scope").and_then(Value::as_str).unwrap_or("Namespaced") == "Namespaced";
    let versions = spec.get("versions").and_then(Value::as_array).ok_or("spec.versions is required")?;
    let mut served: Vec<(bool, String, &Value)> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|v| {
            let name = v.get("name")?.as_str()?.to_string();
            let storage = v.get("storage").and_then(Value::as_bool).unwrap_or(false);
            Some((storage, name, v))
        })
        .collect();
    if served.is_empty() {
        return Err("spec.versions must contain a served version".into());
    }
    // storage version first
    served.sort_by_key(|(storage, _, _)| !*storage);
    let first = served[0].2;
    let has_status = first.pointer("/subresources/status").is_some();
    let printer_columns = first
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| PrinterColumn {
                    name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    type_: c.get("type").and_then(Value::as_str).unwrap_or("string").into(),
                    format: c.get("format").and_then(Value::as_str).unwrap_or("").into(),
                    description: c.get("description").and_then(Value::as_str).unwrap_or("").into(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: c.get("jsonPath").and_then(Value::as_str).unwrap_or("").into(),
                })
                .collect()
        })
        .unwrap_or_else(|| {
            vec![PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            }]
        });
    Ok(ResourceInfo {
        group: group.into(),
        versions: served.into_iter().map(|(_, n, _)| n).collect(),
        plural: plural.into(),
        singular,
        kind: kind.into(),
        short_names,
        categories,
        namespaced,
        has_status,
        printer_columns: Some(printer_columns),
        storage_group: group.into(),
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
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.versions.iter().any(|v| v == version))
    }

    /// Whether any resource is served in the group/version.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.resources.iter().any(|r| r.group == group && r.versions.iter().any(|v| v == version))
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

    /// Groups in discovery order with their versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.resources {
            if r.group.is_empty() {
                continue;
            }
            let entry = match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some(e) => e,
                None => {
                    out.push((r.group.clone(), Vec::new()));
                    let last = out.len() - 1;
                    &mut out[last]
                }
            };
            for v in &r.versions {
                if !entry.1.contains(v) {
                    entry.1.push(v.clone());
                }
            }
        }
        out
    }
}
