//! The one place where a refusal at the HTTP edge becomes a response.
//!
//! Layers return a typed [`Rejection`] naming what was wrong; this module
//! picks the status, headers and body, and counts it. Refusals of a JSON-RPC
//! request carry a JSON-RPC error with the request's id, so a client's SDK
//! can hand it to the caller that made the request.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::policy::LimitError;

pub type Body = BoxBody<Bytes, Infallible>;

/// JSON-RPC codes of our own refusals (implementation-defined server errors,
/// and the standard ones we answer at the edge).
pub mod codes {
    /// The request is not a valid JSON-RPC request for this protocol.
    pub const INVALID_REQUEST: i32 = -32600;
    /// The method does not exist (in the request's protocol version).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The request's params do not fit its method.
    pub const INVALID_PARAMS: i32 = -32602;
    /// The request took longer than `limits.request_timeout`.
    pub const REQUEST_TIMEOUT: i32 = -32001;
    /// A concurrency limit (global or per client) is reached.
    pub const OVERLOADED: i32 = -32003;
    /// The client's rate limit is exhausted.
    pub const RATE_LIMITED: i32 = -32004;
    /// The client's allow-list does not include what it asked for.
    pub const FORBIDDEN: i32 = -32005;
}

/// Why a request was refused before it reached a session.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// No token, or one that proves nothing. `challenge` is the
    /// `WWW-Authenticate` value (with `[auth.oauth]`, it points to the
    /// protected-resource metadata); `reason` says what was wrong.
    #[error("missing or invalid bearer token: {reason}")]
    Unauthorized { challenge: String, reason: String },
    /// A valid token that may not do this; `challenge` says which scope
    /// would let it (`insufficient_scope`) when one would.
    #[error("{reason}")]
    Forbidden {
        challenge: Option<String>,
        reason: String,
    },
    #[error("Host header is not allowed: {0}")]
    Host(String),
    #[error("Origin is not allowed: {0}")]
    Origin(String),
    #[error("request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("could not read request body: {0}")]
    BodyUnreadable(String),
    #[error("Parse error: {0}")]
    Parse(String),
    /// A limit refused the JSON-RPC request with this id.
    #[error("{error}")]
    Limit { error: LimitError, id: Value },
    /// A client without `admin = true` asked for an `/admin/` route.
    #[error(
        "client `{0}` is not an admin (admin routes need `admin = true` on its [[auth.tokens]] entry)"
    )]
    NotAdmin(String),
    /// The session does not exist, or belongs to another client: the same
    /// answer, so a client cannot probe for other clients' sessions.
    #[error("Not Found: Session not found")]
    UnknownSession,
    /// The request's params do not fit its method (or are too large).
    #[error("{message}")]
    InvalidParams { message: String, id: Value },
    /// `initialize` while `limits.max_sessions` sessions are live.
    #[error(
        "the gateway is at its limit of {limit} sessions (limits.max_sessions); end unused sessions or retry later"
    )]
    TooManySessions { limit: usize, id: Value },
    /// The instance is draining for a restart (SIGTERM): a load balancer
    /// that retries on 503 sends the request to another instance.
    #[error("this gateway instance is shutting down; retry, another instance will serve it")]
    Draining { id: Value },
}

impl Rejection {
    /// The label counted in `manifold_rejected_requests_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden {
                challenge: Some(_), ..
            } => "insufficient_scope",
            Self::Forbidden { .. } => "forbidden",
            Self::Host(_) => "host",
            Self::Origin(_) => "origin",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::Parse(_) => "parse_error",
            Self::Limit { error, .. } => match error {
                LimitError::Overloaded { .. } => "overloaded",
                LimitError::ClientBusy { .. } => "client_concurrency",
                LimitError::RateLimited { .. } => "rate_limited",
            },
            Self::NotAdmin(_) => "not_admin",
            Self::UnknownSession => "unknown_session",
            Self::InvalidParams { .. } => "invalid_params",
            Self::TooManySessions { .. } => "max_sessions",
            Self::Draining { .. } => "draining",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        crate::metrics::rejected(self.reason());
        let message = self.to_string();
        match self {
            Self::Unauthorized { challenge, .. } => {
                let mut r = text(StatusCode::UNAUTHORIZED, &format!("{message}\n"));
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r
            }
            Self::Forbidden { challenge, .. } => {
                let mut r = text(StatusCode::FORBIDDEN, &format!("{message}\n"));
                if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r
            }
            Self::Host(_) | Self::Origin(_) => {
                text(StatusCode::FORBIDDEN, &format!("Forbidden: {message}\n"))
            }
            Self::BodyTooLarge(_) => text(StatusCode::PAYLOAD_TOO_LARGE, &format!("{message}\n")),
            Self::BodyUnreadable(_) => text(StatusCode::BAD_REQUEST, &format!("{message}\n")),
            Self::Parse(_) => jsonrpc_error(StatusCode::BAD_REQUEST, Value::Null, -32700, &message),
            // The shape of the other `/admin/` answers.
            Self::NotAdmin(_) => json_response(
                StatusCode::FORBIDDEN,
                json!({"ok": false, "errors": [message]}),
            ),
            // rmcp's own answer to an unknown session, word for word.
            Self::UnknownSession => text(StatusCode::NOT_FOUND, &message),
            // A JSON-RPC answer to a well-formed request: 200, like any error result.
            Self::InvalidParams { id, .. } => {
                jsonrpc_error(StatusCode::OK, id, codes::INVALID_PARAMS, &message)
            }
            Self::TooManySessions { id, .. } | Self::Draining { id } => {
                let mut r = jsonrpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    codes::OVERLOADED,
                    &message,
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Self::Limit { error, id } => {
                let (status, code, retry) = match &error {
                    LimitError::Overloaded { .. } => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        codes::OVERLOADED,
                        Duration::from_secs(1),
                    ),
                    LimitError::ClientBusy { .. } => (
                        StatusCode::TOO_MANY_REQUESTS,
                        codes::OVERLOADED,
                        Duration::from_secs(1),
                    ),
                    LimitError::RateLimited { retry_after, .. } => (
                        StatusCode::TOO_MANY_REQUESTS,
                        codes::RATE_LIMITED,
                        *retry_after,
                    ),
                };
                let mut r = jsonrpc_error(status, id, code, &message);
                // Whole seconds, rounded up, as the header requires.
                let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
        }
    }
}

pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap_or_default()
}

pub fn jsonrpc_error(status: StatusCode, id: Value, code: i32, message: &str) -> Response<Body> {
    json_response(
        status,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

pub fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap_or_default()
}
