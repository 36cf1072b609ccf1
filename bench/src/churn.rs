//! Churn: a mix of readiness flips, restarts, deletions and creations, then whether the
//! operator's count of Pods matches the store and what memory it keeps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidecar_watch_harness::sim::api::now_string;
use sidecar_watch_harness::sim::Shared;

use super::pods::{self, PodFactory, MESH_SIDECAR};
use super::preload::{delete_pod, put_pod, write_pod};

/// Churn at `rate`/s for `secs` (blocking): 50 % readiness flips (undone 2 s later), 20 %
/// restarts, 15 % deletions, 15 % creations (Pods `next_index`, `next_index + 1`, ...).
/// Returns (operations, seconds).
pub fn run_churn(
    shared: Arc<Shared>,
    factory: PodFactory,
    mut live: Vec<(String, String)>,
    mut next_index: usize,
    rate: u64,
    secs: u64,
) -> (u64, f64) {
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut pending: VecDeque<(Instant, String, String)> = VecDeque::new();
    let mut done = 0u64;
    let mut rng = fastrand::Rng::with_seed(42);
    while Instant::now() < end {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let now_s = now_string();
        while done < due {
            let now = Instant::now();
            done += 1;
            if pending.front().is_some_and(|(t, _, _)| *t <= now) {
                if let Some((_, ns, name)) = pending.pop_front() {
                    write_pod(&shared, &ns, &name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
                }
                continue;
            }
            if live.is_empty() {
                break;
            }
            let roll = rng.u32(0..100);
            let i = rng.usize(0..live.len());
            if roll < 50 {
                let (ns, name) = live[i].clone();
                write_pod(&shared, &ns, &name, |p| pods::set_ready(p, MESH_SIDECAR, false, &now_s));
                pending.push_back((now + Duration::from_secs(2), ns, name));
            } else if roll < 70 {
                let (ns, name) = &live[i];
                write_pod(&shared, ns, name, |p| pods::restart(p, MESH_SIDECAR, "Error", 1, true, &now_s));
            } else if roll < 85 {
                let (ns, name) = live.swap_remove(i);
                pending.retain(|(_, pns, pname)| !(pns == &ns && pname == &name));
                delete_pod(&shared, &ns, &name);
            } else {
                live.push(put_pod(&shared, factory.pod(next_index)));
                next_index += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let now_s = now_string();
    for (_, ns, name) in pending {
        write_pod(&shared, &ns, &name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
    }
    (done, elapsed)
}
