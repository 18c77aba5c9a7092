//! The one path every forwarded client request takes:
//! route → authorize → rewrite → forward → map.
//!
//! - **route**: the exposed name or URI → the mounted backend and the
//!   backend's own name ([`Target`], over the router's snapshot);
//! - **authorize**: the client's allow-list for that backend (and tool);
//! - **rewrite**: the backend's own name in the request, and the `_meta` we
//!   pass on ([`FrontSession::forwarded_meta`]);
//! - **forward**: to the backend that serves this session (a per-session
//!   connection where the backend is isolated), with progress, relays and
//!   cancellation;
//! - **map**: the backend's result back to exposed names; every failure
//!   becomes a wire error in [`wire`].

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::sync::Arc;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use super::parked::{Attached, Binding, Resumed, Running};
use super::request::Req;
use super::rounds::with_answers;
use super::session::FrontSession;
use crate::backend::{Backend, CallError, Origin, Sink};
pub(super) use crate::backend::{prefix_block, prefix_contents};
use crate::builtin::status::VIEW_META_KEY;
use crate::builtin::{
    ADMIN_META_KEY, AUTH_META_KEY, CLIENT_META_KEY, REQUEST_META_KEY, SESSION_META_KEY,
    SESSION_NAME_META_KEY,
};
use crate::config::TransportConfig;
use crate::coordinator::Visibility;
use crate::coordinator::calls::Parked;
use crate::router::Snapshot;

/// What a client request names.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    /// A resource URI or URI template.
    Resource(&'a str),
}

impl Target<'_> {
    /// The backend that owns the name, and the backend's own name for it.
    pub fn route(self, snapshot: &Snapshot) -> Result<(Arc<Backend>, String), ErrorData> {
        match self {
            Target::Tool(name) => snapshot
                .route_tool(name)
                .map(|(b, n)| (b, n.to_string()))
                .ok_or_else(|| wire::unknown("tool", name)),
            Target::Prompt(name) => snapshot
                .route_prompt(name)
                .map(|(b, n)| (b, n.to_string()))
                .ok_or_else(|| wire::unknown("prompt", name)),
            Target::Resource(uri) => snapshot
                .route_uri(uri)
                .ok_or_else(|| wire::unknown_resource(uri)),
        }
    }

    /// Whether the request's client may use it on `backend`.
    pub fn authorize(self, req: &Req, backend: &Backend) -> Result<(), ErrorData> {
        match self {
            Target::Tool(name) => req.allow_tool(backend.name(), name),
            Target::Prompt(name) => req.allow_backend(backend.name(), &format!("prompt `{name}`")),
            Target::Resource(uri) => {
                req.allow_backend(backend.name(), &format!("resource `{uri}`"))
            }
        }
    }

    /// Whether the request's client may see it in a list (no error text).
    pub fn visible(self, req: &Req, snapshot: &Snapshot) -> bool {
        match self.route(snapshot) {
            Ok((backend, _)) => self.authorize(req, &backend).is_ok(),
            Err(_) => false,
        }
    }
}

impl FrontSession {
    /// A list's items the client may see (each routed and checked against its allow-list).
    pub(super) fn visible<T>(
        &self,
        req: &Req,
        items: impl FnOnce(&Snapshot) -> Vec<T>,
        target: impl Fn(&T) -> Target<'_>,
    ) -> Vec<T> {
        let snapshot = self.gateway.snapshot();
        let mut items = items(&snapshot);
        if req.client.is_some() {
            items.retain(|item| target(item).visible(req, &snapshot));
        }
        items
    }

    /// What this session's client may see, for the coordinator.
    pub(super) fn visibility(req: &Req) -> Visibility {
        match req.client.clone() {
            Some(client) => Arc::new(move |backend: &str| client.may_use_backend(backend)),
            None => Arc::new(|_: &str| true),
        }
    }

    /// Route and authorize: the mounted backend and its own name for `target`.
    pub(super) fn target(
        &self,
        req: &Req,
        target: Target<'_>,
    ) -> Result<(Arc<Backend>, String), ErrorData> {
        let (backend, own) = target.route(&self.gateway.snapshot())?;
        req.routed(backend.name());
        target.authorize(req, &backend)?;
        Ok((backend, own))
    }

    /// The whole pipeline for one request. `build` gets the backend's own
    /// name and the `_meta` to pass on; `map` turns the backend's result into
    /// the answer, with the backend's prefix for rewriting names back.
    ///
    /// `mrtr` is what a request that may end with `InputRequired` carries
    /// for it (`tools/call`, `prompts/get`, `resources/read`): a 2026-07-28
    /// client's such request to a shared backend is run as a parked call.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay<T>(
        &self,
        req: &Req,
        context: &RequestContext<RoleServer>,
        target: Target<'_>,
        mrtr: Option<Mrtr>,
        build: impl FnOnce(String, Option<RequestMetaObject>) -> ClientRequest,
        map: impl FnOnce(&str, ServerResult) -> Option<T>,
    ) -> Result<T, Failure> {
        let (shared, own) = self.target(req, target).map_err(Failure::Refused)?;
        let parks = super::modern::is_modern(context)
            && shared.config.isolation == crate::config::Isolation::Shared;
        let (backend, outcome) = match mrtr {
            Some(mrtr) if parks => {
                // Boxed, as the other rare paths below: inline, their state
                // would be in every forwarded request's future (see `Req::run`).
                Box::pin(self.forward_parked(shared, own, mrtr, build, context, req)).await?
            }
            mrtr => {
                let mut request = build(own, self.forwarded_meta(context, &shared, req));
                if let Some(m) = mrtr.filter(|m| m.state.is_some() || m.responses.is_some()) {
                    // Not parked (a per_session backend): its own rounds pass as they are.
                    request = with_answers(request, m.responses.unwrap_or_default(), m.state);
                }
                self.forward(shared, request, context, req).await
            }
        };
        let mut result = outcome.map_err(Failure::Backend)?;
        super::modern::mark_complete(&mut result);
        map(&backend.config.prefix, result)
            .ok_or_else(|| Failure::Refused(wire::unexpected(&backend)))
    }

    /// Sends the request to the backend that serves this session for
    /// `shared`, and waits for its answer.
    pub(super) async fn forward(
        &self,
        shared: Arc<Backend>,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        req: &Req,
    ) -> (Arc<Backend>, Result<ServerResult, CallError>) {
        // A shared backend serves every session; the per-session lookup
        // (which may start a connection) is boxed, as the rare paths below.
        let backend = if shared.config.isolation == crate::config::Isolation::PerSession {
            match Box::pin(self.serving(shared.clone(), &context.peer)).await {
                Ok(b) => b,
                Err(e) => return (shared, Err(e)),
            }
        } else {
            shared.clone()
        };
        let origin = Origin {
            session: self.id,
            sink: Sink::Peer(&context.peer),
            progress_token: context.meta.get_progress_token(),
            cancel: &req.cancel,
            cancel_reason: None,
            // Read (a copy) only for the backends that are told them, or
            // that may answer with a task the client must be able to take.
            client_capabilities: (backend.speaks_2026() || backend.relays_tasks())
                .then(|| context.client_capabilities())
                .flatten(),
        };
        // A 2026-07-28 backend asks with InputRequired; an initialize-era client answers requests.
        let rounds =
            (backend.speaks_2026() && !super::modern::is_modern(context)).then(|| request.clone());
        let result = match (backend.request(request, origin).await, rounds) {
            (Ok(ServerResult::InputRequiredResult(asked)), Some(request)) => {
                Box::pin(self.answer_rounds(&backend, request, asked, context, req)).await
            }
            (result, _) => result,
        };
        (backend, result)
    }

    /// A 2026-07-28 client's request as a parked call: a retry (with a
    /// `requestState`) continues its call; a first request starts one. Either
    /// way the request waits for the call's result or its next questions.
    async fn forward_parked(
        &self,
        shared: Arc<Backend>,
        own: String,
        mrtr: Mrtr,
        build: impl FnOnce(String, Option<RequestMetaObject>) -> ClientRequest,
        context: &RequestContext<RoleServer>,
        req: &Req,
    ) -> Result<(Arc<Backend>, Result<ServerResult, CallError>), Failure> {
        let binding = Binding::of(req.client_id(), &mrtr.what);
        let ttl = self.gateway.server().relay_timeout;
        let to = Attached {
            session: self.id,
            peer: &context.peer,
            progress_token: context.meta.get_progress_token(),
            cancel: &req.cancel,
        };
        let resumed = match &mrtr.state {
            Some(state) => Some(
                self.parked
                    .resume(state, mrtr.responses.as_ref(), &binding, ttl)
                    .map_err(Failure::Refused)?,
            ),
            None => None,
        };
        let (running, call, round) = match resumed {
            Some(Resumed::Parked(running, call, round)) => (running, call, round),
            Some(Resumed::Backend(state)) => {
                // The backend's own round: the request again, with the client's answers.
                let request = build(own, self.forwarded_meta(context, &shared, req));
                let request = with_answers(request, mrtr.responses.unwrap_or_default(), state);
                let running = Running::start(shared, request, self.id, self.parked_client(context));
                (running, self.parked.new_call(), 0)
            }
            None if mrtr.responses.is_some() => {
                return Err(Failure::Refused(ErrorData::invalid_params(
                    "inputResponses without requestState: a retry echoes the requestState of the InputRequired it answers",
                    None,
                )));
            }
            None => {
                let request = build(own, self.forwarded_meta(context, &shared, req));
                let running = Running::start(shared, request, self.id, self.parked_client(context));
                (running, self.parked.new_call(), 0)
            }
        };
        let driven = self
            .parked
            .drive(running, call, round, binding, &to, ttl)
            .await;
        Ok((driven.backend, driven.result))
    }

    /// What a parked call keeps of its client: the capabilities its request declared.
    fn parked_client(&self, context: &RequestContext<RoleServer>) -> Parked {
        Parked {
            capabilities: context.client_capabilities().unwrap_or_default(),
            client_name: self.session.get().map_or_else(
                || "2026-07-28 client".to_string(),
                |s| s.client_name.clone(),
            ),
        }
    }

    /// The backend that serves this session for `shared`: itself, or this
    /// session's own connection when it is isolated per session (toward
    /// which we mirror what this client can do).
    pub(super) async fn serving(
        &self,
        shared: Arc<Backend>,
        peer: &rmcp::Peer<RoleServer>,
    ) -> Result<Arc<Backend>, CallError> {
        self.gateway
            .resolve(shared, self.id, || {
                peer.peer_info()
                    .map(|i| i.capabilities.clone())
                    .unwrap_or_default()
            })
            .await
    }

    /// The `_meta` keys worth passing on: everything but protocol negotiation
    /// (which belongs to our own connection with the backend), the progress
    /// token (rmcp assigns its own and we map it back) and our own keys, which
    /// only we set: built-in sets learn the calling session and client from them.
    pub(super) fn forwarded_meta(
        &self,
        ctx: &RequestContext<RoleServer>,
        to: &Backend,
        req: &Req,
    ) -> Option<RequestMetaObject> {
        let mut meta = RequestMetaObject::new();
        for (k, v) in ctx.meta.0.0.iter() {
            if k == "progressToken"
                || k.starts_with("io.modelcontextprotocol/")
                || k.starts_with("io.manifold/")
            {
                continue;
            }
            meta.0.0.insert(k.clone(), v.clone());
        }
        // Every backend learns the correlation id, so its own logs can be joined with ours.
        meta.0.0.insert(
            crate::audit::CORRELATION_META_KEY.into(),
            req.correlation_id.to_string().into(),
        );
        if matches!(to.config.transport, TransportConfig::Builtin { .. }) {
            meta.0.0.insert(SESSION_META_KEY.into(), self.id.into());
            meta.0
                .0
                .insert(SESSION_NAME_META_KEY.into(), (*req.session_name).into());
            meta.0
                .0
                .insert(REQUEST_META_KEY.into(), ctx.id.to_string().into());
            let snapshot = self.gateway.snapshot();
            if let Some(view) = req.view_meta(snapshot.backends.keys().map(String::as_str)) {
                meta.0.0.insert(VIEW_META_KEY.into(), view);
            }
            // An authenticated id is the identity; a self-declared client name only a hint.
            if let Some(id) = req.client_id() {
                meta.0.0.insert(AUTH_META_KEY.into(), id.into());
                meta.0.0.insert(CLIENT_META_KEY.into(), id.into());
                if req.client.as_ref().is_some_and(|c| c.admin) {
                    meta.0.0.insert(ADMIN_META_KEY.into(), true.into());
                }
            } else if let Some(s) = self.session.get() {
                meta.0
                    .0
                    .insert(CLIENT_META_KEY.into(), s.client_name.clone().into());
            }
        }
        (!meta.0.0.is_empty()).then_some(meta)
    }
}

/// What a request that may end with `InputRequired` carries for it, taken
/// off before it is forwarded (a backend never sees the gateway's rounds).
pub(super) struct Mrtr {
    /// The `requestState` of the round a retry answers.
    pub state: Option<String>,
    pub responses: Option<InputResponses>,
    /// What binds a parked call to its request: method, exposed name or URI,
    /// and arguments (`Null` for a request that cannot be parked).
    pub what: serde_json::Value,
}

/// Why a forwarded request has no result.
pub(super) enum Failure {
    /// Refused before reaching a backend, or an unusable answer: already a wire error.
    Refused(ErrorData),
    /// The backend could not answer (or answered with a JSON-RPC error).
    Backend(CallError),
}

/// Every JSON-RPC error a session answers with is made here.
pub(super) mod wire {
    use rmcp::ErrorData;
    use rmcp::model::{CallToolResult, ContentBlock};

    use super::Failure;
    use crate::backend::{Backend, CallError};

    pub fn unknown(kind: &str, name: &str) -> ErrorData {
        ErrorData::invalid_params(format!("unknown {kind} `{name}`"), None)
    }

    pub fn unknown_resource(uri: &str) -> ErrorData {
        ErrorData::resource_not_found(format!("unknown resource `{uri}`"), None)
    }

    pub fn unexpected(backend: &Backend) -> ErrorData {
        ErrorData::internal_error(
            format!(
                "backend `{}` sent an unexpected response type",
                backend.name()
            ),
            None,
        )
    }

    pub fn not_initialized() -> ErrorData {
        ErrorData::invalid_request("the session is not initialized", None)
    }

    pub fn other_client() -> ErrorData {
        ErrorData::invalid_request(
            "this session was initialized by another client; initialize a new session",
            None,
        )
    }

    /// For requests other than `tools/call`: a failed backend is a JSON-RPC
    /// error; a backend's own JSON-RPC error passes through unchanged.
    pub fn rpc(failure: Failure) -> ErrorData {
        match failure {
            Failure::Refused(e) | Failure::Backend(CallError::Rpc(e)) => e,
            Failure::Backend(other) => ErrorData::internal_error(other.to_string(), None),
        }
    }

    pub fn call(e: CallError) -> ErrorData {
        rpc(Failure::Backend(e))
    }

    /// For `tools/call`: a backend that is down, slow or busy is a tool
    /// error the model can read; refusals and JSON-RPC errors stay errors.
    pub fn tool(failure: Failure) -> Result<CallToolResult, ErrorData> {
        match failure {
            Failure::Backend(CallError::Rpc(e)) | Failure::Refused(e) => Err(e),
            Failure::Backend(e) => {
                tracing::debug!(error = %e, "call failed");
                Ok(CallToolResult::error(vec![ContentBlock::text(
                    e.to_string(),
                )]))
            }
        }
    }
}
