//! Counts every HTTP response by route and status, and times it to the
//! response headers. MCP-level outcomes (per method and backend, to the
//! final answer) are counted by the session, which knows them.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::Route;
use crate::front::reject::Body;

#[derive(Clone, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;
    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics { inner }
    }
}

#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Metrics<S>
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
        let route = Route::get(&req).label();
        let started = Instant::now();
        let response = self.inner.call(req);
        Box::pin(async move {
            let Ok(response) = response.await;
            crate::metrics::http(route, response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}
