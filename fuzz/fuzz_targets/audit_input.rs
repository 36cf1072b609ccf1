//! The `audit` input reader: what a user pipes in (`kubectl get pods -o json|yaml`, `helm
//! template`, a hand-written manifest) and what every tenant's Pods and workloads put into
//! such a dump. The input is read as `audit -f` reads a file (JSON documents and arrays, YAML
//! streams cut into documents, a List's `items` cut into entries), audited under the built-in
//! policy, and its findings rendered as a table and as SARIF.
//!
//! Beyond "no panic": an unusable input's error is one short line; and a YAML input means
//! what it says: the findings of the YAML reader (which cuts a List apart by its text) equal
//! those of the same objects parsed whole and read as JSON.
#![no_main]

use serde::Deserialize;
use serde_json::Value;

use libfuzzer_sys::fuzz_target;
use sidecar_watch::audit::{audit, read_pods, render_table, sarif_log, AuditError, Finding, Inventory};
use sidecar_watch::engine::{CompiledPolicy, Interner};
use sidecar_watch_fuzz::{assert_one_bounded_line, assert_table, now};

fuzz_target!(|data: &[u8]| {
    let policies = [CompiledPolicy::builtin()];
    let findings = match &read(data) {
        Err(AuditError::Empty { .. }) => return,
        Err(e) => {
            assert_one_bounded_line("an audit error", &e.to_string());
            if let Some(whole) = parsed_whole(data) {
                let json = serde_json::to_vec(&whole).expect("JSON serializes");
                if read(&json).is_ok() {
                    panic!("the YAML reader refuses what parses whole: {e}");
                }
            }
            return;
        }
        Ok(inventory) => audit(inventory, &policies, now()),
    };
    assert_table(&render_table(&findings, now(), false), &findings);
    // The results only: the rules (every runbook) are the same in every log.
    let results = &sarif_log(&findings)["runs"][0]["results"];
    let results: Value =
        serde_json::from_str(&serde_json::to_string(results).expect("SARIF serializes")).expect("SARIF reads back");
    assert_eq!(results.as_array().map(Vec::len), Some(findings.len()));
    if let Some(whole) = parsed_whole(data) {
        let json = serde_json::to_vec(&whole).expect("JSON serializes");
        match read_findings(&json, &policies) {
            Ok(expected) => assert_eq!(findings, expected, "the YAML reader and the whole YAML parsed disagree"),
            Err(e) => panic!("the whole YAML parsed is unusable ({e}), the YAML reader read it"),
        }
    }
});

fn read(data: &[u8]) -> Result<Inventory, AuditError> {
    let mut inventory = Inventory::default();
    read_pods("input", &mut &data[..], &mut inventory, &mut Interner::default())?;
    Ok(inventory)
}

fn read_findings(data: &[u8], policies: &[CompiledPolicy]) -> Result<Vec<Finding>, AuditError> {
    read(data).map(|inventory| audit(&inventory, policies, now()))
}

/// The objects of a YAML input parsed the plain way, every document whole, Lists flattened
/// as the reader does; `None` when the input is JSON, not parseable whole, uses anchors
/// (which the reader does not resolve across a List's entries, as documented), repeats a
/// key (which the reader refuses and serde_json's `Value` would keep the last of), or holds
/// a document that is a scalar.
fn parsed_whole(data: &[u8]) -> Option<Vec<Value>> {
    let text = std::str::from_utf8(data).ok()?;
    let first = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{feff}').chars().next();
    if matches!(first, Some('{' | '[')) || text.contains(['&', '*']) {
        return None;
    }
    // serde_norway's own `Value` refuses a repeated key, and tells a scalar document (which
    // the reader refuses) from an empty one: serde_json's `Value` makes `.nan` a null.
    for document in serde_norway::Deserializer::from_str(text) {
        match serde_norway::Value::deserialize(document).ok()? {
            serde_norway::Value::Null | serde_norway::Value::Sequence(_) | serde_norway::Value::Mapping(_) => {}
            _ => return None,
        }
    }
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        match Value::deserialize(document).ok()? {
            Value::Null => {}
            Value::Array(items) => objects.extend(items),
            Value::Object(mut fields) => match fields.remove("items") {
                None => objects.push(Value::Object(fields)),
                Some(Value::Array(items)) => objects.extend(items),
                Some(Value::Null) => {}
                Some(_) => return None,
            },
            _ => return None,
        }
    }
    Some(objects)
}
