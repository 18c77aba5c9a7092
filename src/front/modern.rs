//! Clients of the 2026-07-28 protocol, served next to the initialize-based
//! ones on the same endpoint (issue 12).
//!
//! That protocol has no session: every request carries its own protocol
//! version, client capabilities and log level in `_meta`, and over HTTP rmcp
//! runs a fresh [`FrontSession`] per request. So a request registers itself
//! with the coordinator for its own duration ([`Mode::Request`]): its
//! relays check the capabilities it declared, and only log messages its call
//! caused reach it, at the level it asked for (none when it named no level). List changes and resource
//! updates travel on `subscriptions/listen` streams instead, registered as
//! [`Mode::Listen`] sessions and fed by the same coordinator as the old GET
//! streams, filtered by the client's allow-list. Lists carry cache hints.

#![allow(deprecated)] // resources/subscribe is the ≤2025-11-25 wire protocol the listen stream maps onto

use std::sync::Arc;

use rmcp::model::*;
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer};

use super::pipeline::{Target, wire};
use super::policy::Client;
use super::request::Req;
use super::session::FrontSession;
use crate::coordinator::{ListKinds, Mode, Visibility};

tokio::task_local! {
    /// The authenticated client of the HTTP request being handed to rmcp. rmcp
    /// builds a stateless request's handler in that task, before any context
    /// exists, so the handler learns its client here; needed where rmcp asks
    /// without a context (`accepted_subscription_filter`).
    pub static CALLER: Option<Arc<Client>>;
}

/// The client of the request rmcp is building a handler for, if any.
pub fn current_caller() -> Option<Arc<Client>> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

/// Whether this request speaks 2026-07-28 (or later): per-request `_meta`.
pub fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.meta
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// `ttlMs` and `cacheScope` for an aggregated list. Lists change whenever a
/// backend announces it, restarts, or the config is reloaded, none of which
/// can be foreseen: so a list is stale at once (`ttlMs: 0`) and clients keep
/// it fresh through `subscriptions/listen`. Without auth every client sees
/// the same lists (`public`); with auth they depend on the caller (`private`).
pub fn cache_hints(req: &Req) -> (u64, CacheScope) {
    let scope = if req.client.is_some() {
        CacheScope::Private
    } else {
        CacheScope::Public
    };
    (0, scope)
}

impl FrontSession {
    /// A tool's definition, for rmcp's check of `Mcp-Param-*` headers
    /// against the tool's input schema.
    pub(super) fn tool_definition(&self, name: &str) -> Option<Tool> {
        let (backend, _) = self.gateway.snapshot().route_tool(name)?;
        let catalog = backend.catalog();
        catalog.tools.iter().find(|t| t.name == name).cloned()
    }

    /// Registers a 2026-07-28 request with the coordinator (once per handler;
    /// over stdio the one handler serves every request, and each request
    /// updates the log level it asked for).
    pub(super) fn register_request(&self, ctx: &RequestContext<RoleServer>, req: &Req) {
        // Only requests that reach a backend (whose events must find their way
        // back) register. Lists are answered from the catalogs; over stdio rmcp
        // answers `server/discover` with a peer that cannot reach the client; a
        // listen stream registers itself, as a listener.
        let forwards = matches!(
            req.method(),
            "tools/call"
                | "prompts/get"
                | "resources/read"
                | "completion/complete"
                | "logging/setLevel"
        );
        if !forwards || !is_modern(ctx) {
            return;
        }
        let session = self.session.get_or_init(|| {
            let name = req.client_id().map(String::from).unwrap_or_else(|| {
                ctx.client_info()
                    .map(|i| i.name)
                    .unwrap_or_else(|| "2026-07-28 client".into())
            });
            self.gateway.hub.register(
                (self.id, self.name().clone()),
                Mode::Request,
                ctx.peer.clone(),
                ctx.client_capabilities().unwrap_or_default(),
                name,
                Self::visibility(req),
                self.gateway.snapshot().list_hashes(),
            )
        });
        match ctx.meta.log_level() {
            Some(level) => session.set_log_level(level),
            None => session.silence_logs(),
        }
    }

    /// `server/discover`: our versions, capabilities, server info and
    /// instructions, as much of them as this client may see.
    pub(super) fn discover_for(&self, req: &Req) -> DiscoverResult {
        let mut info = rmcp::ServerHandler::get_info(self);
        let visible = |b: &str| req.sees_backend(b);
        info.instructions = Some(self.gateway.instructions(&visible));
        info.server_info = self.gateway.implementation(&visible);
        DiscoverResult::from_server_info(ProtocolVersion::KNOWN_VERSIONS.to_vec(), info)
    }

    /// What a `subscriptions/listen` filter gets: the list kinds, and the
    /// resource URIs that route to a backend supporting subscriptions and
    /// that this client may use.
    pub(super) fn accepted_filter(&self, requested: &SubscriptionFilter) -> SubscriptionFilter {
        let snapshot = self.gateway.snapshot();
        let mut accepted = requested.clone();
        if let Some(uris) = accepted.resource_subscriptions.as_mut() {
            uris.retain(|uri| {
                snapshot.route_uri(uri).is_some_and(|(b, _)| {
                    b.supports_subscriptions()
                        && self
                            .caller
                            .as_ref()
                            .is_none_or(|c| c.may_use_backend(b.name()))
                })
            });
        }
        accepted
    }

    /// Runs one listen stream: a coordinator session that takes the list
    /// changes and resource updates the stream accepted, until the client
    /// cancels or goes away (rmcp cancels the request then). Its
    /// subscriptions are released when it ends, as a legacy session's are.
    pub(super) async fn listen_stream(&self, sub: SubscriptionContext) -> Result<(), ErrorData> {
        let ctx = sub.request_context();
        let req = self.req("subscriptions/listen", ctx);
        let accepted = sub.accepted().clone();
        let lists = ListKinds {
            tools: accepted.tools_list_changed == Some(true),
            prompts: accepted.prompts_list_changed == Some(true),
            resources: accepted.resources_list_changed == Some(true),
        };
        let visible: Visibility = Self::visibility(&req);
        // Its own id: over stdio the connection's requests keep theirs.
        let id = self.gateway.hub.new_session_id();
        let session = self.gateway.hub.register(
            (id, self.gateway.hub.mint_name()),
            Mode::Listen {
                subscription: ctx.id.clone(),
                lists,
            },
            ctx.peer.clone(),
            ctx.client_capabilities().unwrap_or_default(),
            req.client_id().map(String::from).unwrap_or_else(|| {
                ctx.client_info()
                    .map(|i| i.name)
                    .unwrap_or_else(|| "2026-07-28 listener".into())
            }),
            visible,
            self.gateway.snapshot().list_hashes(),
        );
        let subscribed = self.subscribe_all(&req, &session, &accepted).await;
        if subscribed.is_ok() {
            sub.cancelled().await;
        }
        // Ended (or failed to start): the URIs nobody else listens to are released at their backend.
        for uri in self.gateway.hub.unregister(id) {
            if let Some((backend, own)) = self.gateway.snapshot().route_uri(&uri)
                && let Err(e) = backend.unsubscribe(own).await
            {
                tracing::debug!(backend = %backend.name(), error = %e, "unsubscribe failed");
            }
        }
        subscribed
    }

    /// Subscribes a listen stream to its accepted URIs (the backend once per URI).
    async fn subscribe_all(
        &self,
        req: &Req,
        session: &crate::coordinator::Session,
        accepted: &SubscriptionFilter,
    ) -> Result<(), ErrorData> {
        for uri in accepted.resource_subscriptions.iter().flatten() {
            let Ok((backend, own)) = self.target(req, Target::Resource(uri)) else {
                continue;
            };
            if self.gateway.hub.subscribe(session, uri)
                && let Err(e) = backend.subscribe(own).await
            {
                self.gateway.hub.unsubscribe(session, uri);
                return Err(wire::call(e));
            }
        }
        Ok(())
    }
}

/// Marks a backend's result `resultType: "complete"`. A backend on an older
/// protocol sends none, and 2026-07-28 clients require it; rmcp strips it
/// again for older clients.
pub(super) fn mark_complete(result: &mut ServerResult) {
    let result_type = match result {
        ServerResult::CompleteResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::CallToolResult(r) => &mut r.result_type,
        _ => return,
    };
    result_type.get_or_insert(ResultType::COMPLETE);
}

/// An aggregated list result that carries cache hints.
pub(super) trait Hinted: Sized {
    fn hinted_with(self, ttl_ms: u64, scope: CacheScope) -> Self;
}

macro_rules! hinted {
    ($($t:ty),*) => {$(
        impl Hinted for $t {
            fn hinted_with(self, ttl_ms: u64, scope: CacheScope) -> Self {
                self.with_ttl_ms(ttl_ms).with_cache_scope(scope)
            }
        }
    )*};
}

hinted!(
    ListToolsResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult
);

impl FrontSession {
    /// The list with its cache hints for a 2026-07-28 request; as it is for
    /// older ones, whose protocol has none.
    pub(super) fn hinted<T: Hinted>(
        &self,
        req: &Req,
        ctx: &RequestContext<RoleServer>,
        list: T,
    ) -> T {
        if !is_modern(ctx) {
            return list;
        }
        let (ttl, scope) = cache_hints(req);
        list.hinted_with(ttl, scope)
    }
}
