//! A session's resource subscriptions: `resources/subscribe` reaches a
//! shared backend once for all sessions (a `per_session` backend once per
//! session), and `resources/unsubscribe` leaves it when the last one goes.

use std::sync::Arc;

use rmcp::{ErrorData, Peer, RoleServer};

use super::pipeline::{Target, wire};
use super::request::Req;
use super::session::FrontSession;
use crate::backend::Backend;
use crate::config::Isolation;

impl FrontSession {
    /// The resource's backend, if it accepts subscriptions.
    fn subscribable(&self, req: &Req, uri: &str) -> Result<(Arc<Backend>, String), ErrorData> {
        let (backend, own) = self.target(req, Target::Resource(uri))?;
        if !backend.supports_subscriptions() {
            return Err(ErrorData::invalid_params(
                format!(
                    "backend `{}` does not support resource subscriptions (for `{uri}`)",
                    backend.name()
                ),
                None,
            ));
        }
        Ok((backend, own))
    }

    pub(super) async fn add_subscription(
        &self,
        req: &Req,
        uri: &str,
        peer: &Peer<RoleServer>,
    ) -> Result<(), ErrorData> {
        let session = self.session()?.clone();
        let (shared, own) = self.subscribable(req, uri)?;
        let per_session = shared.config.isolation == Isolation::PerSession;
        let first = self.gateway.hub.subscribe(&session, uri);
        if first || per_session {
            let subscribed = match self.serving(shared, peer).await {
                Ok(backend) => backend.subscribe(own).await,
                Err(e) => Err(e),
            };
            if let Err(e) = subscribed {
                self.gateway.hub.unsubscribe(&session, uri);
                return Err(wire::call(e));
            }
        }
        Ok(())
    }

    pub(super) async fn remove_subscription(&self, req: &Req, uri: &str) -> Result<(), ErrorData> {
        let session = self.session()?.clone();
        let (shared, own) = self.target(req, Target::Resource(uri))?;
        let last = self.gateway.hub.unsubscribe(&session, uri);
        let backend = match shared.config.isolation {
            // Only a connection this session already has: never start one to unsubscribe.
            Isolation::PerSession => self
                .gateway
                .private
                .of_session(self.id)
                .into_iter()
                .find(|b| b.name() == shared.name()),
            Isolation::Shared => last.then_some(shared),
        };
        if let Some(backend) = backend {
            backend.unsubscribe(own).await.map_err(wire::call)?;
        }
        Ok(())
    }
}

/// A session's end: its resource subscriptions no other session holds are
/// dropped at their backends, its own `per_session` connections stopped, and
/// the backends' log floors recomputed.
impl Drop for FrontSession {
    fn drop(&mut self) {
        let orphaned = self.gateway.hub.unregister(self.id);
        let private = self.gateway.private.remove_session(self.id);
        if self.session.get().is_none() && private.is_empty() {
            // Never registered (rmcp also builds handlers only to look up a tool schema).
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let gateway = self.gateway.clone();
        // Ends after the last unsubscribe, the private connections' shutdown and the log level update.
        runtime.spawn(async move {
            for uri in orphaned {
                let routed = gateway.snapshot().route_uri(&uri);
                if let Some((backend, original)) = routed
                    && let Err(e) = backend.unsubscribe(original).await
                {
                    tracing::debug!(backend = %backend.name(), error = %e, "unsubscribe failed");
                }
            }
            futures::future::join_all(private.iter().map(|b| b.stop())).await;
            // The session may have been the one asking for the most verbose logs.
            gateway.apply_log_floor().await;
        });
    }
}
