//! URL-mode elicitations in progress: which client session each one was
//! relayed to, so the backend's later `notifications/elicitation/complete`
//! (2025-11-25) reaches that session and no other.
//!
//! The completion usually arrives after the call that asked has ended, so
//! the route outlives the call. Entries are dropped when the completion
//! arrives, after [`TTL`], or oldest first beyond [`CAPACITY`]; a completion
//! for an unknown id is dropped (and counted by the caller).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a URL elicitation may take the user before its completion is no longer routed.
pub const TTL: Duration = Duration::from_secs(60 * 60);
/// At most this many open URL elicitations are remembered.
pub const CAPACITY: usize = 4096;

/// (backend id, elicitation id) → (session, when relayed), and the keys in
/// insertion order for the capacity bound.
type Routes = (HashMap<Key, (u64, Instant)>, VecDeque<Key>);
type Key = (u64, String);

#[derive(Default)]
pub struct Elicitations {
    inner: Mutex<Routes>,
}

impl Elicitations {
    /// Remembers that `backend`'s elicitation `id` went to `session`.
    pub fn record(&self, backend: u64, id: &str, session: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (routes, order) = &mut *guard;
        let key = (backend, id.to_string());
        if routes
            .insert(key.clone(), (session, Instant::now()))
            .is_none()
        {
            order.push_back(key);
        }
        while order.len() > CAPACITY {
            if let Some(old) = order.pop_front() {
                routes.remove(&old);
            }
        }
    }

    /// The session `backend`'s elicitation `id` went to, forgetting it.
    pub fn take(&self, backend: u64, id: &str) -> Option<u64> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (routes, order) = &mut *guard;
        let key = (backend, id.to_string());
        let (session, at) = routes.remove(&key)?;
        order.retain(|k| k != &key);
        (at.elapsed() < TTL).then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_routed_once_and_only_for_its_backend() {
        let e = Elicitations::default();
        e.record(1, "abc", 7);
        assert_eq!(e.take(2, "abc"), None);
        assert_eq!(e.take(1, "abc"), Some(7));
        assert_eq!(e.take(1, "abc"), None);
    }

    #[test]
    fn the_oldest_are_forgotten_beyond_capacity() {
        let e = Elicitations::default();
        for i in 0..=CAPACITY {
            e.record(1, &i.to_string(), 1);
        }
        assert_eq!(e.take(1, "0"), None);
        assert_eq!(e.take(1, &CAPACITY.to_string()), Some(1));
    }
}
