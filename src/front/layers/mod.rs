//! The tower layers of the HTTP front, one per file, composed in
//! [`super::stack`] in the order they run:
//!
//! 1. [`trace`]: a request id (tower-http `SetRequestId`, `PropagateRequestId`) and a span for every request, entered while the request is polled (decision 0021).
//! 2. [`metrics`]: HTTP requests and response times by route.
//! 3. [`origin`]: `Host` and browser `Origin` checks (DNS-rebinding protection).
//! 4. [`auth`]: bearer tokens (static, or OAuth access tokens) → the client id.
//! 5. [`body`]: reads the MCP request body (bounded) and notes what it asks for.
//! 6. [`scope`]: OAuth step-up: 403 `insufficient_scope` for a tool a scope would allow.
//! 7. [`limits`]: global and per-client concurrency, per-client rate.
//!
//! Layers talk to later ones, and to the rmcp session handler, only through
//! the request extensions defined here (rmcp hands the request's
//! `http::request::Parts`, extensions included, to the session).

pub mod auth;
pub mod body;
pub mod limits;
pub mod metrics;
pub mod origin;
pub mod scope;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;

use super::policy::Client;

/// What a request is for, decided once from its path by [`trace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Mcp,
    Healthz,
    Readyz,
    Status,
    Metrics,
    AdminReload,
    /// `POST /api/v1/execute`: the queue and the tools over plain HTTP.
    Execute,
    /// `GET /api/v1/logs`: the audit log.
    Logs,
    /// `GET /.well-known/oauth-protected-resource[/…]`: RFC 9728 metadata.
    ResourceMetadata,
    /// `GET /ui` and its assets: the console page, which holds no data.
    Console,
    /// `/ui/api/*`: the console's data and its push stream.
    ConsoleApi,
    Other,
}

impl Route {
    pub fn of(path: &str, mcp_path: &str) -> Self {
        match path {
            p if p == mcp_path => Self::Mcp,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/status" => Self::Status,
            "/metrics" => Self::Metrics,
            "/admin/reload" => Self::AdminReload,
            "/api/v1/execute" => Self::Execute,
            "/api/v1/logs" => Self::Logs,
            p if p.starts_with(crate::front::oauth::metadata::WELL_KNOWN) => Self::ResourceMetadata,
            p if p.starts_with("/ui/api/") => Self::ConsoleApi,
            p if p == "/ui" || p.starts_with("/ui/") => Self::Console,
            _ => Self::Other,
        }
    }

    /// The route of a request that went through [`trace`].
    pub fn get<B>(req: &http::Request<B>) -> Self {
        req.extensions()
            .get::<Route>()
            .copied()
            .unwrap_or(Route::Other)
    }

    /// Probes must work for load balancers and orchestrators, which do not
    /// authenticate; they reveal little. They still get the `Host` check
    /// (`origin.rs`): list the address probes use in `allowed_hosts`.
    pub fn is_probe(self) -> bool {
        matches!(self, Self::Healthz | Self::Readyz)
    }

    /// Served without a token: the probes, the console's page and assets
    /// (static files; every piece of data they show comes from routes that
    /// need one), and the OAuth metadata that tells a client where to get one.
    pub fn is_public(self) -> bool {
        self.is_probe() || self == Self::Console || self == Self::ResourceMetadata
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
            Self::Status => "status",
            Self::Metrics => "metrics",
            Self::AdminReload => "admin_reload",
            Self::Execute => "execute",
            Self::Logs => "logs",
            Self::ResourceMetadata => "oauth_metadata",
            Self::Console => "console",
            Self::ConsoleApi => "console_api",
            Self::Other => "other",
        }
    }
}

/// The header that names a request's MCP session (`Mcp-Session-Id`).
pub const SESSION_HEADER: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// The request's id, echoed in the `x-request-id` response header.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

/// The request's span, so the session handler (which runs in rmcp's task,
/// not the request's) can log inside it.
#[derive(Clone, Debug)]
pub struct RequestSpan(pub tracing::Span);

/// The remote address of the connection, set by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub SocketAddr);

/// The client that the request's bearer token proved; absent without `[auth]`.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<Client>);

/// Present when the caller proved itself with an OAuth access token.
pub use super::policy::OAuthToken;

/// What a JSON POST body asks for, as far as the layers care.
#[derive(Clone, Debug, Default)]
pub struct Rpc {
    /// `None` for responses (and anything that is not a JSON-RPC message).
    pub method: Option<String>,
    pub id: Option<serde_json::Value>,
    /// `params.name` of `tools/call` and `prompts/get`.
    pub name: Option<String>,
    /// Its `_meta` names protocol version 2026-07-28.
    pub modern: bool,
}

impl Rpc {
    /// A request (it has a method and an id), as opposed to a notification or a response.
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }
}
