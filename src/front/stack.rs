//! The HTTP front's tower stack, composed here and nowhere else.
//!
//! Read top to bottom in the order a request meets each step; a step that
//! refuses a request answers it itself (through `reject.rs`), and the steps
//! above it still see the response (so refusals are traced and counted).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use super::layers::auth::AuthLayer;
use super::layers::body::BodyLayer;
use super::layers::limits::LimitsLayer;
use super::layers::metrics::MetricsLayer;
use super::layers::origin::{OriginLayer, OriginPolicy};
use super::layers::trace::TraceLayer;
use super::reject::Body;
use super::routes::{Mcp, Routes};
use crate::gateway::Gateway;

/// The service every HTTP request goes through.
pub type FrontService = BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// `config_path` is the file `POST /admin/reload` reads, if any.
pub fn build(gateway: Arc<Gateway>, mcp: Mcp, config_path: Option<PathBuf>) -> FrontService {
    let server = gateway.server();
    let policy = gateway.policy.clone();
    let stack = ServiceBuilder::new()
        // A span and an id first, so that everything below logs inside them.
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
        // After the body: only JSON-RPC requests count against limits.
        .layer(LimitsLayer::new(policy))
        .service(Routes::new(gateway.clone(), mcp, config_path));
    BoxCloneSyncService::new(stack)
}
