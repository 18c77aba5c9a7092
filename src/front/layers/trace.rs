//! A span per request, with the fixed fields (`request_id`, `route`,
//! `method`, `tool`, `backend`, `session`, `client`) that later layers and
//! the session handler fill in as they learn them, and a request id echoed in
//! the `x-request-id` response header.
//!
//! Built from tower-http's layers (composed in `stack.rs`): `SetRequestId` keeps a
//! client's own `x-request-id` (so a caller can follow its request through
//! our logs) or makes one, `PropagateRequestId` echoes it, and `Trace` opens
//! our span and logs each response. A last step ([`tag`]) records the route,
//! the id and the span as request extensions for the layers below and for the
//! session handler, which runs in rmcp's task rather than the request's.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use tower_http::request_id::{MakeRequestId, RequestId as TowerRequestId};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;
use tracing::field::Empty;

use super::{RequestId, RequestSpan, Route};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Random per process, so ids from two gateway runs do not repeat.
static ID_SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(0u8));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Makes our request ids (for requests that brought none).
#[derive(Clone, Copy, Default)]
pub struct MakeId;

/// A fresh id; also used for requests that arrive without HTTP (stdio).
pub(crate) fn new_request_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{n:08x}", *ID_SEED as u32)
}

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<TowerRequestId> {
        HeaderValue::from_str(&new_request_id())
            .ok()
            .map(TowerRequestId::new)
    }
}

/// Opens the request's span with every fixed field (empty until known).
#[derive(Clone)]
pub struct RequestSpans {
    mcp_path: std::sync::Arc<str>,
}

impl RequestSpans {
    pub fn new(mcp_path: &str) -> Self {
        Self {
            mcp_path: mcp_path.into(),
        }
    }
}

impl<B> MakeSpan<B> for RequestSpans {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let route = Route::of(req.uri().path(), &self.mcp_path);
        tracing::info_span!(
            "request",
            request_id = %request_id(req),
            route = route.label(),
            method = Empty,
            tool = Empty,
            backend = Empty,
            session = Empty,
            client = Empty,
        )
    }
}

/// Logs each response at debug level, inside the request's span.
#[derive(Clone, Copy, Default)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _: &Span) {
        tracing::debug!(
            status = response.status().as_u16(),
            took_ms = latency.as_millis() as u64,
            "http response"
        );
    }
}

fn request_id<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Records the route, the request id and the current span (the one `Trace`
/// entered) on the request, for every later step.
pub fn tag<B>(mcp_path: std::sync::Arc<str>) -> impl Fn(Request<B>) -> Request<B> + Clone {
    move |mut req: Request<B>| {
        let route = Route::of(req.uri().path(), &mcp_path);
        let id: std::sync::Arc<str> = request_id(&req).into();
        req.extensions_mut().insert(route);
        req.extensions_mut().insert(RequestId(id));
        req.extensions_mut().insert(RequestSpan(Span::current()));
        req
    }
}
