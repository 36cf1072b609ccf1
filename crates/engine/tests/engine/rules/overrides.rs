//! Disabled rules and severity overrides, on every seed scenario: each changes exactly its
//! own rule's alerts.

use sidecar_watch_api::Severity;
use sidecar_watch_engine::{AlertName, CompiledPolicy};
use sidecar_watch_testkit::engine::*;

#[test]
fn disabling_a_rule_removes_exactly_its_alerts() {
    let mut seen = std::collections::BTreeSet::new();
    for scenario in Scenario::ALL {
        let (view, file) = (load_view(scenario), scenario.file());
        let all = eval(&view, &CompiledPolicy::builtin(), now());
        seen.extend(all.alerts.iter().map(|a| a.name));
        for (key, name) in RULE_KEYS {
            let disabled = policy(&format!("rules: {{{key}: {{enabled: false}}}}"));
            let evaluation = eval(&view, &disabled, now());
            let expected: Vec<Row> = rows(&all).into_iter().filter(|r| r.0 != name).collect();
            assert_eq!(rows(&evaluation), expected, "{file} without {key}");
        }
    }
    // SidecarVersionDrift needs a policy's minimumVersions, which the built-in policy has none
    // of: its rule is exercised beside its code (crates/engine/src/rules/drift/tests.rs). The
    // alerts on workloads are never a Pod's.
    let per_pod = AlertName::ALL.iter().filter(|a| !a.on_workload()).count();
    assert_eq!(seen.len(), per_pod - 1, "the fixtures exercise every other rule: {seen:?}");
}

#[test]
fn severity_overrides_apply_to_their_rule_only() {
    for scenario in Scenario::ALL {
        let (view, file) = (load_view(scenario), scenario.file());
        let all = eval(&view, &CompiledPolicy::builtin(), now());
        for (key, name) in RULE_KEYS {
            for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
                let overridden = policy(&format!("rules: {{{key}: {{severity: {severity}}}}}"));
                let evaluation = eval(&view, &overridden, now());
                let expected: Vec<Row> = rows(&all)
                    .into_iter()
                    .map(|mut r| {
                        if r.0 == name {
                            r.5 = severity;
                        }
                        r
                    })
                    .collect();
                assert_eq!(rows(&evaluation), expected, "{file} {key} {severity}");
            }
        }
    }
}
