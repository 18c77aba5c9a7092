//! What a backend sends during a call is routed as the connection reads
//! it, in order, before the answer that follows it.
//!
//! rmcp's client reads a connection's messages in order, but hands each
//! notification to its handler on a task of its own, while an answer
//! completes the waiting request at once. Routed by those handlers,
//! progress could overtake progress (and be coalesced away as not
//! advancing), and progress or a log message sent just before the answer
//! could be handled after the call was unregistered: the progress was
//! lost, and the log message, no longer tied to a call, went to every
//! session allowed to see the backend instead of the caller alone.
//!
//! [`Ordered`] wraps the connection's transport. A progress notification is
//! routed to its call as it arrives and marked [`Routed`] so the handler
//! skips it (rmcp still sees it: it resets the request's timeout); a log
//! message is attributed to its caller as it arrives ([`LogCaller`]) and
//! delivered by the handler. Both wait for the routing gate, which a call
//! holds for writing while it is sent and registered; the message being
//! routed is held in the wrapper meanwhile, so a receive that rmcp drops
//! (it does when it has something to send) loses nothing.

use std::sync::Arc;

use super::BackendRef;
use super::extras::ListTap;
use rmcp::RoleClient;
use rmcp::model::{ServerJsonRpcMessage, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

/// The session a log message was attributed to as it arrived (`None`: no
/// call's, so every session allowed to see the backend may get it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogCaller(pub Option<u64>);

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
    /// A message read and waiting for the routing gate.
    held: Option<RxJsonRpcMessage<RoleClient>>,
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
            held: None,
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

    /// Cancel-safe: the inner transport's receive is, and a message waiting
    /// for the routing gate stays in `held` until the next call.
    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = match self.held.take() {
            Some(message) => message,
            None => self.inner.receive().await?,
        };
        if !routed_on_arrival(&message) {
            return Some(message);
        }
        let Some(backend) = self.backend.upgrade() else {
            return Some(message);
        };
        let message = self.held.insert(message);
        route_on_arrival(&backend, message).await;
        self.held.take()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Routes a progress notification to its call and attributes a log message
/// to its caller, marking each so it is not routed again (a call POSTed by
/// the gateway routes what its stream brings before rmcp's client sees it).
pub(super) async fn route_on_arrival(backend: &super::Backend, message: &mut ServerJsonRpcMessage) {
    if !routed_on_arrival(message) {
        return;
    }
    let _gate = backend.routing_gate.read().await;
    if let ServerJsonRpcMessage::Notification(n) = message {
        match &mut n.notification {
            ServerNotification::ProgressNotification(p) => {
                backend.route_progress(p.params.clone());
                p.extensions.insert(Routed);
            }
            ServerNotification::LoggingMessageNotification(l) => {
                l.extensions.insert(LogCaller(backend.log_caller()));
            }
            _ => {}
        }
    }
}

/// Whether `message` is routed as it arrives: progress and log messages
/// not routed yet.
fn routed_on_arrival(message: &RxJsonRpcMessage<RoleClient>) -> bool {
    let ServerJsonRpcMessage::Notification(n) = message else {
        return false;
    };
    match &n.notification {
        ServerNotification::ProgressNotification(p) => p.extensions.get::<Routed>().is_none(),
        ServerNotification::LoggingMessageNotification(l) => {
            l.extensions.get::<LogCaller>().is_none()
        }
        _ => false,
    }
}
