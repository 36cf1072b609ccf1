//! LIST: label, field and namespace filtering, pagination and continue tokens.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{meta_str, to_served, Params, State};
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

/// kube-apiserver's checks of `resourceVersionMatch` on a LIST (see "Semantics for get and
/// list" in the API concepts): it needs a `resourceVersion`, no `continue`, and `Exact` needs
/// a version other than "0" ("any").
fn check_list_options(rv: Option<u64>, raw: Option<&str>, rv_match: Option<&str>, continued: bool) -> ApiResult<()> {
    let Some(rv_match) = rv_match else { return Ok(()) };
    let mut forbidden: Vec<(&str, String)> = Vec::new();
    if rv.is_none() {
        forbidden.push((
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
        ));
    }
    if continued {
        forbidden.push(("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided".into()));
    }
    if rv_match == "Exact" && raw == Some("0") {
        forbidden.push((
            "resourceVersionMatch",
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
        ));
    }
    if rv_match != "Exact" && rv_match != "NotOlderThan" {
        return Err(ApiError::invalid(format!(
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"{rv_match}\": supported values: \"Exact\", \"NotOlderThan\""
        )));
    }
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_list_options(&forbidden))
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
    /// Only objects of this namespace.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
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

    /// Whether every object matches (no selector; a namespace is matched by the range
    /// looked up, not per object).
    pub fn is_everything(&self) -> bool {
        self.labels.0.is_empty() && self.fields.0.is_empty()
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
    /// LIST (with selectors and pagination). Costs O(page) conversions: the items are the
    /// stored objects themselves, and selectors are matched on the stored form when possible.
    pub fn list(&self, info: &ResourceInfo, version: &str, ns: Option<&str>, q: &Params) -> ApiResult<ListPage> {
        let filter = Filter::from_params(ns, q)?;
        let rv = parse_rv(q.get("resourceVersion"))?;
        let rv_match = q.get("resourceVersionMatch").map(String::as_str).filter(|m| !m.is_empty());
        let continued = q.get("continue").is_some_and(|c| !c.is_empty());
        check_list_options(rv, q.get("resourceVersion").map(String::as_str), rv_match, continued)?;
        let exact = rv_match == Some("Exact");
        if let (Some(rv), true) = (rv, exact) {
            if rv < self.store.floor() {
                return Err(ApiError::expired(format!("too old resource version: {rv} ({})", self.store.floor())));
            }
        }
        // "Not older than" (the default for a resourceVersion, and `NotOlderThan`) a version
        // the server has not reached: kube-apiserver waits a few seconds for it, then gives up.
        // "0" means "any" and never waits: that list is served from the watch cache.
        if let (Some(rv), false, false) = (rv, exact, continued) {
            if rv > self.store.rv() {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {rv}, current: {}", self.store.rv()),
                )
                .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})));
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
}
