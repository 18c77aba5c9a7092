//! A span per request, with the fixed fields (`request_id`, `route`,
//! `method`, `tool`, `backend`, `session`, `client`) that later layers and
//! the session handler fill in as they learn them, and a request id echoed in
//! the `x-request-id` response header.
//!
//! tower-http's `SetRequestId` (composed in `stack.rs`) keeps a client's own
//! `x-request-id` (so a caller can follow its request through our logs) or
//! makes one, and `PropagateRequestId` echoes it. Our [`TraceLayer`] then
//! opens the span, runs the request inside it, logs each response, and
//! records the route, the id and the span as request extensions for the
//! layers below and for the session handler (which, on rmcp's path, runs in
//! rmcp's task rather than the request's).

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId as TowerRequestId};
use tracing::Span;
use tracing::field::Empty;

use super::{RequestId, RequestSpan, Route, SESSION_HEADER};
use crate::front::reject::Body;

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

/// Opens each request's span and runs the request inside it.
///
/// The span has every fixed field, empty until known, except `session`,
/// which a request of an existing session names in its `Mcp-Session-Id`.
/// It is entered only while the request's own future is polled: the
/// response body is not wrapped (an SSE stream's events are not logged per
/// event), and a session handler that runs inside this future (the direct
/// path, decision 0020) needs no span of its own (decision 0021).
#[derive(Clone)]
pub struct TraceLayer {
    mcp_path: Arc<str>,
}

impl TraceLayer {
    pub fn new(mcp_path: &str) -> Self {
        Self {
            mcp_path: mcp_path.into(),
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            mcp_path: self.mcp_path.clone(),
        }
    }
}

/// The service of [`TraceLayer`].
#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
    mcp_path: Arc<str>,
}

impl<S, B> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Traced<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let route = Route::of(req.uri().path(), &self.mcp_path);
        let id: Arc<str> = request_id(&req).into();
        let session = req
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok());
        // Header values are visible ASCII: shown as they are, unquoted.
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            route = route.label(),
            method = Empty,
            tool = Empty,
            backend = Empty,
            session = session.map(tracing::field::display),
            client = Empty,
        );
        req.extensions_mut().insert(route);
        req.extensions_mut().insert(RequestId(id));
        req.extensions_mut().insert(RequestSpan(span.clone()));
        // A step below may refuse (and log) in `call` itself.
        let inner = span.in_scope(|| self.inner.call(req));
        Traced {
            inner,
            span,
            started,
        }
    }
}

/// A request's future, polled inside its span; logs the response (at debug).
pub struct Traced<F> {
    inner: F,
    span: Span,
    started: Instant,
}

impl<F> Future for Traced<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let Ok(response) = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        tracing::debug!(
            status = response.status().as_u16(),
            took_ms = this.started.elapsed().as_millis() as u64,
            "http response"
        );
        Poll::Ready(Ok(response))
    }
}

fn request_id<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}
