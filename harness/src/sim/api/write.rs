//! CREATE, UPDATE and PATCH: from a request body to the next stored version of an object.

use serde_json::{json, Value};

use super::{meta_mut, meta_str, new_uid, now_string, rand_suffix, with_type_meta, State};
use crate::sim::error::{ApiError, ApiResult};
use crate::sim::patch::{self, Scope};
use crate::sim::resources::{self, ResourceInfo};

fn strip_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
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
    /// CREATE. No `managedFields` are recorded (see [`patch`]'s module doc).
    pub fn create(&mut self, info: &ResourceInfo, ns: Option<&str>, body: Value) -> ApiResult<Value> {
        // The handler checks the body's namespace before admission looks for the namespace
        // (apiserver pkg/endpoints/handlers/create.go; NamespaceLifecycle).
        let body_ns = meta_str(&body, "namespace").filter(|n| !n.is_empty());
        if info.namespaced && body_ns.is_some_and(|b| Some(b) != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let ns = self.check_namespace(info, ns)?;
        // etcd3's store refuses it before it looks for the key (apiserver
        // pkg/storage/etcd3/store.go, Create), an error kube-apiserver does not wrap in a
        // Status: a 500 with no reason.
        if meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::new(500, "", "resourceVersion should not be set on objects to be created"));
        }
        let mut obj = with_type_meta(info, &body);
        let now = now_string();
        let name = {
            let meta = meta_mut(&mut obj)?;
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
            meta.remove("managedFields");
            name
        };
        if self.store.get(&info.storage_key(), &ns, &name).is_some() {
            // A generated name that exists: kube-apiserver says so (apiserver
            // pkg/registry/rest/create.go, CheckGeneratedNameError).
            let generated = meta_str(&obj, "generateName").is_some_and(|g| !g.is_empty());
            return Err(match generated {
                true => ApiError::new(
                    409,
                    "AlreadyExists",
                    format!(
                        "{} \"{name}\" already exists, the server was not able to generate a unique name for the object",
                        info.qualified()
                    ),
                )
                .with_details(json!({"name": name, "group": info.group, "kind": info.plural, "retryAfterSeconds": 1})),
                false => ApiError::already_exists(&info.qualified(), &name),
            });
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
        let stored = self.store.put(&info.storage_key(), &ns, &name, obj);
        self.after_write(info, stored.value(), false);
        Ok(stored.value().clone())
    }

    /// Turns a candidate into the next stored version of `current`, applying
    /// status-subresource rules, preserving immutable metadata and bumping generation.
    fn next_version(&self, info: &ResourceInfo, current: &Value, candidate: &Value, scope: Scope) -> ApiResult<Value> {
        let cand = with_type_meta(info, candidate);
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

    fn commit_update(&mut self, info: &ResourceInfo, current: &Value, mut next: Value) -> ApiResult<Value> {
        if strip_volatile(&next) == strip_volatile(current) {
            return Ok(current.clone());
        }
        if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert(
                "resourceVersion".into(),
                current.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!("")),
            );
        }
        let ns = meta_str(current, "namespace").unwrap_or("").to_string();
        let name = meta_str(current, "name").unwrap_or("").to_string();
        let stored = self.store.put(&info.storage_key(), &ns, &name, next);
        self.after_write(info, stored.value(), false);
        Ok(self.store.get(&info.storage_key(), &ns, &name).unwrap_or(stored.value()).clone())
    }

    fn check_rv_precondition(info: &ResourceInfo, current: &Value, candidate: &Value) -> ApiResult<()> {
        if let Some(rv) = meta_str(candidate, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(current, "resourceVersion") {
                return Err(ApiError::conflict(&info.qualified(), meta_str(current, "name").unwrap_or("")));
            }
        }
        Ok(())
    }

    /// UPDATE (PUT) of the main resource or of `/status`.
    pub fn update(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        scope: Scope,
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
        let next = self.next_version(info, &current, &body, scope)?;
        self.commit_update(info, &current, next)
    }

    /// PATCH with the given content type: `application/merge-patch+json`,
    /// `application/strategic-merge-patch+json` (built-in kinds) or
    /// `application/apply-patch+yaml` (server-side apply, always as if forced: see [`patch`]'s
    /// module doc); JSON patches get 415.
    pub fn patch(
        &mut self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        content_type: &str,
        body: &[u8],
        scope: Scope,
    ) -> ApiResult<Value> {
        let nsv = if info.namespaced { ns.unwrap_or("") } else { "" };
        let existing = self.store.get(&info.storage_key(), nsv, name).cloned();
        if content_type == "application/apply-patch+yaml" {
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
                    // An apply carries no resourceVersion unless it means a precondition.
                    if let Some(m) = applied["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                    self.create(info, ns, patch::apply(None, &applied, scope))
                }
                Some(current) => {
                    Self::check_rv_precondition(info, &current, &applied)?;
                    let merged = patch::apply(Some(&current), &applied, scope);
                    let next = self.next_version(info, &current, &merged, scope)?;
                    self.commit_update(info, &current, next)
                }
            };
        }
        let strategic = content_type == "application/strategic-merge-patch+json" && !info.is_custom;
        if content_type != "application/merge-patch+json" && !strategic {
            return Err(ApiError::unsupported_media_type(content_type, !info.is_custom));
        }
        let current = existing.ok_or_else(|| ApiError::not_found(&info.qualified(), name))?;
        let patch_doc: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let mut candidate = current.clone();
        match strategic {
            true => patch::strategic_merge_patch(&mut candidate, &patch_doc),
            false => patch::merge_patch(&mut candidate, &patch_doc),
        }
        Self::check_rv_precondition(info, &current, &candidate)?;
        let next = self.next_version(info, &current, &candidate, scope)?;
        self.commit_update(info, &current, next)
    }
}
