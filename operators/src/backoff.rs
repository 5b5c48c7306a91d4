//! Requeue after an error with exponential backoff and jitter, per object: the first retry
//! comes quickly (a conflict, a briefly unavailable API), a broken object is retried less and
//! less often (up to [`Backoff::max`]), and a success resets its count. The jitter (up to a
//! fifth of the delay, either way) keeps many objects failing together from retrying in step.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use kube::{Resource, ResourceExt};

/// Per-object failure counts and the delays they lead to.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
    random: RandomState,
    draws: AtomicU64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(60))
    }
}

impl Backoff {
    /// Delays start at `base` and double up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::default(),
            random: RandomState::new(),
            draws: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    fn key<K: Resource>(obj: &K) -> String {
        obj.uid().unwrap_or_else(|| {
            format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
        })
    }

    /// Records a failure of `obj` and returns how long to wait before the next attempt.
    pub fn failed<K: Resource>(&self, obj: &K) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().expect("backoff lock");
            let n = failures.entry(Self::key(obj)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.delay(attempt)
    }

    /// Forgets the failures of `obj` (after a successful reconcile, or when it is gone).
    pub fn succeeded<K: Resource>(&self, obj: &K) {
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&Self::key(obj));
    }

    /// The delay before attempt `attempt` + 1 (1 = after the first failure), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let plain = self.base.saturating_mul(1 << exp).min(self.max);
        // Up to ±20 %, from a randomly keyed hash of a draw counter.
        let r = self
            .random
            .hash_one(self.draws.fetch_add(1, Ordering::Relaxed));
        let fifth = plain / 5;
        let span = fifth.as_millis() as u64 * 2;
        let offset = if span == 0 { 0 } else { r % (span + 1) };
        (plain - fifth + Duration::from_millis(offset)).min(self.max)
    }

    /// How many objects have failures on record.
    pub fn failing(&self) -> usize {
        self.failures.lock().expect("backoff lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn obj(uid: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("c".into());
        c.metadata.uid = Some(uid.into());
        c
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let a = obj("a");
        let delays: Vec<Duration> = (0..10).map(|_| b.failed(&a)).collect();
        for (i, d) in delays.iter().enumerate() {
            let plain = Duration::from_secs(1 << i).min(Duration::from_secs(60));
            assert!(
                *d >= plain - plain / 5 && *d <= (plain + plain / 5).min(b.max()),
                "attempt {}: {d:?}",
                i + 1
            );
        }
        assert!(delays[6] >= Duration::from_secs(48));
        assert_eq!(b.failing(), 1);
    }

    #[test]
    fn success_resets_and_objects_are_counted_apart() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let (x, y) = (obj("x"), obj("y"));
        for _ in 0..5 {
            b.failed(&x);
        }
        assert!(
            b.failed(&y) <= Duration::from_millis(1200),
            "y starts at the base delay"
        );
        b.succeeded(&x);
        assert!(
            b.failed(&x) <= Duration::from_millis(1200),
            "x starts over after a success"
        );
    }

    #[test]
    fn jitter_spreads_retries() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(600));
        let spread: std::collections::BTreeSet<Duration> = (0..50).map(|_| b.delay(3)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
