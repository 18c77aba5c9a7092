//! Bearer-token authentication. With `[auth]` tokens configured, every
//! request but the probes needs `Authorization: Bearer <token>`; the client
//! the token belongs to goes into the request extensions ([`Caller`]) for
//! the limits and the session's allow-lists. A missing or wrong token is a
//! 401 with `WWW-Authenticate: Bearer realm="manifold"`.
//!
//! The `Authorization` header is removed once checked, so no later layer,
//! rmcp, or anything that logs request parts can ever print a token.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{Request, Response, header};
use tower::{Layer, Service};

use super::{Caller, RemoteAddr, RequestSpan, Route};
use crate::front::policy::Policy;
use crate::front::reject::{Body, Rejection};

#[derive(Clone)]
pub struct AuthLayer {
    policy: Arc<Policy>,
    /// Refusals are audit events (`log_type = "internal"`).
    audit: crate::audit::Audit,
}

impl AuthLayer {
    pub fn new(policy: Arc<Policy>, audit: crate::audit::Audit) -> Self {
        Self { policy, audit }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            policy: self.policy.clone(),
            audit: self.audit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    policy: Arc<Policy>,
    audit: crate::audit::Audit,
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<S, B> Service<Request<B>> for Auth<S>
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let auth = self.policy.auth();
        if !auth.enabled() || Route::get(&req).is_probe() {
            req.headers_mut().remove(header::AUTHORIZATION);
            return self.inner.call(req).boxed();
        }
        let presented = bearer(&req);
        let client = presented.and_then(|t| auth.authenticate(t));
        let Some(client) = client else {
            let remote = req
                .extensions()
                .get::<RemoteAddr>()
                .map(|r| r.0.to_string());
            let why = if presented.is_some() {
                "unknown bearer token"
            } else {
                "no bearer token"
            };
            tracing::warn!(
                remote = remote.as_deref().unwrap_or("?"),
                reason = why,
                "request refused: unauthorized"
            );
            // Never the presented token: only where it came from and why it failed.
            self.audit.event(
                "warning",
                "auth_refused",
                "request refused: unauthorized",
                serde_json::json!({
                    "remote": remote,
                    "reason": why,
                    "path": req.uri().path(),
                    "correlation_id": req.extensions().get::<super::RequestId>().map(|r| r.0.to_string()),
                    "status": "denied",
                }),
            );
            return futures::future::ready(Ok(Rejection::Unauthorized.into_response())).boxed();
        };
        req.headers_mut().remove(header::AUTHORIZATION);
        if let Some(span) = req.extensions().get::<RequestSpan>() {
            span.0.record("client", &*client.id);
        }
        req.extensions_mut().insert(Caller(client));
        self.inner.call(req).boxed()
    }
}
