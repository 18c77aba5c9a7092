//! The innermost service of the HTTP front: dispatch by path, and the edge
//! fixes we make to what rmcp's streamable-HTTP service does on bad input.
//!
//! Routes: `POST|GET|DELETE {path}` is MCP streamable HTTP; `GET /healthz`
//! answers `ok`; `GET /readyz` is 200 once every backend has made its first
//! connect attempt (503 before), with each backend's state as JSON; `GET
//! /status` is what `gateway_status` reports; `GET /metrics` is the
//! metrics in the OpenMetrics text format; `POST /admin/reload` reloads the
//! config file (admin tokens only, checked by the auth layer); `GET
//! /.well-known/oauth-protected-resource[{path}]` is the RFC 9728 metadata
//! with `[auth.oauth]`. `/status` shows a client that is not an admin only
//! the backends it may use and its own sessions. `/ui` and `/ui/api/*` are
//! the console (`console/`). Before rmcp sees a POST, an `initialize` past
//! `limits.max_sessions` gets 503, and a request of a session held here is
//! served by `direct.rs` without rmcp's service when it can be; rmcp's 415 for a well-formed
//! JSON body that is not a JSON-RPC message becomes -32600, its plain-text
//! 400s become JSON-RPC errors, and its 202 to a DELETE becomes 204.
//! `server/discover` and the rest of the 2026-07-28 protocol go to rmcp like
//! everything else (see `modern.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use serde_json::{Value, json};
use tower::Service;

use super::Front;
use super::console::Console;
use super::direct::{Direct, Served};
use super::layers::{Caller, Route, Rpc};
use super::policy::Client;
use super::reject::{Body, Rejection, codes, json_response, jsonrpc_error, text};
use super::session::FrontSession;
use super::sessions::Sessions;
use crate::gateway::View;
use crate::reload::ReloadError;

pub type Mcp = StreamableHttpService<std::sync::Arc<FrontSession>, Sessions>;

#[derive(Clone)]
pub struct Routes {
    front: Front,
    mcp: Arc<Mcp>,
    /// Calls tools for `POST /api/v1/execute`; made on first use.
    invoker: Arc<tokio::sync::OnceCell<Arc<super::invoke::GatewayInvoker>>>,
    /// `/ui` and `/ui/api/*`.
    console: Arc<Console>,
    /// Requests of sessions held here, served without rmcp's HTTP service.
    direct: Arc<Direct>,
}

impl Routes {
    pub fn new(front: Front, mcp: Mcp, direct: Direct) -> Self {
        Self {
            direct: Arc::new(direct),
            console: Arc::new(Console::new(front.clone())),
            front,
            mcp: Arc::new(mcp),
            invoker: Arc::default(),
        }
    }

    /// `POST /admin/reload`: reloads the config file now.
    async fn reload(&self) -> Response<Body> {
        match self.front.reloader.reload_file("admin").await {
            Ok(report) => json_response(StatusCode::OK, json!({"ok": true, "report": report})),
            Err(ReloadError::NoFile) => json_response(
                StatusCode::CONFLICT,
                json!({"ok": false, "errors": ["no config file to reload"]}),
            ),
            Err(ReloadError::Invalid(errors)) => {
                let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"ok": false, "errors": lines}),
                )
            }
        }
    }

    /// `GET /api/v1/logs?tool=…&client=…&limit=…`: the audit log, newest
    /// first; a client without `admin` sees only its own entries.
    async fn logs(&self, req: &Request<Full<Bytes>>) -> Response<Body> {
        let mut args = serde_json::Map::new();
        for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            let value = match (k.as_ref(), v.parse::<u32>()) {
                ("limit", Ok(n)) => json!(n),
                _ => json!(v),
            };
            args.insert(k.into_owned(), value);
        }
        let query: crate::audit::LogQuery = match serde_json::from_value(args.into()) {
            Ok(q) => q,
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("bad query parameters: {e}")}),
                );
            }
        };
        let caller = req.extensions().get::<super::layers::Caller>();
        let query = crate::builtin::logs::scope(
            query,
            caller.map(|c| &*c.0.id),
            caller.is_some_and(|c| c.0.admin),
        );
        match self.front.gateway.audit.query(query).await {
            Ok(entries) => json_response(
                StatusCode::OK,
                json!({"count": entries.len(), "entries": entries}),
            ),
            Err(e @ crate::audit::AuditError::BadQuery(_)) => {
                json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}))
            }
            Err(e @ crate::audit::AuditError::NoLocalStore) => {
                json_response(StatusCode::NOT_FOUND, json!({"error": e.to_string()}))
            }
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        }
    }

    /// `GET /.well-known/oauth-protected-resource[/path]`: RFC 9728
    /// metadata, with `[auth.oauth]` only (404 without, or at another path).
    fn resource_metadata(&self, path: &str) -> Response<Body> {
        let auth = self.front.policy.auth();
        let mcp_path = &self.front.gateway.server().path;
        match auth.oauth() {
            Some(o) if super::oauth::metadata::serves(&o.config, path, mcp_path) => {
                json_response(StatusCode::OK, super::oauth::metadata::document(&o.config))
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The routes other than a request served by `direct.rs` are boxed where
    /// awaited: inline, their state would make every request's future (moved
    /// into its box on each request) several times larger (decision 0013).
    async fn route(self, req: Request<Full<Bytes>>) -> Response<Body> {
        let route = Route::get(&req);
        let drain = &self.front.drain;
        if drain.is_draining()
            && matches!(route, Route::Mcp | Route::Execute)
            && req.method() != Method::DELETE
        {
            let id = req
                .extensions()
                .get::<Rpc>()
                .and_then(|r| r.id.clone())
                .unwrap_or_default();
            return Rejection::Draining { id }.into_response();
        }
        match (route, req.method()) {
            (Route::Mcp, &Method::POST) => {
                let in_flight = drain.track();
                let response = self.post(req).await;
                response.map(|body| super::conn::TrackedBody::new(body, in_flight).boxed())
            }
            (Route::Mcp, method) => {
                let delete = method == Method::DELETE;
                let response = edge_errors(Box::pin(self.mcp.handle(req)).await, None).await;
                // Clients expect 200 or 204 for a session's end (the Python
                // SDK logs "Session termination failed: 202").
                if delete && response.status() == StatusCode::ACCEPTED {
                    return no_content();
                }
                response
            }
            (Route::Healthz, &Method::GET) => text(StatusCode::OK, "ok\n"),
            (Route::Status, &Method::GET) => {
                let caller = req.extensions().get::<Caller>().map(|c| c.0.clone());
                let mut status =
                    with_view(caller.as_deref(), |v| self.front.gateway.status_json(v));
                status["parked"] = self.front.parked.status();
                json_response(StatusCode::OK, redacted(status))
            }
            (Route::Console | Route::ConsoleApi, _) => Box::pin(self.console.handle(req)).await,
            (Route::Readyz, &Method::GET) => {
                let gateway = &self.front.gateway;
                let ready = gateway.is_settled();
                let draining = self.front.drain.is_draining();
                let body = redacted(json!({
                    "ready": ready && !draining,
                    "draining": draining,
                    "in_flight": self.front.drain.in_flight(),
                    "instance_id": gateway.server().instance_id,
                    "sessions": gateway.hub.session_count(),
                    "backends": gateway.backends_json(),
                }));
                let status = if ready && !draining {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, body)
            }
            (Route::AdminReload, &Method::POST) => Box::pin(self.reload()).await,
            (Route::Execute, &Method::POST) => {
                let in_flight = drain.track();
                let response =
                    Box::pin(super::execute::handle(&self.front, &self.invoker, req)).await;
                response.map(|body| super::conn::TrackedBody::new(body, in_flight).boxed())
            }
            (Route::Logs, &Method::GET) => Box::pin(self.logs(&req)).await,
            (Route::ResourceMetadata, &Method::GET) => self.resource_metadata(req.uri().path()),
            (Route::Metrics, &Method::GET) => Response::builder()
                .header(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
                .body(
                    Full::new(Bytes::from(crate::metrics::render(
                        &self.front.gateway.metrics_scrape(),
                    )))
                    .boxed(),
                )
                .unwrap_or_default(),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn post(&self, req: Request<Full<Bytes>>) -> Response<Body> {
        // Present only for JSON bodies (the body layer parsed them).
        let rpc = req.extensions().get::<Rpc>().cloned();
        if let Some(rpc) = &rpc
            && rpc.method.as_deref() == Some("initialize")
            && !req.headers().contains_key(super::layers::SESSION_HEADER)
        {
            let limit = self.front.policy.limits().config.max_sessions;
            // Checked on arrival: initializes in flight together may pass
            // the limit by at most their number.
            if self.front.gateway.hub.session_count() >= limit {
                tracing::warn!(limit, "initialize refused: limits.max_sessions reached");
                let id = rpc.id.clone().unwrap_or_default();
                return Rejection::TooManySessions { limit, id }.into_response();
            }
        }
        let req = match &rpc {
            Some(rpc) => match self.direct.serve(rpc, req).await {
                Served::Answered(response) => {
                    return super::listed::lift_in_answer(rpc.method.as_deref(), response).await;
                }
                Served::Declined(req) => req,
            },
            None => req,
        };
        let id = rpc.as_ref().and_then(|r| r.id.clone());
        // A 2026-07-28 request's handler is built inside `handle`, and learns its client here.
        let caller = req.extensions().get::<Caller>().map(|c| c.0.clone());
        let handled = Box::pin(super::modern::CALLER.scope(caller, self.mcp.handle(req))).await;
        let response = edge_errors(handled, id).await;
        let Some(rpc) = rpc else { return response };
        if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // rmcp answers 415 when a well-formed JSON body is not a valid
            // JSON-RPC message; the spec's answer is Invalid Request.
            return jsonrpc_error(
                StatusCode::BAD_REQUEST,
                rpc.id.unwrap_or_default(),
                -32600,
                "Invalid Request: not a valid JSON-RPC message for this protocol",
            );
        }
        if rpc.is_request() {
            let response = super::json_reply::json_when_final(response).await;
            return super::listed::lift_in_answer(rpc.method.as_deref(), response).await;
        }
        response
    }
}

/// rmcp answers some bad requests (an unsupported `MCP-Protocol-Version`
/// header, a missing session id) with a plain-text 400; clients parse JSON,
/// so it becomes a JSON-RPC Invalid Request with the same words. A request
/// that races its session's end gets rmcp's plain-text 500 ("Session service
/// terminated"): the session is gone, which the protocol says with a 404.
async fn edge_errors(response: Response<Body>, id: Option<Value>) -> Response<Body> {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|t| t.as_bytes().starts_with(b"text/plain"));
    let status = response.status();
    if !plain
        || !matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::INTERNAL_SERVER_ERROR
        )
    {
        return response;
    }
    let words = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
        Err(never) => match never {},
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        if !words.contains("Session") {
            return text(status, &words);
        }
        return jsonrpc_error(
            StatusCode::NOT_FOUND,
            id.unwrap_or_default(),
            codes::INVALID_REQUEST,
            "Session not found: it has ended; initialize a new session",
        );
    }
    jsonrpc_error(
        StatusCode::BAD_REQUEST,
        id.unwrap_or_default(),
        codes::INVALID_REQUEST,
        &words,
    )
}

fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap_or_default()
}

/// What `caller` may see of the gateway: everything without auth and for
/// an admin; otherwise the backends its allow-list names and its own
/// sessions, and no reload report. `/status` and the console both use it.
pub(super) fn with_view<R>(caller: Option<&Client>, f: impl FnOnce(&View<'_>) -> R) -> R {
    match caller.filter(|c| !c.admin) {
        None => f(&View::ALL),
        Some(c) => f(&View {
            backend: &|b| c.may_use_backend(b),
            client: Some(&c.id),
        }),
    }
}

/// A status document fit to serve: a backend's `down` reason may quote a
/// URL or argument that holds a secret (see `config::redact`).
pub(super) fn redacted(mut body: serde_json::Value) -> serde_json::Value {
    if crate::config::redact::any() {
        crate::config::redact::redact_json(&mut body);
    }
    body
}

impl Service<Request<Full<Bytes>>> for Routes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.route(req).await) })
    }
}
