//! Docs that cannot drift from the binary: every flag `sidecar-watch run --help` lists is in
//! docs/operations.md's flag list and every flag that list names is one `run` has (as
//! kube-state-metrics' doccheck does for its flags).

use std::collections::BTreeSet;
use std::process::Command;

/// The `--long-flags` in `text`.
fn flags(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("--") {
        let start = at + offset + 2;
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_lowercase() || **b == b'-').count();
        let name = text[start..end].trim_end_matches('-');
        // A flag follows a space, a backtick or a line start, never another dash.
        let before = (at + offset).checked_sub(1).map(|i| bytes[i]);
        if !name.is_empty() && matches!(before, None | Some(b' ' | b'`' | b'\n' | b'/' | b'(')) {
            found.insert(format!("--{name}"));
        }
        at = end.max(start);
    }
    found
}

#[test]
fn the_run_flags_in_the_operations_guide_are_the_binarys() {
    let help = Command::new(env!("CARGO_BIN_EXE_sidecar-watch")).args(["run", "--help"]).output().expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut binary: BTreeSet<String> =
        help.lines().filter(|l| l.trim_start().starts_with("--")).flat_map(|l| flags(l.trim_start())).collect();
    binary.remove("--help");
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).expect("the guide");
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with("`sidecar-watch run` flags"))
        .expect("docs/operations.md has a section \"`sidecar-watch run` flags\"");
    let mut documented = flags(section);
    documented.remove("--help");
    let undocumented: Vec<&String> = binary.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&binary).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/operations.md's flag list lacks {undocumented:?} and names flags `run` does not have: {unknown:?}"
    );
}
