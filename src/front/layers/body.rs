//! Reads the body of a POST to the MCP endpoint, bounded by `[server]
//! max_request_bytes` (413 past it; read per request, so a reload applies), answers malformed JSON with JSON-RPC
//! -32700, answers an `initialize` too large to keep or whose params do not
//! fit with -32602 (see `front/params.rs`), and notes what the message asks for ([`Rpc`])
//! for the limits, the span and the routes. Every other request's body is dropped unread: no
//! route but MCP POST takes one.
//!
//! Buffering is what rmcp does anyway before it parses; doing it here lets
//! the edge see the message once, before any session work.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use tower::{Layer, Service};

use super::{RequestSpan, Route, Rpc};
use crate::front::params;
use crate::front::reject::{Body, Rejection};
use crate::gateway::Gateway;

#[derive(Clone)]
pub struct BodyLayer {
    gateway: Arc<Gateway>,
}

impl BodyLayer {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

impl<S> Layer<S> for BodyLayer {
    type Service = BufferBody<S>;
    fn layer(&self, inner: S) -> BufferBody<S> {
        BufferBody {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

#[derive(Clone)]
pub struct BufferBody<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

#[derive(Deserialize)]
struct Envelope {
    method: Option<String>,
    id: Option<serde_json::Value>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<String>,
}

/// Methods the 2026-07-28 protocol removed. A request of that era naming
/// one gets HTTP 404 with -32601, as the protocol says (the gateway still
/// serves them to initialize-era clients).
const REMOVED_IN_2026: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// What a JSON body asks for; `Err` only for invalid JSON.
fn classify(bytes: &[u8]) -> Result<Rpc, serde_json::Error> {
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(e) => {
            let (name, meta) = e.params.map_or((None, None), |p| (p.name, p.meta));
            let name =
                name.filter(|_| matches!(e.method.as_deref(), Some("tools/call" | "prompts/get")));
            let modern = meta
                .and_then(|m| m.protocol_version)
                .is_some_and(|v| v == "2026-07-28");
            Ok(Rpc {
                method: e.method,
                id: e.id,
                name,
                modern,
            })
        }
        Err(e) if e.is_data() => {
            // Valid JSON of another shape (odd params, a batch): still note
            // method and id, so that limits count it like any request.
            let v: serde_json::Value = serde_json::from_slice(bytes)?;
            Ok(Rpc {
                method: v.get("method").and_then(|m| m.as_str()).map(String::from),
                id: v.get("id").cloned().filter(|id| !id.is_null()),
                name: None,
                modern: false,
            })
        }
        Err(e) => Err(e),
    }
}

fn is_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
}

impl<S, B> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone is ready only if the original was: take the original.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max = self.gateway.server().max_request_bytes;
        Box::pin(async move {
            let route = Route::get(&req);
            let takes_body =
                matches!(route, Route::Mcp | Route::Execute) && req.method() == Method::POST;
            let json = is_json(&req);
            let (mut parts, body) = req.into_parts();
            if !takes_body {
                return inner
                    .call(Request::from_parts(parts, Full::new(Bytes::new())))
                    .await;
            }
            let bytes = match Limited::new(body, max).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(Rejection::BodyTooLarge(max).into_response());
                }
                Err(e) => return Ok(Rejection::BodyUnreadable(e.to_string()).into_response()),
            };
            // `/api/v1/execute` reads its own JSON (and answers its own errors).
            if json && route == Route::Mcp {
                let rpc = match classify(&bytes) {
                    Ok(rpc) => rpc,
                    Err(e) => return Ok(Rejection::Parse(e.to_string()).into_response()),
                };
                if rpc.modern
                    && rpc.is_request()
                    && let Some(method) = &rpc.method
                    && REMOVED_IN_2026.contains(&method.as_str())
                {
                    return Ok(crate::front::reject::jsonrpc_error(
                        http::StatusCode::NOT_FOUND,
                        rpc.id.clone().unwrap_or_default(),
                        crate::front::reject::codes::METHOD_NOT_FOUND,
                        &format!("method `{method}` is not part of protocol version 2026-07-28"),
                    ));
                }
                // What `initialize` may make a session keep is bounded, and a
                // misread `initialize` refused before a session is made for it
                // (other methods' misfits are answered by the session: `params`).
                if rpc.is_request()
                    && rpc.method.as_deref() == Some("initialize")
                    && let Err(e) = params::check_initialize(&bytes)
                {
                    let id = rpc.id.clone().unwrap_or_default();
                    let refusal = Rejection::InvalidParams {
                        message: e.to_string(),
                        id,
                    };
                    return Ok(refusal.into_response());
                }
                if let Some(span) = parts.extensions.get::<RequestSpan>() {
                    if let Some(m) = &rpc.method {
                        span.0.record("method", m.as_str());
                    }
                    if let Some(n) = &rpc.name {
                        span.0.record("tool", n.as_str());
                    }
                }
                parts.extensions.insert(rpc);
            }
            inner
                .call(Request::from_parts(parts, Full::new(bytes)))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_notifications_and_junk() {
        let r = classify(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fx__echo","arguments":{}}}"#).unwrap();
        assert!(r.is_request());
        assert_eq!(r.name.as_deref(), Some("fx__echo"));
        let n = classify(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(!n.is_request());
        let odd = classify(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#).unwrap();
        assert!(odd.is_request());
        assert!(classify(br#"{"hello":"world"}"#).is_ok());
        assert!(classify(b"{not json").is_err());
    }
}
