//! Step-up authorization for OAuth tokens: a `tools/call` naming a tool the
//! caller's rules do not give it, but that a scope would, is answered 403
//! with `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`
//! (MCP authorization, "Scope Challenge Handling"), so the client can ask
//! its user for that scope and retry. Every other request passes: a call
//! no scope would allow gets the session's JSON-RPC "not allowed" error
//! like a static token's, and static tokens never reach this check.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{Request, Response};
use tower::{Layer, Service};

use super::{Caller, OAuthToken, Rpc};
use crate::front::oauth::metadata;
use crate::front::policy::Grant;
use crate::front::reject::{Body, Rejection};
use crate::gateway::Gateway;

#[derive(Clone)]
pub struct ScopeLayer {
    gateway: Arc<Gateway>,
}

impl ScopeLayer {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = Scope<S>;
    fn layer(&self, inner: S) -> Scope<S> {
        Scope {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Scope<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

impl<S> Scope<S> {
    /// The refusal for a `tools/call` that a scope the token lacks would allow.
    fn step_up<B>(&self, req: &Request<B>) -> Option<Rejection> {
        let token = req.extensions().get::<OAuthToken>()?;
        let Caller(client) = req.extensions().get::<Caller>()?;
        let rpc = req.extensions().get::<Rpc>()?;
        let tool = rpc
            .name
            .as_deref()
            .filter(|_| rpc.method.as_deref() == Some("tools/call"))?;
        let (backend, _) = self.gateway.snapshot().route_tool(tool)?;
        let backend = backend.name();
        if client.may_call_tool(backend, tool) {
            return None;
        }
        let scope = token.oauth.step_up(&token.scopes, |r| {
            r.grants_use()
                && Grant::new(r.backends.clone(), r.tools.clone()).allows_tool(backend, tool)
        })?;
        let why = format!("tool `{tool}` of backend `{backend}` needs more scope: {scope}");
        tracing::info!(client = %client.id, tool, "tools/call refused: insufficient_scope");
        Some(Rejection::Forbidden {
            challenge: Some(metadata::insufficient_scope(
                &token.oauth.config,
                &scope,
                &why,
            )),
            reason: why,
        })
    }
}

impl<S, B> Service<Request<B>> for Scope<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.step_up(&req) {
            Some(refusal) => futures::future::ready(Ok(refusal.into_response())).boxed(),
            None => self.inner.call(req).boxed(),
        }
    }
}
