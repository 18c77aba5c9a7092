//! The innermost service of the HTTP front: dispatch by path, and the edge
//! fixes we make to what rmcp's streamable-HTTP service does on bad input.
//!
//! Routes: `POST|GET|DELETE {path}` is MCP streamable HTTP; `GET /healthz`
//! answers `ok`; `GET /readyz` is 200 once every backend has made its first
//! connect attempt (503 before), with each backend's state as JSON; `GET
//! /status` is what `gateway_status` reports; `GET /metrics` is the
//! metrics in the OpenMetrics text format; `POST /admin/reload` reloads the
//! config file (any authenticated client may). Before rmcp sees a POST, `server/discover`
//! is answered with -32601 so that clients that try the 2026 lifecycle first
//! fall back to `initialize` (rmcp notes, P9); rmcp's 415 for a well-formed
//! JSON body that is not a JSON-RPC message becomes -32600.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;
use tower::Service;

use super::layers::{Route, Rpc};
use super::reject::{Body, json_response, jsonrpc_error, text};
use super::session::FrontSession;
use crate::gateway::Gateway;

pub type Mcp = StreamableHttpService<FrontSession, LocalSessionManager>;

#[derive(Clone)]
pub struct Routes {
    gateway: Arc<Gateway>,
    mcp: Arc<Mcp>,
    /// The config file, for `POST /admin/reload`.
    config_path: Option<Arc<std::path::Path>>,
}

impl Routes {
    pub fn new(gateway: Arc<Gateway>, mcp: Mcp, config_path: Option<std::path::PathBuf>) -> Self {
        Self {
            gateway,
            mcp: Arc::new(mcp),
            config_path: config_path.map(Arc::from),
        }
    }

    /// `POST /admin/reload`: reloads the config file now.
    async fn reload(&self) -> Response<Body> {
        let Some(path) = &self.config_path else {
            return json_response(
                StatusCode::CONFLICT,
                json!({"ok": false, "errors": ["no config file to reload"]}),
            );
        };
        match crate::reload::reload_file(&self.gateway, path, "admin").await {
            Ok(report) => json_response(StatusCode::OK, json!({"ok": true, "report": report})),
            Err(errors) => {
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
        match self.gateway.audit.query(query).await {
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

    async fn route(self, req: Request<Full<Bytes>>) -> Response<Body> {
        match (Route::get(&req), req.method()) {
            (Route::Mcp, &Method::POST) => self.post(req).await,
            (Route::Mcp, _) => self.mcp.handle(req).await,
            (Route::Healthz, &Method::GET) => text(StatusCode::OK, "ok\n"),
            (Route::Status, &Method::GET) => {
                json_response(StatusCode::OK, self.gateway.status_json())
            }
            (Route::Readyz, &Method::GET) => {
                let ready = self.gateway.is_settled();
                let body = json!({"ready": ready, "sessions": self.gateway.hub.session_count(), "backends": self.gateway.backends_json()});
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, body)
            }
            (Route::AdminReload, &Method::POST) => self.reload().await,
            (Route::Logs, &Method::GET) => self.logs(&req).await,
            (Route::Metrics, &Method::GET) => Response::builder()
                .header(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
                .body(Full::new(Bytes::from(crate::metrics::render(&self.gateway))).boxed())
                .unwrap_or_default(),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn post(&self, req: Request<Full<Bytes>>) -> Response<Body> {
        // Present only for JSON bodies (the body layer parsed them).
        let rpc = req.extensions().get::<Rpc>().cloned();
        if let Some(rpc) = &rpc
            && rpc.method.as_deref() == Some("server/discover")
        {
            return jsonrpc_error(
                StatusCode::OK,
                rpc.id.clone().unwrap_or_default(),
                -32601,
                "Method not found: server/discover (this gateway speaks the initialize lifecycle, protocol versions up to 2025-11-25)",
            );
        }
        let response = self.mcp.handle(req).await;
        if let Some(rpc) = rpc
            && response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE
        {
            // rmcp answers 415 when a well-formed JSON body is not a valid
            // JSON-RPC message; the spec's answer is Invalid Request.
            return jsonrpc_error(
                StatusCode::BAD_REQUEST,
                rpc.id.unwrap_or_default(),
                -32600,
                "Invalid Request: not a valid JSON-RPC message for this protocol",
            );
        }
        response
    }
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
