//! Strict validation of `--policy` files, as `kubectl apply --validate=strict` does: a field
//! the CRD does not define (`restartz` for `restarts`) is an error naming its path, instead of
//! being pruned silently and the rule running with its defaults.
//!
//! The check walks the object against the CRD's own structural schema (`crds/` is generated
//! from the same types), so it cannot drift from what the API server accepts.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use kube::CustomResourceExt;
use serde_json::Value;

/// `Ok` when every field of `object` is one the CRD of `K` defines; else `<path>: unknown
/// field`. `metadata` is the API's own ObjectMeta and is not checked.
pub(super) fn check<K: CustomResourceExt>(object: &Value) -> Result<(), String> {
    let Some(schema) = schema::<K>() else { return Ok(()) };
    match unknown_field(object, &schema, "") {
        // The path ends in the unknown key, which may be any length.
        Some(path) => Err(format!("{}: unknown field (not in the {} schema)", crate::api::clip(&path), K::crd_name())),
        None => Ok(()),
    }
}

/// The CRDs' structural schemas by CRD name.
type Schemas = HashMap<&'static str, Option<Arc<JSONSchemaProps>>>;

/// The structural schema of `K`'s CRD, generated once per kind: generating it (schemars, then
/// kube's structural rewrite) for every object cost more than decoding and compiling the
/// policy (docs/benchmarks.md#figures-the-codes-comments-cite).
fn schema<K: CustomResourceExt>() -> Option<Arc<JSONSchemaProps>> {
    static SCHEMAS: LazyLock<Mutex<Schemas>> = LazyLock::new(Mutex::default);
    let mut schemas = SCHEMAS.lock();
    let schema = schemas.entry(K::crd_name()).or_insert_with(|| {
        let crd = K::crd();
        let version = crd.spec.versions.into_iter().next()?;
        version.schema?.open_api_v3_schema.map(Arc::new)
    });
    schema.clone()
}

/// The path of the first field of `value` that `schema` does not define.
fn unknown_field(value: &Value, schema: &JSONSchemaProps, path: &str) -> Option<String> {
    // The envelope (`apiVersion`, `kind`, `metadata`) is the API's own, not the CRD's schema.
    if schema.x_kubernetes_preserve_unknown_fields == Some(true) || matches!(path, "apiVersion" | "kind" | "metadata") {
        return None;
    }
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match value {
        Value::Object(fields) => {
            let Some(properties) = &schema.properties else {
                // A map (`matchLabels`): its values follow `additionalProperties`.
                return match &schema.additional_properties {
                    Some(JSONSchemaPropsOrBool::Schema(values)) => {
                        fields.iter().find_map(|(key, v)| unknown_field(v, values, &join(key)))
                    }
                    _ => None,
                };
            };
            fields.iter().find_map(|(key, v)| match properties.get(key) {
                Some(field_schema) => unknown_field(v, field_schema, &join(key)),
                None if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") => None,
                None => Some(join(key)),
            })
        }
        Value::Array(items) => match &schema.items {
            Some(JSONSchemaPropsOrArray::Schema(item)) => {
                items.iter().enumerate().find_map(|(i, v)| unknown_field(v, item, &format!("{path}[{i}]")))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterSidecarPolicy, SidecarPolicy};
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_known_ones_pass() {
        let policy = |spec: Value| {
            json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
                                         "metadata": {"name": "p", "namespace": "shop", "labels": {"x": "y"}}, "spec": spec})
        };
        let good = policy(json!({"selector": {"matchLabels": {"app": "web"},
                                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
                                 "sidecars": {"names": ["envoy"], "catalog": false},
                                 "rules": {"restarts": {"threshold": 3, "window": "15m"}}}));
        assert_eq!(check::<SidecarPolicy>(&good), Ok(()));
        let typo = policy(json!({"rules": {"restarts": {"restartz": 3}}}));
        let error = check::<SidecarPolicy>(&typo).expect_err("restartz");
        assert!(error.starts_with("spec.rules.restarts.restartz: unknown field"), "{error}");
        let in_list =
            policy(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "valuez": []}]}}));
        assert!(check::<SidecarPolicy>(&in_list)
            .expect_err("valuez")
            .starts_with("spec.selector.matchExpressions[0].valuez"));
        let cluster = json!({"kind": "ClusterSidecarPolicy", "metadata": {"name": "c"},
                             "spec": {"namespaceSelectorr": {}}});
        assert!(check::<ClusterSidecarPolicy>(&cluster).expect_err("typo").starts_with("spec.namespaceSelectorr"));
    }
}
