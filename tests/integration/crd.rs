//! The generated files in the repository are exactly what the commands print: the CRDs in
//! `crds/` (`sidecar-watch crd`, and structural) and the admission policies in
//! `config/components/admission-policies/` (`sidecar-watch admission-policy`).

use serde_json::Value;
use sidecar_watch::admission::BindingOptions;
use sidecar_watch::api::crd_files;

/// Each of `files` (name, content) equals `dir/name`; else names the command that renews them.
fn assert_directory_holds(dir: &str, files: Vec<(String, String)>, renew: &str) {
    for (name, content) in files {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(&name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == content, "{} is out of date: run `{renew}` and commit the result", path.display());
    }
}

#[test]
fn crds_directory_matches_generated_output() {
    assert_directory_holds("crds", crd_files().expect("CRDs render"), "cargo run -- crd --out-dir crds");
}

#[test]
fn admission_policy_files_match_generated_output() {
    let dir = "config/components/admission-policies";
    let files = sidecar_watch::admission::files(&BindingOptions::default()).expect("the policies render");
    assert_directory_holds(dir, files, &format!("cargo run -- admission-policy --out-dir {dir}"));
}

/// Checks the rules of a structural schema that can be checked offline
/// (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
fn check_structural(schema: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        errors.push(format!("{path}: schema is not an object"));
        return;
    };
    let preserves = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if object.get("type").and_then(Value::as_str).is_none() && !preserves && !int_or_string {
        errors.push(format!("{path}: no type"));
    }
    // anyOf/oneOf/allOf/not are allowed only without types or descriptions inside, and
    // $ref/definitions not at all; the generated schemas should need none of them.
    for forbidden in ["$ref", "definitions", "anyOf", "oneOf", "allOf", "not"] {
        if object.contains_key(forbidden) {
            errors.push(format!("{path}: uses {forbidden}"));
        }
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        errors.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(Value::Object(props)) = object.get("properties") {
        if object.get("type").and_then(Value::as_str) != Some("object") {
            errors.push(format!("{path}: properties on a non-object"));
        }
        for (name, prop) in props {
            check_structural(prop, &format!("{path}.{name}"), errors);
        }
    }
    if let Some(items) = object.get("items") {
        check_structural(items, &format!("{path}[]"), errors);
    }
    if let Some(additional @ Value::Object(_)) = object.get("additionalProperties") {
        check_structural(additional, &format!("{path}{{}}"), errors);
    }
}

#[test]
fn crds_are_structural_with_status_and_printer_columns() {
    for (name, yaml) in crd_files().expect("CRDs render") {
        let crd: Value = serde_norway::from_str(&yaml).expect("CRD parses");
        let version = &crd["spec"]["versions"][0];
        let mut errors = Vec::new();
        check_structural(&version["schema"]["openAPIV3Schema"], "", &mut errors);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        assert!(version["subresources"]["status"].is_object(), "{name}: no status subresource");
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(columns, ["Matched", "Alerting", "Ready", "Reason", "Pending", "Last Evaluated", "Age"], "{name}");
        // Pending and Last Evaluated only with `kubectl get -o wide`
        let wide: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .filter(|c| c["priority"].as_i64() == Some(1))
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(wide, ["Pending", "Last Evaluated"], "{name}");
    }
}

#[test]
fn schema_rejects_what_it_can() {
    let yaml = crd_files()
        .expect("CRDs render")
        .into_iter()
        .find(|(n, _)| n.contains("_sidecarpolicies"))
        .expect("namespaced CRD")
        .1;
    let crd: Value = serde_norway::from_str(&yaml).expect("CRD parses");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rules = &spec["rules"]["properties"];
    assert_eq!(rules["restarts"]["properties"]["threshold"]["minimum"].as_f64(), Some(1.0));
    assert!(rules["crashLoop"]["properties"]["for"]["pattern"].is_string());
    assert_eq!(
        rules["oomKilled"]["properties"]["severity"]["enum"],
        serde_json::json!(["info", "warning", "critical"])
    );
    let cel = &spec["sidecars"]["x-kubernetes-validations"][0]["rule"];
    assert!(cel.as_str().is_some_and(|r| r.contains("self.native")), "{cel}");
    assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["scp"]));
}

/// Every string, list and map a tenant writes has a size bound in both CRDs, and the bounds
/// are the ones the operator checks again (`sidecar_watch::api::bounds`): the API server
/// refuses what the operator would call invalid, and nothing more.
#[test]
fn schema_bounds_every_tenant_field_as_the_operator_does() {
    use sidecar_watch::api::bounds::*;
    for (name, yaml) in crd_files().expect("CRDs render") {
        let crd: Value = serde_norway::from_str(&yaml).expect("CRD parses");
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let spec = &root["properties"]["spec"]["properties"];
        let at = |path: &str, key: &str| -> Option<u64> {
            let mut node = &root["properties"]["spec"];
            for part in path.split('.') {
                node = match part {
                    "[]" => &node["items"],
                    "{}" => &node["additionalProperties"],
                    _ => &node["properties"][part],
                };
            }
            node.get(key).and_then(Value::as_u64)
        };
        let mut selectors = vec!["selector"];
        if name.contains("cluster") {
            selectors.push("namespaceSelector");
        }
        let mut expected: Vec<(String, &str, usize)> = vec![
            ("sidecars.pattern".into(), "maxLength", MAX_PATTERN_CHARS),
            ("sidecars.names".into(), "maxItems", MAX_SIDECAR_NAMES),
            ("sidecars.names.[]".into(), "maxLength", MAX_CONTAINER_NAME_CHARS),
            ("rules.crashLoop.for".into(), "maxLength", MAX_DURATION_CHARS),
            ("rules.restarts.window".into(), "maxLength", MAX_DURATION_CHARS),
            ("rules.oomKilled.window".into(), "maxLength", MAX_DURATION_CHARS),
        ];
        for s in selectors {
            expected.extend([
                (format!("{s}.matchLabels"), "maxProperties", MAX_MATCH_LABELS),
                (format!("{s}.matchLabels.{{}}"), "maxLength", MAX_LABEL_VALUE_CHARS),
                (format!("{s}.matchExpressions"), "maxItems", MAX_MATCH_EXPRESSIONS),
                (format!("{s}.matchExpressions.[].key"), "maxLength", MAX_LABEL_KEY_CHARS),
                (format!("{s}.matchExpressions.[].values"), "maxItems", MAX_EXPRESSION_VALUES),
                (format!("{s}.matchExpressions.[].values.[]"), "maxLength", MAX_LABEL_VALUE_CHARS),
            ]);
            let keys = &spec[s]["properties"]["matchLabels"]["x-kubernetes-validations"][0]["rule"];
            assert_eq!(
                keys.as_str(),
                Some(format!("self.all(k, size(k) <= {MAX_LABEL_KEY_CHARS})").as_str()),
                "{name}"
            );
        }
        for (path, key, bound) in expected {
            assert_eq!(at(&path, key), Some(bound as u64), "{name}: spec.{path} {key}");
        }
        // Every string and list of the spec has a bound, but booleans, enums and the
        // duration pattern's own strings (bounded above).
        let mut unbounded = Vec::new();
        find_unbounded(&root["properties"]["spec"], "spec", &mut unbounded);
        assert!(unbounded.is_empty(), "{name}: unbounded {unbounded:?}");
    }
}

fn find_unbounded(schema: &Value, path: &str, out: &mut Vec<String>) {
    let has = |key: &str| schema.get(key).is_some();
    match schema["type"].as_str() {
        Some("string") if !has("maxLength") && !has("enum") => out.push(path.to_string()),
        Some("array") if !has("maxItems") => out.push(path.to_string()),
        Some("object") if has("additionalProperties") && !has("maxProperties") => out.push(path.to_string()),
        _ => {}
    }
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (name, prop) in props {
            find_unbounded(prop, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        find_unbounded(items, &format!("{path}[]"), out);
    }
    if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
        find_unbounded(values, &format!("{path}{{}}"), out);
    }
}

/// Every `format` in a CRD schema, with its path.
fn formats(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(format)) = object.get("format") {
                out.push((path.to_string(), format.clone()));
            }
            for (key, child) in object {
                formats(child, &format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| formats(item, &format!("{path}[]"), out)),
        _ => {}
    }
}

/// The formats kube-apiserver recognises in a CRD schema (apiextensions-apiserver
/// `pkg/apiserver/validation/formats.go`, and `int32`, `int64`, `float`, `double` on numbers):
/// any other is stored but warned about at every `kubectl apply` of the CRD ("unrecognized
/// format"), and validates nothing.
const RECOGNISED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// kube-apiserver warns at every apply of a CRD whose schema has a format it does not know
/// (`Warning: unrecognized format "uint32"`); the generated CRDs use only known ones, and
/// the unsigned counts keep their range as bounds. The e2e suite applies them to the real
/// server and fails on any warning (`install_paths::the_crds_apply_without_a_warning`).
#[test]
fn crds_use_only_formats_kubernetes_recognises() {
    for (name, yaml) in crd_files().expect("CRDs render") {
        let crd: Value = serde_norway::from_str(&yaml).expect("CRD parses");
        let mut found = Vec::new();
        formats(&crd["spec"], "spec", &mut found);
        assert!(found.iter().any(|(_, f)| f == "int64"), "{name}: the counts have a format: {found:?}");
        let unknown: Vec<_> = found.iter().filter(|(_, f)| !RECOGNISED_FORMATS.contains(&f.as_str())).collect();
        assert!(unknown.is_empty(), "{name}: formats kube-apiserver does not recognise: {unknown:?}");
        let matched = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["matchedPods"];
        assert_eq!(matched["format"], "int64", "{name}: {matched}");
        assert_eq!(matched["minimum"], 0.0, "{name}: {matched}");
        assert_eq!(matched["maximum"], u32::MAX as f64, "{name}: {matched}");
    }
}
