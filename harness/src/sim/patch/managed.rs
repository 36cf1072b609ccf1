//! Field ownership: `metadata.managedFields` entries read and written (`fieldsV1`), the
//! fields an update takes over, and server-side apply with its conflicts and `force`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;
use crate::sim::error::{ApiError, ApiResult};

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
