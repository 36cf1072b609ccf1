//! The user's alerting path: the seed's PrometheusRule (`harness/ksm/seed-rules.yaml`, verbatim)
//! and the careful user's fix (`harness/ksm/careful-rules.yaml`), turned into Prometheus rule
//! files as prometheus-operator does (the object's `spec`), and Prometheus' configuration:
//! one scrape job per system, scrape and evaluation every `interval`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Which rule set a Prometheus alert came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleSet {
    /// The seed's rules as written.
    Seed,
    /// The same rules reading native sidecars too.
    Careful,
}

impl RuleSet {
    /// Both, in table order.
    pub const ALL: [RuleSet; 2] = [RuleSet::Seed, RuleSet::Careful];

    /// The PrometheusRule in the repository.
    pub fn source(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(match self {
            RuleSet::Seed => "ksm/seed-rules.yaml",
            RuleSet::Careful => "ksm/careful-rules.yaml",
        })
    }

    /// The rule file's name (how Prometheus' `/api/v1/rules` tells the two apart).
    pub fn file_name(self) -> &'static str {
        match self {
            RuleSet::Seed => "seed.rules.yml",
            RuleSet::Careful => "careful.rules.yml",
        }
    }

    /// The rule set a rule file of Prometheus' answer is.
    pub fn of_file(file: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| file.ends_with(s.file_name()))
    }
}

/// Milliseconds of a Prometheus duration (`30s`, `5m`, `1h30m`, `500ms`).
pub fn duration_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (n, tail) = rest.split_at(digits);
        let n: u64 = n.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += n * match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = tail;
    }
    (!text.is_empty()).then_some(total)
}

/// `text` divided by `scale`, in whole seconds when it divides evenly, else milliseconds.
pub fn scale_duration(text: &str, scale: u32) -> Option<String> {
    let ms = duration_ms(text)? / u64::from(scale.max(1));
    Some(if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") })
}

/// Every `[<duration>]` range of a PromQL expression divided by `scale`.
fn scale_ranges(expr: &str, scale: u32) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|c| open + c) else { break };
        out.push_str(&rest[..=open]);
        let inside = &rest[open + 1..close];
        out.push_str(&scale_duration(inside, scale).unwrap_or_else(|| inside.to_string()));
        out.push(']');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The `spec` of a PrometheusRule file, with every duration (group `interval`, rule `for`,
/// range selectors) divided by `scale` (1: unchanged).
pub fn rule_groups(source: &Path, scale: u32) -> Result<Value> {
    let text = std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let rule: Value = serde_norway::from_str(&text).with_context(|| format!("parsing {}", source.display()))?;
    let Some(mut spec) = rule.get("spec").cloned() else { bail!("{}: no spec", source.display()) };
    if scale > 1 {
        for group in spec["groups"].as_array_mut().into_iter().flatten() {
            if let Some(scaled) = group["interval"].as_str().and_then(|i| scale_duration(i, scale)) {
                group["interval"] = Value::from(scaled);
            }
            for rule in group["rules"].as_array_mut().into_iter().flatten() {
                if let Some(scaled) = rule["for"].as_str().and_then(|f| scale_duration(f, scale)) {
                    rule["for"] = Value::from(scaled);
                }
                if let Some(expr) = rule["expr"].as_str() {
                    rule["expr"] = Value::from(scale_ranges(expr, scale));
                }
            }
        }
    }
    Ok(spec)
}

/// Writes both rule files into `dir`; returns their paths.
pub fn write_rule_files(dir: &Path, scale: u32) -> Result<Vec<PathBuf>> {
    RuleSet::ALL
        .into_iter()
        .map(|set| {
            let path = dir.join(set.file_name());
            let groups = rule_groups(&set.source(), scale)?;
            std::fs::write(&path, serde_norway::to_string(&groups)?)?;
            Ok(path)
        })
        .collect()
}

/// Prometheus' configuration: scrape and evaluate every `interval_ms`, the rule files, one
/// job per `(job, host:port)`. kube-state-metrics' job keeps its `namespace`/`pod` labels
/// (`honor_labels`, as its documentation asks).
pub fn prometheus_config(interval_ms: u64, rule_files: &[PathBuf], targets: &[(&str, String)]) -> String {
    let interval = format!("{interval_ms}ms");
    // A scrape may not take longer than the interval; 10 s is Prometheus' default timeout.
    let timeout = format!("{}ms", interval_ms.min(10_000));
    let mut config = format!(
        "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n  scrape_timeout: {timeout}\nrule_files:\n"
    );
    for f in rule_files {
        config.push_str(&format!("  - {:?}\n", f.display().to_string()));
    }
    config.push_str("scrape_configs:\n");
    for (job, target) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    honor_labels: true\n    static_configs:\n      - targets: [{target:?}]\n"
        ));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_scale() {
        assert_eq!(duration_ms("5m"), Some(300_000));
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("x"), None);
        assert_eq!(scale_duration("5m", 10).as_deref(), Some("30s"));
        assert_eq!(scale_duration("15m", 10).as_deref(), Some("90s"));
        assert_eq!(scale_duration("30s", 1).as_deref(), Some("30s"));
        assert_eq!(scale_duration("1s", 3).as_deref(), Some("333ms"));
        assert_eq!(
            scale_ranges("rate(kube_pod_container_status_restarts_total[15m]) > 0.1", 10),
            "rate(kube_pod_container_status_restarts_total[90s]) > 0.1"
        );
    }

    #[test]
    fn the_seed_rules_load_unchanged_at_scale_one() {
        let groups = rule_groups(&RuleSet::Seed.source(), 1).unwrap();
        let rules = groups["groups"][0]["rules"].as_array().unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
        assert_eq!(names, ["SidecarContainerNotReady", "MainContainerReadyButSidecarNot", "PodRestartingFrequently"]);
        assert_eq!(groups["groups"][0]["interval"], "30s");
        assert_eq!(
            rules[2]["expr"].as_str().unwrap().trim(),
            "rate(kube_pod_container_status_restarts_total[15m]) > 0.1"
        );
        let careful = rule_groups(&RuleSet::Careful.source(), 10).unwrap();
        assert_eq!(careful["groups"][0]["rules"][0]["for"], "30s");
        assert!(careful["groups"][0]["rules"][2]["expr"].as_str().unwrap().contains("[90s]"));
    }
}

/// The rule files judged by promtool on kube-state-metrics-shaped series: what the seed's
/// rules see and what the careful rules add.
#[cfg(test)]
mod promtool {
    use super::*;

    /// One Pod's series: `app` ready; `istio-proxy` not ready, legacy (regular container) or
    /// native (init container with `restart_policy="Always"`), restarting 4 times per 30 s
    /// (0.13/s: above the seed's 0.1, once its 15-minute window is full);
    /// and a plain init container (`Never`) that finished: never a sidecar.
    fn series(pod: &str, native: bool) -> String {
        let family = if native { "kube_pod_init_container" } else { "kube_pod_container" };
        let mut s = format!(
            "      - series: 'kube_pod_container_status_ready{{namespace=\"shop\",pod=\"{pod}\",container=\"app\"}}'\n        values: '1x60'\n\
             \x20     - series: '{family}_status_ready{{namespace=\"shop\",pod=\"{pod}\",container=\"istio-proxy\"}}'\n        values: '0x60'\n\
             \x20     - series: '{family}_status_restarts_total{{namespace=\"shop\",pod=\"{pod}\",container=\"istio-proxy\"}}'\n        values: '0+4x60'\n"
        );
        if native {
            s.push_str(&format!(
                "      - series: 'kube_pod_init_container_info{{namespace=\"shop\",pod=\"{pod}\",container=\"istio-proxy\",restart_policy=\"Always\"}}'\n        values: '1x60'\n\
                 \x20     - series: 'kube_pod_init_container_info{{namespace=\"shop\",pod=\"{pod}\",container=\"migrate\",restart_policy=\"Never\"}}'\n        values: '1x60'\n\
                 \x20     - series: 'kube_pod_init_container_status_ready{{namespace=\"shop\",pod=\"{pod}\",container=\"migrate\"}}'\n        values: '0x60'\n"
            ));
        }
        s
    }

    fn expected(pods: &[&str]) -> String {
        let mut out = String::new();
        for (alert, container, severity, description) in [
            (
                "SidecarContainerNotReady",
                "istio-proxy",
                "warning",
                "Pod shop/{pod} has sidecar istio-proxy not ready for 5 minutes",
            ),
            (
                "MainContainerReadyButSidecarNot",
                "app",
                "warning",
                "Pod shop/{pod} main container ready but sidecar not ready",
            ),
            (
                "PodRestartingFrequently",
                "istio-proxy",
                "critical",
                "Container istio-proxy in pod shop/{pod} restarting frequently",
            ),
        ] {
            let summary = match alert {
                "SidecarContainerNotReady" => "Sidecar container not ready",
                "MainContainerReadyButSidecarNot" => "Container ready but sidecar not ready",
                _ => "Container restarting frequently",
            };
            out.push_str(&format!("      - eval_time: 20m\n        alertname: {alert}\n        exp_alerts:\n"));
            for pod in pods {
                out.push_str(&format!(
                    "          - exp_labels: {{severity: {severity}, namespace: shop, pod: {pod}, container: {container}}}\n            exp_annotations: {{summary: \"{summary}\", description: \"{}\"}}\n",
                    description.replace("{pod}", pod)
                ));
            }
            if pods.is_empty() {
                out.push_str("          []\n");
            }
        }
        out
    }

    fn check(set: RuleSet, firing: &[&str]) {
        let dir = std::env::temp_dir().join(format!("sidecar-watch-rules-{}-{}", std::process::id(), set.file_name()));
        std::fs::create_dir_all(&dir).unwrap();
        write_rule_files(&dir, 1).unwrap();
        let test = format!(
            "rule_files: [{}]\nevaluation_interval: 30s\ntests:\n  - interval: 30s\n    input_series:\n{}{}    alert_rule_test:\n{}",
            set.file_name(),
            series("legacy", false),
            series("native", true),
            expected(firing)
        );
        std::fs::write(dir.join("test.yaml"), test).unwrap();
        // A promtool that never ends would hold the suite: the backstop ends it instead.
        let _bound = crate::backstop::Backstop::arm(
            crate::backstop::test_name(),
            std::time::Duration::from_secs(120),
            crate::backstop::Logs::default(),
        );
        let out = std::process::Command::new("promtool")
            .args(["test", "rules", "test.yaml"])
            .current_dir(&dir)
            .output()
            .expect("promtool runs: install it with `apt-get install -y prometheus` (scripts/deploy/install-tools.sh promtool)");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{set:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_seed_rules_see_only_the_legacy_sidecar() {
        check(RuleSet::Seed, &["legacy"]);
    }

    #[test]
    fn the_careful_rules_see_both_and_never_a_plain_init_container() {
        check(RuleSet::Careful, &["legacy", "native"]);
    }
}
