//! Merge patches and server-side apply, with field ownership tracked in
//! `metadata.managedFields` as kube-apiserver tracks it (structured-merge-diff): per field
//! down to the leaves, each object on the way a field of its own (the `"."` of `fieldsV1`),
//! conflicts only where a value would change. Without schemas, every list is atomic (one
//! field, as `x-kubernetes-list-type: atomic`) and every object a map. Strategic merge
//! patches of built-in kinds (kube-lease-manager sends them for Leases) know the Pod's list
//! merge keys. JSON patches are not served (415): nothing that runs on the simulator sends
//! them.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};

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

/// Reads a `fieldsV1` tree: a field with no `f:` children is owned, one with children only
/// when it also holds `"."`.
fn fields_from_v1(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if !prefix.is_empty() && (children.is_empty() || m.contains_key(".")) {
        out.insert(prefix.clone());
    }
    for (k, child) in children {
        prefix.push(k[2..].to_string());
        fields_from_v1(child, prefix, out);
        prefix.pop();
    }
}

/// Writes a set of fields as a `fieldsV1` tree.
fn fields_to_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    let mut sorted = fields.iter().peekable();
    while let Some(f) = sorted.next() {
        let mut cur = &mut root;
        for seg in f {
            let key = format!("f:{seg}");
            if cur.get(&key).is_none() {
                cur[key.as_str()] = json!({});
            }
            cur = &mut cur[key.as_str()];
        }
        // Sorted, a field's own fields follow it.
        if sorted.peek().is_some_and(|next| next.len() > f.len() && next.starts_with(f)) {
            cur["."] = json!({});
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
        candidates.into_iter().filter(|f| changes(get_field(old_v, f), get_field(new, f))).collect();
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

/// The 409 of an apply that would change fields other managers own, worded as
/// structured-merge-diff words it (`merge/conflict.go`).
fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let field = |f: &FieldPath| format!(".{}", f.join("."));
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": field(f)}))
        .collect();
    let detail = match conflicts {
        [(m, f)] => format!("conflict with \"{m}\": {}", field(f)),
        _ => {
            let managers: BTreeSet<&String> = conflicts.iter().map(|(m, _)| m).collect();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with \"{m}\":"));
                lines.extend(conflicts.iter().filter(|(cm, _)| cm == m).map(|(_, f)| format!("- {}", field(f))));
            }
            lines.join("\n")
        }
    };
    let plural = if conflicts.len() == 1 { "" } else { "s" };
    ApiError::new(409, "Conflict", format!("Apply failed with {} conflict{plural}: {detail}", conflicts.len()))
        .with_details(json!({"causes": causes}))
}

/// Server-side apply of `applied` onto `current` (None = create). Returns the new object;
/// 409 Conflict if a value owned by another manager would change and `force` is false.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    scope: Scope,
    force: bool,
    ctx: &ManagerCtx,
) -> ApiResult<Value> {
    let applied_fields = fields_of(applied, scope);
    let sub = subresource_of(scope);
    let mine = |e: &ManagedEntry| e.manager == ctx.manager && e.operation == "Apply" && e.subresource == sub;
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
        // A field not set yet has no value to take from anyone.
        let now = get_field(current, f).filter(|v| !v.is_null());
        if now.is_none() || !changes(now, get_field(applied, f)) {
            continue;
        }
        conflicts.extend(
            entries.iter().filter(|e| !mine(e) && e.fields.contains(f)).map(|e| (e.manager.clone(), f.clone())),
        );
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    let forced: BTreeSet<FieldPath> = conflicts.into_iter().map(|(_, f)| f).collect();
    let mut obj = current.clone();
    // Sorted, an object comes before its fields: it is created (or kept) first.
    for f in &applied_fields {
        match get_field(applied, f) {
            Some(Value::Object(_)) if get_field(&obj, f).is_some_and(Value::is_object) => {}
            Some(Value::Object(_)) => set_field(&mut obj, f, json!({})),
            Some(v) => set_field(&mut obj, f, v.clone()),
            None => {}
        }
    }
    // What this manager applied before and no longer does goes, unless someone else owns
    // it (deepest first: an object only once nothing is left in it).
    let previously: BTreeSet<FieldPath> =
        entries.iter().filter(|e| mine(e)).flat_map(|e| e.fields.iter().cloned()).collect();
    let dropped: Vec<&FieldPath> = previously.difference(&applied_fields).collect();
    for f in dropped.into_iter().rev() {
        let owned_by_other = entries.iter().any(|e| !mine(e) && e.fields.contains(f));
        let emptied = get_field(&obj, f).is_none_or(|v| v.as_object().is_none_or(|m| m.is_empty()));
        if !owned_by_other && emptied {
            remove_field(&mut obj, f);
        }
    }
    for e in entries.iter_mut() {
        e.fields.retain(|f| !forced.contains(f));
    }
    match entries.iter_mut().find(|e| mine(e)) {
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
