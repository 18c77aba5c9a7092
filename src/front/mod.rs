//! The client-facing side: HTTP (and stdio) serving of one MCP session per client.
//!
//! HTTP requests go through [`stack`] (trace, metrics, origin, auth, body,
//! scope, limits; one layer per file in [`layers`]) to [`routes`], and MCP messages
//! from there to rmcp, or, for requests of sessions held here, straight to the
//! session's handler (`direct.rs`), one [`FrontSession`] per client, whose forwarded
//! requests all take the path of `pipeline.rs`. [`policy`] holds the auth and
//! limits in force (it follows reloads as a `ConfigListener`), with
//! [`oauth`] for `[auth.oauth]` access tokens; [`reject`] turns refusals
//! into responses.

mod audit;
pub mod conn;
pub mod console;
mod direct;
pub mod drain;
pub mod execute;
pub mod http;
pub mod identity;
pub mod invoke;
mod json_reply;
pub mod layers;
mod listed;
mod modern;
pub mod oauth;
mod params;
pub mod parked;
mod pipeline;
pub mod policy;
pub mod reject;
mod request;
mod rounds;
pub mod routes;
mod session;
pub mod sessions;
pub mod stack;
pub mod stdio;
mod subscribe;
mod tasks;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use listed::FrontService;
pub use policy::Policy;
pub use session::FrontSession;

use crate::gateway::Gateway;
use crate::reload::Reloader;

/// What the front serves with: the running gateway, the clients' auth and
/// limits, and the reloader behind `POST /admin/reload`.
#[derive(Clone)]
pub struct Front {
    pub gateway: Arc<Gateway>,
    pub policy: Arc<Policy>,
    pub reloader: Arc<Reloader>,
    /// Cancelled when the server shuts down; ends long-lived responses of
    /// our own (the console's push stream). `http::serve` sets it.
    pub shutdown: CancellationToken,
    /// Draining for a restart: readiness 503, requests refused, in-flight counted.
    pub drain: Arc<drain::Drain>,
    /// `[sessions]` as it was at start (it does not follow reloads).
    pub sessions: Arc<crate::config::SessionsConfig>,
    /// 2026-07-28 clients' calls waiting for their answers (ADR 0015).
    pub parked: Arc<parked::ParkedCalls>,
}

impl Front {
    /// A front for this reloader's gateway; `policy` follows its reloads.
    pub fn new(
        reloader: Arc<Reloader>,
        policy: Arc<Policy>,
        sessions: crate::config::SessionsConfig,
    ) -> Self {
        reloader.listen(policy.clone());
        let gateway = reloader.gateway().clone();
        Self {
            parked: Arc::new(parked::ParkedCalls::new(gateway.hub.clone())),
            gateway,
            policy,
            reloader,
            shutdown: CancellationToken::new(),
            drain: Arc::default(),
            sessions: Arc::new(sessions),
        }
    }

    /// A handler for one new client session.
    pub fn session(&self) -> FrontSession {
        FrontSession::new(
            self.gateway.clone(),
            self.policy.clone(),
            self.parked.clone(),
            self.reloader.clone(),
        )
    }

    /// A handler for an HTTP session of `sessions`: it tells the table at
    /// `initialize`, so that the direct path can call it.
    pub(crate) fn http_session(&self, sessions: &Arc<sessions::Sessions>) -> Arc<FrontSession> {
        Arc::new_cyclic(|me| {
            let mut session = self.session();
            session.attach = Some((me.clone(), sessions.clone()));
            session
        })
    }
}
