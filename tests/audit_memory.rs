//! `audit` reads a dump one object at a time: a generated 20,000-Pod `kubectl get pods -A -o
//! json` (~180 MB of realistic Pods, `managedFields` included) is audited by a child process
//! whose peak RSS stays far below the input's size. Its own test binary, so that the peak
//! read from `getrusage(RUSAGE_CHILDREN)` is that child's alone.

use std::io::{BufWriter, Write};
use std::process::Command;

use sidecar_watch_e2e::bench::pods::{write_list, PodFactory};

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

fn peak_rss_of_children_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_maxrss
}

#[test]
fn a_20k_pod_dump_is_audited_in_one_pass_within_a_memory_ceiling() {
    let path = std::env::temp_dir().join(format!("audit-dump-{}.json", std::process::id()));
    let size = write_dump(&path, PODS);
    assert!(size > 150 << 20, "a realistic dump: {size} bytes");
    let out = Command::new(env!("CARGO_BIN_EXE_sidecar-watch"))
        .args(["audit", "--fail-on", "none", "-o", "json", "--now", "2026-01-01T00:00:00Z", "-f"])
        .arg(&path)
        .output()
        .expect("audit runs");
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    // Every Pod was read: each has its native istio-proxy; the legacy log-sidecar of every
    // third deployment is reported on each of its Pods.
    let pods: std::collections::HashSet<&str> = findings.iter().filter_map(|f| f["pod"].as_str()).collect();
    assert!(pods.len() > PODS / 4, "{} Pods with findings", pods.len());
    let peak_mib = peak_rss_of_children_kib() / 1024;
    assert!(peak_mib < CEILING_MIB, "peak RSS {peak_mib} MiB for a {} MiB dump", size >> 20);
    eprintln!("audit of {PODS} Pods ({} MiB): peak RSS {peak_mib} MiB", size >> 20);
}
