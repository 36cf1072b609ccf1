//! The Pod decoder and the compact view: what any tenant who can create a Pod (or any broken
//! controller that writes its status) hands the operator. The input is a stream of JSON
//! objects, each decoded as one watch item would be (`LenientPod`, as kube-client decodes a
//! watch line), turned into a view, applied to an index under the built-in policy and a
//! namespaced one, 30 s apart (so that a stream of one Pod's states exercises its history);
//! the alerts' timers are followed, Event notes built and `/metrics` rendered.
//!
//! Beyond "no panic": an unreadable Pod's message is one short line; every timer lies in the
//! future of the evaluation that set it (a timer at or before it would re-evaluate the Pod
//! in a busy loop); Event notes fit the API's limit; `/metrics` stays valid text.
#![no_main]

use std::sync::LazyLock;

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use sidecar_watch::api::{LenientPod, SidecarPolicy};
use sidecar_watch::engine::{CompiledPolicy, PodUidBuf};
use sidecar_watch::events::note::note;
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Index, Outcome, PolicyEntry};
use sidecar_watch::metrics::{render_index, RenderOptions};
use sidecar_watch_fuzz::{assert_exposition, assert_one_bounded_line, now};

/// Pod states read from one input, at most.
const MAX_STATES: usize = 8;
/// Timers of one Pod followed after each state, at most.
const MAX_TIMERS: usize = 4;

static POLICIES: LazyLock<Vec<CompiledPolicy>> = LazyLock::new(|| {
    let namespaced: SidecarPolicy =
        serde_norway::from_str(include_str!("../../tests/fixtures/two-policies-policy.yaml")).expect("fixture");
    vec![CompiledPolicy::builtin(), CompiledPolicy::from_sidecar_policy(&namespaced).1.expect("fixture compiles")]
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let index = Index::new();
    let mut at = now();
    for policy in POLICIES.iter() {
        index.apply_policy(policy.policy.clone(), PolicyEntry::new(Ok(policy.clone())), at);
    }
    let items = serde_json::Deserializer::from_str(text).into_iter::<LenientPod>();
    for item in items.take(MAX_STATES) {
        // Not JSON at all: kube-client's error for the line, not the operator's.
        let Ok(item) = item else { break };
        let pod = match item {
            LenientPod::Object(pod) => pod,
            LenientPod::Undecodable(bad) => {
                assert_one_bounded_line("an unreadable Pod's error", &bad.error);
                assert_one_bounded_line("an unreadable Pod's key", &bad.key());
                continue;
            }
        };
        let view = index.view_of(&pod);
        let uid = PodUidBuf::from(view.uid());
        let mut outcome = index.apply_pod(view, at);
        let mut evaluated_at = at;
        for _ in 0..MAX_TIMERS {
            let next = check(&outcome, evaluated_at, &uid);
            let Some(next) = next else { break };
            outcome = index.reevaluate(uid.as_uid(), next);
            evaluated_at = next;
        }
        at = at.checked_add(SignedDuration::from_secs(30)).expect("near the fixtures' day");
    }
    let _ = index.firing_now(at);
    let mut metrics = String::new();
    render_index(&index, &RenderOptions::default(), |chunk| {
        metrics.push_str(&chunk);
        true
    });
    assert_exposition(&metrics);
});

/// Checks an evaluation's outcome; gives the Pod's next timer.
fn check(outcome: &Outcome, evaluated_at: Timestamp, uid: &PodUidBuf) -> Option<Timestamp> {
    for transition in &outcome.transitions {
        let note = note(transition, evaluated_at);
        assert!(note.len() <= 1000, "an Event note of {} bytes", note.len());
    }
    for (_, seconds) in outcome.startups.iter().map(|(_, c, s)| (c, s)) {
        assert!(seconds.is_finite() && *seconds >= 0.0, "a startup of {seconds} s");
    }
    let mut next = None;
    for (pod, wakeup) in &outcome.wakeups {
        if let Some(wakeup) = wakeup {
            assert!(*wakeup > evaluated_at, "a timer at {wakeup} set by the evaluation at {evaluated_at}");
            if pod == uid {
                next = Some(next.map_or(*wakeup, |n: Timestamp| n.min(*wakeup)));
            }
        }
    }
    for (_, by) in &outcome.wake_by {
        assert!(*by > evaluated_at, "a timer at {by} set by the evaluation at {evaluated_at}");
    }
    next
}
