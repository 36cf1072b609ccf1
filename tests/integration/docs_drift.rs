//! Docs that cannot drift from the binary: every flag `sidecar-watch run --help` lists is in
//! docs/operations.md's flag list and every flag that list names is one `run` has (as
//! kube-state-metrics' doccheck does for its flags).

use sidecar_watch::index::Writes;
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

/// The backticked metric names in the first column of docs/metrics.md's table "The metric
/// families" (`name{label,…}` names the family `name`; `process_*` every family so named).
fn documented_families(guide: &str) -> BTreeSet<String> {
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with("The metric families"))
        .expect("docs/metrics.md has a section \"The metric families\"");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" | ").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .map(|quoted| quoted.split('{').next().unwrap_or_default())
        .filter(|name| {
            (name.starts_with("sidecar_") || name.starts_with("process_"))
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '*')
        })
        .map(String::from)
        .collect()
}

/// The families the operator's code defines: each `"sidecar_…"` literal in src/metrics/ given
/// to a metric's constructor (`Opts::new(`, `IntCounter::new(`, …) or as a per-Pod
/// `Family`'s `name:`. A labelled family has no sample, so no line in a render, until
/// something counts in it (an Event sent, a limit reached); its definition is always there.
fn defined_families(root: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in rust_files(&root.join("src/metrics")) {
        let text = std::fs::read_to_string(&file).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("\"sidecar_") {
            let before = rest[..at].trim_end();
            let literal = &rest[at + 1..];
            let end = literal.find('"').unwrap_or(literal.len());
            if before.ends_with("new(") || before.ends_with("name:") {
                found.insert(literal[..end].to_string());
            }
            rest = &literal[end..];
        }
    }
    found
}

/// A metric family missing from docs/metrics.md fails here, without a cluster: every family
/// a leader's `/metrics` renders in process (the per-Pod ones from an index with the seed
/// scenarios, the registry's, `process_*`) and every family src/metrics/ defines is in the
/// guide's table, and every family the table names is one of them.
#[test]
fn every_metric_family_is_in_the_metrics_guide() {
    use sidecar_watch::api::{PolicySpec, SlimPod};
    use sidecar_watch::engine::{CompiledPolicy, PodView, PolicyRef};
    use sidecar_watch::index::{Index, PolicyEntry};
    use sidecar_watch_testkit::engine::{now, Scenario};

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let index = Index::new();
    let policy = PolicyRef::cluster("default");
    let compiled = CompiledPolicy::compile(policy.clone(), &PolicySpec::default());
    index.apply_policy(policy, PolicyEntry::new(compiled), now());
    for (i, scenario) in Scenario::ALL.into_iter().enumerate() {
        let mut pod: SlimPod = scenario.decode();
        pod.metadata.uid = Some(format!("uid-{i}"));
        index.apply_pod(PodView::from_pod(&pod), now());
    }
    let mut text = String::new();
    sidecar_watch::metrics::Metrics::new().render(&index, true, |chunk| {
        text.push_str(&chunk);
        true
    });
    let rendered: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    let defined = defined_families(root);
    let blind: Vec<&String> = rendered.iter().filter(|f| f.starts_with("sidecar_") && !defined.contains(*f)).collect();
    assert_eq!(blind, Vec::<&String>::new(), "rendered, yet not found in src/metrics/ by defined_families: teach it");
    for family in ["sidecar_alerts", "sidecar_info", "sidecar_watch_build_info", "sidecar_watch_events_total"] {
        assert!(rendered.contains(family) || defined.contains(family), "{family} is neither rendered nor defined");
    }

    let guide = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md");
    let documented = documented_families(&guide);
    let covered = |family: &String| {
        documented.contains(family)
            || documented.iter().any(|d| d.strip_suffix('*').is_some_and(|prefix| family.starts_with(prefix)))
    };
    let every: BTreeSet<String> = rendered.union(&defined).cloned().collect();
    let undocumented: Vec<&String> = every.iter().filter(|f| !covered(f)).collect();
    assert_eq!(
        undocumented,
        Vec::<&String>::new(),
        "the operator has these families; add them to docs/metrics.md's table"
    );
    let unknown: Vec<&String> = documented.iter().filter(|d| !d.ends_with('*') && !every.contains(*d)).collect();
    assert_eq!(unknown, Vec::<&String>::new(), "docs/metrics.md's table names families the operator does not have");
}

/// docs/policies.md's table of each catalog sidecar's own signal, as the catalog
/// (`CATALOG[*].signal`) renders it: "unknown" where the catalog records no fact.
fn signal_table() -> String {
    use sidecar_watch::engine::CATALOG;

    let unknown = || "unknown".to_string();
    let mut table = String::from(
        "| id | product | port | path | on by default | switched by |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for entry in CATALOG {
        let signal = &entry.signal;
        let port = signal.port.map_or_else(unknown, |p| p.to_string());
        let path = match signal.path {
            "" => unknown(),
            paths => paths.split(", ").map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
        };
        let default_on = match signal.default_on {
            Some(true) => "yes".to_string(),
            Some(false) => "no".to_string(),
            None => unknown(),
        };
        let switch = if signal.switch.is_empty() { unknown() } else { signal.switch.to_string() };
        table
            .push_str(&format!("| `{}` | {} | {port} | {path} | {default_on} | {switch} |\n", entry.id, entry.product));
    }
    table
}

/// The table under docs/policies.md's heading "Each catalog sidecar's own signal" is the catalog's:
/// a product whose signal changes in `crates/engine/src/catalog.rs` fails here until the doc
/// is updated (the failure prints the table to paste).
#[test]
fn the_signal_table_in_the_policies_guide_is_the_catalogs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/policies.md")).expect("docs/policies.md");
    let heading = "## Each catalog sidecar's own signal";
    let section =
        guide.split_once(heading).unwrap_or_else(|| panic!("docs/policies.md has no heading \"{heading}\"")).1;
    let documented: String = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| [l, "\n"])
        .collect();
    let expected = signal_table();
    assert!(
        documented == expected,
        "docs/policies.md's table under \"{heading}\" differs from the catalog; replace it with:\n\n{expected}"
    );
}

/// docs/architecture.md's "The engine, file by file" table names every module of the engine
/// crate (a file `NAME.rs`, or a directory `NAME/` without one) and only those.
#[test]
fn the_engine_table_in_the_architecture_guide_is_the_engines_modules() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/architecture.md")).expect("the guide");
    let table = guide
        .lines()
        .skip_while(|l| *l != "## The engine, file by file")
        .skip_while(|l| !l.starts_with("| file |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    let documented: BTreeSet<String> = table
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first.split(',').map(|name| name.trim().trim_matches('`').to_string()).collect::<Vec<_>>()
        })
        .collect();
    let src = root.join("crates/engine/src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("the engine's sources")
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            match entry.path().is_dir() {
                true if !src.join(format!("{name}.rs")).exists() => Some(format!("{name}/")),
                true => None,
                false if name.ends_with(".rs") && name != "lib.rs" => Some(name),
                false => None,
            }
        })
        .collect();
    let missing: Vec<&String> = modules.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&modules).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's engine table lacks {missing:?} and names what crates/engine/src does not have: {stale:?}"
    );
}

/// Every Rust name the guides about the code put in backticks is still the code's: every
/// segment of a path (`controller::queue`, `engine::PodView`) and every name of two or more
/// capitalised parts (`TrackedPod`, `IndexResource`) occurs as a word in some `.rs` file of the
/// repository, so a type or module renamed or removed fails here while the guides name it.
/// Occurs, not is defined: the same backticks hold Kubernetes' names (`FailedCreate`) and
/// alert names, which the code has as strings. (Only the guides about the code: the others
/// name alerts and Kubernetes kinds this way.)
#[test]
fn the_code_names_in_the_guides_are_the_codes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let word = regex::Regex::new(r"[A-Za-z_][A-Za-z0-9_]*").expect("regex");
    let mut words = BTreeSet::new();
    for dir in ["src", "crates", "testkit", "harness", "bench", "benches", "tests", "fuzz"] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            words.extend(word.find_iter(&text).map(|m| m.as_str().to_string()));
        }
    }
    let name =
        regex::Regex::new(r"`([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+|[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+)`")
            .expect("regex");
    let mut stale = Vec::new();
    for guide in ["docs/architecture.md", "docs/development.md", "harness/README.md"] {
        let text = std::fs::read_to_string(root.join(guide)).expect("the guide");
        for (n, line) in text.lines().enumerate() {
            for found in name.captures_iter(line) {
                let named = &found[1];
                if named.split("::").any(|segment| !words.contains(segment)) {
                    stale.push(format!("{guide}:{}: `{named}`", n + 1));
                }
            }
        }
    }
    assert!(stale.is_empty(), "the guides name Rust items no .rs file has:\n{}", stale.join("\n"));
}
