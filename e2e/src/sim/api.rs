//! Kubernetes REST semantics over the store: create, get, list, update, patch, delete.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::patch::{self, ManagerCtx, Scope};
use super::resources::{self, Registry, ResourceInfo};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{json_bytes, ResKey, Store, StoredObject};

/// Query parameters of a request.
pub type Params = HashMap<String, String>;

/// Current time as a Kubernetes `Time` string (RFC 3339, seconds).
pub fn now_string() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn rand_suffix(n: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n).map(|_| ALPHA[fastrand::usize(..ALPHA.len())] as char).collect()
}

/// A random RFC 4122 version-4 UID.
pub fn new_uid() -> String {
    let b: [u8; 16] = std::array::from_fn(|i| match i {
        6 => (fastrand::u8(..) & 0x0f) | 0x40,
        8 => (fastrand::u8(..) & 0x3f) | 0x80,
        _ => fastrand::u8(..),
    });
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

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
pub fn stored_is_served(info: &ResourceInfo, version: &str, stored: &Value) -> bool {
    info.group != "events.k8s.io"
        && stored.get("kind").and_then(Value::as_str) == Some(info.kind.as_str())
        && stored.get("apiVersion").and_then(Value::as_str).is_some_and(|v| info.is_api_version(version, v))
}

/// The JSON of a stored object in the form served at `version`: the object's cached
/// serialization when the forms are equal (no copy), else a fresh conversion.
pub fn served_json(info: &ResourceInfo, version: &str, obj: &StoredObject) -> Bytes {
    if stored_is_served(info, version, obj.value()) {
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

fn rename(src: &Value, dst: &mut Map<String, Value>, pairs: &[(&str, &str)]) {
    for (from, to) in pairs {
        if let Some(v) = src.get(*from) {
            if !v.is_null() {
                dst.insert(to.to_string(), v.clone());
            }
        }
    }
}

fn core_event_to_v1(e: &Value) -> Value {
    let mut out = Map::new();
    rename(
        e,
        &mut out,
        &[
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
        ],
    );
    Value::Object(out)
}

fn v1_event_to_core(e: &Value) -> Value {
    let mut out = Map::new();
    rename(
        e,
        &mut out,
        &[
            ("metadata", "metadata"),
            ("eventTime", "eventTime"),
            ("series", "series"),
            ("reportingController", "reportingComponent"),
            ("reportingInstance", "reportingInstance"),
            ("action", "action"),
            ("reason", "reason"),
            ("regarding", "involvedObject"),
            ("related", "related"),
            ("note", "message"),
            ("type", "type"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ],
    );
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

/// Identifies the caller for field management.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `fieldManager` parameter or the User-Agent prefix.
    pub manager: String,
    /// Whether `dryRun` was requested.
    pub dry_run: bool,
}

/// Mutable simulator state: served resources + objects.
#[derive(Debug)]
pub struct State {
    /// Served resources.
    pub registry: Registry,
    /// Objects and history.
    pub store: Store,
    terminating: BTreeSet<(ResKey, String, String)>,
}

fn pod_containers_all_terminated(pod: &Value) -> bool {
    let mut statuses: Vec<&Value> = Vec::new();
    for k in ["/status/containerStatuses", "/status/initContainerStatuses"] {
        if let Some(a) = pod.pointer(k).and_then(Value::as_array) {
            statuses.extend(a.iter());
        }
    }
    statuses.iter().all(|s| s.pointer("/state/terminated").is_some())
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

fn strip_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    o
}

fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// A continue token: where the next page starts.
#[derive(Debug)]
struct Continue {
    /// resourceVersion of the list's first page.
    rv: u64,
    /// Namespace of the last object served.
    ns: String,
    /// Name of the last object served.
    name: String,
    /// For lists without selectors, the number of objects after (`ns`, `name`) when the
    /// token was issued (its `remainingItemCount`).
    left: Option<usize>,
}

impl Continue {
    /// Hex-encoded JSON, opaque to clients.
    fn encode(&self) -> String {
        let mut raw = json!({"rv": self.rv, "ns": self.ns, "name": self.name});
        if let Some(left) = self.left {
            raw["left"] = json!(left);
        }
        raw.to_string().bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses a token made by [`Continue::encode`]; anything else is a bad request.
    fn decode(tok: &str) -> ApiResult<Self> {
        let bad = || ApiError::bad_request("continue key is not valid");
        if !tok.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..tok.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(tok.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        Ok(Self {
            rv: v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?,
            ns: v.get("ns").and_then(Value::as_str).ok_or_else(bad)?.to_string(),
            name: v.get("name").and_then(Value::as_str).ok_or_else(bad)?.to_string(),
            left: v.get("left").and_then(Value::as_u64).and_then(|l| usize::try_from(l).ok()),
        })
    }
}

/// Parses a resourceVersion parameter ("" → None).
pub fn parse_rv(s: Option<&String>) -> ApiResult<Option<u64>> {
    match s.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => {
            v.parse::<u64>().map(Some).map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))
        }
    }
}

/// One page of a LIST.
#[derive(Debug)]
pub struct ListPage {
    /// The page's stored objects, in order (shared with the store, not copied); serve them
    /// with [`served_json`] or [`to_served`].
    pub items: Vec<Arc<StoredObject>>,
    /// The list's `metadata`: `resourceVersion`, and `continue` + `remainingItemCount` when
    /// more items follow.
    pub meta: Value,
}

/// Compiled selectors of a list/watch request.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Namespace restriction.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// Builds the filter from query parameters.
    pub fn from_params(ns: Option<&str>, q: &Params) -> ApiResult<Self> {
        Ok(Self {
            namespace: ns.map(str::to_string),
            labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
            fields: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
        })
    }

    /// Whether matching the stored form of `info`'s objects gives the same answer as
    /// matching the served form (no events.k8s.io conversion, no apiVersion/kind selector).
    pub fn matches_stored(&self, info: &ResourceInfo) -> bool {
        info.group != "events.k8s.io" && !self.fields.0.iter().any(|(p, _, _)| p == "apiVersion" || p == "kind")
    }

    /// Whether a served object matches.
    pub fn matches(&self, served: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if meta_str(served, "namespace").unwrap_or("") != ns {
                return false;
            }
        }
        self.labels.matches(served.pointer("/metadata/labels").and_then(Value::as_object))
            && self.fields.matches(served)
    }
}

impl State {
    /// Fresh state with built-in resources and the default namespaces.
    pub fn new(history_limit: usize) -> Self {
        let mut st =
            Self { registry: Registry::default(), store: Store::new(history_limit), terminating: BTreeSet::new() };
        let ns_key = (String::new(), "namespaces".to_string());
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": new_uid(), "creationTimestamp": now_string(),
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}
            });
            st.store.put(&ns_key, "", ns, obj);
        }
        st
    }

    fn check_namespace(&self, info: &ResourceInfo, ns: Option<&str>) -> ApiResult<String> {
        if !info.namespaced {
            return Ok(String::new());
        }
        let ns = ns.ok_or_else(|| {
            ApiError::bad_request(format!("{} is namespaced: a namespace is required", info.qualified()))
        })?;
        let ns_key = (String::new(), "namespaces".to_string());
        match self.store.get(&ns_key, "", ns) {
            None => Err(ApiError::not_found("namespaces", ns)),
            Some(_) => Ok(ns.to_string()),
        }
    }

    fn stored_object(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<&Arc<StoredObject>> {
        self.store.get_object(&info.storage_key(), ns, name).ok_or_else(|| ApiError::not_found(&info.qualified(), name))
    }

    fn stored(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<&Value> {
        self.stored_object(info, ns, name).map(|o| o.value())
    }

    /// GET one object, as stored (serve it with [`served_json`] or [`to_served`]).
    pub fn get_stored(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Arc<StoredObject>> {
        let ns = if info.namespaced { ns.unwrap_or("") } else { "" };
        self.stored_object(info, ns, name).cloned()
    }

    /// GET one object.
    pub fn get(&self, info: &ResourceInfo, version: &str, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        Ok(to_served(info, version, self.get_stored(info, ns, name)?.value()))
    }

    /// LIST (with selectors and pagination). Costs O(page) conversions: the items are the
    /// stored objects themselves, and selectors are matched on the stored form when possible.
    pub fn list(&self, info: &ResourceInfo, version: &str, ns: Option<&str>, q: &Params) -> ApiResult<ListPage> {
        let filter = Filter::from_params(ns, q)?;
        let rv = parse_rv(q.get("resourceVersion"))?;
        let exact = q.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
        if let (Some(rv), true) = (rv, exact) {
            if rv < self.store.floor() {
                return Err(ApiError::expired(format!("too old resource version: {rv} ({})", self.store.floor())));
            }
        }
        let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
        let (list_rv, start, known_left) = match q.get("continue").filter(|c| !c.is_empty()) {
            Some(tok) => {
                let tok = Continue::decode(tok)?;
                if tok.rv < self.store.floor() {
                    return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results."));
                }
                (tok.rv, Some((tok.ns, tok.name)), tok.left)
            }
            None => (self.store.rv(), None, None),
        };
        let mut items = Vec::new();
        let mut cont = None;
        let mut remaining = 0usize;
        let res_key = info.storage_key();
        let ns_filter = if info.namespaced { ns } else { None };
        // The served form differs from the stored one only in apiVersion/kind (except for
        // events.k8s.io, which renames fields), so selectors can be matched on the stored
        // object without converting it.
        let match_stored = filter.matches_stored(info);
        // Without selectors every object in the range matches (the range already restricts
        // the namespace): no per-object matching, and the objects after the page are counted
        // without matching, or not at all while the count reported with the previous page
        // still holds (no object created or removed since the list began): counting them on
        // every page would make a paginated list cost O(N²).
        let everything =
            filter.labels.0.is_empty() && filter.fields.0.is_empty() && (info.namespaced || filter.namespace.is_none());
        let known_left = known_left.filter(|_| everything && self.store.keys_changed_at(&res_key) <= list_rv);
        let mut range = self.store.range_after(&res_key, ns_filter, start.as_ref());
        while let Some((key, obj)) = range.next() {
            let matched = everything
                || if match_stored {
                    filter.matches(obj.value())
                } else {
                    filter.matches(&to_served(info, version, obj.value()))
                };
            if !matched {
                continue;
            }
            if let Some(l) = limit {
                if items.len() >= l {
                    if everything {
                        remaining = match known_left {
                            Some(left) if left > l => left - l,
                            _ => 1 + range.count(),
                        };
                        break;
                    }
                    remaining += 1;
                    continue;
                }
                if items.len() + 1 == l {
                    cont = Some(key.clone());
                }
            }
            items.push(obj.clone());
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if remaining > 0 {
            if let Some((ns, name)) = cont {
                let left = everything.then_some(remaining);
                meta["continue"] = json!(Continue { rv: list_rv, ns, name, left }.encode());
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(ListPage { items, meta })
    }

    /// CREATE.
    pub fn create(
        &mut self,
        info: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        body: Value,
        caller: &Caller,
        preset_managed: bool,
    ) -> ApiResult<Value> {
        let ns = self.check_namespace(info, ns)?;
        let mut obj = to_storage(info, &body);
        let now = now_string();
        let name = {
            let meta = meta_mut(&mut obj)?;
            if let Some(bns) = meta.get("namespace").and_then(Value::as_str) {
                if info.namespaced && !bns.is_empty() && bns != ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
            let name = match meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                Some(n) => n.to_string(),
                None => match meta.get("generateName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                    Some(g) => format!("{g}{}", rand_suffix(5)),
                    None => {
                        return Err(ApiError::invalid(format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            info.kind
                        )))
                    }
                },
            };
            meta.insert("name".into(), json!(name));
            if info.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("creationTimestamp".into(), json!(now));
            meta.insert("generation".into(), json!(1));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("resourceVersion");
            if !preset_managed {
                meta.remove("managedFields");
            }
            name
        };
        if self.store.get(&info.storage_key(), &ns, &name).is_some() {
            return Err(ApiError::already_exists(&info.qualified(), &name));
        }
        match (info.group.as_str(), info.plural.as_str()) {
            ("", "pods") => {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
                let spec = &mut obj["spec"];
                if spec.get("restartPolicy").is_none() {
                    spec["restartPolicy"] = json!("Always");
                }
                if spec.get("terminationGracePeriodSeconds").is_none() {
                    spec["terminationGracePeriodSeconds"] = json!(30);
                }
            }
            ("", "namespaces") => {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
                let labels = &mut obj["metadata"]["labels"];
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                resources::from_crd(&obj)
                    .map_err(|e| ApiError::invalid(format!("CustomResourceDefinition \"{name}\" is invalid: {e}")))?;
                obj["status"] = resources::crd_status(&obj, &now);
            }
            _ if info.has_status => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
            _ => {}
        }
        if !preset_managed {
            let ctx = ManagerCtx {
                manager: caller.manager.clone(),
                api_version: info.api_version(version),
                now,
                subresource: String::new(),
            };
            patch::record_update(None, &mut obj, Scope::All, &ctx);
        }
        if caller.dry_run {
            return Ok(to_served(info, version, &obj));
        }
        let stored = self.store.put(&info.storage_key(), &ns, &name, obj);
        self.after_write(info, stored.value(), false);
        Ok(to_served(info, version, stored.value()))
    }

    fn after_write(&mut self, info: &ResourceInfo, stored: &Value, deleted: bool) {
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            if deleted {
                if let (Some(g), Some(p)) = (
                    stored.pointer("/spec/group").and_then(Value::as_str),
                    stored.pointer("/spec/names/plural").and_then(Value::as_str),
                ) {
                    let key = (g.to_string(), p.to_string());
                    for (ns, name) in self.store.keys(&key) {
                        self.store.remove(&key, &ns, &name);
                    }
                    self.registry.remove_custom(g, p);
                }
            } else if let Ok(ri) = resources::from_crd(stored) {
                self.registry.upsert_custom(ri);
            }
        }
        if info.group.is_empty() && info.plural == "namespaces" && deleted {
            let ns = meta_str(stored, "name").unwrap_or("").to_string();
            let namespaced: Vec<ResKey> =
                self.registry.resources.iter().filter(|r| r.namespaced).map(|r| r.storage_key()).collect();
            for key in namespaced {
                for (ons, name) in self.store.keys(&key) {
                    if ons == ns {
                        self.store.remove(&key, &ons, &name);
                    }
                }
            }
        }
        if !deleted && stored.pointer("/metadata/deletionTimestamp").is_some() {
            self.terminating.insert((
                info.storage_key(),
                meta_str(stored, "namespace").unwrap_or("").to_string(),
                meta_str(stored, "name").unwrap_or("").to_string(),
            ));
        }
        self.reap();
    }

    /// Removes terminating objects whose finalizers are gone and (for Pods) whose containers
    /// all terminated or whose grace period elapsed.
    pub fn reap(&mut self) {
        let now = jiff::Timestamp::now();
        let pods_key = (String::new(), "pods".to_string());
        let candidates: Vec<_> = self.terminating.iter().cloned().collect();
        for entry in candidates {
            let (key, ns, name) = &entry;
            let Some(obj) = self.store.get(key, ns, name) else {
                self.terminating.remove(&entry);
                continue;
            };
            if has_finalizers(obj) {
                continue;
            }
            let gone = if *key == pods_key {
                let deadline = obj
                    .pointer("/metadata/deletionTimestamp")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                pod_containers_all_terminated(obj) || deadline.is_none_or(|d| now >= d)
            } else {
                true
            };
            if gone {
                self.terminating.remove(&entry);
                if let Some(removed) = self.store.remove(key, ns, name) {
                    if let Some(info) = self.registry.resources.iter().find(|r| r.storage_key() == *key).cloned() {
                        self.after_write(&info, removed.value(), true);
                    }
                }
            }
        }
    }

    /// Turns a candidate (served form) into the next stored version of `current`, applying
    /// status-subresource rules, preserving immutable metadata and bumping generation.
    fn next_version(&self, info: &ResourceInfo, current: &Value, candidate: &Value, scope: Scope) -> ApiResult<Value> {
        let cand = to_storage(info, candidate);
        if !cand.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let mut next = match scope {
            Scope::Status => {
                let mut n = current.clone();
                match cand.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                n
            }
            Scope::Main | Scope::All => {
                let mut n = cand.clone();
                if scope == Scope::Main {
                    match current.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                if !n.get("metadata").is_some_and(Value::is_object) {
                    n["metadata"] = json!({});
                }
                for k in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match current.get("metadata").and_then(|m| m.get(k)) {
                        Some(v) => n["metadata"][k] = v.clone(),
                        None => {
                            if let Some(m) = n["metadata"].as_object_mut() {
                                m.remove(k);
                            }
                        }
                    }
                }
                n
            }
        };
        if spec_part(&next) != spec_part(current) {
            let g = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            next["metadata"]["generation"] = json!(g + 1);
        }
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            resources::from_crd(&next).map_err(ApiError::invalid)?;
            if scope != Scope::Status {
                next["status"] = resources::crd_status(&next, &now_string());
            }
        }
        Ok(next)
    }

    fn commit_update(
        &mut self,
        info: &ResourceInfo,
        version: &str,
        current: &Value,
        mut next: Value,
        caller: &Caller,
    ) -> ApiResult<Value> {
        if strip_volatile(&next) == strip_volatile(current)
            && next.pointer("/metadata/managedFields").map(|m| m.as_array().map(|a| a.len()))
                == current.pointer("/metadata/managedFields").map(|m| m.as_array().map(|a| a.len()))
        {
            return Ok(to_served(info, version, current));
        }
        if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert(
                "resourceVersion".into(),
                current.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!("")),
            );
        }
        if caller.dry_run {
            return Ok(to_served(info, version, &next));
        }
        let ns = meta_str(current, "namespace").unwrap_or("").to_string();
        let name = meta_str(current, "name").unwrap_or("").to_string();
        let stored = self.store.put(&info.storage_key(), &ns, &name, next);
        self.after_write(info, stored.value(), false);
        Ok(match self.store.get(&info.storage_key(), &ns, &name) {
            Some(latest) => to_served(info, version, latest),
            None => to_served(info, version, stored.value()),
        })
    }

    fn check_rv_precondition(info: &ResourceInfo, current: &Value, candidate: &Value) -> ApiResult<()> {
        if let Some(rv) = meta_str(candidate, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(current, "resourceVersion") {
                return Err(ApiError::conflict(&info.qualified(), meta_str(current, "name").unwrap_or("")));
            }
        }
        Ok(())
    }

    fn ctx(info: &ResourceInfo, version: &str, caller: &Caller, scope: Scope) -> ManagerCtx {
        ManagerCtx {
            manager: caller.manager.clone(),
            api_version: info.api_version(version),
            now: now_string(),
            subresource: if scope == Scope::Status { "status".into() } else { String::new() },
        }
    }

    /// UPDATE (PUT) of the main resource or of `/status`.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        info: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        name: &str,
        body: Value,
        scope: Scope,
        caller: &Caller,
    ) -> ApiResult<Value> {
        let ns = if info.namespaced { ns.unwrap_or("") } else { "" };
        let current = self.stored(info, ns, name)?.clone();
        if let Some(bname) = meta_str(&body, "name") {
            if bname != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({bname}) does not match the name on the URL ({name})"
                )));
            }
        }
        if info.is_custom && meta_str(&body, "resourceVersion").is_none_or(str::is_empty) {
            return Err(ApiError::invalid(format!(
                "{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                info.kind
            )));
        }
        Self::check_rv_precondition(info, &current, &body)?;
        let mut next = self.next_version(info, &current, &body, scope)?;
        patch::record_update(Some(&current), &mut next, scope, &Self::ctx(info, version, caller, scope));
        self.commit_update(info, version, &current, next, caller)
    }

    /// PATCH with the given content type; `application/apply-patch+yaml` is server-side apply.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        info: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        name: &str,
        content_type: &str,
        body: &[u8],
        scope: Scope,
        caller: &Caller,
        force: bool,
    ) -> ApiResult<Value> {
        let nsv = if info.namespaced { ns.unwrap_or("") } else { "" };
        let existing = self.store.get(&info.storage_key(), nsv, name).cloned();
        let ctx = Self::ctx(info, version, caller, scope);
        if content_type == "application/apply-patch+yaml" {
            if caller.manager.is_empty() {
                return Err(ApiError::invalid(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let mut applied = patch::parse_json_or_yaml(body)?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
            if let Some(bname) = meta_str(&applied, "name") {
                if bname != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({bname}) does not match the name on the URL ({name})"
                    )));
                }
            }
            applied["metadata"]["name"] = json!(name);
            let scope = if scope == Scope::All || scope == Scope::Status { scope } else { Scope::Main };
            return match existing {
                None => {
                    if scope == Scope::Status {
                        return Err(ApiError::not_found(&info.qualified(), name));
                    }
                    let obj = patch::apply(
                        None,
                        &applied,
                        if info.has_status { Scope::Main } else { Scope::All },
                        force,
                        &ctx,
                    )?;
                    self.create(info, version, ns, obj, caller, true)
                }
                Some(current) => {
                    let served = to_served(info, version, &current);
                    Self::check_rv_precondition(info, &current, &applied)?;
                    let merged = patch::apply(Some(&served), &applied, scope, force, &ctx)?;
                    let mut next = self.next_version(info, &current, &merged, scope)?;
                    if let Some(mf) = merged.pointer("/metadata/managedFields") {
                        next["metadata"]["managedFields"] = mf.clone();
                    } else if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("managedFields");
                    }
                    self.commit_update(info, version, &current, next, caller)
                }
            };
        }
        let current = existing.ok_or_else(|| ApiError::not_found(&info.qualified(), name))?;
        let served = to_served(info, version, &current);
        let patch_doc: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let mut candidate = served.clone();
        match content_type {
            "application/merge-patch+json" => patch::merge_patch(&mut candidate, &patch_doc),
            "application/json-patch+json" => patch::json_patch(&mut candidate, &patch_doc)?,
            "application/strategic-merge-patch+json" => {
                if info.is_custom {
                    patch::merge_patch(&mut candidate, &patch_doc)
                } else {
                    patch::strategic_merge_patch(&mut candidate, &patch_doc)
                }
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        Self::check_rv_precondition(info, &current, &candidate)?;
        let mut next = self.next_version(info, &current, &candidate, scope)?;
        patch::record_update(Some(&served), &mut next, scope, &ctx);
        self.commit_update(info, version, &current, next, caller)
    }

    /// DELETE with graceful termination for Pods and finalizer handling.
    #[allow(clippy::too_many_arguments)]
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        name: &str,
        opts: &Value,
        q: &Params,
        caller: &Caller,
    ) -> ApiResult<Value> {
        let nsv = if info.namespaced { ns.unwrap_or("") } else { "" };
        let current = self.stored(info, nsv, name)?.clone();
        if let Some(rv) = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str) {
            if Some(rv) != meta_str(&current, "resourceVersion") {
                return Err(ApiError::conflict(&info.qualified(), name));
            }
        }
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str) {
            if Some(uid) != meta_str(&current, "uid") {
                return Err(ApiError::conflict(&info.qualified(), name));
            }
        }
        if caller.dry_run {
            return Ok(to_served(info, version, &current));
        }
        let grace_param = q
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
        let is_pod = info.group.is_empty() && info.plural == "pods";
        let mut grace = 0;
        if is_pod {
            let phase = current.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
            let has_statuses =
                current.pointer("/status/containerStatuses").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
            grace = grace_param
                .or_else(|| current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30);
            if !has_statuses || phase == "Succeeded" || phase == "Failed" {
                grace = 0;
            }
        }
        let already = current.pointer("/metadata/deletionTimestamp").is_some();
        if grace > 0 || has_finalizers(&current) {
            let deadline = jiff::Timestamp::now().as_second() + grace;
            let mut next = current.clone();
            let shorten = current
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|old| grace < old);
            if !already || shorten {
                let ts = jiff::Timestamp::from_second(deadline)
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_else(|_| now_string());
                next["metadata"]["deletionTimestamp"] = json!(ts);
                next["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                let stored = self.store.put(&info.storage_key(), nsv, name, next);
                self.after_write(info, stored.value(), false);
            }
            return match self.store.get(&info.storage_key(), nsv, name) {
                Some(latest) => Ok(to_served(info, version, latest)),
                None => Ok(success_status(info, name, &current)),
            };
        }
        let removed = self
            .store
            .remove(&info.storage_key(), nsv, name)
            .ok_or_else(|| ApiError::not_found(&info.qualified(), name))?;
        self.after_write(info, removed.value(), true);
        Ok(to_served(info, version, removed.value()))
    }
}

fn success_status(info: &ResourceInfo, name: &str, obj: &Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": meta_str(obj, "uid")}
    })
}
