//! The HTTP front's tower stack, composed here and nowhere else.
//!
//! Read top to bottom in the order a request meets each step; a step that
//! refuses a request answers it itself (through `reject.rs`), and the steps
//! above it still see the response (so refusals are traced and counted).

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use super::Front;
use super::direct::Direct;
use super::layers::auth::AuthLayer;
use super::layers::body::BodyLayer;
use super::layers::limits::LimitsLayer;
use super::layers::metrics::MetricsLayer;
use super::layers::origin::{OriginLayer, OriginPolicy};
use super::layers::scope::ScopeLayer;
use super::layers::trace::{MakeId, REQUEST_ID_HEADER, TraceLayer};
use super::reject::Body;
use super::routes::{Mcp, Routes};

/// Names the instance that answered, on every response.
pub const INSTANCE_HEADER: http::HeaderName = http::HeaderName::from_static("x-manifold-instance");

/// The service every HTTP request goes through.
pub type FrontService = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// The policy (auth and limits) is the front's, passed into the layers that enforce it.
pub fn build(front: Front, mcp: Mcp, direct: Direct) -> FrontService {
    let gateway = front.gateway.clone();
    let server = gateway.server();
    let policy = front.policy.clone();
    let instance = http::HeaderValue::from_str(&server.instance_id).ok();
    let stack = ServiceBuilder::new()
        // An id and a span first, so that everything below logs inside them.
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        // Which instance answered: how an operator checks the load balancer's affinity.
        .map_response(move |mut r: Response<_>| {
            if let Some(v) = instance.clone() {
                r.headers_mut().insert(INSTANCE_HEADER, v);
            }
            r
        })
        .layer(TraceLayer::new(&server.path))
        // Outside the refusing steps, so refusals are counted.
        .layer(MetricsLayer)
        // Before auth: a rebinding page must not even learn whether a token works.
        .layer(OriginLayer::new(OriginPolicy::new(
            &server.allowed_hosts,
            &server.allowed_origins,
        )))
        // Before reading a body: unauthenticated clients cost us no buffering.
        .layer(AuthLayer::new(policy.clone(), gateway.audit.clone()))
        .layer(BodyLayer::new(gateway.clone()))
        // After the body (it names the tool), before limits: a step-up costs no slot.
        .layer(ScopeLayer::new(gateway.clone()))
        // After the body: only JSON-RPC requests count against limits.
        .layer(LimitsLayer::new(policy))
        .service(Routes::new(front, mcp, direct));
    BoxCloneSyncService::new(stack)
}
