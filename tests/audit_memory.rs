//! `audit` reads a dump one object at a time: a generated 20,000-Pod `kubectl get pods -A -o
//! json` (~180 MB of realistic Pods, `managedFields` included), and a 5,000-Pod `-o yaml` (one
//! document, ~55 MB), are audited by child processes whose peak RSS stays far below the
//! input's size. Its own test binary with one test, so that the peak read from
//! `getrusage(RUSAGE_CHILDREN)` is that of these children alone.

use std::io::{BufWriter, Write};

use sidecar_watch_testkit::audit::{json, text, Audit};
use sidecar_watch_testkit::factory::{write_list, PodFactory};

/// The binary under test.
const SIDECAR_WATCH: Audit = Audit::new(env!("CARGO_BIN_EXE_sidecar-watch"));

const PODS: usize = 20_000;
/// The ceiling: the compact views (~1.5 KB a Pod), findings and the parser's buffers. Parsing
/// the whole dump into a `serde_json::Value`, as `audit` once did, needs several times the
/// input's size.
const CEILING_MIB: i64 = 120;

/// Writes the dump; returns its size.
fn write_dump(path: &std::path::Path, pods: usize) -> u64 {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create the dump"));
    write_list(&PodFactory::new(), pods, &mut out).expect("write the dump");
    out.flush().expect("flush");
    std::fs::metadata(path).expect("the dump").len()
}

/// Writes the dump the way `kubectl get pods -A -o yaml` prints it: one `List` document whose
/// entries sit at column 0; returns its size.
fn write_yaml_dump(path: &std::path::Path, pods: usize) -> u64 {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create the dump"));
    let factory = PodFactory::new();
    out.write_all(b"apiVersion: v1\nitems:\n").expect("write");
    for i in 0..pods {
        let pod = serde_norway::to_string(&factory.pod(i)).expect("YAML");
        for (n, line) in pod.lines().enumerate() {
            let indent = if n == 0 { "- " } else { "  " };
            writeln!(out, "{indent}{line}").expect("write");
        }
    }
    out.write_all(b"kind: List\nmetadata:\n  resourceVersion: \"\"\n").expect("write");
    out.flush().expect("flush");
    std::fs::metadata(path).expect("the dump").len()
}

/// Audits `path` (and removes it); returns the findings.
fn audit(path: &std::path::Path) -> Vec<serde_json::Value> {
    let args = [
        "--fail-on".as_ref(),
        "none".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        "--now".as_ref(),
        "2026-01-01T00:00:00Z".as_ref(),
        "-f".as_ref(),
        path.as_os_str(),
    ];
    let out = SIDECAR_WATCH.run(&args, None);
    let _ = std::fs::remove_file(path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    json(&out)
}

/// The Pods that have findings.
fn pods_of(findings: &[serde_json::Value]) -> std::collections::HashSet<&str> {
    findings.iter().filter_map(|f| f["pod"].as_str()).collect()
}

fn peak_rss_of_children_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_maxrss
}

#[test]
fn dumps_are_audited_in_one_pass_within_a_memory_ceiling() {
    let path = std::env::temp_dir().join(format!("audit-dump-{}.json", std::process::id()));
    let size = write_dump(&path, PODS);
    assert!(size > 150 << 20, "a realistic dump: {size} bytes");
    let findings = audit(&path);
    // Every Pod was read: each has its native istio-proxy; the legacy log-sidecar of every
    // third deployment is reported on each of its Pods.
    let pods = pods_of(&findings);
    assert!(pods.len() > PODS / 4, "{} Pods with findings", pods.len());
    let peak_mib = peak_rss_of_children_kib() / 1024;
    assert!(peak_mib < CEILING_MIB, "peak RSS {peak_mib} MiB for a {} MiB dump", size >> 20);
    eprintln!("audit of {PODS} Pods ({} MiB): peak RSS {peak_mib} MiB", size >> 20);

    // The same Pods as one YAML document: its entries are parsed one by one, not the whole
    // document at once (which took 890 MB for these 55 MB). The peak is now the larger of the
    // two children's.
    const YAML_PODS: usize = 5_000;
    let path = std::env::temp_dir().join(format!("audit-dump-{}.yaml", std::process::id()));
    let size = write_yaml_dump(&path, YAML_PODS);
    assert!(size > 50 << 20, "a realistic dump: {size} bytes");
    let from_yaml = audit(&path);
    let factory = PodFactory::new();
    let written: std::collections::HashSet<String> =
        (0..YAML_PODS).filter_map(|i| factory.pod(i)["metadata"]["name"].as_str().map(str::to_string)).collect();
    let expected: Vec<&serde_json::Value> =
        findings.iter().filter(|f| f["pod"].as_str().is_some_and(|p| written.contains(p))).collect();
    assert_eq!(from_yaml.iter().collect::<Vec<_>>(), expected, "the same findings as from JSON");
    assert!(pods_of(&from_yaml).len() > YAML_PODS / 4, "{} Pods with findings", pods_of(&from_yaml).len());
    let peak_mib = peak_rss_of_children_kib() / 1024;
    assert!(peak_mib < CEILING_MIB, "peak RSS {peak_mib} MiB for a {} MiB YAML dump", size >> 20);
}
