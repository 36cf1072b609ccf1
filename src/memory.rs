//! Process-wide memory settings for the operator.

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
