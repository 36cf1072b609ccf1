//! Process-wide memory settings for the operator, which runs on mimalloc (`src/main.rs`).

/// Opts the process out of transparent huge pages (Linux; a no-op elsewhere).
///
/// The index is many small objects spread over the allocator's arenas. Backed by 2 MiB huge
/// pages, a region counts whole in RSS while any of it is in use, and memory freed after a
/// scrape or an update burst cannot be returned in 4 KiB pages: in `cargo bench --bench
/// index_memory` a scrape left 22.8 MiB behind with huge pages and 9.0 MiB without. Scrapes
/// get ~15 % slower (more TLB misses); a predictable footprint is worth more here.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
        let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Hands memory the allocator holds freed, but still resident, back to the system.
///
/// mimalloc returns freed memory lazily: after a delay, and only while the allocator is busy.
/// After a burst (the initial list, a flood of updates, churn) the operator goes idle, so the
/// burst's garbage would stay resident until the next burst. The reconciler calls this once
/// it has been idle for a moment after work. Without mimalloc as the global allocator (tests,
/// other binaries) it does nothing.
pub fn release_freed_memory() {
    // SAFETY: mi_collect takes a flag and walks only the allocator's own structures.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
