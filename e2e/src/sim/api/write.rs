//! CREATE, UPDATE and PATCH: from a request body to the next stored version of an object.

use serde_json::{json, Value};

use super::{meta_mut, meta_str, new_uid, now_string, rand_suffix, to_served, to_storage, Caller, State};
use crate::sim::error::{ApiError, ApiResult};
use crate::sim::patch::{self, ManagerCtx, Scope};
use crate::sim::resources::{self, ResourceInfo};

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

impl State {
    /// CREATE. With `preset_managed` the body's `managedFields` are kept (server-side apply
    /// computed them) rather than recorded for `caller`.
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
}
