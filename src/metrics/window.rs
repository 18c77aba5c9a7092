//! Per-backend call rates and latency percentiles over the last five
//! minutes, for `/status` and the console's charts.
//!
//! Prometheus histograms answer "how many calls ever took under 50 ms";
//! the console asks "what were p50 and p99 a minute ago". So each backend
//! also has a ring of one-second slots, each with a call count and a small
//! latency histogram (buckets √2 apart from 0.1 ms, so a percentile is
//! within ±19% of the truth). Memory is fixed: `SLOTS` slots of
//! `BUCKETS + 2` words per backend that ever answered a call (about 50 KB),
//! and [`retain`] forgets backends that are no longer mounted.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Seconds of history kept.
const SLOTS: usize = 300;
/// Latency buckets: bucket `i` holds calls that took under `0.1 ms × √2^(i+1)`;
/// the last one everything slower (over ~100 s).
const BUCKETS: usize = 40;
/// The first bucket's upper bound, in milliseconds.
const FLOOR_MS: f64 = 0.1;
/// Seconds per point of [`History`].
pub const STEP_SECONDS: u64 = 5;
/// Points in [`History`] (five minutes).
pub const POINTS: usize = SLOTS / STEP_SECONDS as usize;
/// `calls_per_s` in [`Rates`] is averaged over this many complete seconds.
const RATE_SECONDS: u64 = 10;
/// The percentiles in [`Rates`] are over this many complete seconds.
const PERCENTILE_SECONDS: u64 = 60;

#[derive(Clone, Copy)]
struct Slot {
    /// The second (since process start) this slot holds; a slot whose
    /// second is older than the window counts as empty.
    second: u64,
    count: u32,
    buckets: [u32; BUCKETS],
}

const EMPTY: Slot = Slot {
    second: u64::MAX,
    count: 0,
    buckets: [0; BUCKETS],
};

struct Window {
    slots: Box<[Slot; SLOTS]>,
}

impl Window {
    fn new() -> Self {
        Self {
            slots: Box::new([EMPTY; SLOTS]),
        }
    }

    fn observe(&mut self, second: u64, took: Duration) {
        let slot = &mut self.slots[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot { second, ..EMPTY };
        }
        slot.count = slot.count.saturating_add(1);
        let b = &mut slot.buckets[bucket(took)];
        *b = b.saturating_add(1);
    }

    /// The slot of `second`, if it holds that second.
    fn at(&self, second: u64) -> Option<&Slot> {
        let slot = &self.slots[(second % SLOTS as u64) as usize];
        (slot.second == second).then_some(slot)
    }

    /// Calls and merged buckets of the seconds `from..to`.
    fn merged(&self, from: u64, to: u64) -> (u64, [u64; BUCKETS]) {
        let mut buckets = [0u64; BUCKETS];
        let mut count = 0u64;
        for s in (from..to).filter_map(|s| self.at(s)) {
            count += u64::from(s.count);
            for (m, b) in buckets.iter_mut().zip(s.buckets) {
                *m += u64::from(b);
            }
        }
        (count, buckets)
    }
}

fn bucket(took: Duration) -> usize {
    let ms = took.as_secs_f64() * 1000.0;
    if ms < FLOOR_MS {
        return 0;
    }
    // log base √2 of ms / FLOOR_MS.
    let i = (2.0 * (ms / FLOOR_MS).log2()).floor() as usize;
    i.min(BUCKETS - 1)
}

/// The middle of bucket `i` (geometric), in milliseconds.
fn bucket_ms(i: usize) -> f64 {
    FLOOR_MS * 2f64.powf((i as f64 + 0.5) / 2.0)
}

/// The `q` quantile (0..1) of a merged histogram, in milliseconds.
fn quantile(count: u64, buckets: &[u64; BUCKETS], q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = ((q * count as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, b) in buckets.iter().enumerate() {
        seen += b;
        if seen >= rank {
            return Some((bucket_ms(i) * 100.0).round() / 100.0);
        }
    }
    None
}

/// A backend's calls now: the rate over the last 10 complete seconds and
/// latency percentiles over the last minute.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Rates {
    pub calls_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A backend's last five minutes in `STEP_SECONDS` points, oldest first,
/// ending with the last complete second.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct History {
    pub step_s: u64,
    pub calls_per_s: Vec<f64>,
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);
/// Backend name → its window. Locked for a few microseconds per call and
/// per read; never held across anything else.
static WINDOWS: LazyLock<Mutex<HashMap<String, Window>>> = LazyLock::new(Mutex::default);

fn now_second() -> u64 {
    START.elapsed().as_secs()
}

fn windows() -> std::sync::MutexGuard<'static, HashMap<String, Window>> {
    WINDOWS.lock().unwrap_or_else(|p| p.into_inner())
}

/// One answered call of `backend` that took `took`.
pub fn observe(backend: &str, took: Duration) {
    let second = now_second();
    let mut w = windows();
    match w.get_mut(backend) {
        Some(window) => window.observe(second, took),
        None => {
            let mut window = Window::new();
            window.observe(second, took);
            w.insert(backend.to_string(), window);
        }
    }
}

/// `backend`'s rates now; zeros for a backend that answered nothing.
pub fn rates(backend: &str) -> Rates {
    let now = now_second();
    let w = windows();
    let Some(window) = w.get(backend) else {
        return Rates::default();
    };
    let (recent, _) = window.merged(now.saturating_sub(RATE_SECONDS), now);
    let (count, buckets) = window.merged(now.saturating_sub(PERCENTILE_SECONDS), now);
    Rates {
        calls_per_s: recent as f64 / RATE_SECONDS as f64,
        p50_ms: quantile(count, &buckets, 0.50),
        p99_ms: quantile(count, &buckets, 0.99),
    }
}

/// `backend`'s last five minutes, in `POINTS` points.
pub fn history(backend: &str) -> History {
    let now = now_second();
    let mut h = History {
        step_s: STEP_SECONDS,
        calls_per_s: Vec::with_capacity(POINTS),
        p50_ms: Vec::with_capacity(POINTS),
        p99_ms: Vec::with_capacity(POINTS),
    };
    let w = windows();
    let window = w.get(backend);
    for p in (1..=POINTS as u64).rev() {
        let to = now.saturating_sub((p - 1) * STEP_SECONDS);
        let from = to.saturating_sub(STEP_SECONDS);
        let (count, buckets) = window.map_or((0, [0; BUCKETS]), |w| w.merged(from, to));
        h.calls_per_s.push(count as f64 / STEP_SECONDS as f64);
        h.p50_ms.push(quantile(count, &buckets, 0.50));
        h.p99_ms.push(quantile(count, &buckets, 0.99));
    }
    h
}

/// Forgets the windows of backends not in `mounted`.
pub fn retain(mounted: &dyn Fn(&str) -> bool) {
    windows().retain(|name, _| mounted(name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_root_two_from_a_tenth_of_a_millisecond() {
        assert_eq!(bucket(Duration::from_micros(50)), 0);
        assert_eq!(bucket(Duration::from_micros(100)), 0);
        assert_eq!(bucket(Duration::from_micros(142)), 1);
        assert_eq!(bucket(Duration::from_micros(200)), 2);
        assert_eq!(bucket(Duration::from_millis(1)), 6);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn percentiles_land_in_the_bucket_of_the_ranked_call() {
        let mut w = Window::new();
        for _ in 0..98 {
            w.observe(7, Duration::from_millis(2));
        }
        w.observe(7, Duration::from_millis(200));
        w.observe(7, Duration::from_millis(200));
        let (count, buckets) = w.merged(0, 10);
        assert_eq!(count, 100);
        let p50 = quantile(count, &buckets, 0.5).unwrap();
        let p99 = quantile(count, &buckets, 0.99).unwrap();
        assert!((1.6..2.4).contains(&p50), "{p50}");
        assert!((160.0..240.0).contains(&p99), "{p99}");
        assert_eq!(quantile(0, &buckets, 0.5), None);
    }

    #[test]
    fn a_slot_of_an_older_lap_counts_as_empty() {
        let mut w = Window::new();
        w.observe(3, Duration::from_millis(1));
        assert_eq!(w.merged(0, 10).0, 1);
        // The same slot index, one lap later: the old count is gone.
        w.observe(3 + SLOTS as u64, Duration::from_millis(1));
        assert_eq!(w.merged(0, 10).0, 0);
        assert_eq!(w.merged(SLOTS as u64, SLOTS as u64 + 10).0, 1);
    }
}
