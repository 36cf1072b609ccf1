//! Merge patches and server-side apply. Strategic merge patches of built-in kinds
//! (kube-lease-manager sends them for Leases) know the Pod's list merge keys. Server-side
//! apply keeps no `managedFields` and reports no conflicts: the one client that applies on the
//! simulator, the operator, applies its policies' status with `force` ([`apply`]). JSON patches
//! are not served (415): nothing that runs on the simulator sends them.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

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

/// Server-side apply as its field's only applier sees it: the applied object's top-level
/// fields within `scope` (not `apiVersion`, `kind`, `metadata`) replace the current ones, and
/// its labels and annotations are merged key by key outside the `status` scope. A field an
/// earlier apply set and this one leaves out stays (kube-apiserver would remove it); the
/// operator applies the whole status each time, so it never leaves one out.
pub fn apply(current: Option<&Value>, applied: &Value, scope: Scope) -> Value {
    let Some(current) = current else {
        return applied.clone();
    };
    let mut next = current.clone();
    let Some(fields) = applied.as_object() else {
        return next;
    };
    for (key, value) in fields {
        let in_scope = match scope {
            Scope::All => true,
            Scope::Main => key != "status",
            Scope::Status => key == "status",
        };
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" if scope != Scope::Status => {
                for sub in ["labels", "annotations"] {
                    let Some(entries) = value.get(sub).and_then(Value::as_object) else { continue };
                    if !next["metadata"][sub].is_object() {
                        next["metadata"][sub] = Value::Object(Map::new());
                    }
                    for (k, v) in entries {
                        next["metadata"][sub][k.as_str()] = v.clone();
                    }
                }
            }
            "metadata" => {}
            _ if in_scope => next[key.as_str()] = value.clone(),
            _ => {}
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_apply_replaces_the_fields_it_names_in_its_scope() {
        let current =
            json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"a": 1}, "status": {"n": 1, "m": 2}});
        let applied = json!({"metadata": {"labels": {"b": "2"}}, "spec": {"b": 2}, "status": {"n": 3}});
        let status = apply(Some(&current), &applied, Scope::Status);
        assert_eq!(status["status"], json!({"n": 3}));
        assert_eq!((&status["spec"], &status["metadata"]), (&current["spec"], &current["metadata"]));
        let main = apply(Some(&current), &applied, Scope::Main);
        assert_eq!(main["spec"], json!({"b": 2}));
        assert_eq!(main["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(main["status"], current["status"]);
        assert_eq!(apply(None, &applied, Scope::All), applied);
    }
}
