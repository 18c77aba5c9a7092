//! Progress a backend sends reaches the client in the order it was sent,
//! and before the answer that follows it.
//!
//! rmcp's client reads a connection's messages in order, but hands each
//! notification to its handler on a task of its own, while an answer
//! completes the waiting request at once. Routed by those handlers,
//! progress could overtake progress (and be coalesced away as not
//! advancing), and under load the request could return, and its call be
//! unregistered, before the progress sent just before its answer was
//! routed: that progress was lost.
//!
//! [`Ordered`] wraps the connection's transport and routes each progress
//! notification to its call as it arrives, in order, marking it [`Routed`]
//! so the handler skips it; rmcp still sees it (it resets the request's
//! timeout). Only when a request is being registered at that moment (the
//! routing gate is held for writing, and a receive must not wait) is the
//! notification left to the handler, counted as pending for its token
//! ([`ProgressOrder`]); the answer then waits ([`ProgressOrder::settle`])
//! until the handler ran.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::BackendRef;
use super::extras::ListTap;
use rmcp::RoleClient;
use rmcp::model::{ProgressToken, ServerJsonRpcMessage, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::Notify;

/// Progress notifications received and not yet handled, by the backend's token.
#[derive(Default)]
pub(crate) struct ProgressOrder {
    pending: Mutex<HashMap<ProgressToken, u32>>,
    handled: Notify,
}

impl ProgressOrder {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, u32>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more notification for `token` arrived (called in arrival order).
    fn received(&self, token: &ProgressToken) {
        *self.lock().entry(token.clone()).or_default() += 1;
    }

    /// Marks one notification for `token` handled when the guard drops.
    pub(crate) fn handling(self: &Arc<Self>, token: &ProgressToken) -> Handling {
        Handling {
            order: self.clone(),
            token: token.clone(),
        }
    }

    /// Waits until every notification for `token` received so far is
    /// handled, at most `limit` (a handler stuck elsewhere must not hold an
    /// answer up).
    pub(crate) async fn settle(&self, token: &ProgressToken, limit: Duration) {
        let wait = async {
            loop {
                let handled = self.handled.notified();
                tokio::pin!(handled);
                handled.as_mut().enable();
                if !self.lock().contains_key(token) {
                    return;
                }
                handled.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// Held by a progress handler; marks its notification handled on drop.
pub(crate) struct Handling {
    order: Arc<ProgressOrder>,
    token: ProgressToken,
}

impl Drop for Handling {
    fn drop(&mut self) {
        {
            let mut pending = self.order.lock();
            if let Some(n) = pending.get_mut(&self.token) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&self.token);
                }
            }
        }
        self.order.handled.notify_waiters();
    }
}

/// Marks a progress notification the transport already routed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routed;

/// A backend transport that routes progress notifications as they arrive.
/// It also shows each message it sends to the backend's [`ListTap`], which
/// the connection's raw reader feeds (a new connection starts it afresh).
pub(crate) struct Ordered<T> {
    inner: T,
    backend: BackendRef,
    tap: Option<Arc<ListTap>>,
}

impl<T> Ordered<T> {
    pub(crate) fn new(inner: T, backend: BackendRef) -> Self {
        let tap = backend.upgrade().map(|b| b.list_tap.clone());
        if let Some(tap) = &tap {
            tap.reset();
        }
        Self {
            inner,
            backend,
            tap,
        }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Ordered<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let Some(tap) = &self.tap {
            tap.sent(&item);
        }
        self.inner.send(item)
    }

    /// Cancel-safe as the inner transport is: rmcp drops this future when
    /// it has something to send, so nothing awaits after a message is taken.
    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let mut message = self.inner.receive().await?;
        if let ServerJsonRpcMessage::Notification(n) = &mut message
            && let ServerNotification::ProgressNotification(p) = &mut n.notification
            && let Some(backend) = self.backend.upgrade()
        {
            match backend.routing_gate.try_read() {
                Ok(_gate) => {
                    backend.route_progress(p.params.clone());
                    p.extensions.insert(Routed);
                }
                Err(_) => backend.progress_order.received(&p.params.progress_token),
            }
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    #[tokio::test]
    async fn settle_waits_for_the_handlers_of_its_own_token_only() {
        let order = Arc::new(ProgressOrder::default());
        let mine = ProgressToken(NumberOrString::Number(1));
        let other = ProgressToken(NumberOrString::Number(2));
        order.received(&mine);
        order.received(&other);
        let handler = order.handling(&mine);
        let _stuck = order.handling(&other);
        let waiting = tokio::spawn({
            let (order, mine) = (order.clone(), mine.clone());
            async move { order.settle(&mine, Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a handler is still pending");
        drop(handler);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("settled once its token's handler ran")
            .unwrap();
        // Bounded however long another handler takes.
        let started = std::time::Instant::now();
        order.settle(&other, Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
