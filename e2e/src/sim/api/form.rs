//! Stored objects and the form a client sees: apiVersion and kind of the requested version,
//! and for events.k8s.io the renamed fields of the core Event it is stored as.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::sim::resources::ResourceInfo;
use crate::sim::store::{json_bytes, StoredObject};

/// Converts a stored object to the served form of `info` at `version`.
pub fn to_served(info: &ResourceInfo, version: &str, stored: &Value) -> Value {
    let mut obj = if info.group == "events.k8s.io" { core_event_to_v1(stored) } else { stored.clone() };
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(info.api_version(version)));
        m.insert("kind".into(), json!(info.kind));
    }
    obj
}

/// Whether a stored object already is its served form at `version`: same apiVersion and
/// kind, and no field conversion (only events.k8s.io renames fields). Then [`to_served`]
/// would return an equal copy, and the stored object's cached JSON can be served as is.
pub fn stored_is_served(info: &ResourceInfo, version: &str, stored: &StoredObject) -> bool {
    info.group != "events.k8s.io" && stored.kind() == info.kind && info.is_api_version(version, stored.api_version())
}

/// The JSON of a stored object in the form served at `version`: the object's cached
/// serialization when the forms are equal (no copy), else a fresh conversion.
pub fn served_json(info: &ResourceInfo, version: &str, obj: &StoredObject) -> Bytes {
    if stored_is_served(info, version, obj) {
        return obj.json().clone();
    }
    json_bytes(&to_served(info, version, obj.value()))
}

/// Converts a served object to the storage form.
pub fn to_storage(info: &ResourceInfo, obj: &Value) -> Value {
    let mut out = if info.group == "events.k8s.io" { v1_event_to_core(obj) } else { obj.clone() };
    if let Some(m) = out.as_object_mut() {
        let v = if info.group == "events.k8s.io" { "v1".to_string() } else { info.api_version(&info.versions[0]) };
        m.insert("apiVersion".into(), json!(v));
        m.insert("kind".into(), json!(info.kind));
    }
    out
}

/// The fields of a core (`v1`) Event, each with its name in an `events.k8s.io/v1` Event.
const EVENT_FIELDS: [(&str, &str); 15] = [
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("type", "type"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// The non-null [`EVENT_FIELDS`] of `event`, renamed from core to `events.k8s.io` names
/// (`to_v1`) or back.
fn rename_event_fields(event: &Value, to_v1: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (core, v1) in EVENT_FIELDS {
        let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
        if let Some(v) = event.get(from).filter(|v| !v.is_null()) {
            out.insert(to.to_string(), v.clone());
        }
    }
    out
}

fn core_event_to_v1(e: &Value) -> Value {
    Value::Object(rename_event_fields(e, true))
}

fn v1_event_to_core(e: &Value) -> Value {
    let mut out = rename_event_fields(e, false);
    if !out.contains_key("source") {
        if let Some(c) = e.get("reportingController") {
            out.insert("source".into(), json!({"component": c}));
        }
    }
    if !out.contains_key("firstTimestamp") {
        if let Some(t) = e.get("eventTime").and_then(Value::as_str) {
            let secs = t.split('.').next().unwrap_or(t).trim_end_matches('Z');
            out.insert("firstTimestamp".into(), json!(format!("{secs}Z")));
            out.insert("lastTimestamp".into(), json!(format!("{secs}Z")));
        }
    }
    Value::Object(out)
}
