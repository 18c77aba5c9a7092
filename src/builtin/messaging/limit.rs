//! The per-sender rate limit: a token bucket per sender id, on this instance.
//!
//! A sender may burst up to `per_minute` messages, then sends at
//! `per_minute / 60` a second. Counted per gateway instance (not in the
//! shared store), which is cheap and enough to stop a runaway agent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Past this many tracked senders, full buckets are forgotten.
const PRUNE_AT: usize = 10_000;

pub struct RateLimiter {
    per_minute: u32,
    /// Sender → (tokens, last refill); locked briefly per send.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::default(),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one token for `sender`, or says how long until one is free.
    pub fn check(&self, sender: &str) -> Result<(), Duration> {
        self.check_at(sender, Instant::now())
    }

    fn check_at(&self, sender: &str, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_AT {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity
            });
        }
        let (tokens, at) = buckets.entry(sender.to_string()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_to_the_limit_then_refills_per_second() {
        let l = RateLimiter::new(60);
        let t = Instant::now();
        for _ in 0..60 {
            l.check_at("a", t).unwrap();
        }
        let wait = l.check_at("a", t).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(l.check_at("b", t).is_ok(), "senders are limited apart");
        assert!(l.check_at("a", t + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::new(0);
        for _ in 0..10_000 {
            l.check("a").unwrap();
        }
    }
}
