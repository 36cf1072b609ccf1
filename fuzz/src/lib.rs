//! What the fuzz targets check beyond "no panic, no hang, no runaway memory": the promises
//! the README makes about tenant input, as assertions a fuzzer can break.
//!
//! - Every message that may quote what a tenant wrote (an `audit` error, a policy's
//!   condition, an Event, a log line about an unreadable Pod) is one line of bounded length,
//!   without control characters: a value cannot forge a line of CI output or a log record.
//! - `/metrics` is valid Prometheus text whatever the names in the Pods.
//! - The table cannot move the cursor; SARIF, JSON and YAML read back as what was written.

use std::sync::LazyLock;

use jiff::Timestamp;
use sidecar_watch::api::SlimPod;
use sidecar_watch::audit::Finding;
use sidecar_watch_testkit::prom::Scrape;

/// The instant the fixtures describe (`Scenario::NOW`, testkit/src/scenario.rs).
pub const NOW: &str = "2025-06-03T10:30:00Z";

/// [`NOW`] as a timestamp.
pub fn now() -> Timestamp {
    NOW.parse().expect("NOW parses")
}

/// The longest message that may quote tenant input: a file name, an object, a field path
/// and a reason, each quoting at most `QUOTED_CHARS`, or one message of another library
/// clipped to `CLIPPED_CHARS` (crates/api/src/quote.rs).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// Panics unless `message` is one line of at most [`MAX_MESSAGE_CHARS`] characters without
/// control characters; `what` says which message it is.
pub fn assert_one_bounded_line(what: &str, message: &str) {
    let chars = message.chars().count();
    assert!(chars <= MAX_MESSAGE_CHARS, "{what}: {chars} characters: {:?}", clip_for_panic(message));
    assert!(!message.chars().any(char::is_control), "{what}: holds a control character: {:?}", clip_for_panic(message));
}

/// The start of a long text, so that a failing assertion stays readable.
fn clip_for_panic(text: &str) -> String {
    text.chars().take(400).collect()
}

/// Panics unless `text` is valid Prometheus text exposition, read by the test kit's strict
/// parser (the one the tests and the benchmark read scrapes with).
pub fn assert_exposition(text: &str) {
    if let Err(e) = Scrape::parse(text) {
        panic!("invalid exposition: {}: {:?}", e.why, clip_for_panic(&e.line));
    }
}

/// Panics unless `table` is what `render_table` (without colour) promises for `findings`: a
/// header, one line per finding, a blank line and the summary, or `No alerts.`; no control
/// character but the line ends, whatever the names and messages hold; and a size linear in
/// theirs (escapes at most quadruple a character; a row's padding is bounded).
pub fn assert_table(table: &str, findings: &[Finding]) {
    if findings.is_empty() {
        assert_eq!(table, "No alerts.\n");
        return;
    }
    assert!(table.ends_with('\n'), "the table ends its last line");
    let lines = table.lines().count();
    assert_eq!(lines, findings.len() + 3, "{} findings in {lines} lines: {:?}", findings.len(), clip_for_panic(table));
    if let Some(c) = table.chars().find(|c| c.is_control() && *c != '\n') {
        panic!("the table holds the control character {c:?}: {:?}", clip_for_panic(table));
    }
    let written: usize =
        findings.iter().map(|f| f.namespace.len() + f.pod.len() + f.container.len() + f.message.len()).sum();
    let bound = 4 * written + (findings.len() + 3) * 4096;
    assert!(table.len() <= bound, "a table of {} bytes for {written} bytes of names and messages", table.len());
}

/// The Pods of the fixtures (tests/fixtures), decoded once: what policies are tried on.
pub fn fixture_pods() -> &'static [SlimPod] {
    static PODS: LazyLock<Vec<SlimPod>> = LazyLock::new(|| {
        [
            include_str!("../../tests/fixtures/crashlooping-sidecar.yaml"),
            include_str!("../../tests/fixtures/healthy-mesh.yaml"),
            include_str!("../../tests/fixtures/job-blocked-by-sidecar.yaml"),
            include_str!("../../tests/fixtures/misconfigured-sidecars.yaml"),
            include_str!("../../tests/fixtures/two-policies.yaml"),
            include_str!("../../tests/fixtures/shutdown-order.yaml"),
        ]
        .iter()
        .map(|text| serde_norway::from_str(text).expect("a fixture decodes"))
        .collect()
    });
    &PODS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_decode() {
        assert_eq!(fixture_pods().len(), 6);
    }
}
