//! Server-side printing: `meta.k8s.io/v1` `Table` responses.

use serde_json::{json, Value};

use super::resources::{PrinterColumn, ResourceInfo};

/// What each row's `object` holds (`includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// `PartialObjectMetadata` (default).
    Metadata,
    Object,
}

impl IncludeObject {
    /// Anything but `None` and `Object` is the default, `Metadata`.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Renders a duration like kubectl's `HumanDuration` (`5s`, `3m2s`, `4h`, `2d3h`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = secs / 3600;
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

fn age_of(ts: Option<&str>) -> String {
    let Some(ts) = ts else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// Evaluates a simple JSONPath (`.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`) against `obj`.
pub fn eval_jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let path = path.trim();
    let path = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')).unwrap_or(path);
    let mut cur = vec![obj.clone()];
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = find_bracket_end(r) else {
                return Vec::new();
            };
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if inner == "*" {
                cur = cur.iter().flat_map(|v| v.as_array().cloned().unwrap_or_default()).collect();
            } else if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|item| filter_matches(item, filter))
                    .collect();
            } else if let Ok(i) = inner.parse::<i64>() {
                cur = cur
                    .iter()
                    .filter_map(|v| {
                        let a = v.as_array()?;
                        let idx = if i < 0 { a.len() as i64 + i } else { i };
                        a.get(usize::try_from(idx).ok()?).cloned()
                    })
                    .collect();
            } else {
                let key = inner.trim_matches(|c| c == '\'' || c == '"');
                cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            }
        } else {
            return Vec::new();
        }
    }
    cur
}

fn find_bracket_end(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"') | (None, '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn filter_matches(item: &Value, filter: &str) -> bool {
    let (lhs, op, rhs) = if let Some((l, r)) = filter.split_once("!=") {
        (l, "!=", r)
    } else if let Some((l, r)) = filter.split_once("==") {
        (l, "==", r)
    } else {
        let l = filter.trim().strip_prefix('@').unwrap_or(filter);
        return !eval_jsonpath(item, l).is_empty();
    };
    let lhs = lhs.trim().strip_prefix('@').unwrap_or(lhs.trim());
    let rhs = rhs.trim();
    let want: Value = if let Some(s) = rhs.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Value::String(s.into())
    } else if let Some(s) = rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Value::String(s.into())
    } else {
        serde_json::from_str(rhs).unwrap_or(Value::String(rhs.into()))
    };
    let got = eval_jsonpath(item, lhs);
    let eq = got.first() == Some(&want);
    if op == "==" {
        eq
    } else {
        !eq
    }
}

fn col(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col("Name", "string", "name", "Name must be unique within a namespace.", 0)
}

/// Column definitions for a resource.
pub fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    if let Some(cols) = &info.printer_columns {
        let mut out = vec![name_col()];
        out.extend(cols.iter().map(|c: &PrinterColumn| col(&c.name, &c.type_, &c.format, &c.description, c.priority)));
        return out;
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => vec![
            name_col(),
            col("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
            col("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
            col("Restarts", "string", "", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
            col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
            col("IP", "string", "", "IP address allocated to the pod.", 1),
            col("Node", "string", "", "Name of the node the pod is assigned to.", 1),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col("Last Seen", "string", "", "Time since the event was last observed.", 0),
            col("Type", "string", "", "Type of this event (Normal, Warning).", 0),
            col("Reason", "string", "", "Why the action was taken.", 0),
            col("Object", "string", "", "The object this event is about.", 0),
            col("Message", "string", "", "A human-readable description.", 0),
            col("Source", "string", "", "The component reporting this event.", 1),
            col("Count", "integer", "", "The number of times this event has occurred.", 1),
            col("Name", "string", "name", "Name must be unique within a namespace.", 1),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => vec![
            name_col(),
            col("Created At", "date", "", "CreationTimestamp of the CustomResourceDefinition.", 0),
        ],
        ("coordination.k8s.io", "leases") => vec![
            name_col(),
            col("Holder", "string", "", "HolderIdentity of the lease.", 0),
            col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
        ],
        ("", "namespaces") => vec![
            name_col(),
            col("Status", "string", "", "The status of the namespace", 0),
            col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
        ],
        _ => vec![
            name_col(),
            col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
        ],
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> Vec<&'a Value> {
    v.pointer(ptr).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// kubectl-style Pod cells: READY, STATUS, RESTARTS.
pub fn pod_cells(pod: &Value) -> (String, String, String) {
    let containers = arr(pod, "/spec/containers");
    let init_specs = arr(pod, "/spec/initContainers");
    let sidecars: Vec<&str> =
        init_specs.iter().filter(|c| s(c, "/restartPolicy") == Some("Always")).filter_map(|c| s(c, "/name")).collect();
    let statuses = arr(pod, "/status/containerStatuses");
    let init_statuses = arr(pod, "/status/initContainerStatuses");
    let total = containers.len() + sidecars.len();
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut last_restart: Option<i64> = None;
    let mut note_restart = |st: &Value| {
        restarts += st.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        if let Some(t) = s(st, "/lastState/terminated/finishedAt").and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
            let t = t.as_second();
            last_restart = Some(last_restart.map_or(t, |l: i64| l.max(t)));
        }
    };
    let mut reason = s(pod, "/status/reason").or_else(|| s(pod, "/status/phase")).unwrap_or("Pending").to_string();
    let mut initializing = false;
    for (i, st) in init_statuses.iter().enumerate() {
        let name = s(st, "/name").unwrap_or("");
        let is_sidecar = sidecars.contains(&name);
        note_restart(st);
        if is_sidecar && st.get("ready").and_then(Value::as_bool) == Some(true) {
            ready += 1;
        }
        if let Some(term) = st.pointer("/state/terminated") {
            if term.get("exitCode").and_then(Value::as_i64) == Some(0) {
                continue;
            }
            reason = match term.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match term.get("signal").and_then(Value::as_i64) {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)),
                },
            };
            initializing = true;
        } else if is_sidecar && st.get("started").and_then(Value::as_bool) == Some(true) {
            continue;
        } else if let Some(r) = s(st, "/state/waiting/reason").filter(|r| !r.is_empty() && *r != "PodInitializing") {
            reason = format!("Init:{r}");
            initializing = true;
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
            initializing = true;
        }
        break;
    }
    if !initializing {
        let mut has_running = false;
        for st in statuses.iter().rev() {
            note_restart(st);
            if let Some(r) = s(st, "/state/waiting/reason").filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(term) = st.pointer("/state/terminated") {
                reason = match term.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match term.get("signal").and_then(Value::as_i64) {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!("ExitCode:{}", term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)),
                    },
                };
            } else if st.pointer("/state/running").is_some() && st.get("ready").and_then(Value::as_bool) == Some(true) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = arr(pod, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == Some("Ready") && s(c, "/status") == Some("True"));
            reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    } else {
        for st in &statuses {
            note_restart(st);
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(pod, "/status/reason") == Some("NodeLost") { "Unknown".into() } else { "Terminating".into() };
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts > 0 => {
            format!("{restarts} ({} ago)", human_duration(jiff::Timestamp::now().as_second() - t))
        }
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts_cell)
}

fn cell_for(info: &ResourceInfo, obj: &Value) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name").unwrap_or(""));
    let age = json!(age_of(s(obj, "/metadata/creationTimestamp")));
    if let Some(cols) = &info.printer_columns {
        let mut cells = vec![name];
        for c in cols {
            let vals = eval_jsonpath(obj, &c.json_path);
            let cell = match vals.first() {
                None => Value::Null,
                Some(v) if c.type_ == "date" => match v.as_str() {
                    Some(t) => json!(age_of(Some(t))),
                    None => v.clone(),
                },
                Some(v) if vals.len() > 1 => {
                    let parts: Vec<String> =
                        vals.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect();
                    let _ = v;
                    json!(parts.join(","))
                }
                Some(Value::Object(_)) | Some(Value::Array(_)) => json!(vals[0].to_string()),
                Some(v) => v.clone(),
            };
            cells.push(cell);
        }
        return cells;
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => {
            let (ready, status, restarts) = pod_cells(obj);
            vec![
                name,
                json!(ready),
                json!(status),
                json!(restarts),
                age,
                json!(s(obj, "/status/podIP").unwrap_or("<none>")),
                json!(s(obj, "/spec/nodeName").unwrap_or("<none>")),
            ]
        }
        ("", "namespaces") => vec![name, json!(s(obj, "/status/phase").unwrap_or("Active")), age],
        ("", "events") | ("events.k8s.io", "events") => {
            // works on both versions: core (involvedObject/message) and events.k8s.io (regarding/note)
            let last = s(obj, "/series/lastObservedTime")
                .or_else(|| s(obj, "/lastTimestamp"))
                .or_else(|| s(obj, "/deprecatedLastTimestamp"))
                .or_else(|| s(obj, "/eventTime"));
            let regarding = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let object = regarding
                .map(|r| {
                    format!(
                        "{}/{}",
                        r.get("kind").and_then(Value::as_str).unwrap_or("").to_lowercase(),
                        r.get("name").and_then(Value::as_str).unwrap_or("")
                    )
                })
                .unwrap_or_default();
            let source = s(obj, "/source/component")
                .or_else(|| s(obj, "/reportingComponent"))
                .or_else(|| s(obj, "/reportingController"))
                .unwrap_or("");
            let count = obj
                .pointer("/series/count")
                .or_else(|| obj.get("count"))
                .or_else(|| obj.get("deprecatedCount"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                json!(age_of(last)),
                json!(s(obj, "/type").unwrap_or("")),
                json!(s(obj, "/reason").unwrap_or("")),
                json!(object),
                json!(s(obj, "/message").or_else(|| s(obj, "/note")).unwrap_or("")),
                json!(source),
                json!(count),
                name,
            ]
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, json!(s(obj, "/metadata/creationTimestamp").unwrap_or(""))]
        }
        ("coordination.k8s.io", "leases") => vec![name, json!(s(obj, "/spec/holderIdentity").unwrap_or("")), age],
        _ => vec![name, age],
    }
}

fn row_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

/// Builds a `Table` for objects (already in served form).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    with_headers: bool,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> =
        objects.iter().map(|o| json!({"cells": cell_for(info, o), "object": row_object(o, include)})).collect();
    let defs = if with_headers { column_definitions(info) } else { Vec::new() };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(182), "3m2s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
    }

    #[test]
    fn jsonpath() {
        let o = json!({"status": {"n": 3, "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval_jsonpath(&o, ".status.n"), vec![json!(3)]);
        assert_eq!(eval_jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"), vec![json!("True")]);
        assert_eq!(eval_jsonpath(&o, ".status.conditions[0].type"), vec![json!("A")]);
        assert!(eval_jsonpath(&o, ".status.missing").is_empty());
    }

    #[test]
    fn pod_with_sidecar() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "s", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        });
        let (ready, status, restarts) = pod_cells(&pod);
        assert_eq!((ready.as_str(), status.as_str(), restarts.as_str()), ("2/2", "Running", "1"));
    }
}
