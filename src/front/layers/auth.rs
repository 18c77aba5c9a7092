//! Bearer-token authentication. With `[auth]` configured (static tokens,
//! `[auth.oauth]`, or both), every request but the probes, the OAuth
//! metadata and the console's static page (`/ui`; its data comes from
//! `/ui/api/*`, which is not public) needs `Authorization: Bearer <token>`:
//! a static token, or an OAuth access token (see `front/oauth`). The client
//! the token proves goes into the request extensions ([`Caller`], and
//! [`OAuthToken`] for an access token) for the limits and the session's
//! allow-lists. A missing or wrong token is a 401 with `WWW-Authenticate:
//! Bearer realm="manifold"`; with `[auth.oauth]` the challenge also names
//! the protected-resource metadata (`resource_metadata`), the scopes to ask
//! for, and what was wrong.
//!
//! The `Authorization` header is removed once checked, so no later layer,
//! rmcp, or anything that logs request parts can ever print a token.
//!
//! A session belongs to the client whose token opened it: a request that
//! names a session (`Mcp-Session-Id`, any method: POST, GET, DELETE) with
//! another token is answered 404, as if the session did not exist, before
//! rmcp sees it. `/admin/*` needs an admin client (403 else; an OAuth token
//! that a scope would make an admin gets `insufficient_scope` naming it).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{Method, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use super::{Caller, OAuthToken, RemoteAddr, RequestSpan, Route, SESSION_HEADER};
use crate::front::oauth::OAuthError;
use crate::front::oauth::metadata;
use crate::front::policy::{Auth as Tokens, AuthFailure, Authenticated, Policy};
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

/// `/admin` and everything under it needs an admin token.
fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// The session a request names, if any.
fn session_id<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(SESSION_HEADER)
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
        // The service readied by `poll_ready` goes with the request; a clone stays.
        let inner = self.inner.clone();
        let checked = Checked {
            inner: std::mem::replace(&mut self.inner, inner),
            policy: self.policy.clone(),
            audit: self.audit.clone(),
        };
        checked.run(auth, req).boxed()
    }
}

/// One request on its way through authentication.
struct Checked<S> {
    inner: S,
    policy: Arc<Policy>,
    audit: crate::audit::Audit,
}

impl<S> Checked<S> {
    async fn run<B>(
        self,
        auth: Arc<Tokens>,
        mut req: Request<B>,
    ) -> Result<Response<Body>, Infallible>
    where
        S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    {
        let presented = bearer(&req).map(str::to_owned);
        // From here on no layer, rmcp, or backend can see (or log) the token.
        req.headers_mut().remove(header::AUTHORIZATION);
        let who = match auth.authenticate(presented.as_deref()).await {
            Ok(who) => who,
            Err(failure) => return Ok(self.refuse(&auth, &req, failure)),
        };
        if let Some(span) = req.extensions().get::<RequestSpan>() {
            span.0
                .record("client", tracing::field::display(&*who.client.id));
        }
        if is_admin_path(req.uri().path()) && !who.client.admin {
            return Ok(not_admin(&who));
        }
        self.forward(req, who).await
    }

    /// Logs and audits a refusal (never the token: only where it came from
    /// and why it failed) and answers it.
    fn refuse<B>(&self, auth: &Tokens, req: &Request<B>, failure: AuthFailure) -> Response<Body> {
        let remote = req
            .extensions()
            .get::<RemoteAddr>()
            .map(|r| r.0.to_string());
        let why = failure.to_string();
        tracing::warn!(
            remote = remote.as_deref().unwrap_or("?"),
            reason = %why,
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
        let oauth = auth.oauth().map(|o| &o.config);
        let rejection = match (failure, oauth) {
            (AuthFailure::OAuth(OAuthError::InsufficientScope { challenge, .. }), Some(config)) => {
                Rejection::Forbidden {
                    challenge: Some(metadata::insufficient_scope(config, &challenge, &why)),
                    reason: why,
                }
            }
            (AuthFailure::OAuth(e), _) if e.is_forbidden() => Rejection::Forbidden {
                challenge: None,
                reason: why,
            },
            (failure, Some(config)) => {
                let invalid = !matches!(failure, AuthFailure::Missing);
                Rejection::Unauthorized {
                    challenge: metadata::unauthorized(config, invalid.then_some(why.as_str())),
                    reason: why,
                }
            }
            (_, None) => Rejection::Unauthorized {
                challenge: "Bearer realm=\"manifold\"".into(),
                reason: why,
            },
        };
        rejection.into_response()
    }

    /// Checks that a named session is the client's own, hands the request
    /// on, and records which client a new session belongs to.
    async fn forward<B>(
        mut self,
        mut req: Request<B>,
        who: Authenticated,
    ) -> Result<Response<Body>, Infallible>
    where
        S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    {
        let client = who.client;
        let mcp = Route::get(&req) == Route::Mcp;
        let session = session_id(&req).filter(|_| mcp);
        if let Some(id) = &session
            && !owns(&self.policy, id, &client.id).await
        {
            // Another client's session: answered exactly like an unknown
            // session, so nothing leaks.
            tracing::warn!(client = %client.id, "request refused: the session belongs to another client");
            return Ok(Rejection::UnknownSession.into_response());
        }
        let opens_session = mcp && session.is_none() && req.method() == Method::POST;
        let deletes = req.method() == Method::DELETE;
        req.extensions_mut().insert(Caller(client.clone()));
        if let Some(token) = who.oauth {
            req.extensions_mut().insert(token);
        }
        let response = self.inner.call(req).await?;
        let sessions = &self.policy.sessions;
        match session {
            // Only `initialize` answers with a new session id.
            None if opens_session => {
                if let Some(id) = response
                    .headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    sessions.bind_shared(id, client.id.clone()).await;
                }
            }
            Some(id)
                if response.status() == StatusCode::NOT_FOUND
                    || (deletes && response.status().is_success()) =>
            {
                sessions.forget(&id)
            }
            _ => {}
        }
        Ok(response)
    }
}

/// Whether the session `id` is `client`'s: known here, or (with a shared
/// session store) recorded there for it before rmcp restores it.
async fn owns(policy: &Policy, id: &str, client: &Arc<str>) -> bool {
    let sessions = &policy.sessions;
    match sessions.owner(id) {
        Some(owner) => owner == *client,
        None if sessions.is_shared() => sessions.claim_shared(id, client).await,
        // Opened before auth was on, or unknown.
        None => false,
    }
}

/// The 403 for a client that is not an admin: `insufficient_scope` naming
/// the scope when an OAuth rule would make a token with it an admin.
fn not_admin(who: &Authenticated) -> Response<Body> {
    let client = &who.client;
    tracing::warn!(client = %client.id, "admin request refused: not an admin");
    let step_up = who.oauth.as_ref().and_then(|t: &OAuthToken| {
        let scope = t.oauth.step_up(&t.scopes, |r| r.admin)?;
        let why = format!(
            "client `{}` is not an admin; scope {scope} would make it one",
            client.id
        );
        Some(Rejection::Forbidden {
            challenge: Some(metadata::insufficient_scope(&t.oauth.config, &scope, &why)),
            reason: why,
        })
    });
    step_up
        .unwrap_or_else(|| Rejection::NotAdmin(client.id.to_string()))
        .into_response()
}
