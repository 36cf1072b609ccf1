//! Merge patches and server-side apply, with field ownership tracked in
//! `metadata.managedFields` as kube-apiserver tracks it (structured-merge-diff): per field
//! down to the leaves, each object on the way a field of its own (the `"."` of `fieldsV1`),
//! conflicts only where a value would change. Without schemas, every list is atomic (one
//! field, as `x-kubernetes-list-type: atomic`) and every object a map. Strategic merge
//! patches of built-in kinds (kube-lease-manager sends them for Leases) know the Pod's list
//! merge keys. JSON patches are not served (415): nothing that runs on the simulator sends
//! them.
//!
//! Field ownership and server-side apply are in `managed`, re-exported here.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};

mod managed;

pub use managed::*;

/// A field path owned by a manager: `["spec"]`, `["spec","size"]`,
/// `["metadata","labels","app"]`.
pub type FieldPath = Vec<String>;

/// Which part of an object a request may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (kinds without a status subresource).
    All,
    /// Everything except `.status` (main endpoint of kinds with a status subresource).
    Main,
    /// Only `.status` (the `/status` subresource).
    Status,
}

/// Parses a request body that may be JSON or YAML.
pub fn parse_json_or_yaml(body: &[u8]) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_norway::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding body as JSON ({json_err}) or YAML ({e})"))),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "schedulingGates"
        | "resourceClaims" => "name",
        "conditions" => "type",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Strategic merge patch with the `patchMergeKey`s of k8s.io/api's Pod, Node, Namespace and
/// ObjectMeta lists (`name` for containers, `type` for conditions, ...); other lists are
/// replaced (container statuses are `+listType=atomic`). Supports `$patch: delete` /
/// `$patch: replace` and ignores other `$` directives.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Some(pobj) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pobj.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = pobj.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tobj) = target.as_object_mut() else {
        return;
    };
    for (k, pv) in pobj {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            tobj.remove(k);
            continue;
        }
        match (merge_key(k), pv) {
            (Some(key), Value::Array(items)) => {
                let mut list = tobj.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
                for item in items {
                    let id = item.get(key).cloned();
                    let pos = id.as_ref().and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            list.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic_merge_patch(&mut list[i], item),
                        (None, false) => {
                            let mut fresh = Value::Object(Map::new());
                            strategic_merge_patch(&mut fresh, item);
                            list.push(fresh);
                        }
                    }
                }
                tobj.insert(k.clone(), Value::Array(list));
            }
            (_, Value::Object(_)) => {
                let entry = tobj.entry(k.clone()).or_insert(Value::Object(Map::new()));
                strategic_merge_patch(entry, pv);
            }
            _ => {
                tobj.insert(k.clone(), pv.clone());
            }
        }
    }
}

/// Adds `value` at `path` and every field below it.
fn collect(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    out.insert(path.clone());
    if let Value::Object(map) = value {
        for (key, child) in map {
            path.push(key.clone());
            collect(child, path, out);
            path.pop();
        }
    }
}

/// The fields of `obj` within `scope`: everything under its top-level fields other than
/// apiVersion, kind and metadata, and `metadata.labels` and `metadata.annotations` with each
/// of their keys (the rest of metadata is the server's).
pub fn fields_of(obj: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let in_scope = match scope {
            Scope::All => true,
            Scope::Main => k != "status",
            Scope::Status => k == "status",
        };
        if in_scope {
            collect(v, &mut vec![k.clone()], &mut out);
        }
    }
    if scope != Scope::Status {
        for sub in ["labels", "annotations"] {
            if let Some(m) = obj.get("metadata").and_then(|m| m.get(sub)).filter(|m| m.is_object()) {
                collect(m, &mut vec!["metadata".into(), sub.into()], &mut out);
            }
        }
    }
    out
}

/// The value at `path`.
pub fn get_field<'a>(obj: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, seg| cur.get(seg))
}

fn set_field(obj: &mut Value, path: &FieldPath, value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = obj;
    for seg in parents {
        if !cur.get(seg).is_some_and(Value::is_object) {
            cur[seg.as_str()] = json!({});
        }
        cur = &mut cur[seg.as_str()];
    }
    cur[last.as_str()] = value;
}

fn remove_field(obj: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = obj;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Whether a write of `new` over `old` at one field changes it: objects change through their
/// own fields, so only a value of another type, or another scalar or list, is a change.
fn changes(old: Option<&Value>, new: Option<&Value>) -> bool {
    match (old, new) {
        (Some(Value::Object(_)), Some(Value::Object(_))) => false,
        (old, new) => old != new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(m: &str) -> ManagerCtx {
        ManagerCtx {
            manager: m.into(),
            api_version: "v1".into(),
            now: "2024-01-01T00:00:00Z".into(),
            subresource: String::new(),
        }
    }

    #[test]
    fn apply_conflicts_and_force() {
        let a =
            apply(None, &json!({"metadata": {"name": "x"}, "spec": {"a": 1}}), Scope::All, false, &ctx("m1")).unwrap();
        let err = apply(Some(&a), &json!({"spec": {"a": 2}}), Scope::All, false, &ctx("m2")).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"m1\": .spec.a");
        let same = apply(Some(&a), &json!({"spec": {"a": 1}}), Scope::All, false, &ctx("m2")).unwrap();
        assert_eq!(read_managed(&same).len(), 2);
        // Another field of the same object is no conflict.
        let beside = apply(Some(&a), &json!({"spec": {"b": 1}}), Scope::All, false, &ctx("m2")).unwrap();
        assert_eq!(beside["spec"], json!({"a": 1, "b": 1}));
        let forced = apply(Some(&a), &json!({"spec": {"a": 2}}), Scope::All, true, &ctx("m2")).unwrap();
        let m = read_managed(&forced);
        // m1 keeps `spec` itself, m2 owns `spec.a` (as kube-apiserver records it).
        assert_eq!(m[0].manager, "m1");
        assert_eq!(m[0].fields, BTreeSet::from([vec!["spec".to_string()]]));
        assert_eq!(forced["metadata"]["managedFields"][1]["fieldsV1"], json!({"f:spec": {".": {}, "f:a": {}}}));
        assert_eq!(forced["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:spec": {}}));
    }

    #[test]
    fn a_field_no_longer_applied_goes_unless_another_manager_owns_it() {
        let a =
            apply(None, &json!({"metadata": {"name": "x"}, "spec": {"a": 1, "b": 2}}), Scope::All, false, &ctx("m1"))
                .unwrap();
        let shared = apply(Some(&a), &json!({"spec": {"b": 2}}), Scope::All, false, &ctx("m2")).unwrap();
        let after = apply(Some(&shared), &json!({}), Scope::All, false, &ctx("m1")).unwrap();
        assert_eq!(after["spec"], json!({"b": 2}));
    }
}
