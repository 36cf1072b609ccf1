//! Process-wide memory settings for the operator, which runs on mimalloc (`src/main.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
/// burst's garbage would stay resident until the next burst ([`trim_when_idle`] calls this
/// once the operator has been idle for a moment after work). Without mimalloc as the global
/// allocator (tests, other binaries) it does nothing.
pub fn release_freed_memory() {
    // SAFETY: mi_collect takes a flag and walks only the allocator's own structures.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Time without activity after which freed memory is handed back.
const IDLE: Duration = Duration::from_secs(1);
/// Hands memory back at most this often, however busy the operator is in bursts.
const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// When the operator last did work (ms since `EPOCH`), and the wake-up for the trimmer.
static LAST_ACTIVITY_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static ACTIVITY: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Notes that the operator is doing work that allocates (an input reconciled, an Event
/// published, a status write, a scrape): the trimmer waits until this has stopped for a moment.
pub fn note_activity() {
    let ms = u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX);
    LAST_ACTIVITY_MS.store(ms, Ordering::Relaxed);
    ACTIVITY.notify_one();
}

/// How long to wait before trimming, `since_activity` after the last activity and
/// `since_trim` after the last trim (`None`: never): zero when it is time.
fn wait_before_trim(since_activity: Duration, since_trim: Option<Duration>) -> Duration {
    let idle_left = IDLE.saturating_sub(since_activity);
    let interval_left = since_trim.map_or(Duration::ZERO, |t| MIN_INTERVAL.saturating_sub(t));
    idle_left.max(interval_left)
}

/// Hands freed memory back once the operator has been idle for [`IDLE`] after work, at most
/// every [`MIN_INTERVAL`]: after the initial list and the Events and status writes that follow
/// it, after a burst of updates, after churn; never in the middle of a flood. Sleeps while
/// nothing happens (no periodic wake-up), and ends with `shutdown`.
pub async fn trim_when_idle(shutdown: CancellationToken) {
    let mut last_trim: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ACTIVITY.notified() => {}
        }
        loop {
            let last_ms = LAST_ACTIVITY_MS.load(Ordering::Relaxed);
            let since_activity = EPOCH.elapsed().saturating_sub(Duration::from_millis(last_ms));
            let wait = wait_before_trim(since_activity, last_trim.map(|t| t.elapsed()));
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        release_freed_memory();
        last_trim = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_idle_after_work_and_not_too_often() {
        let s = Duration::from_secs;
        assert_eq!(wait_before_trim(Duration::ZERO, None), IDLE, "right after work: wait to be idle");
        assert_eq!(wait_before_trim(s(1), None), Duration::ZERO, "idle long enough, never trimmed");
        assert_eq!(wait_before_trim(s(5), Some(s(3))), s(7), "idle, but trimmed 3 s ago");
        assert_eq!(wait_before_trim(s(0), Some(s(60))), IDLE, "busy again after a long pause");
    }
}
