//! Events per object are rate-limited like client-go's `EventSourceObjectSpamFilter`: a token
//! bucket per (source, regarding object) with a burst of 25 that refills one token every
//! 5 minutes. A Pod that flaps or a Pod with hundreds of findings gets its first 25 Events
//! and then one per 5 minutes; other objects are unaffected.

use std::time::Duration;

use tokio::time::Instant;

use crate::fair_cache::FairCache;
use crate::fair_queue::InNamespace;

/// Events an object may get at once.
pub const BURST: u32 = 25;
/// One more Event per object after this long.
pub const REFILL: Duration = Duration::from_secs(300);
/// Objects remembered (client-go keeps 4096). When full, the namespace remembering the most
/// forgets its least recently seen object, which starts again with a full bucket, as after a
/// quiet period: a tenant with thousands of objects resets its own buckets, never another
/// namespace's, whose flapping Pods stay held to one Event per 5 minutes.
const OBJECTS: usize = 4096;

/// The object an Event is about: its namespace (empty when cluster-scoped) and a name unique
/// within it (a Pod's UID, a policy's or a workload's reference).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Object {
    namespace: String,
    name: String,
}

impl InNamespace for Object {
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The token buckets, one per regarding object.
pub struct SpamFilter {
    buckets: FairCache<Object, Bucket>,
    burst: u32,
    refill: Duration,
}

impl Default for SpamFilter {
    fn default() -> Self {
        Self::new(BURST, REFILL, OBJECTS)
    }
}

impl SpamFilter {
    /// A filter with `burst` Events per object, one more per `refill`, for up to `objects`
    /// objects at a time.
    pub fn new(burst: u32, refill: Duration, objects: usize) -> Self {
        SpamFilter { buckets: FairCache::new(objects), burst, refill }
    }

    /// Whether an Event about `object` of `namespace` may be published at `now`; takes a
    /// token if so.
    pub fn allow(&mut self, namespace: &str, object: &str, now: Instant) -> bool {
        let burst = f64::from(self.burst);
        let refill = self.refill.as_secs_f64();
        let object = Object { namespace: namespace.to_string(), name: object.to_string() };
        let bucket = self.buckets.get_or_insert_mut(object, || Bucket { tokens: burst, at: now });
        let earned = if refill > 0.0 { now.saturating_duration_since(bucket.at).as_secs_f64() / refill } else { burst };
        bucket.tokens = (bucket.tokens + earned).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How many objects are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_refill_per_object() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| filter.allow("shop", "pod-a", t0)).count();
        assert_eq!(allowed, 25, "the burst");
        assert!(filter.allow("shop", "pod-b", t0), "another object has its own bucket");
        assert!(filter.allow("other", "pod-a", t0), "so has one of the same name in another namespace");
        assert!(!filter.allow("shop", "pod-a", t0 + REFILL - Duration::from_secs(1)), "not refilled yet");
        assert!(filter.allow("shop", "pod-a", t0 + REFILL), "one more after the refill period");
        assert!(!filter.allow("shop", "pod-a", t0 + REFILL), "and only one");
        // A long quiet period refills the whole burst, not more.
        let later = t0 + REFILL * 1000;
        assert_eq!((0..100).filter(|_| filter.allow("shop", "pod-a", later)).count(), 25);
    }

    #[test]
    fn memory_is_bounded_by_the_objects_remembered() {
        let mut filter = SpamFilter::new(BURST, REFILL, 100);
        let t0 = Instant::now();
        for i in 0..10_000 {
            assert!(filter.allow("flood", &format!("pod-{i}"), t0), "a new object starts with a full bucket");
        }
        assert_eq!(filter.len(), 100);
    }

    #[test]
    fn a_tenants_many_objects_never_reset_another_namespaces_bucket() {
        let mut filter = SpamFilter::new(BURST, REFILL, 100);
        let t0 = Instant::now();
        let spent = (0..100).filter(|_| filter.allow("shop", "flapping-pod", t0)).count();
        assert_eq!(spent, 25);
        for i in 0..10_000 {
            filter.allow("flood", &format!("pod-{i}"), t0);
        }
        assert!(
            !filter.allow("shop", "flapping-pod", t0 + Duration::from_secs(1)),
            "still held to one Event per refill period: the flood evicted its own buckets"
        );
        assert_eq!(filter.len(), 100);
    }
}
