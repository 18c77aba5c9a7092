//! The one rate limiter of the gateway: a keyed token bucket (GCRA, from the
//! `governor` crate) that every per-client limit is built on.
//!
//! Three limits use it: `[limits] rate_limit_per_second` (requests per client,
//! at the edge), `[messaging] rate_limit` (messages per sender) and
//! `[bus] rate_limit` (bus publishes per client). Each keeps its own wording
//! of the refusal; this module only says *whether* and *how long to wait*.
//!
//! A leaf: it names nothing else of the crate, so any layer may use it.
//! Counts live in this process only (per gateway instance).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Past this many tracked keys, keys whose bucket is full again are
/// forgotten (a key may be a remote address, so the set is open).
const PRUNE_AT: usize = 10_000;

/// A token bucket per key: `burst` tokens at most, refilled at a steady rate.
pub struct KeyedLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    /// The key count at which the next prune runs; doubles when a prune
    /// frees little, so a large live set is not rescanned on every check.
    prune_at: AtomicUsize,
}

impl KeyedLimiter {
    /// `rate` tokens per second, holding at most `burst` (at least 1).
    /// `None` when the rate is not a positive finite number or is too high to
    /// measure (more than one token per nanosecond): no limit then.
    pub fn per_second(rate: f64, burst: u32) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / rate).ok()?;
        Self::with_period(period, burst)
    }

    /// `per_minute` tokens a minute, in bursts of up to `per_minute`; `None`
    /// (no limit) for 0.
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let n = NonZeroU32::new(per_minute)?;
        Self::with_period(Duration::from_secs(60) / n.get(), n.get())
    }

    fn with_period(period: Duration, burst: u32) -> Option<Self> {
        let burst = NonZeroU32::new(burst.max(1))?;
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            prune_at: AtomicUsize::new(PRUNE_AT),
        })
    }

    /// Takes one token from `key`'s bucket, or says how long until one is
    /// free (never zero, so a caller can always print a wait).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.prune();
        self.limiter
            .check_key(&key.to_string())
            .map_err(|not_until| {
                not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_millis(1))
            })
    }

    fn prune(&self) {
        let at = self.prune_at.load(Ordering::Relaxed);
        if self.limiter.len() <= at {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let next = (self.limiter.len() * 2).max(PRUNE_AT);
        self.prune_at.store(next, Ordering::Relaxed);
    }

    /// How many keys are tracked now (for tests of pruning).
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_to_the_limit_then_says_how_long_to_wait() {
        let l = KeyedLimiter::per_minute(60).unwrap();
        for _ in 0..60 {
            l.check("a").unwrap();
        }
        let wait = l.check("a").unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(l.check("b").is_ok(), "keys are limited apart");
    }

    #[test]
    fn a_slow_rate_waits_longer_than_a_second() {
        let l = KeyedLimiter::per_second(0.5, 1).unwrap();
        l.check("c").unwrap();
        let wait = l.check("c").unwrap_err();
        assert!(wait > Duration::from_secs(1), "{wait:?}");
    }

    #[test]
    fn refills_at_the_rate() {
        let l = KeyedLimiter::per_second(1000.0, 2).unwrap();
        l.check("c").unwrap();
        l.check("c").unwrap();
        assert!(l.check("c").is_err());
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.check("c").is_ok());
    }

    #[test]
    fn zero_or_nonsense_rates_mean_no_limit() {
        assert!(KeyedLimiter::per_minute(0).is_none());
        assert!(KeyedLimiter::per_second(0.0, 1).is_none());
        assert!(KeyedLimiter::per_second(f64::NAN, 1).is_none());
        assert!(KeyedLimiter::per_second(-3.0, 1).is_none());
    }

    #[test]
    fn full_buckets_are_forgotten_past_the_threshold() {
        let l = KeyedLimiter::per_second(1e6, 1).unwrap();
        for i in 0..=PRUNE_AT {
            l.check(&format!("k{i}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        l.check("last").unwrap();
        assert!(l.tracked() < 10, "{} keys still tracked", l.tracked());
    }
}
