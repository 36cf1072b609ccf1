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

/// The instant the fixtures describe (tests/fixtures/mod.rs).
pub const NOW: &str = "2025-06-03T10:30:00Z";

/// [`NOW`] as a timestamp.
pub fn now() -> Timestamp {
    NOW.parse().expect("NOW parses")
}

/// The longest message that may quote tenant input: a file name, an object, a field path
/// and a reason, each quoting at most `QUOTED_CHARS`, or one message of another library
/// clipped to `CLIPPED_CHARS` (src/api/quote.rs).
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

/// Panics unless `text` is valid Prometheus text exposition: `# HELP`/`# TYPE` lines and
/// samples `name{label="value",…} number`, label values escaped (`\\`, `\"`, `\n`).
pub fn assert_exposition(text: &str) {
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.is_empty() {
            continue;
        }
        if let Err(e) = sample(line) {
            panic!("invalid exposition line ({e}): {:?}", clip_for_panic(line));
        }
    }
}

fn sample(line: &str) -> Result<(), &'static str> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    metric_name(&line[..name_end])?;
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        rest = label_pairs(labels)?;
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = value.split(' ').next().unwrap_or_default();
    if value.parse::<f64>().is_err() && !matches!(value, "NaN" | "+Inf" | "-Inf") {
        return Err("value is not a number");
    }
    Ok(())
}

fn metric_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err("invalid metric or label name");
    }
    Ok(())
}

/// Reads `k="v",…}`; returns what follows the `}`.
fn label_pairs(mut rest: &str) -> Result<&str, &'static str> {
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("label without =")?;
        metric_name(&rest[..eq])?;
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err("invalid escape in a label value"),
                },
                (i, '"') => break i,
                (_, '\n') => return Err("raw newline in a label value"),
                _ => {}
            }
        };
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
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
    fn exposition_checker_tells_valid_from_invalid() {
        assert!(sample(r#"a_b{x="1",y="q\"\\\n"} 3"#).is_ok());
        assert!(sample("up 1").is_ok());
        assert!(sample(r#"a{x="1"} x"#).is_err());
        assert!(sample(r#"a{x="1} 1"#).is_err());
        assert!(sample(r#"a{x="\q"} 1"#).is_err());
        assert!(sample(r#"a{1x="1"} 1"#).is_err());
        assert_eq!(fixture_pods().len(), 6);
    }
}
