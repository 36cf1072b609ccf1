//! Kubernetes REST semantics over the store: create, get, list, update, patch, delete.
//!
//! Objects are stored in the form they are served (each resource has one version): [`list`]
//! pages and filters, [`write`](mod@write) creates and changes objects, [`lifecycle`] deletes them
//! (graceful termination, finalizers, cascades).

mod lifecycle;
mod list;
mod write;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::resources::{Registry, ResourceInfo};
use super::store::{ResKey, Store, StoredObject};

pub use list::{parse_rv, Filter, ListPage};

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

/// Mutable simulator state: served resources + objects.
#[derive(Debug)]
pub struct State {
    pub registry: Registry,
    /// Objects and their change history.
    pub store: Store,
    terminating: BTreeSet<(ResKey, String, String)>,
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

    /// GET one object, with its cached JSON.
    pub fn get_stored(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Arc<StoredObject>> {
        let ns = if info.namespaced { ns.unwrap_or("") } else { "" };
        self.stored_object(info, ns, name).cloned()
    }

    /// GET one object.
    pub fn get(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        Ok(self.get_stored(info, ns, name)?.value().clone())
    }
}

/// `obj` with `info`'s `apiVersion` and `kind`: a request body's are replaced by the URL's.
fn with_type_meta(info: &ResourceInfo, obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.as_object_mut() {
        m.insert("apiVersion".into(), json!(info.api_version()));
        m.insert("kind".into(), json!(info.kind));
    }
    out
}
