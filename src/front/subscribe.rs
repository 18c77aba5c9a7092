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
