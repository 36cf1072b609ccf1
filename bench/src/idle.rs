//! Idle CPU of a process.

use std::time::{Duration, Instant};

use sidecar_watch_harness::process;

/// CPU of `pid` over `secs` of wall time, in % of one core.
pub async fn cpu_percent(pid: u32, secs: u64) -> f64 {
    let hz = process::clock_ticks_per_sec() as f64;
    let c0 = process::cpu_ticks(pid).unwrap_or(0);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = process::cpu_ticks(pid).unwrap_or(0);
    c1.saturating_sub(c0) as f64 / hz / t.elapsed().as_secs_f64() * 100.0
}
