//! DELETE and what follows a write: graceful termination of Pods, finalizers, and the
//! cascades of deleting a namespace or a CustomResourceDefinition.

use serde_json::{json, Value};

use super::{meta_str, now_string, Params, State};
use crate::sim::error::{ApiError, ApiResult};
use crate::sim::resources::{self, ResourceInfo};
use crate::sim::store::ResKey;

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

impl State {
    pub(super) fn after_write(&mut self, info: &ResourceInfo, stored: &Value, deleted: bool) {
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

    /// Removes terminating objects whose finalizers are gone, except Pods still in their
    /// grace period: as on kube-apiserver, a bound Pod stays until its kubelet (here a test)
    /// deletes it again with grace period 0, however long ago its grace period ended.
    pub fn reap(&mut self) {
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
            let gone = *key != pods_key
                || obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).is_none_or(|g| g == 0);
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

    /// `POST pods/<name>/binding`: sets `spec.nodeName`, once, and the `PodScheduled`
    /// condition, as kube-apiserver's binding storage does (`pkg/registry/core/pod/storage`,
    /// setPodNodeAndMetadata: 409 when the Pod is on a node, being deleted or gated; 422
    /// without a node name).
    pub fn bind_pod(&mut self, info: &ResourceInfo, ns: Option<&str>, name: &str, node: &str) -> ApiResult<()> {
        let ns = ns.unwrap_or("");
        if node.is_empty() {
            return Err(ApiError::invalid(format!("Binding \"{name}\" is invalid: target.name: Required value")));
        }
        let mut next = self.stored(info, ns, name)?.clone();
        if let Some(on) = next.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{on}\""),
            ));
        }
        if next.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if next.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} has non-empty .spec.schedulingGates"),
            ));
        }
        next["spec"]["nodeName"] = json!(node);
        set_condition_true(&mut next, "PodScheduled");
        let stored = self.store.put(&info.storage_key(), ns, name, next);
        self.after_write(info, stored.value(), false);
        Ok(())
    }

    /// DELETE with graceful termination for Pods and finalizer handling.
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &Value,
        q: &Params,
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
        let grace_param = q
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
        let is_pod = info.group.is_empty() && info.plural == "pods";
        let mut grace = 0;
        if is_pod {
            // kube-apiserver's pod strategy (CheckGracefulDelete): a Pod on no node, or one
            // that has finished, has no kubelet to wait for and goes at once.
            let phase = current.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
            let bound = current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
            grace = grace_param
                .or_else(|| current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30);
            if !bound || phase == "Succeeded" || phase == "Failed" {
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
                Some(latest) => Ok(latest.clone()),
                None => Ok(success_status(info, name, &current)),
            };
        }
        let removed = self
            .store
            .remove(&info.storage_key(), nsv, name)
            .ok_or_else(|| ApiError::not_found(&info.qualified(), name))?;
        self.after_write(info, removed.value(), true);
        Ok(removed.value().clone())
    }
}

fn success_status(info: &ResourceInfo, name: &str, obj: &Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": meta_str(obj, "uid")}
    })
}

/// Sets the Pod condition `type_` to `True` (`lastTransitionTime` when it changes).
fn set_condition_true(pod: &mut Value, type_: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    if !pod["status"].get("conditions").is_some_and(Value::is_array) {
        pod["status"]["conditions"] = json!([]);
    }
    let fresh = json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": now_string()});
    if let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
        match conditions.iter_mut().find(|c| c["type"] == type_) {
            Some(c) if c["status"] == "True" => {}
            Some(c) => *c = fresh,
            None => conditions.push(fresh),
        }
    }
}
