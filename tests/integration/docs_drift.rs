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

/// The files under `dir` (recursively) whose name ends with `.rs`.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// docs/development.md's "where does my test go" table is true of the tree: every path it
/// names exists, the suites it says need no cluster start none, the engine's and the index's
/// own tests and the test kit's fixtures they share import their crates, not the operator,
/// and no test shares code by `#[path]` (test support has one home: the test kit and the
/// harness).
#[test]
fn the_test_table_in_the_development_guide_is_true_of_the_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/development.md")).expect("the guide");
    let table = guide.lines().skip_while(|l| !l.starts_with("| what it tests")).take_while(|l| l.starts_with('|'));
    let mut named = BTreeSet::new();
    for line in table {
        for (i, token) in line.split('`').enumerate() {
            let is_path = token.contains('/') && !token.starts_with('/') && !token.contains(' ');
            if i % 2 == 1 && is_path {
                named.insert(token.to_string());
            }
        }
    }
    assert!(named.len() > 10, "the table names its paths: {named:?}");
    let missing: Vec<&String> = named
        .iter()
        .filter(|path| match path.split_once("/*/") {
            // `crates/*/src/`: some directory of `crates/` has it.
            Some((parent, rest)) => !std::fs::read_dir(root.join(parent))
                .map(|dirs| dirs.flatten().any(|d| d.path().join(rest).exists()))
                .unwrap_or(false),
            None => !root.join(path).exists(),
        })
        .collect();
    assert_eq!(missing, Vec::<&String>::new(), "named in docs/development.md's test table, not in the tree");

    let cluster_markers = ["E2E_CONTROL_PLANE_BIN", "control_plane::", "TestEnv", "Node::shared"];
    for suite in ["tests/integration", "crates/engine/tests", "crates/index/tests", "testkit/src"] {
        for file in rust_files(&root.join(suite)) {
            let text = std::fs::read_to_string(&file).expect("readable");
            // Code, not comments; this file names the markers to look for them.
            let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            if file.ends_with("docs_drift.rs") {
                continue;
            }
            for marker in cluster_markers {
                assert!(!code.contains(marker), "{} needs no cluster, yet names {marker}", file.display());
            }
            if !suite.starts_with("tests/") {
                assert!(!code.contains("sidecar_watch::"), "{} imports the operator", file.display());
            }
        }
    }

    for suite in ["tests", "crates/engine/tests", "crates/index/tests", "harness/tests"] {
        for file in rust_files(&root.join(suite)) {
            let text = std::fs::read_to_string(&file).expect("readable");
            let includes = text.lines().any(|l| l.trim_start().starts_with("#[path"));
            assert!(!includes, "{} includes a file by #[path]: share it through testkit/ or harness/", file.display());
        }
    }
}
