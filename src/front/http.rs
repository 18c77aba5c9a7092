//! The HTTP front: the listener, the routes, and the edge fixes we make to
//! what rmcp's streamable-HTTP service does on bad input.
//!
//! Routes: `POST|GET|DELETE {path}` is MCP streamable HTTP; `GET /healthz`
//! answers `ok`; `GET /readyz` is 200 once every backend has made its first
//! connect attempt (503 before), with each backend's state as JSON. Before rmcp sees a POST we buffer its body (bounded: 413
//! past `max_request_bytes`), answer malformed JSON with JSON-RPC -32700,
//! and answer `server/discover` with -32601 so that clients that try the
//! 2026 lifecycle first fall back to `initialize` (rmcp notes, P9).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::session::FrontSession;
use crate::gateway::Gateway;

type Body = BoxBody<Bytes, Infallible>;
type Mcp = StreamableHttpService<FrontSession, LocalSessionManager>;

/// How long open connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Front {
    gateway: Arc<Gateway>,
    mcp: Mcp,
    /// The MCP endpoint's path, fixed for the life of the listener.
    path: String,
    /// The config file, for `POST /admin/reload`.
    config_path: Option<std::path::PathBuf>,
}

fn mcp_service(gateway: &Arc<Gateway>, shutdown: &CancellationToken) -> Mcp {
    let mut sessions = LocalSessionManager::default();
    let server = gateway.server();
    sessions.session_config.keep_alive = Some(server.session_idle_timeout);
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_allowed_hosts(server.allowed_hosts.clone())
        // Our own pre-filter enforces `max_request_bytes`, which a reload may change.
        .with_max_request_body_bytes(usize::MAX);
    let factory_gateway = gateway.clone();
    StreamableHttpService::new(
        move || Ok(FrontSession::new(factory_gateway.clone())),
        Arc::new(sessions),
        config,
    )
}

/// Serves until `shutdown` is cancelled, then lets open connections finish
/// for a short grace period.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
    config_path: Option<std::path::PathBuf>,
) -> std::io::Result<()> {
    let front = Arc::new(Front {
        mcp: mcp_service(&gateway, &shutdown),
        path: gateway.server().path.clone(),
        config_path,
        gateway,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let service = hyper::service::service_fn(move |req| {
            let front = front.clone();
            async move { Ok::<_, Infallible>(front.route(req, peer).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        // Ends when the client closes the connection or graceful shutdown completes it.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
    Ok(())
}

impl Front {
    async fn route(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if path == self.path {
            if req.method() == Method::POST {
                return self.post(req).await;
            }
            return self.mcp.handle(req).await;
        }
        match (req.method(), path) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/status") => json_response(StatusCode::OK, self.gateway.status_json()),
            (&Method::POST, "/admin/reload") => self.reload().await,
            (&Method::GET, "/readyz") => {
                let ready = self.gateway.is_settled();
                let body = json!({"ready": ready, "sessions": self.gateway.hub.session_count(), "backends": self.gateway.backends_json()});
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, body)
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
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

    async fn post(&self, req: Request<Incoming>) -> Response<Body> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        let limit = self.gateway.server().max_request_bytes;
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body exceeds the limit of {limit} bytes\n"),
                );
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("could not read request body: {e}\n"),
                );
            }
        };
        if is_json {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                return jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    serde_json::Value::Null,
                    -32700,
                    &format!("Parse error: {e}"),
                );
            }
            if let Some(id) = discover_request_id(&bytes) {
                return jsonrpc_error(
                    StatusCode::OK,
                    id,
                    -32601,
                    "Method not found: server/discover (this gateway speaks the initialize lifecycle, protocol versions up to 2025-11-25)",
                );
            }
        }
        let response = self
            .mcp
            .handle(Request::from_parts(parts, Full::new(bytes.clone())))
            .await;
        if is_json && response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // rmcp answers 415 when a well-formed JSON body is not a valid
            // JSON-RPC message; the spec's answer is Invalid Request.
            let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(serde_json::Value::Null);
            return jsonrpc_error(
                StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Invalid Request: not a valid JSON-RPC message for this protocol",
            );
        }
        response
    }
}

/// The id of a `server/discover` request, if that is what the body is. Cheap
/// for every other body: it parses only when the method name appears.
fn discover_request_id(body: &[u8]) -> Option<serde_json::Value> {
    memchr::memmem::find(body, b"server/discover")?;
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    (v.get("method")?.as_str()? == "server/discover")
        .then(|| v.get("id").cloned().unwrap_or_default())
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap_or_default()
}

fn jsonrpc_error(
    status: StatusCode,
    id: serde_json::Value,
    code: i64,
    message: &str,
) -> Response<Body> {
    json_response(
        status,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap_or_default()
}
