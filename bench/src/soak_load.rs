//! The soak's writes ([`super::soak`]): Pod status updates, restarts, deletions and creations
//! at a fixed rate, policy edits on a clock and watch disruptions by the server, the ledger
//! of the Events those writes must cause, and the count of those at the server.
//!
//! Every write is chosen so that what the operator must announce is known without
//! re-implementing the engine:
//! - a readiness flip is undone 1 s later, far below any `for` (2 min and more): no Event;
//! - a restart is an OOM kill or an exit with `Error`, in turn, of a Pod not restarted for
//!   [`RESTART_SPACING`], so that no Pod reaches the restart rule's threshold or a crash-loop
//!   episode. An OOM kill fires `SidecarOOMKilled` at once (one Warning) and resolves once the
//!   policies' OOM window has passed (one `SidecarOOMKilledResolved`), unless the Pod is
//!   deleted first: the operator forgets a deleted Pod's alerts without an Event;
//! - a deletion never falls near the end of an OOM alert (the margins of [`Margins`]), where
//!   whether the Resolved Event comes first would be a race;
//! - no Pod is restarted for a while after a watch disruption ([`LoadConfig::blackout`]): a
//!   Pod OOM-killed and deleted before the operator's relist, or whose alert's window ends
//!   before it, is one the operator cannot see (nor could any client after a 410);
//! - a creation adds a healthy Pod (no alert);
//! - a policy edit changes a rule no Pod is near (a `for` of 300 s ↔ 301 s): no Event.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use sidecar_watch_harness::sim::api::now_string;
use sidecar_watch_harness::sim::Shared;

use super::latency::OOM_ALERT;
use super::pods::{self, PodFactory, MESH_SIDECAR};
use super::preload::{delete_pod, put_pod, update_spec, write_pod};

/// A Pod: (namespace, name).
pub type PodKey = (String, String);

/// Events the writes must cause, per (namespace, Pod, reason).
pub type Ledger = HashMap<(String, String, String), u64>;

/// Events at the server, per (namespace, Pod, reason).
pub type Occurrences = HashMap<(String, String, String), u64>;

/// The reason of the Event that resolves [`OOM_ALERT`].
pub const OOM_RESOLVED: &str = "SidecarOOMKilledResolved";

/// The engine's crash-loop gap (`CRASH_LOOP_GAP`, 10 min, `crates/engine/src/rules/mod.rs`) plus a
/// minute: restarts of one Pod this far apart are separate episodes of one restart each, and
/// at most two fall in the restart rule's default window (3 restarts in 15 min). Mirrored,
/// not imported: the benchmark does not link the operator.
pub const RESTART_SPACING: Duration = Duration::from_secs(11 * 60);

/// How long a readiness flip lasts before it is undone.
const FLIP: Duration = Duration::from_secs(1);

/// What the writes are.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Pod writes per second (flips and their undoing, restarts, deletions, creations).
    pub rate: u64,
    pub duration: Duration,
    /// The policies' `oomKilled.window`.
    pub oom_window: Duration,
    /// One policy edit this often.
    pub edit_every: Duration,
    /// A watch disruption by the server this often (zero: never).
    pub disrupt_every: Duration,
    /// The factory index of the first Pod created.
    pub first_new_pod: usize,
}

impl LoadConfig {
    /// No restarts this long after a disruption: the operator relists in that time (a 10k-Pod
    /// relist takes ~1 s here, 100k ~5 s), and kills before it stay visible for a window.
    pub fn blackout(&self) -> Duration {
        self.oom_window.min(Duration::from_secs(10))
    }
}

/// Around the end of an OOM alert (kill + window), the span in which a deletion would race
/// the Resolved Event: `before` it and `after` it. Wide enough for an operator that is
/// seconds behind.
#[derive(Debug, Clone, Copy)]
pub struct Margins {
    pub before: Duration,
    pub after: Duration,
}

impl Margins {
    /// A third of the window before, within 2 to 15 s (the alert's start is the kill's
    /// `finishedAt`, in whole seconds: its end may come up to 1 s early); 10 s or half the
    /// window after.
    pub fn of(window: Duration) -> Self {
        let before = (window / 3).clamp(Duration::from_secs(2), Duration::from_secs(15));
        Margins { before, after: (window / 2).max(Duration::from_secs(10)) }
    }
}

/// What was written.
#[derive(Debug, Default, Clone)]
pub struct Ops {
    pub flips: u64,
    pub undos: u64,
    pub oom_kills: u64,
    pub error_restarts: u64,
    pub deletions: u64,
    pub creations: u64,
    pub edits: u64,
    pub disruptions: u64,
    /// Restarts or deletions with no Pod eligible, or restarts in a blackout (made readiness
    /// flips instead).
    pub substituted: u64,
    pub seconds: f64,
}

impl Ops {
    /// Pod writes of every kind.
    pub fn pod_writes(&self) -> u64 {
        self.flips + self.undos + self.oom_kills + self.error_restarts + self.deletions + self.creations
    }
}

/// A policy the soak edits: `spec` with `rules.<rule>.for` set to 300 s or 301 s in turn.
#[derive(Debug, Clone)]
pub struct Edited {
    pub resource: (&'static str, &'static str, &'static str),
    pub namespace: Option<String>,
    pub name: String,
    pub spec: Value,
    pub rule: &'static str,
}

impl Edited {
    /// Writes the policy's `n`-th version (0: the first).
    pub fn apply(&self, shared: &Shared, n: u64) -> Result<()> {
        let mut spec = self.spec.clone();
        spec["rules"][self.rule]["for"] = json!(format!("{}s", 300 + n % 2));
        update_spec(shared, self.resource, self.namespace.as_deref(), &self.name, spec)
    }
}

/// Pods that exist, picked at random and removed in O(1).
#[derive(Default)]
struct Live {
    keys: Vec<PodKey>,
    at: HashMap<PodKey, usize>,
}

impl Live {
    fn insert(&mut self, key: PodKey) {
        if !self.at.contains_key(&key) {
            self.at.insert(key.clone(), self.keys.len());
            self.keys.push(key);
        }
    }

    fn remove(&mut self, key: &PodKey) {
        if let Some(i) = self.at.remove(key) {
            self.keys.swap_remove(i);
            if let Some(moved) = self.keys.get(i) {
                self.at.insert(moved.clone(), i);
            }
        }
    }

    fn contains(&self, key: &PodKey) -> bool {
        self.at.contains_key(key)
    }

    fn random(&self, rng: &mut fastrand::Rng) -> Option<PodKey> {
        (!self.keys.is_empty()).then(|| self.keys[rng.usize(..self.keys.len())].clone())
    }
}

/// The writer's state.
struct Writer<'a> {
    shared: &'a Shared,
    factory: &'a PodFactory,
    config: &'a LoadConfig,
    margins: Margins,
    rng: fastrand::Rng,
    live: Live,
    /// Pods that may be restarted now (some may be gone: checked when picked), and the
    /// restarted ones with when they may be again.
    restartable: Vec<PodKey>,
    cooling: VecDeque<(Instant, PodKey)>,
    /// The latest OOM kill of each Pod whose Resolved Event is not yet in the ledger.
    open_kills: HashMap<PodKey, Instant>,
    /// Readiness flips to undo, in order.
    undo: VecDeque<(Instant, PodKey)>,
    /// No restarts until then (after a watch disruption).
    blackout_until: Option<Instant>,
    next_index: usize,
    ops: Ops,
    ledger: Ledger,
}

impl Writer<'_> {
    fn expect(&mut self, (ns, name): &PodKey, reason: &str) {
        *self.ledger.entry((ns.clone(), name.clone(), reason.to_string())).or_default() += 1;
    }

    fn flip(&mut self, now: Instant, now_s: &str) {
        let Some(key) = self.live.random(&mut self.rng) else { return };
        write_pod(self.shared, &key.0, &key.1, |p| pods::set_ready(p, MESH_SIDECAR, false, now_s));
        self.undo.push_back((now + FLIP, key));
        self.ops.flips += 1;
    }

    fn undo_due(&mut self, now: Instant, now_s: &str) -> bool {
        if self.undo.front().is_none_or(|(t, _)| *t > now) {
            return false;
        }
        if let Some((_, key)) = self.undo.pop_front() {
            write_pod(self.shared, &key.0, &key.1, |p| pods::set_ready(p, MESH_SIDECAR, true, now_s));
            self.ops.undos += 1;
        }
        true
    }

    /// An OOM kill or an `Error` exit, in turn; false when no Pod may be restarted.
    fn restart(&mut self, now: Instant, now_s: &str) -> bool {
        if self.blackout_until.is_some_and(|t| now < t) {
            return false;
        }
        while self.cooling.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, key)) = self.cooling.pop_front() {
                self.restartable.push(key);
            }
        }
        while !self.restartable.is_empty() {
            let key = self.restartable.swap_remove(self.rng.usize(..self.restartable.len()));
            if !self.live.contains(&key) {
                continue;
            }
            let oom = (self.ops.oom_kills + self.ops.error_restarts).is_multiple_of(2);
            let (reason, code) = if oom { ("OOMKilled", 137) } else { ("Error", 1) };
            write_pod(self.shared, &key.0, &key.1, |p| pods::restart(p, MESH_SIDECAR, reason, code, true, now_s));
            if oom {
                self.expect(&key, OOM_ALERT);
                // The previous kill's alert ended long ago (RESTART_SPACING > window + margin).
                if self.open_kills.insert(key.clone(), now).is_some() {
                    self.expect(&key, OOM_RESOLVED);
                }
                self.ops.oom_kills += 1;
            } else {
                self.ops.error_restarts += 1;
            }
            self.cooling.push_back((now + RESTART_SPACING.max(self.config.oom_window + self.margins.after), key));
            return true;
        }
        false
    }

    /// Whether deleting `key` now would race its OOM alert's end.
    fn near_resolve(&self, key: &PodKey, now: Instant) -> bool {
        self.open_kills.get(key).is_some_and(|at| {
            let end = *at + self.config.oom_window;
            now + self.margins.before >= end && now <= end + self.margins.after
        })
    }

    /// Deletes a random Pod away from its alert's end; false when none was found.
    fn delete(&mut self, now: Instant) -> bool {
        for _ in 0..8 {
            let Some(key) = self.live.random(&mut self.rng) else { return false };
            if self.near_resolve(&key, now) {
                continue;
            }
            self.live.remove(&key);
            self.undo.retain(|(_, k)| k != &key);
            if let Some(at) = self.open_kills.remove(&key) {
                // Deleted after its alert resolved: that Resolved Event counts. Deleted while
                // firing: nothing more.
                if now >= at + self.config.oom_window {
                    self.expect(&key, OOM_RESOLVED);
                }
            }
            delete_pod(self.shared, &key.0, &key.1);
            self.ops.deletions += 1;
            return true;
        }
        false
    }

    fn create(&mut self) {
        while !pods::healthy(self.next_index) {
            self.next_index += 1;
        }
        let key = put_pod(self.shared, self.factory.pod(self.next_index));
        self.next_index += 1;
        self.live.insert(key.clone());
        self.restartable.push(key);
        self.ops.creations += 1;
    }

    /// One write of the mix: of 200, 65 flips (and 65 undos, made when due), 10 restarts,
    /// 30 deletions, 30 creations.
    fn one(&mut self, now: Instant, now_s: &str) {
        if self.undo_due(now, now_s) {
            return;
        }
        match self.rng.u32(0..135) {
            0..65 => self.flip(now, now_s),
            65..75 => {
                if !self.restart(now, now_s) {
                    self.ops.substituted += 1;
                    self.flip(now, now_s);
                }
            }
            75..105 => {
                if !self.delete(now) {
                    self.ops.substituted += 1;
                    self.flip(now, now_s);
                }
            }
            _ => self.create(),
        }
    }
}

/// Writes for `config.duration` (blocking: run it on a blocking thread) to the Pods of
/// `pool` (healthy, never restarted) and the Pods it creates, editing `edited` in turn;
/// returns what it wrote and the Events the operator owes for it. Every flip is undone
/// before it returns.
pub fn run(
    shared: Arc<Shared>,
    factory: PodFactory,
    pool: Vec<PodKey>,
    edited: Vec<Edited>,
    config: LoadConfig,
) -> (Ops, Ledger) {
    let mut w = Writer {
        shared: &shared,
        factory: &factory,
        config: &config,
        margins: Margins::of(config.oom_window),
        rng: fastrand::Rng::with_seed(22),
        live: Live::default(),
        restartable: pool.clone(),
        cooling: VecDeque::new(),
        open_kills: HashMap::new(),
        undo: VecDeque::new(),
        blackout_until: None,
        next_index: config.first_new_pod,
        ops: Ops::default(),
        ledger: Ledger::new(),
    };
    for key in pool {
        w.live.insert(key);
    }
    let started = Instant::now();
    let end = started + config.duration;
    let mut done = 0u64;
    let mut next_edit = started + config.edit_every;
    let mut next_disruption = (!config.disrupt_every.is_zero()).then(|| started + config.disrupt_every);
    while Instant::now() < end {
        let due = (started.elapsed().as_secs_f64() * config.rate as f64) as u64;
        let now_s = now_string();
        while done < due {
            w.one(Instant::now(), &now_s);
            done += 1;
        }
        let now = Instant::now();
        if now >= next_edit && !edited.is_empty() {
            let n = w.ops.edits;
            let policy = &edited[n as usize % edited.len()];
            // The first write of each policy (n = 0) was the setup's.
            if let Err(e) = policy.apply(&shared, n / edited.len() as u64 + 1) {
                say!("soak: edit of {} failed: {e:#}", policy.name);
            }
            w.ops.edits += 1;
            next_edit += config.edit_every;
        }
        if next_disruption.is_some_and(|t| now >= t) {
            // Every watch gets 410 Gone and the operator lists again, as when kube-apiserver's
            // watch cache can no longer serve a watch.
            shared.expire_watches();
            w.ops.disruptions += 1;
            w.blackout_until = Some(now + config.blackout());
            next_disruption = next_disruption.map(|t| t + config.disrupt_every);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    w.ops.seconds = started.elapsed().as_secs_f64();
    let now_s = now_string();
    while let Some((_, key)) = w.undo.pop_front() {
        write_pod(&shared, &key.0, &key.1, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
        w.ops.undos += 1;
    }
    // Every alert still open resolves once its window has passed.
    let open: Vec<PodKey> = w.open_kills.keys().cloned().collect();
    for key in open {
        w.expect(&key, OOM_RESOLVED);
    }
    (w.ops, w.ledger)
}

/// Occurrences of the operator's Pod Events in the store, per (namespace, Pod, reason): one
/// per Event, or its `series.count`.
pub fn occurrences(shared: &Shared) -> Occurrences {
    let st = shared.state();
    let mut out = HashMap::new();
    for obj in st.store.list(&("events.k8s.io".to_string(), "events".to_string()), None) {
        let ev = obj.value();
        let text = |p: &str| ev.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        if text("/reportingController") != "sidecar-watch" || text("/regarding/kind") != "Pod" {
            continue;
        }
        let count = ev.pointer("/series/count").and_then(Value::as_u64).unwrap_or(1);
        *out.entry((text("/regarding/namespace"), text("/regarding/name"), text("/reason"))).or_default() += count;
    }
    out
}

/// The Events of the soak, from the Events before it and after: (owed, seen, lost, extra,
/// the first differences).
pub fn compare(ledger: &Ledger, before: &Occurrences, after: &Occurrences) -> (u64, u64, u64, u64, Vec<String>) {
    let seen = |k: &(String, String, String)| {
        after.get(k).copied().unwrap_or(0).saturating_sub(before.get(k).copied().unwrap_or(0))
    };
    let mut keys: Vec<_> = ledger.keys().chain(after.keys().filter(|k| seen(k) > 0)).cloned().collect();
    keys.sort();
    keys.dedup();
    let (mut owed, mut total, mut lost, mut extra, mut differ) = (0, 0, 0, 0, Vec::new());
    for k in keys {
        let (want, got) = (ledger.get(&k).copied().unwrap_or(0), seen(&k));
        owed += want;
        total += got;
        lost += want.saturating_sub(got);
        extra += got.saturating_sub(want);
        if want != got && differ.len() < 8 {
            differ.push(format!("{}/{} {}: owed {want}, seen {got}", k.0, k.1, k.2));
        }
    }
    (owed, total, lost, extra, differ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pod: &str, reason: &str) -> (String, String, String) {
        ("bench-00".into(), pod.into(), reason.into())
    }

    #[test]
    fn compare_counts_lost_and_extra_per_pod_and_reason() {
        let ledger: Ledger = [(key("a", OOM_ALERT), 2), (key("a", OOM_RESOLVED), 1)].into_iter().collect();
        // Before the soak: one Warning of `a` and one Event of `b` that are not the soak's.
        let before: Occurrences =
            [(key("a", OOM_ALERT), 1), (key("b", "SidecarContainerNotReady"), 1)].into_iter().collect();
        // After: `a`'s Warnings came (one as a series), its Resolved did not; `b` got one more.
        let after: Occurrences =
            [(key("a", OOM_ALERT), 3), (key("b", "SidecarContainerNotReady"), 2)].into_iter().collect();
        let (owed, seen, lost, extra, differ) = compare(&ledger, &before, &after);
        assert_eq!((owed, seen, lost, extra), (3, 3, 1, 1));
        assert_eq!(
            differ,
            vec![
                "bench-00/a SidecarOOMKilledResolved: owed 1, seen 0".to_string(),
                "bench-00/b SidecarContainerNotReady: owed 0, seen 1".to_string()
            ]
        );
    }

    #[test]
    fn deletions_keep_clear_of_an_alert_s_end() {
        let m = Margins::of(Duration::from_secs(60));
        assert_eq!((m.before, m.after), (Duration::from_secs(15), Duration::from_secs(30)));
        // A short window still leaves 2 s for the kill's whole-second finishedAt.
        let m = Margins::of(Duration::from_secs(5));
        assert_eq!((m.before, m.after), (Duration::from_secs(2), Duration::from_secs(10)));
    }
}
