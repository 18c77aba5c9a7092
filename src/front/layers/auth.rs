//! Bearer-token authentication. With `[auth]` tokens configured, every
//! request but the probes and the console's static page (`/ui`; its data
//! comes from `/ui/api/*`, which is not public) needs `Authorization:
//! Bearer <token>`; the client the token belongs to goes into the request
//! extensions ([`Caller`]) for the limits and the session's allow-lists. A missing or wrong token is a
//! 401 with `WWW-Authenticate: Bearer realm="manifold"`.
//!
//! The `Authorization` header is removed once checked, so no later layer,
//! rmcp, or anything that logs request parts can ever print a token.
//!
//! A session belongs to the client whose token opened it: a request that
//! names a session (`Mcp-Session-Id`, any method: POST, GET, DELETE) with
//! another token is answered 404, as if the session did not exist, before
//! rmcp sees it. `/admin/*` needs a token marked `admin = true` (403 else).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{Method, Request, Response, StatusCode, header};
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

/// The MCP session header (rmcp's name for it).
const HEADER_SESSION_ID: &str = "mcp-session-id";

/// `/admin` and everything under it needs an admin token.
fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// The session a request names, if any.
fn session_id<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(HEADER_SESSION_ID)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
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
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let auth = self.policy.auth();
        if !auth.enabled() || Route::get(&req).is_public() {
            req.headers_mut().remove(header::AUTHORIZATION);
            return self.inner.call(req).boxed();
        }
        let presented = bearer(&req);
        let Some(client) = presented.and_then(|t| auth.authenticate(t)) else {
            let refusal = self.unauthorized(&req, presented.is_some());
            return futures::future::ready(Ok(refusal)).boxed();
        };
        req.headers_mut().remove(header::AUTHORIZATION);
        if let Some(span) = req.extensions().get::<RequestSpan>() {
            span.0.record("client", &*client.id);
        }
        if is_admin_path(req.uri().path()) && !client.admin {
            tracing::warn!(client = %client.id, "admin request refused: not an admin");
            let refusal = Rejection::NotAdmin(client.id.to_string());
            return futures::future::ready(Ok(refusal.into_response())).boxed();
        }
        let mcp = Route::get(&req) == Route::Mcp;
        let session = session_id(&req).filter(|_| mcp);
        let check_shared = match self.owner_check(session.as_deref(), &client.id) {
            Ok(check) => check,
            Err(refusal) => return futures::future::ready(Ok(refusal.into_response())).boxed(),
        };
        let opens_session = mcp && session.is_none() && req.method() == Method::POST;
        let deletes = req.method() == Method::DELETE;
        let policy = self.policy.clone();
        req.extensions_mut().insert(Caller(client.clone()));
        // Called now when nothing is left to check (the usual case); after the
        // shared-session check otherwise.
        let mut inner = self.inner.clone();
        std::mem::swap(&mut self.inner, &mut inner);
        async move {
            if let Some(id) = &check_shared
                && !policy.sessions.claim_shared(id, &client.id).await
            {
                tracing::warn!(client = %client.id, "request refused: no such session here or in the shared store for this client");
                return Ok(Rejection::UnknownSession.into_response());
            }
            let response = inner.call(req).await?;
            let outcome = SessionOutcome {
                session,
                opens_session,
                deletes,
            };
            outcome.record(&policy, &client.id, &response).await;
            Ok(response)
        }
        .boxed()
    }
}

impl<S> Auth<S> {
    /// The 401 for a request without a valid token, logged and audited
    /// with where it came from and why, never with the token.
    fn unauthorized<B>(&self, req: &Request<B>, presented: bool) -> Response<Body> {
        let remote = req
            .extensions()
            .get::<RemoteAddr>()
            .map(|r| r.0.to_string());
        let why = if presented {
            "unknown bearer token"
        } else {
            "no bearer token"
        };
        tracing::warn!(
            remote = remote.as_deref().unwrap_or("?"),
            reason = why,
            "request refused: unauthorized"
        );
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
        Rejection::Unauthorized.into_response()
    }

    /// Whether `client` may use `session`: `Ok(None)` when it is its own
    /// here, `Ok(Some(id))` when only the shared store can tell (it is
    /// held elsewhere), and a refusal otherwise (another client's session,
    /// or one opened before auth was on: answered exactly like an unknown
    /// session, so nothing leaks).
    fn owner_check(
        &self,
        session: Option<&str>,
        client: &str,
    ) -> Result<Option<String>, Rejection> {
        let Some(id) = session else { return Ok(None) };
        match self.policy.sessions.owner(id) {
            Some(owner) if *owner == *client => Ok(None),
            None if self.policy.sessions.is_shared() => Ok(Some(id.to_string())),
            _ => {
                tracing::warn!(client = %client, "request refused: the session belongs to another client");
                Err(Rejection::UnknownSession)
            }
        }
    }
}

/// What a request did to the session table, known once it is answered.
struct SessionOutcome {
    session: Option<String>,
    opens_session: bool,
    deletes: bool,
}

impl SessionOutcome {
    async fn record(self, policy: &Policy, client: &Arc<str>, response: &Response<Body>) {
        let sessions = &policy.sessions;
        match self.session {
            // Only `initialize` answers with a new session id.
            None if self.opens_session => {
                if let Some(id) = response
                    .headers()
                    .get(HEADER_SESSION_ID)
                    .and_then(|v| v.to_str().ok())
                {
                    sessions.bind_shared(id, client.clone()).await;
                }
            }
            Some(id)
                if response.status() == StatusCode::NOT_FOUND
                    || (self.deletes && response.status().is_success()) =>
            {
                sessions.forget(&id)
            }
            _ => {}
        }
    }
}
