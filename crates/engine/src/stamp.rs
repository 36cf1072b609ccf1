//! Compact instants for what the index keeps per Pod.

use std::fmt;
use std::num::NonZeroU64;

use jiff::Timestamp;

/// An instant in 8 bytes, with nanosecond precision: the one instant type of what the index keeps.
///
/// jiff's `Timestamp` takes 16 bytes and `Option<Timestamp>` 24, and a tracked Pod keeps
/// some twenty of them (per container: the running start, four history clocks; per Pod: creation,
/// start, deletion, the `Ready` condition's transition). `Stamp`
/// holds the nanoseconds since the Unix epoch in an offset-binary `u64` that is never zero,
/// so `Option<Stamp>` is 8 bytes as well and the derived order is the order in time.
/// Instants outside 1677–2262 (the range of an `i64` of nanoseconds) are clamped to it;
/// no Kubernetes timestamp comes near either end.
///
/// The API serves a Pod's own times in whole seconds (`metav1.Time` has no fraction, in JSON
/// or protobuf); a `Stamp` holds them exactly and prints them as served (`2025-06-03T10:20:00Z`).
/// A 4-byte type of whole seconds for those four once kept a [`PodView`](crate::PodView) and a
/// tracked Pod 16 bytes smaller; one instant type is worth more than those bytes (what they
/// were, and the undoing:
/// docs/benchmarks.md#smaller-parts-per-pod-real-control-plane-2026-11-25, "a Pod's own
/// times").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

// Some twenty per tracked Pod; no pointer, so on any target (docs/architecture.md#what-a-tracked-pod-is-made-of).
const _: () = assert!(std::mem::size_of::<Option<Stamp>>() == 8);

/// The offset that maps `i64` nanoseconds onto `u64` in order ([`i64::MIN`] maps to 0).
const OFFSET: u64 = 1 << 63;

impl Stamp {
    /// The instant `t` (clamped to 1677–2262).
    pub fn new(t: Timestamp) -> Stamp {
        // i64::MIN itself is excluded: it is the value that would map to zero.
        let nanos = t.as_nanosecond().clamp(i128::from(i64::MIN) + 1, i128::from(i64::MAX));
        let nanos = i64::try_from(nanos).unwrap_or(i64::MAX);
        let stored = (nanos as u64) ^ OFFSET;
        Stamp(NonZeroU64::new(stored).unwrap_or(NonZeroU64::MIN))
    }

    /// The instant as a `Timestamp`.
    pub fn timestamp(self) -> Timestamp {
        let nanos = (self.0.get() ^ OFFSET) as i64;
        // Every i64 of nanoseconds is within jiff's range (years -9999 to 9999).
        Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

impl From<Timestamp> for Stamp {
    fn from(t: Timestamp) -> Stamp {
        Stamp::new(t)
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.timestamp(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_order() {
        let times: Vec<Timestamp> = [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "2025-06-03T10:00:00.123456789Z",
            "2262-04-11T23:47:16.854775807Z",
        ]
        .iter()
        .map(|t| t.parse().expect("timestamp"))
        .collect();
        for t in &times {
            assert_eq!(Stamp::new(*t).timestamp(), *t);
        }
        let mut stamps: Vec<Stamp> = times.iter().copied().map(Stamp::new).collect();
        stamps.sort();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(stamps.into_iter().map(Stamp::timestamp).collect::<Vec<_>>(), sorted);
    }

    #[test]
    fn clamps_instants_out_of_range() {
        let far: Timestamp = "9000-01-01T00:00:00Z".parse().expect("timestamp");
        assert_eq!(Stamp::new(far).timestamp().to_string(), "2262-04-11T23:47:16.854775807Z");
        let early: Timestamp = "1000-01-01T00:00:00Z".parse().expect("timestamp");
        assert!(Stamp::new(early) < Stamp::new(Timestamp::UNIX_EPOCH));
    }

    #[test]
    fn api_times_keep_whole_seconds() {
        // kube-apiserver serves whole seconds; they come back as they went in, and print without a fraction.
        for t in ["1970-01-01T00:00:00Z", "2025-06-03T10:20:00Z", "2106-02-07T06:28:14Z"] {
            let stamp = Stamp::new(t.parse().expect("timestamp"));
            assert_eq!(format!("{stamp:?}"), t);
        }
        let at = |t: &str| Stamp::new(t.parse().expect("timestamp"));
        assert!(at("2025-06-03T10:00:00Z") < at("2025-06-03T10:00:01Z"));
    }
}
