//! LIST: label, field and namespace filtering, pagination and continue tokens. Every page of
//! a list is cut from one snapshot, at the list's resourceVersion, as etcd serves them.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{meta_str, Params, State};
use crate::sim::error::{ApiError, ApiResult};
use crate::sim::resources::ResourceInfo;
use crate::sim::selectors::{FieldSelector, LabelSelector};
use crate::sim::store::StoredObject;

/// A continue token: where the next page starts.
#[derive(Debug)]
struct Continue {
    /// resourceVersion of the list's first page.
    rv: u64,
    /// Namespace of the last object served.
    ns: String,
    /// Name of the last object served.
    name: String,
    /// For lists without selectors, the number of objects after (`ns`, `name`) at the
    /// snapshot (its `remainingItemCount`).
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

/// kube-apiserver's checks of a LIST's options (apimachinery
/// `pkg/apis/meta/internalversion/validation`, ValidateListOptions): `resourceVersionMatch`
/// needs a `resourceVersion` and no `continue`, `Exact` a version other than "0" ("any"), and
/// `sendInitialEvents` is for watches.
fn check_list_options(q: &Params, rv: Option<u64>) -> ApiResult<()> {
    let rv_match = q.get("resourceVersionMatch").map(String::as_str).filter(|m| !m.is_empty());
    let mut forbidden: Vec<(&str, String)> = Vec::new();
    if let Some(rv_match) = rv_match {
        if rv_match != "Exact" && rv_match != "NotOlderThan" {
            return Err(ApiError::invalid(format!(
                "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"{rv_match}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
            )));
        }
        if rv.is_none() {
            forbidden.push((
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        if q.get("continue").is_some_and(|c| !c.is_empty()) {
            forbidden
                .push(("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided".into()));
        }
        if rv_match == "Exact" && q.get("resourceVersion").map(String::as_str) == Some("0") {
            forbidden.push((
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
            ));
        }
    }
    if q.contains_key("sendInitialEvents") {
        forbidden.push(("sendInitialEvents", "sendInitialEvents is forbidden for list".into()));
    }
    match forbidden.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid_list_options(&forbidden)),
    }
}

/// One page of a LIST.
#[derive(Debug)]
pub struct ListPage {
    /// The page's stored objects, in order (shared with the store, not copied).
    pub items: Vec<Arc<StoredObject>>,
    /// The list's `metadata`: `resourceVersion`, and `continue` (+ `remainingItemCount`
    /// without selectors) when more items follow.
    pub meta: Value,
}

/// Compiled selectors of a list/watch request.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only objects of this namespace.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Builds the filter from query parameters; a field `info`'s kind does not index is a
    /// 400, as kube-apiserver's field label conversion refuses it.
    pub fn from_params(info: &ResourceInfo, ns: Option<&str>, q: &Params) -> ApiResult<Self> {
        let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
        for (label, _, _) in &fields.0 {
            info.check_field_label(label).map_err(ApiError::bad_request)?;
        }
        Ok(Self {
            namespace: ns.map(str::to_string),
            labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
            fields,
        })
    }

    /// Whether every object matches (no selector; a namespace is matched by the range
    /// looked up, not per object).
    pub fn is_everything(&self) -> bool {
        self.labels.0.is_empty() && self.fields.0.is_empty()
    }

    /// Whether an object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if meta_str(obj, "namespace").unwrap_or("") != ns {
                return false;
            }
        }
        self.labels.matches(obj.pointer("/metadata/labels").and_then(Value::as_object)) && self.fields.matches(obj)
    }
}

/// The 504 of a version the server has not reached: kube-apiserver waits 3 s for it first
/// (apiserver `pkg/storage/cacher/watch_cache.go`, waitUntilFreshAndBlock), the simulator
/// does not.
pub fn too_large(rv: u64, current: u64) -> ApiError {
    ApiError::new(504, "Timeout", format!("Timeout: Too large resource version: {rv}, current: {current}")).with_details(
        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
    )
}

impl State {
    /// LIST (with selectors and pagination). Costs O(page), plus the changes since the list's
    /// snapshot when it is not the latest: the items are the stored objects themselves.
    pub fn list(&self, info: &ResourceInfo, ns: Option<&str>, q: &Params) -> ApiResult<ListPage> {
        let filter = Filter::from_params(info, ns, q)?;
        let rv = parse_rv(q.get("resourceVersion"))?;
        check_list_options(q, rv)?;
        let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
        let (current, floor) = (self.store.rv(), self.store.floor());
        // The watch cache ignores the limit of a list at "0" (apiserver
        // pkg/storage/cacher/cacher.go, computeListLimit): one page of everything.
        let any = q.get("resourceVersion").is_some_and(|rv| rv == "0") && !q.contains_key("continue");
        let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0 && !any);
        let (list_rv, start, known_left) = match q.get("continue").filter(|c| !c.is_empty()) {
            Some(tok) => {
                let tok = Continue::decode(tok)?;
                if tok.rv < floor {
                    return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results."));
                }
                (tok.rv, Some((tok.ns, tok.name)), tok.left)
            }
            // "0" is "any": served at the latest, as the watch cache serves it.
            None => match rv.filter(|rv| *rv > 0) {
                Some(rv) if rv > current => return Err(too_large(rv, current)),
                Some(rv) if exact && rv < floor => {
                    return Err(ApiError::expired(format!("too old resource version: {rv} ({floor})")))
                }
                Some(rv) if exact => (rv, None, None),
                _ => (current, None, None),
            },
        };
        let key = info.storage_key();
        let ns_filter = if info.namespaced { ns } else { None };
        let snapshot = self.store.snapshot(&key, list_rv);
        let mut range = snapshot.range_after(&self.store, ns_filter, start.as_ref());
        // Without selectors every object in the range matches (the range already restricts
        // the namespace), and the count left after a page is the previous page's count less
        // this page: counting on every page would make a paginated list cost O(N²).
        let everything = filter.is_everything() && (info.namespaced || filter.namespace.is_none());
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        for (k, obj) in range.by_ref() {
            if !everything && !filter.matches(obj.value()) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                break;
            }
            last_key = Some(k.clone());
            items.push(obj);
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if let (true, Some((ns, name))) = (more, last_key) {
            // Only without selectors: a count of what is left would count objects that do not
            // match (apiserver pkg/storage/continue.go, PrepareContinueToken).
            let left = everything.then(|| match known_left {
                Some(left) => left.saturating_sub(items.len()),
                None => 1 + range.count(),
            });
            meta["continue"] = json!(Continue { rv: list_rv, ns, name, left }.encode());
            if let Some(left) = left {
                meta["remainingItemCount"] = json!(left);
            }
        }
        Ok(ListPage { items, meta })
    }
}
