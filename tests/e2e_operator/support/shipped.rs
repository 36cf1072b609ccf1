//! What the repository ships for Prometheus and Alertmanager, as the real ones of the suite
//! read it: the PrometheusRule's rules ([`shipped_rules`]) and the example Alertmanager
//! configuration ([`shipped_alertmanager_config`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Extracts `.spec` of the shipped PrometheusRule into a plain Prometheus rule file. The
/// alerts' `keep_firing_for` (minutes, so that a failover's missed scrape does not resolve
/// them: the promtool unit tests in config/prometheus/tests/ check that) is cut to 3 s so that
/// the resolution can be watched here. A group's own `interval` (the sidecar-signal groups'
/// 2 minutes) goes: every group is evaluated at the suite's Prometheus interval.
pub fn shipped_rules(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus/prometheusrule.yaml");
    let text = std::fs::read_to_string(&source).expect("shipped PrometheusRule");
    let rule: Value = serde_norway::from_str(&text).expect("PrometheusRule YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    let mut spec = rule.get("spec").cloned().expect("spec");
    for group in spec["groups"].as_array_mut().into_iter().flatten() {
        if let Some(group) = group.as_object_mut() {
            group.remove("interval");
        }
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if rule.get("keep_firing_for").is_some() {
                rule["keep_firing_for"] = Value::from("3s");
            }
        }
    }
    let path = dir.join("sidecar-watch-rules.yaml");
    std::fs::write(&path, serde_norway::to_string(&spec).unwrap()).unwrap();
    path
}

/// The text of the example Alertmanager configuration, `config/alertmanager/alertmanager.yaml`.
pub fn shipped_alertmanager_config() -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alertmanager/alertmanager.yaml");
    std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("the shipped Alertmanager configuration {}: {e}", source.display()))
}
