//! The example output the docs show is what the binary prints: README.md's block under "### 1.
//! The offline audit" and docs/audit.md's blocks after "On the bundled examples" and "On the
//! bundled workload dump" are run (the command on the block's `$` line) and compared with the
//! audit's table, row by row and to its summary line, so a rule or message that changes fails
//! here until the docs follow.
//!
//! A block abridges as a reader would: a row may end with ` …` (the rest of the line cut) or
//! leave out parts of its message with ` … ` (every part left is in the row, in order), and a
//! line that is only `…` stands for rows left out. Every other row is the next row printed.

use sidecar_watch_testkit::audit::text;

use crate::SIDECAR_WATCH;

/// What the README block's `$` line starts with; the rest is `audit`'s arguments.
const COMMAND: &str = "$ cargo run --release -- audit ";

/// The first ```text block after the line that starts with `heading` in `doc`.
fn block<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    let after = doc.split_once(&format!("\n{heading}")).unwrap_or_else(|| panic!("no {heading:?}")).1;
    let body = after.split_once("```text\n").unwrap_or_else(|| panic!("no ```text block after {heading:?}")).1;
    body.split_once("\n```").unwrap_or_else(|| panic!("the block after {heading:?} is not closed")).0.lines().collect()
}

/// Whether `shown` is `row` abridged: equal, or its ` … `-separated parts found in `row` in
/// order, the first at its start and the last at its end unless `shown` ends with ` …`.
fn abridges(shown: &str, row: &str) -> bool {
    if !shown.contains('…') {
        return shown == row;
    }
    let (shown, cut_at_end) = match shown.strip_suffix(" …") {
        Some(rest) => (rest, true),
        None => (shown, false),
    };
    let parts: Vec<&str> = shown.split(" … ").collect();
    let Some(rest) = row.strip_prefix(parts[0]) else { return false };
    let mut at = row.len() - rest.len();
    for part in &parts[1..] {
        match row[at..].find(part) {
            Some(offset) => at += offset + part.len(),
            None => return false,
        }
    }
    cut_at_end || at == row.len()
}

/// Checks `shown` (the block's lines, without its `$` line) against `printed`; returns what
/// differs, empty when nothing does.
fn differences(shown: &[&str], printed: &str) -> Vec<String> {
    let rows: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
    let shown: Vec<&str> = shown.iter().copied().filter(|l| !l.is_empty()).collect();
    let mut wrong = Vec::new();
    let (Some((summary, shown_rows)), Some((printed_summary, rows))) = (shown.split_last(), rows.split_last()) else {
        return vec!["an empty block or an empty output".to_string()];
    };
    if summary != printed_summary {
        wrong.push(format!("the summary line is {summary:?}, the audit prints {printed_summary:?}"));
    }
    let mut next = 0;
    let mut may_skip = false;
    for line in shown_rows {
        if *line == "…" {
            may_skip = true;
            continue;
        }
        let found = if may_skip {
            rows[next..].iter().position(|row| abridges(line, row)).map(|offset| next + offset)
        } else {
            rows.get(next).filter(|row| abridges(line, row)).map(|_| next)
        };
        match found {
            Some(at) => next = at + 1,
            None => wrong.push(format!("{line:?} is not row {} of the output ({:?})", next + 1, rows.get(next))),
        }
        may_skip = false;
    }
    wrong
}

#[test]
fn the_readme_and_audit_guide_examples_are_what_the_audit_prints() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let guide = std::fs::read_to_string(format!("{root}/docs/audit.md")).expect("docs/audit.md");
    let readme_block = block(&readme, "### 1. The offline audit");
    let (command, readme_rows) = readme_block.split_first().expect("the README block has its command line");
    let args = command.strip_prefix(COMMAND).unwrap_or_else(|| panic!("the README block starts with {COMMAND:?}"));
    assert!(
        guide.contains(&format!("`cargo run --release -- audit {args}`")),
        "docs/audit.md names the README's command, `cargo run --release -- audit {args}`"
    );
    let out = SIDECAR_WATCH.run(&args.split_whitespace().collect::<Vec<_>>(), None);
    let printed = text(&out.stdout);
    assert!(printed.lines().count() > 3, "the audit printed a table: {printed}{}", text(&out.stderr));
    let refresh = format!(
        "run `cargo run --release -- audit {args}` and copy its header, rows and summary line into the block \
         (cut a long row with ` …`, leave out rows with a line `…`); it prints:\n{printed}"
    );
    let guide_block = block(&guide, "On the bundled examples");
    for (doc, shown) in [("README.md", readme_rows), ("docs/audit.md", guide_block.as_slice())] {
        let wrong = differences(shown, &printed);
        assert!(wrong.is_empty(), "{doc}'s example is not what the audit prints: {wrong:#?}\nTo refresh it, {refresh}");
    }
}

/// docs/audit.md's example of the alerts on workloads (`examples/workloads.json`) is what the
/// command on its `$` line prints.
#[test]
fn the_audit_guides_workload_example_is_what_the_audit_prints() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit.md")).expect("docs/audit.md");
    let shown = block(&guide, "On the bundled workload dump");
    let (command, rows) = shown.split_first().expect("the block has its command line");
    let args = command.strip_prefix("$ sidecar-watch audit ").expect("the block starts with `$ sidecar-watch audit `");
    let out = SIDECAR_WATCH.run(&args.split_whitespace().collect::<Vec<_>>(), None);
    let printed = text(&out.stdout);
    let wrong = differences(rows, &printed);
    assert!(wrong.is_empty(), "docs/audit.md's workload example: {wrong:#?}\nThe audit prints:\n{printed}");
}

/// The comparison itself: a cut row, a row with parts left out, rows left out, and what fails.
#[test]
fn an_abridged_block_matches_only_the_rows_it_abridges() {
    let printed =
        "POD  ALERT\na/b  One: first part, second part\na/c  Two\na/d  Three\n\n3 alerts (3 firing, 0 pending)\n";
    let ok = ["POD  ALERT", "a/b  One: first …", "…", "a/d  Three", "3 alerts (3 firing, 0 pending)"];
    assert_eq!(differences(&ok, printed), Vec::<String>::new());
    let parts = ["POD  ALERT", "a/b  One: … second part", "a/c  Two", "…", "3 alerts (3 firing, 0 pending)"];
    assert_eq!(differences(&parts, printed), Vec::<String>::new());
    let skipped_without_mark = ["POD  ALERT", "a/c  Two", "3 alerts (3 firing, 0 pending)"];
    assert_eq!(differences(&skipped_without_mark, printed).len(), 1);
    let stale = ["POD  ALERT", "…", "4 alerts (3 firing, 1 pending)"];
    assert_eq!(
        differences(&stale, printed),
        ["the summary line is \"4 alerts (3 firing, 1 pending)\", the audit prints \"3 alerts (3 firing, 0 pending)\""]
    );
    assert!(!abridges("a/b  One: … third part", "a/b  One: first part, second part"));
    assert!(!abridges("a/b  One: first", "a/b  One: first part, second part"));
}
