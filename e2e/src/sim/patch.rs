//! Patch handling (merge, JSON, strategic merge) and a simplified server-side apply
//! with whole-top-level-field ownership tracked in `metadata.managedFields`.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};

/// A field path owned by a manager: `["spec"]`, `["metadata","labels","app"]`.
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

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let p: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &p)
        .map_err(|e| ApiError::invalid(format!("the server rejected our request due to an error in our request: {e}")))
}

fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "schedulingGates"
        | "resourceClaims" => "name",
        "conditions" => "type",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "readinessGates" => "conditionType",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Strategic merge patch with the Pod's list merge keys (`name` for containers and their
/// statuses, `type` for conditions, ...). Supports `$patch: delete` / `$patch: replace`
/// and ignores other `$` directives.
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

/// The fields of `obj` within `scope`: top-level keys other than apiVersion/kind/metadata,
/// plus individual `metadata.labels` / `metadata.annotations` keys.
pub fn fields_of(obj: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, _) in map {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let is_status = k == "status";
        match scope {
            Scope::All => {}
            Scope::Main if is_status => continue,
            Scope::Status if !is_status => continue,
            _ => {}
        }
        out.insert(vec![k.clone()]);
    }
    if scope != Scope::Status {
        for sub in ["labels", "annotations"] {
            if let Some(m) = obj.pointer(&format!("/metadata/{sub}")).and_then(Value::as_object) {
                for key in m.keys() {
                    out.insert(vec!["metadata".into(), sub.into(), key.clone()]);
                }
            }
        }
    }
    out
}

pub fn get_field<'a>(obj: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.get(seg)?;
    }
    Some(cur)
}

fn set_field(obj: &mut Value, path: &FieldPath, value: Value) {
    let mut cur = obj;
    for seg in &path[..path.len() - 1] {
        if !cur.get(seg).is_some_and(Value::is_object) {
            cur[seg.as_str()] = json!({});
        }
        cur = &mut cur[seg.as_str()];
    }
    cur[path[path.len() - 1].as_str()] = value;
}

fn remove_field(obj: &mut Value, path: &FieldPath) {
    let mut cur = obj;
    for seg in &path[..path.len() - 1] {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(&path[path.len() - 1]);
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion of the request.
    pub api_version: String,
    /// When the manager last wrote (RFC 3339).
    pub time: String,
    /// `status` or "".
    pub subresource: String,
    pub fields: BTreeSet<FieldPath>,
}

fn fields_from_v1(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<FieldPath>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, child) in children {
        prefix.push(k[2..].to_string());
        fields_from_v1(child, prefix, out);
        prefix.pop();
    }
}

fn fields_to_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for f in fields {
        let mut cur = &mut root;
        for seg in f {
            let key = format!("f:{seg}");
            if cur.get(&key).is_none() {
                cur[key.as_str()] = json!({});
            }
            cur = &mut cur[key.as_str()];
        }
    }
    root
}

/// Reads `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1") {
                fields_from_v1(f, &mut Vec::new(), &mut fields);
            }
            ManagedEntry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields,
            }
        })
        .collect()
}

/// Writes `metadata.managedFields` (entries without fields are dropped).
pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_to_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Identity of the request for field management.
#[derive(Debug, Clone)]
pub struct ManagerCtx {
    pub manager: String,
    /// apiVersion used by the request.
    pub api_version: String,
    /// Current time (RFC 3339).
    pub now: String,
    /// `status` for the status subresource, "" otherwise.
    pub subresource: String,
}

fn subresource_of(scope: Scope) -> &'static str {
    if scope == Scope::Status {
        "status"
    } else {
        ""
    }
}

/// Records an `Update` operation: fields whose value changed between `old` and `new`
/// become owned by the manager and are removed from every other manager.
pub fn record_update(old: Option<&Value>, new: &mut Value, scope: Scope, ctx: &ManagerCtx) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let empty = json!({});
    let old_v = old.unwrap_or(&empty);
    let mut candidates = fields_of(old_v, scope);
    candidates.extend(fields_of(new, scope));
    let changed: BTreeSet<FieldPath> =
        candidates.into_iter().filter(|f| get_field(old_v, f) != get_field(new, f)).collect();
    if changed.is_empty() {
        write_managed(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        e.fields.retain(|f| !changed.contains(f));
    }
    let sub = subresource_of(scope);
    let present: BTreeSet<FieldPath> = changed.into_iter().filter(|f| get_field(new, f).is_some()).collect();
    match entries.iter_mut().find(|e| e.manager == ctx.manager && e.operation == "Update" && e.subresource == sub) {
        Some(e) => {
            e.fields.extend(present);
            e.time = ctx.now.clone();
        }
        None => entries.push(ManagedEntry {
            manager: ctx.manager.clone(),
            operation: "Update".into(),
            api_version: ctx.api_version.clone(),
            time: ctx.now.clone(),
            subresource: sub.into(),
            fields: present,
        }),
    }
    write_managed(new, &entries);
}

/// Whether applying `applied` over `current` changes a value that is present: filling in
/// absent (or null) sub-fields of an object is not an overwrite.
fn overwrites(current: Option<&Value>, applied: Option<&Value>) -> bool {
    match (current, applied) {
        (None | Some(Value::Null), _) | (_, None) => false,
        (Some(Value::Object(c)), Some(Value::Object(a))) => a.iter().any(|(k, v)| overwrites(c.get(k), Some(v))),
        (Some(c), Some(a)) => c != a,
    }
}

/// Server-side apply of `applied` onto `current` (None = create). Returns the new object;
/// 409 Conflict if a field with a different value is owned by another manager and
/// `force` is false.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    scope: Scope,
    force: bool,
    ctx: &ManagerCtx,
) -> ApiResult<Value> {
    let applied_fields = fields_of(applied, scope);
    let sub = subresource_of(scope);
    let Some(current) = current else {
        let mut obj = applied.clone();
        if scope == Scope::Main {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        let fields = fields_of(&obj, scope);
        write_managed(
            &mut obj,
            &[ManagedEntry {
                manager: ctx.manager.clone(),
                operation: "Apply".into(),
                api_version: ctx.api_version.clone(),
                time: ctx.now.clone(),
                subresource: sub.into(),
                fields,
            }],
        );
        return Ok(obj);
    };
    let mut entries = read_managed(current);
    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    for f in &applied_fields {
        // Ownership is tracked per top-level field; sub-fields that are absent now have no
        // owner, so only overwriting a present value can conflict (as with per-field
        // ownership on a real API server).
        if !overwrites(get_field(current, f), get_field(applied, f)) {
            continue;
        }
        for e in &entries {
            let same = e.manager == ctx.manager && e.operation == "Apply";
            if !same && e.fields.contains(f) {
                conflicts.push((e.manager.clone(), f.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| {
                json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": format!(".{}", f.join("."))})
            })
            .collect();
        let list: Vec<String> =
            conflicts.iter().map(|(m, f)| format!("- conflict with \"{m}\": .{}", f.join("."))).collect();
        let msg = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("\n")
        );
        return Err(ApiError::new(409, "Conflict", msg).with_details(json!({"causes": causes})));
    }
    let forced: BTreeSet<FieldPath> = conflicts.into_iter().map(|(_, f)| f).collect();
    let mut obj = current.clone();
    for f in &applied_fields {
        if let Some(v) = get_field(applied, f) {
            set_field(&mut obj, f, v.clone());
        }
    }
    let previously: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| e.manager == ctx.manager && e.operation == "Apply" && e.subresource == sub)
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for f in previously.difference(&applied_fields) {
        let owned_by_other = entries.iter().any(|e| {
            !(e.manager == ctx.manager && e.operation == "Apply" && e.subresource == sub) && e.fields.contains(f)
        });
        if !owned_by_other {
            remove_field(&mut obj, f);
        }
    }
    for e in entries.iter_mut() {
        e.fields.retain(|f| !forced.contains(f));
    }
    match entries.iter_mut().find(|e| e.manager == ctx.manager && e.operation == "Apply" && e.subresource == sub) {
        Some(e) => {
            e.fields = applied_fields;
            e.time = ctx.now.clone();
            e.api_version = ctx.api_version.clone();
        }
        None => entries.push(ManagedEntry {
            manager: ctx.manager.clone(),
            operation: "Apply".into(),
            api_version: ctx.api_version.clone(),
            time: ctx.now.clone(),
            subresource: sub.into(),
            fields: applied_fields,
        }),
    }
    write_managed(&mut obj, &entries);
    Ok(obj)
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
    fn strategic_merges_by_name() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic_merge_patch(&mut pod, &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c"}]}}));
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 3);
        assert_eq!(pod["spec"]["containers"][1]["image"], "z");
    }

    #[test]
    fn apply_conflicts_and_force() {
        let a =
            apply(None, &json!({"metadata": {"name": "x"}, "spec": {"a": 1}}), Scope::All, false, &ctx("m1")).unwrap();
        let err = apply(Some(&a), &json!({"spec": {"a": 2}}), Scope::All, false, &ctx("m2")).unwrap_err();
        assert_eq!(err.code, 409);
        let same = apply(Some(&a), &json!({"spec": {"a": 1}}), Scope::All, false, &ctx("m2")).unwrap();
        assert_eq!(read_managed(&same).len(), 2);
        let forced = apply(Some(&a), &json!({"spec": {"a": 2}}), Scope::All, true, &ctx("m2")).unwrap();
        let m = read_managed(&forced);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].manager, "m2");
    }
}
