//! Graceful drain, for rolling restarts behind a load balancer.
//!
//! On SIGTERM the instance starts draining: `/readyz` answers 503 at once
//! (so the load balancer stops sending new sessions), `initialize` and
//! requests on sessions are refused with 503 and `Retry-After` (a load
//! balancer that retries on 503 sends them to another instance, which
//! restores shared sessions), and the requests already in flight get up to
//! `[server] drain_timeout` to finish. Then the listener closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Whether the instance is draining, and the MCP requests still in flight.
#[derive(Default)]
pub struct Drain {
    draining: CancellationToken,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One MCP request in flight; counted until dropped (with its response body).
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Starts draining; idempotent.
    pub fn begin(&self) {
        if !self.draining.is_cancelled() {
            tracing::info!(
                in_flight = self.in_flight(),
                "draining: readiness is 503 and new requests go elsewhere"
            );
        }
        self.draining.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts one request until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Waits until no request is in flight, or `deadline` passed; true when
    /// everything finished.
    pub async fn settled(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

/// Drains when `signal` is cancelled, then cancels `stop` once the requests
/// in flight are done or `deadline` passed.
pub fn on_signal(
    drain: Arc<Drain>,
    signal: CancellationToken,
    stop: CancellationToken,
    deadline: Duration,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = signal.cancelled() => {}
            _ = stop.cancelled() => return,
        }
        drain.begin();
        if !drain.settled(deadline).await {
            tracing::warn!(
                in_flight = drain.in_flight(),
                ?deadline,
                "drain deadline passed with requests in flight; stopping anyway"
            );
        }
        stop.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_when_the_last_request_ends() {
        let drain = Arc::new(Drain::default());
        let a = drain.track();
        let b = drain.track();
        drain.begin();
        assert!(drain.is_draining());
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.settled(Duration::from_secs(10)).await }
        });
        drop(a);
        assert!(!waiter.is_finished());
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(drain.in_flight(), 0);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let drain = Arc::new(Drain::default());
        let _held = drain.track();
        assert!(!drain.settled(Duration::from_millis(20)).await);
    }
}
