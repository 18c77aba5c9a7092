//! `[limits]` at the edge: every JSON-RPC request to the MCP endpoint takes
//! a slot of the global and per-client concurrency caps and a token of the
//! client's rate bucket, or is refused at once with a JSON-RPC error carrying
//! its id (429 or 503, with `Retry-After`). Notifications, responses and the
//! long-lived GET stream are never limited: they are the other half of
//! requests already admitted.
//!
//! The slots are held by the response body, so they are returned when the
//! answer has been streamed, not when the headers go out. A client is its
//! token's client id, or its remote IP address without `[auth]`. The
//! per-request timeout is enforced by the session (it needs the JSON-RPC
//! answer to carry the error); the request body size by the body layer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::{Caller, RemoteAddr, Route, Rpc};
use crate::front::policy::{Admitted, Policy};
use crate::front::reject::{Body, Rejection};

#[derive(Clone)]
pub struct LimitsLayer {
    policy: Arc<Policy>,
}

impl LimitsLayer {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;
    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limits<S> {
    inner: S,
    policy: Arc<Policy>,
}

/// Who the limits count a request against.
fn client_key<B>(req: &Request<B>) -> String {
    if let Some(Caller(client)) = req.extensions().get::<Caller>() {
        return client.id.to_string();
    }
    match req.extensions().get::<RemoteAddr>() {
        Some(RemoteAddr(addr)) => addr.ip().to_string(),
        None => "unknown".into(),
    }
}

impl<S, B> Service<Request<B>> for Limits<S>
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
        let request_id = match req.extensions().get::<Rpc>() {
            Some(rpc) if Route::get(&req) == Route::Mcp && rpc.is_request() => rpc.id.clone(),
            // A call through `POST /api/v1/execute` counts like an MCP request.
            _ if Route::get(&req) == Route::Execute && req.method() == http::Method::POST => None,
            _ => return self.inner.call(req).boxed(),
        };
        let key = client_key(&req);
        let admitted = match self.policy.limits().admit(&key) {
            Ok(a) => a,
            Err(error) => {
                tracing::debug!(%error, "request refused by a limit");
                let id = request_id.unwrap_or_default();
                return futures::future::ready(Ok(Rejection::Limit { error, id }.into_response()))
                    .boxed();
            }
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let Ok(response) = response.await;
            Ok(response.map(|body| {
                PermitBody {
                    inner: body,
                    _admitted: admitted,
                }
                .boxed()
            }))
        })
    }
}

/// A response body that holds the request's slots until it ends or is dropped.
struct PermitBody {
    inner: Body,
    _admitted: Admitted,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
