//! The RBAC shipped in `config/rbac/` and in the Helm chart must grant exactly what the code
//! uses, as listed in `src/rbac.rs` (`CLUSTER_RULES` for the ClusterRole, `LEASE_RULES` for the
//! leader-election Role): nothing missing (the operator would fail with 403s) and nothing more
//! (least privilege). Rules are compared as sets of (apiGroup, resource, verb) triples, so the
//! YAML may group them differently from the constants.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use sidecar_watch::rbac::{PolicyRule, CLUSTER_RULES, LEASE_RULES};

type Triple = (String, String, String);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn code_triples(rules: &[PolicyRule]) -> BTreeSet<Triple> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(!r.resources.is_empty() && !r.verbs.is_empty(), "empty rule in src/rbac.rs: group {:?}", r.api_group);
        for res in r.resources {
            for verb in r.verbs {
                out.insert((r.api_group.to_string(), res.to_string(), verb.to_string()));
            }
        }
    }
    out
}

/// Triples of a `rules:` list given as YAML (a sequence of PolicyRule objects).
fn yaml_rule_triples(rules: &serde_norway::Value, origin: &str) -> BTreeSet<Triple> {
    let rules: serde_json::Value = serde_json::to_value(rules).expect("YAML rules convert to JSON");
    let list = rules.as_array().unwrap_or_else(|| panic!("{origin}: `rules` is not a list"));
    let strings = |rule: &serde_json::Value, key: &str| -> Vec<String> {
        let v = rule
            .get(key)
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("{origin}: a rule has no `{key}` list: {rule}"));
        assert!(!v.is_empty(), "{origin}: a rule has an empty `{key}`: {rule}");
        v.iter()
            .map(|s| s.as_str().unwrap_or_else(|| panic!("{origin}: non-string in `{key}`: {rule}")).to_string())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in list {
        assert!(rule.get("resourceNames").is_none(), "{origin}: resourceNames not expected: {rule}");
        assert!(rule.get("nonResourceURLs").is_none(), "{origin}: nonResourceURLs not expected: {rule}");
        for g in strings(rule, "apiGroups") {
            for res in strings(rule, "resources") {
                for verb in strings(rule, "verbs") {
                    out.insert((g.clone(), res.clone(), verb));
                }
            }
        }
    }
    out
}

/// The single object of `kind` in a (multi-document) plain YAML file.
fn object_rules(rel: &str, kind: &str) -> BTreeSet<Triple> {
    let text = read(rel);
    let mut found = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = serde_norway::Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"));
        if v.get("kind").and_then(|k| k.as_str()) == Some(kind) {
            found.push(v);
        }
    }
    assert_eq!(found.len(), 1, "{rel}: expected exactly one {kind}");
    let rules = found[0].get("rules").unwrap_or_else(|| panic!("{rel}: {kind} has no rules"));
    yaml_rule_triples(rules, rel)
}

/// The rules of a Helm template whose `rules:` block is static YAML: everything from the
/// `rules:` line up to the closing `{{- end }}`, which must contain no template directives.
fn chart_template_rules(rel: &str, kind: &str) -> BTreeSet<Triple> {
    let text = read(rel);
    assert!(text.lines().any(|l| l.trim() == format!("kind: {kind}")), "{rel}: not a {kind} template");
    let start = text
        .lines()
        .position(|l| l.trim_end() == "rules:")
        .unwrap_or_else(|| panic!("{rel}: no top-level `rules:` line"));
    let block: Vec<&str> = text.lines().skip(start).take_while(|l| !l.trim_start().starts_with("{{")).collect();
    let rest: Vec<&str> = text.lines().skip(start + block.len()).filter(|l| !l.trim().is_empty()).collect();
    assert!(
        rest.iter().all(|l| l.trim() == "{{- end }}"),
        "{rel}: the rules block must be static YAML at the end of the template, found after it: {rest:?}"
    );
    let v: serde_norway::Value =
        serde_norway::from_str(&block.join("\n")).unwrap_or_else(|e| panic!("{rel}: rules block is not YAML: {e}"));
    yaml_rule_triples(v.get("rules").expect("rules key"), rel)
}

fn assert_same(origin: &str, shipped: &BTreeSet<Triple>, code: &BTreeSet<Triple>, constant: &str) {
    let missing: Vec<_> = code.difference(shipped).collect();
    let extra: Vec<_> = shipped.difference(code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{origin} disagrees with src/rbac.rs {constant}:\n  missing (code needs, YAML lacks): {missing:?}\n  extra (YAML grants, code does not use): {extra:?}\n(triples are (apiGroup, resource, verb))"
    );
}

#[test]
fn code_rules_are_least_privilege() {
    for (name, rules) in [("CLUSTER_RULES", CLUSTER_RULES), ("LEASE_RULES", LEASE_RULES)] {
        for (g, res, verb) in code_triples(rules) {
            assert!(g != "*" && res != "*" && verb != "*", "{name}: wildcard in ({g}, {res}, {verb})");
            assert!(!(g.is_empty() && res == "secrets"), "{name}: the operator must not read Secrets");
            assert!(
                !(g.is_empty() && res == "pods" && !["get", "list", "watch"].contains(&verb.as_str())),
                "{name}: the operator must not write Pods ({verb})"
            );
            // Workloads are read one at a time (a Deployment's UID for a workload Event; the
            // workload a FailedCreate Event names): never listed or watched (the whole
            // cluster's workloads in memory) nor written.
            assert!(
                !["apps", "batch"].contains(&g.as_str()) || verb == "get",
                "{name}: the operator only gets workloads ({g}, {res}, {verb})"
            );
            // core/v1 Events are only read (the controllers' FailedCreate, field-selected);
            // the operator writes its own through events.k8s.io.
            assert!(
                !(g.is_empty() && res == "events") || ["list", "watch"].contains(&verb.as_str()),
                "{name}: core Events are only listed and watched ({verb})"
            );
        }
    }
    assert!(
        code_triples(LEASE_RULES).iter().all(|(g, res, _)| g == "coordination.k8s.io" && res == "leases"),
        "LEASE_RULES is for the namespaced leader-election Role: leases only"
    );
}

#[test]
fn kustomize_cluster_role_matches_code() {
    let rel = "config/rbac/cluster_role.yaml";
    assert_same(rel, &object_rules(rel, "ClusterRole"), &code_triples(CLUSTER_RULES), "CLUSTER_RULES");
}

#[test]
fn kustomize_lease_role_matches_code() {
    let rel = "config/rbac/leader_election_role.yaml";
    assert_same(rel, &object_rules(rel, "Role"), &code_triples(LEASE_RULES), "LEASE_RULES");
}

#[test]
fn chart_cluster_role_matches_code() {
    let rel = "charts/sidecar-watch/templates/clusterrole.yaml";
    assert_same(rel, &chart_template_rules(rel, "ClusterRole"), &code_triples(CLUSTER_RULES), "CLUSTER_RULES");
}

#[test]
fn chart_lease_role_matches_code() {
    let rel = "charts/sidecar-watch/templates/role.yaml";
    assert_same(rel, &chart_template_rules(rel, "Role"), &code_triples(LEASE_RULES), "LEASE_RULES");
}

#[test]
fn no_other_roles_are_shipped() {
    // Every Role/ClusterRole in config/ and the chart is one of the two checked above, so no
    // permission can be added elsewhere unnoticed.
    let mut offenders = Vec::new();
    let mut stack = vec![root().join("config"), root().join("charts/sidecar-watch/templates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(root()).unwrap_or(Path::new("")).to_string_lossy().to_string();
            for l in text.lines() {
                let t = l.trim();
                if (t == "kind: ClusterRole" || t == "kind: Role")
                    && ![
                        "config/rbac/cluster_role.yaml",
                        "config/rbac/leader_election_role.yaml",
                        "charts/sidecar-watch/templates/clusterrole.yaml",
                        "charts/sidecar-watch/templates/role.yaml",
                        // Roles for people and Prometheus, never bound to the operator:
                        // scripts/check-deploy.sh checks their rendered rules.
                        "config/rbac/user_roles.yaml",
                        "config/rbac/metrics_reader_role.yaml",
                        "charts/sidecar-watch/templates/user-roles.yaml",
                        "charts/sidecar-watch/templates/metrics-reader.yaml",
                    ]
                    .contains(&rel.as_str())
                    && !l.starts_with(' ')
                {
                    offenders.push(rel.clone());
                }
            }
        }
    }
    assert!(offenders.is_empty(), "unexpected Role/ClusterRole in {offenders:?}");
}
