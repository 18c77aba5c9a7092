//! A span per request, with the fixed fields (`request_id`, `route`,
//! `method`, `tool`, `backend`, `session`, `client`) that later layers and
//! the session handler fill in as they learn them, and a request id echoed in
//! the `x-request-id` response header.
//!
//! A client's own `x-request-id` is kept when it looks like an id (so a
//! caller can follow its request through our logs); otherwise we make one.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use super::{RequestId, RequestSpan, Route};
use crate::front::reject::Body;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Random per process, so ids from two gateway runs do not repeat.
static ID_SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(0u8));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id; also used for requests that arrive without HTTP (stdio).
pub(crate) fn new_request_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{n:08x}", *ID_SEED as u32)
}

fn client_request_id<B>(req: &Request<B>) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.to_string())
}

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

#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
    mcp_path: Arc<str>,
}

impl<S, B> Service<Request<B>> for Trace<S>
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
        let route = Route::of(req.uri().path(), &self.mcp_path);
        let id = client_request_id(&req).unwrap_or_else(new_request_id);
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            route = route.label(),
            method = Empty,
            tool = Empty,
            backend = Empty,
            session = Empty,
            client = Empty,
        );
        let header = HeaderValue::from_str(&id).ok();
        req.extensions_mut().insert(route);
        req.extensions_mut().insert(RequestId(id.into()));
        req.extensions_mut().insert(RequestSpan(span.clone()));
        let started = Instant::now();
        let response = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let Ok(mut response) = response.await;
            span.in_scope(|| {
                tracing::debug!(
                    status = response.status().as_u16(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "http response"
                )
            });
            if let Some(v) = header {
                response.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(response)
        })
    }
}
