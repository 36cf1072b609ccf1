//! The counting allocator behind `--features heap-counts`: it counts what is live, in and out
//! (bytes asked, bytes of mimalloc's size classes, allocations), and once it is the global
//! allocator the operator's metrics export those counts.

use sidecar_watch::index::Index;
use sidecar_watch::memory::{heap_counts, live_by_size, live_large_bytes, CountingMimalloc};
use sidecar_watch::metrics::Metrics;

#[global_allocator]
static GLOBAL: CountingMimalloc = CountingMimalloc;

// One test: a second one running on another thread would allocate in between the counts.
#[test]
fn counts_what_is_live_forgets_what_is_freed_and_exports_it() {
    let before = heap_counts().expect("installed: something is always live");
    let small: Vec<Box<[u8; 24]>> = (0..10_000).map(|_| Box::new([0u8; 24])).collect();
    let large = vec![0u8; 3 << 20];
    let during = heap_counts().expect("counts");
    let asked = during.asked - before.asked;
    let expected = 10_000 * 24 + 10_000 * 8 + (3 << 20);
    assert!(asked >= expected && asked < expected + 64 * 1024, "asked {asked} B for {expected} B");
    assert!(during.allocations - before.allocations >= 10_002);
    assert!(during.usable - before.usable >= asked, "size classes are never smaller than asked");
    assert!(live_by_size()[24] >= 10_000, "10,000 live allocations of 24 bytes");
    let large_bytes: usize = live_large_bytes().iter().filter(|(class, _)| *class == 4 << 20).map(|(_, b)| b).sum();
    assert!(large_bytes >= 3 << 20, "the 3 MiB buffer in the 4 MiB class: {:?}", live_large_bytes());

    drop(small);
    drop(large);
    let after = heap_counts().expect("counts");
    assert!(after.asked < before.asked + 64 * 1024, "freed bytes leave the count: {before:?} -> {after:?}");

    // Installed, the operator's metrics export the live heap.
    let metrics = Metrics::new();
    let mut text = String::new();
    metrics.render(&Index::new(), true, |chunk| {
        text.push_str(&chunk);
        true
    });
    let value = |line_start: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("{line_start} in:\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    let asked = value("sidecar_watch_heap_bytes{kind=\"asked\"}");
    let usable = value("sidecar_watch_heap_bytes{kind=\"usable\"}");
    assert!(asked > 0.0 && usable >= asked, "asked {asked}, usable {usable}");
    assert!(value("sidecar_watch_heap_allocations") > 0.0);
}
