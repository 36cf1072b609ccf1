//! The policy spec: what any tenant allowed to write a SidecarPolicy (and any author of an
//! `audit --policy` file) hands the operator. The input is read three ways: as a policy
//! file (`audit --policy`: JSON or YAML, strict), as the object the policy watch receives
//! (kube's `DynamicObject`, then `policy_entry`, exactly as the operator compiles it) applied
//! to an index of the fixtures' Pods, and, when short, as a duration.
//!
//! Beyond "no panic": every error (the policy's status condition, the `audit` message) is
//! one short line naming the field; the duration parser accepts what the CRD schema admits
//! (pattern, 1 to 32 characters), except values too large for it, and nothing the schema
//! refuses but surrounding blanks.
#![no_main]

use std::sync::LazyLock;

use kube::api::DynamicObject;
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use sidecar_watch::api::bounds::MAX_DURATION_CHARS;
use sidecar_watch::api::{parse_duration, DurationError, DURATION_PATTERN};
use sidecar_watch::audit::read_policies;
use sidecar_watch::controller::watch::policy_entry;
use sidecar_watch::engine::{evaluate, Around, CompiledPolicy, PodHistory, PodView};
use sidecar_watch::events::note::note;
use sidecar_watch::index::Index;
use sidecar_watch::index::Writes;
use sidecar_watch_fuzz::{assert_one_bounded_line, fixture_pods, now};

fuzz_target!(|data: &[u8]| {
    duration(data);
    match read_policies("policy.yaml", &mut &data[..]) {
        Err(e) => assert_one_bounded_line("an `audit --policy` error", &e.to_string()),
        Ok(policies) => policies.iter().for_each(try_on_fixtures),
    }
    let Ok(object) = serde_json::from_slice::<DynamicObject>(data) else { return };
    for cluster in [false, true] {
        let (policy, entry) = policy_entry(object.clone(), cluster);
        if let Err(e) = &entry.compiled {
            assert_one_bounded_line("a policy's Ready condition", &e.to_string());
        }
        let index = Index::new();
        for pod in fixture_pods() {
            index.apply_pod(index.view_of(pod), now());
        }
        let outcome = index.apply_policy(policy, entry, now());
        for transition in &outcome.transitions {
            assert!(note(transition, now()).len() <= 1000, "an Event note over the API's limit");
        }
    }
});

/// Evaluates the fixtures' Pods under `policy` where it selects them.
fn try_on_fixtures(policy: &CompiledPolicy) {
    for pod in fixture_pods() {
        let view = PodView::from_pod(pod);
        let labels = [("kubernetes.io/metadata.name".to_string(), view.namespace().to_string())].into();
        if policy.selects(&view, Some(&labels)) {
            for alert in evaluate(&view, policy, &PodHistory::default(), now(), Around::default()).alerts {
                assert!(!alert.message.is_empty());
            }
        }
    }
}

/// The parser against the CRD schema's pattern and length bounds.
fn duration(data: &[u8]) {
    static SCHEMA: LazyLock<Regex> = LazyLock::new(|| Regex::new(DURATION_PATTERN).expect("the schema's pattern"));
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.len() > 4 * MAX_DURATION_CHARS {
        return;
    }
    let admitted = |t: &str| (1..=MAX_DURATION_CHARS).contains(&t.chars().count()) && SCHEMA.is_match(t);
    let parsed = parse_duration(text);
    if admitted(text) {
        assert!(
            matches!(parsed, Ok(_) | Err(DurationError::Overflow(_))),
            "the CRD admits {text:?}, the parser says {parsed:?}"
        );
    }
    if parsed.is_ok() && text.chars().count() <= MAX_DURATION_CHARS {
        assert!(admitted(text.trim()), "the parser accepts {text:?}, the CRD does not");
    }
    if let Err(e) = parsed {
        assert_one_bounded_line("a duration error", &e.to_string());
    }
}
