//! `audit`'s outputs of hostile strings: findings whose names, messages, policies and
//! timestamps are anything at all (a hand-written manifest is checked by no API server),
//! rendered as the table (with and without colour), SARIF, JSON and YAML.
//!
//! Beyond "no panic": the table keeps one line per finding and no control character (a name
//! cannot move the cursor or forge a row); SARIF is JSON whose results point at their rules
//! and carry each message exactly; JSON and YAML read back as the findings they encode.
#![no_main]

use arbitrary::Arbitrary;
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidecar_watch::api::Severity;
use sidecar_watch::audit::{render_table, sarif_log, Finding};
use sidecar_watch::engine::{AlertName, AlertState, Check};
use sidecar_watch_fuzz::{assert_table, now};

#[derive(Arbitrary, Debug)]
enum Since {
    Unknown,
    /// Seconds before (or after) the audit's instant, clamped to what a timestamp holds.
    Offset(i64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Row {
    alert: u8,
    check: u8,
    severity: u8,
    firing: bool,
    namespace: String,
    pod: String,
    container: String,
    template: Option<String>,
    policy: String,
    policy_namespace: String,
    since: Since,
    message: String,
    identified_by: Option<String>,
    workload_kind: String,
    workload: String,
    file: Option<String>,
}

impl Row {
    fn finding(self) -> Finding {
        let alert = AlertName::ALL[usize::from(self.alert) % AlertName::ALL.len()];
        let since = match self.since {
            Since::Unknown => None,
            Since::Offset(seconds) => {
                let at = now()
                    .as_second()
                    .saturating_sub(seconds)
                    .clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
                Some(Timestamp::from_second(at).expect("clamped").to_string())
            }
            Since::Text(text) => Some(text),
        };
        let (kind, pod) = match self.template {
            None => ("Pod".to_string(), self.pod),
            Some(kind) => (kind.clone(), format!("{kind}/{}", self.pod)),
        };
        Finding {
            alertname: alert.as_str().to_string(),
            severity: [Severity::Info, Severity::Warning, Severity::Critical][usize::from(self.severity) % 3],
            namespace: self.namespace,
            pod,
            container: self.container,
            kind,
            policy: self.policy,
            policy_namespace: self.policy_namespace,
            state: if self.firing { AlertState::Firing } else { AlertState::Pending },
            since,
            message: self.message,
            identified_by: self.identified_by,
            // As the engine writes them: every misconfiguration names its check, nothing else does.
            check: (alert == AlertName::SidecarMisconfigured)
                .then(|| Check::ALL[usize::from(self.check) % Check::ALL.len()].as_str().to_string()),
            workload_kind: self.workload_kind,
            workload: self.workload,
            file: self.file,
        }
    }
}

fuzz_target!(|rows: Vec<Row>| {
    let findings: Vec<Finding> = rows.into_iter().take(64).map(Row::finding).collect();
    assert_table(&render_table(&findings, now(), false), &findings);
    let coloured = render_table(&findings, now(), true);
    let plain = ["\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[0m"].iter().fold(coloured, |t, code| t.replace(code, ""));
    assert_table(&plain, &findings);

    // Only the results hold what the findings say; the rules (every runbook, 60 KB) are the
    // same in every log, and writing them out made each run ten times slower.
    let sarif = sarif_log(&findings);
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results: Value = serde_json::from_str(&serde_json::to_string(&run["results"]).expect("serializes"))
        .expect("SARIF results read back");
    let results = results.as_array().expect("results");
    assert_eq!(results.len(), findings.len());
    for (result, finding) in results.iter().zip(&findings) {
        assert_eq!(result["message"]["text"].as_str(), Some(finding.message.as_str()));
        let index = result["ruleIndex"].as_u64().expect("every finding's rule is known") as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }

    let expected = serde_json::to_value(&findings).expect("findings serialize");
    let json: Value = serde_json::from_str(&serde_json::to_string_pretty(&findings).expect("JSON")).expect("reads");
    assert_eq!(json, expected, "-o json reads back as the findings");
    if !findings.is_empty() {
        let yaml = serde_norway::to_string(&findings).expect("YAML");
        let read: Value =
            serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("-o yaml does not read back ({e}): {yaml}"));
        assert_eq!(read, expected, "-o yaml reads back as the findings: {yaml}");
    }
});
