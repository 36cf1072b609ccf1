//! Process-wide memory settings for the operator, which runs on mimalloc (`src/main.rs`),
//! and an allocator that counts live bytes for measuring them ([`counting`]).

mod allocator;
mod counting;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use allocator::Mimalloc;
pub use counting::{heap_counts, live_by_size, live_large_bytes, CountingMimalloc, HeapCounts};

/// Opts the process out of transparent huge pages (Linux; a no-op elsewhere).
///
/// The index is many small objects spread over the allocator's arenas. Backed by 2 MiB huge
/// pages, a region counts whole in RSS while any of it is in use, and memory freed after a
/// scrape or an update burst cannot be returned in 4 KiB pages: in `cargo bench --bench
/// index_memory` scrapes left far more behind with huge pages. Scrapes get slower
/// (more TLB misses); a predictable footprint is worth more here
/// (docs/benchmarks.md#figures-the-codes-comments-cite).
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

/// mimalloc 3's `mi_option_purge_delay` (the bindings name only version 2's options; the
/// test below checks the number against the option's default).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has mimalloc hand pages it frees back to the system at once instead of a second later,
/// unless `MIMALLOC_PURGE_DELAY` is set (mimalloc reads it at start).
///
/// With mimalloc 3's delay, the pages freed by the initial list stayed resident at rest, trims
/// or not: RSS per added real Pod was well above what it is without the delay, for the same
/// CPU (docs/benchmarks.md#what-a-real-pod-costs-and-where-the-rest-went-real-control-plane-2026-11-25).
pub(crate) fn purge_freed_pages_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one of mimalloc's option values; any thread may, at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// Hands memory the allocator holds freed, but still resident, back to the system.
///
/// mimalloc returns freed memory lazily: after a delay, and only while the allocator is busy.
/// After a burst (the initial list, a flood of updates, churn) the operator goes idle, so the
/// burst's garbage would stay resident until the next burst ([`trim_when_idle`] calls this
/// once the operator has been idle for a moment after work). It reaches only the calling
/// thread's pages: see [`on_thread_idle`]. Without mimalloc as the global allocator (tests,
/// other binaries) it does nothing.
pub fn release_freed_memory() {
    // Twice, as first written for mimalloc 2, whose forced collect purged each segment before
    // it freed the segment's empty pages (so only a second pass purged those). The mimalloc 3
    // this build links (libmimalloc-sys's v3/) frees the thread's empty pages to their arenas
    // and then purges the arenas in one call (`mi_theap_collect_ex`, theap.c;
    // `_mi_arenas_collect`, arena.c): its second pass finds little, for one more walk of the
    // thread's pages per trim.
    for _ in 0..2 {
        // SAFETY: mi_collect takes a flag and walks only the allocator's own structures.
        unsafe { libmimalloc_sys::mi_collect(true) }
    }
}

/// Trims so far; each runtime thread remembers the last one it carried out itself.
static TRIMS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static TRIMS_SEEN: Cell<u64> = const { Cell::new(0) };
}

/// For the runtime's `on_thread_park`: a worker going idle hands back what its own heap holds
/// freed, once per trim.
///
/// mimalloc purges the pages a thread freed only on that thread, the next time it calls the
/// allocator. A trim on the trimmer's thread alone left the other worker's share of the
/// initial list resident while the operator sat idle, more RSS after the sync than after
/// churn for the same live heap (docs/benchmarks.md#figures-the-codes-comments-cite). Pages
/// that a thread's heap keeps empty for reuse are handed back only here, even with
/// [`purge_freed_pages_at_once`]. Checking a counter on each park costs one atomic load.
pub(crate) fn on_thread_idle() {
    if trim_due_on_this_thread() {
        release_freed_memory();
    }
}

/// Whether a trim happened since this thread last carried one out (and now it has).
fn trim_due_on_this_thread() -> bool {
    let trims = TRIMS.load(Relaxed);
    TRIMS_SEEN.with(|seen| seen.replace(trims) != trims)
}

/// Trims on this thread, and has every other worker trim too when it next goes idle (a task
/// per worker wakes a parked one).
fn trim_every_thread() {
    TRIMS.fetch_add(1, Relaxed);
    on_thread_idle();
    let workers = tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_workers());
    for _ in 0..workers {
        tokio::spawn(std::future::ready(()));
    }
}

/// How often the trimmer looks at the process's CPU time.
const TICK: Duration = Duration::from_millis(500);
/// CPU time per tick below which the process counts as idle: well above what the idle
/// operator uses (docs/benchmarks.md#what-does-the-operator-cost-at-rest), far below any
/// burst, scrape or Event flush.
const IDLE_CPU_PER_TICK: Duration = Duration::from_millis(5);
/// Time without activity after which freed memory is handed back.
const IDLE: Duration = Duration::from_secs(1);
/// Work since the last trim below which there is nothing worth handing back.
const WORK_WORTH_TRIMMING: Duration = Duration::from_millis(20);
/// Hands memory back at most this often, however busy the operator is in bursts.
const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// CPU time the whole process has used (every thread), or `None` where it cannot be read.
fn process_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec we own.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        if status == 0 {
            return Some(Duration::new(u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?));
        }
    }
    None
}

/// The trimmer's view of the process, fed one CPU-time reading per tick.
#[derive(Debug, Default)]
struct IdleTracker {
    /// CPU time at the previous tick.
    last_cpu: Option<Duration>,
    /// How long the process has been idle.
    idle_for: Duration,
    /// CPU time used since the last trim.
    work_since_trim: Duration,
    /// Time since the last trim (`None`: never trimmed).
    since_trim: Option<Duration>,
}

impl IdleTracker {
    /// Takes one reading `tick` after the previous one; true when it is time to trim: idle
    /// for [`IDLE`] after real work, and not within [`MIN_INTERVAL`] of the last trim.
    fn tick(&mut self, cpu: Duration, tick: Duration) -> bool {
        let used = self.last_cpu.map_or(Duration::ZERO, |last| cpu.saturating_sub(last));
        self.last_cpu = Some(cpu);
        self.since_trim = self.since_trim.map(|t| t + tick);
        self.work_since_trim += used;
        if used > IDLE_CPU_PER_TICK {
            self.idle_for = Duration::ZERO;
            return false;
        }
        self.idle_for += tick;
        let due = self.idle_for >= IDLE
            && self.work_since_trim >= WORK_WORTH_TRIMMING
            && self.since_trim.is_none_or(|t| t >= MIN_INTERVAL);
        if due {
            self.work_since_trim = Duration::ZERO;
            self.since_trim = Some(Duration::ZERO);
        }
        due
    }
}

/// Hands freed memory back once the process has been idle for [`IDLE`] after work, at most
/// every [`MIN_INTERVAL`]: after the initial list and the Events and status writes that follow
/// it, after a burst of updates, after churn; never in the middle of a flood.
///
/// Self-timed: it reads the process's own CPU time twice a second (one syscall), so no part
/// of the operator has to report its activity. Ends with `shutdown`.
pub(crate) async fn trim_when_idle(shutdown: CancellationToken) {
    if process_cpu_time().is_none() {
        return;
    }
    let mut tracker = IdleTracker::default();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(cpu) = process_cpu_time() else { return };
        if tracker.tick(cpu, TICK) {
            trim_every_thread();
            log_heap_profile();
        }
    }
}

/// In a build that counts its heap (`--features heap-counts`), logs the live heap after a
/// trim at debug level (tracing target `"sidecar_watch::memory"`): allocations by size as `size×count`
/// (sizes with at least 100), and bytes in allocations over 1 KiB as `L<power of two>×bytes`.
/// Two logs at different Pod counts tell what grows per Pod.
fn log_heap_profile() {
    let Some(heap) = heap_counts() else { return };
    let by_size = live_by_size();
    let profile: Vec<String> = by_size
        .iter()
        .enumerate()
        .filter(|(_, n)| **n >= 100)
        .map(|(size, n)| if size == by_size.len() - 1 { format!("larger×{n}") } else { format!("{size}×{n}") })
        .chain(live_large_bytes().into_iter().map(|(size, bytes)| format!("L{size}×{bytes}")))
        .collect();
    tracing::debug!(asked = heap.asked, usable = heap.usable, allocations = heap.allocations, profile = %profile.join(" "), "live heap");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_idle_after_work_and_not_too_often() {
        let ms = Duration::from_millis;
        let mut tracker = IdleTracker::default();
        let mut cpu = Duration::ZERO;
        let mut tick = |tracker: &mut IdleTracker, used: Duration| {
            cpu += used;
            tracker.tick(cpu, TICK)
        };
        assert!(!tick(&mut tracker, ms(0)), "first reading: nothing to compare");
        assert!(!tick(&mut tracker, ms(1)), "idle without work: nothing to hand back");
        assert!(!tick(&mut tracker, ms(400)), "busy");
        assert!(!tick(&mut tracker, ms(1)), "idle for half a second");
        assert!(tick(&mut tracker, ms(1)), "idle for a second after work: trim");
        assert!(!tick(&mut tracker, ms(1)), "nothing done since");
        assert!(!tick(&mut tracker, ms(300)), "busy again");
        assert!(!tick(&mut tracker, ms(1)));
        assert!(!tick(&mut tracker, ms(1)), "idle again, but trimmed 2 s ago");
        // Trimmed at tick 5; ticks 6..=9 done. The next trim may come 10 s (20 ticks) later.
        let trims: Vec<bool> = (10..=25).map(|_| tick(&mut tracker, ms(1))).collect();
        assert_eq!(trims.iter().position(|t| *t), Some(15), "the next trim waits for MIN_INTERVAL: {trims:?}");
    }

    #[test]
    fn every_thread_trims_once_after_each_trim() {
        // One thread after the other (a fresh one has its own record), so that only the
        // running one bumps the counter; no other test trims.
        for _ in 0..2 {
            std::thread::spawn(|| {
                let before = TRIMS.fetch_add(1, Relaxed);
                TRIMS_SEEN.with(|seen| seen.set(before + 1));
                assert!(!trim_due_on_this_thread(), "nothing new since this thread's own trim");
                TRIMS.fetch_add(1, Relaxed);
                assert!(trim_due_on_this_thread(), "another trim happened: due");
                assert!(!trim_due_on_this_thread(), "carried out: not due again");
            })
            .join()
            .expect("no panic");
        }
    }

    #[test]
    fn the_purge_delay_option_is_mimalloc_3s() {
        // SAFETY: reads an option value.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        // mimalloc 3 (its options.c) delays purges by 1000 ms; no other of its options
        // defaults to 1000. Nothing in the library's tests sets it.
        assert_eq!(delay, 1000, "option {PURGE_DELAY} is not mimalloc 3's purge_delay");
    }

    #[test]
    fn reads_the_process_cpu_time() {
        let before = process_cpu_time().expect("CPU time on Linux");
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time().expect("CPU time") > before);
    }
}
