//! A request POSTed to a session this instance holds, served without rmcp's
//! HTTP service (decision 0019).
//!
//! rmcp's `StreamableHttpService` reads every POSTed body as a
//! `ClientJsonRpcMessage`: an untagged parse that tries each request type
//! in turn, failing (with a formatted error) on every type before the right
//! one. It then writes the answer as an SSE stream, which
//! [`json_reply`](super::json_reply) reads back to answer plain JSON. For the
//! requests most calls are (an initialize-era request, in a session held
//! here, with well-formed params), this path does the same work once:
//! the body is read as the type its `method` names
//! ([`params::typed_request`](super::params::typed_request)), handed to the
//! session table ([`Sessions`], which keeps its in-flight id claim), and
//! the session's messages for the request become the answer: plain JSON when
//! the first message is the answer, otherwise an SSE stream as rmcp writes
//! it (priming event, event ids, `retry`, keep-alive comments).
//!
//! Everything else is declined and goes to rmcp unchanged: `initialize`,
//! notifications and responses, 2026-07-28 requests (by header or `_meta`),
//! a session this instance does not hold (rmcp restores or refuses it), an
//! `Accept` that is not plainly both JSON and SSE, and params that do not
//! fit their method (rmcp reads those as custom requests, which the session
//! answers -32602). The checks rmcp makes on the requests this path takes
//! are made here: the `MCP-Protocol-Version` header, when present, must be a
//! known initialize-era version, and `Accept` must name both media types.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use rmcp::model::{
    ClientJsonRpcMessage, GetExtensions, GetMeta, ProtocolVersion, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId};
use rmcp::transport::streamable_http_server::SessionManager;
use sse_stream::Sse;
use tokio_util::sync::CancellationToken;

use super::layers::Rpc;
use super::reject::{Body, codes, jsonrpc_error};
use super::sessions::Sessions;

/// How long a request's stream may stay silent before the client gets it
/// as SSE with keep-alive comments (rmcp's default, which we keep).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Serves POSTed requests of sessions held here (see the module docs).
pub struct Direct {
    sessions: Arc<Sessions>,
    /// Ends open SSE answers at shutdown, as rmcp's service does.
    shutdown: CancellationToken,
}

/// What [`Direct::serve`] did with a request.
pub enum Served {
    Answered(Response<Body>),
    /// Not one this path takes: rmcp's service gets it, unchanged.
    Declined(Request<Full<Bytes>>),
}

impl Direct {
    pub fn new(sessions: Arc<Sessions>, shutdown: CancellationToken) -> Self {
        Self { sessions, shutdown }
    }

    /// Serves `req` (whose body the body layer read as `rpc`), or declines it.
    pub async fn serve(&self, rpc: &Rpc, req: Request<Full<Bytes>>) -> Served {
        let Some((session, method)) = eligible(rpc, req.headers()) else {
            return Served::Declined(req);
        };
        if !self
            .sessions
            .local
            .has_session(&session)
            .await
            .unwrap_or(false)
        {
            return Served::Declined(req);
        }
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let Some(mut request) = read(method, &bytes) else {
            return Served::Declined(Request::from_parts(parts, Full::new(bytes)));
        };
        let id = request.id.clone();
        // Extensions the layers set (the caller, the span) travel with the
        // request parts, as rmcp's service passes them.
        request.request.extensions_mut().insert(parts);
        let message = ClientJsonRpcMessage::Request(request);
        let stream = match self.sessions.create_stream(&session, message).await {
            Ok(stream) => stream,
            Err(e) => {
                // The session ended between the check and now.
                tracing::debug!(error = %e, "session gone before its request was served");
                return Served::Answered(jsonrpc_error(
                    StatusCode::NOT_FOUND,
                    id_json(&id),
                    codes::INVALID_REQUEST,
                    "Session not found: it has ended; initialize a new session",
                ));
            }
        };
        Served::Answered(self.answer(Box::pin(stream)).await)
    }

    /// The answer from the request's stream: JSON when the first message
    /// (after the priming event) is the answer, else the stream as SSE.
    async fn answer(&self, mut stream: Messages) -> Response<Body> {
        let mut head = Vec::new();
        let silent = tokio::time::sleep(KEEP_ALIVE);
        tokio::pin!(silent);
        loop {
            let next = tokio::select! {
                biased;
                next = stream.next() => next,
                () = &mut silent => {
                    // Silent this long: the client gets the stream now, and
                    // the keep-alive comment rmcp's stream would have sent.
                    head.extend_from_slice(b":\n\n");
                    break;
                }
                () = self.shutdown.cancelled() => break,
            };
            let Some(m) = next else { break };
            match m.message.as_deref() {
                None => head.extend_from_slice(&event(m)),
                Some(ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)) => {
                    return json(m.message.as_deref());
                }
                Some(_) => {
                    head.extend_from_slice(&event(m));
                    break;
                }
            }
        }
        let body = Events {
            head: Some(Bytes::from(head)).filter(|h| !h.is_empty()),
            stream,
            keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            shutdown: Box::pin(self.shutdown.clone().cancelled_owned()),
        };
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .header("x-accel-buffering", "no")
            .body(BodyExt::boxed(body))
            .unwrap_or_default()
    }
}

type Messages = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;

/// The request's session and method, when the request is one this path takes
/// as far as its headers and envelope tell.
fn eligible<'r>(rpc: &'r Rpc, headers: &HeaderMap) -> Option<(SessionId, &'r str)> {
    let method = rpc.method.as_deref()?;
    if rpc.id.is_none() || rpc.modern || matches!(method, "initialize" | "server/discover") {
        return None;
    }
    let session = headers.get("mcp-session-id")?.to_str().ok()?;
    if let Some(version) = headers.get("mcp-protocol-version") {
        let version = version.to_str().ok()?;
        let known = ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .any(|v| v.as_str() == version);
        // 2026-07-28 and later bring per-request metadata and header checks: rmcp's.
        if !known || version >= ProtocolVersion::V_2026_07_28.as_str() {
            return None;
        }
    }
    accepts_json_and_sse(headers).then(|| (session.to_owned().into(), method))
}

/// `Accept` names both `application/json` and `text/event-stream`; any
/// quality parameter sends the request to rmcp, which weighs them.
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for range in value.split(',') {
            let mut fields = range.split(';');
            let essence = fields.next().unwrap_or_default().trim();
            if fields.next().is_some() {
                return false;
            }
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

/// The request read by its method, when it reads and names no protocol
/// version of its own in `_meta` (such a request is rmcp's to check).
fn read(
    method: &str,
    body: &[u8],
) -> Option<rmcp::model::JsonRpcRequest<rmcp::model::ClientRequest>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let request = super::params::typed_request(method, &mut de)?.ok()?;
    de.end().ok()?;
    request
        .request
        .get_meta()
        .protocol_version()
        .is_none()
        .then_some(request)
}

fn id_json(id: &RequestId) -> serde_json::Value {
    serde_json::to_value(id).unwrap_or_default()
}

/// The answer as `application/json`.
fn json(message: Option<&ServerJsonRpcMessage>) -> Response<Body> {
    let body = message
        .and_then(|m| serde_json::to_vec(m).ok())
        .unwrap_or_default();
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_default()
}

/// One SSE event, written as rmcp writes it.
fn event(m: ServerSseMessage) -> Bytes {
    let data = match &m.message {
        Some(message) => serde_json::to_string(&**message).unwrap_or_default(),
        // The priming event: empty data (SEP-1699).
        None => String::new(),
    };
    let mut sse = Sse::default().data(data);
    sse.id = m.event_id;
    if let Some(retry) = m.retry {
        sse.retry = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
    }
    sse.into()
}

/// The SSE body of a request's answer: what was read before deciding, then
/// each message as it comes, a keep-alive comment after 15 s without one,
/// and the end at shutdown.
struct Events {
    head: Option<Bytes>,
    stream: Messages,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(head))));
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        let frame = match self.stream.poll_next_unpin(cx) {
            Poll::Ready(Some(m)) => event(m),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                std::task::ready!(self.keep_alive.as_mut().poll(cx));
                Bytes::from_static(b":\n\n")
            }
        };
        let next = tokio::time::Instant::now() + KEEP_ALIVE;
        self.keep_alive.as_mut().reset(next);
        Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn rpc(method: &str) -> Rpc {
        Rpc {
            method: Some(method.into()),
            id: Some(serde_json::json!(1)),
            name: None,
            modern: false,
        }
    }

    #[test]
    fn only_plain_initialize_era_requests_in_a_session_are_taken() {
        let ok = headers(&[
            ("mcp-session-id", "s"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-06-18"),
        ]);
        assert!(eligible(&rpc("tools/call"), &ok).is_some());
        assert!(eligible(&rpc("initialize"), &ok).is_none());
        let mut notification = rpc("notifications/cancelled");
        notification.id = None;
        assert!(eligible(&notification, &ok).is_none());
        let mut modern = rpc("tools/call");
        modern.modern = true;
        assert!(eligible(&modern, &ok).is_none());
        let refused = [
            headers(&[("accept", "application/json, text/event-stream")]),
            headers(&[("mcp-session-id", "s"), ("accept", "application/json")]),
            headers(&[
                ("mcp-session-id", "s"),
                ("accept", "application/json;q=0, text/event-stream"),
            ]),
            headers(&[
                ("mcp-session-id", "s"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2026-07-28"),
            ]),
            headers(&[
                ("mcp-session-id", "s"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "1999-01-01"),
            ]),
        ];
        for h in refused {
            assert!(eligible(&rpc("tools/call"), &h).is_none(), "{h:?}");
        }
    }

    #[test]
    fn a_request_reads_by_its_method_or_is_left_to_rmcp() {
        let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a__b","arguments":{"x":1},"_meta":{"progressToken":7}}}"#;
        let r = read("tools/call", call).expect("reads");
        assert!(matches!(
            r.request,
            rmcp::model::ClientRequest::CallToolRequest(_)
        ));
        assert_eq!(r.id, RequestId::Number(3));
        // Params that do not fit, trailing bytes, a custom method, a request
        // naming its own protocol version: all rmcp's.
        assert!(
            read(
                "tools/call",
                br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":5}}"#
            )
            .is_none()
        );
        assert!(read("tools/call", &[call.as_slice(), b" {}"].concat()).is_none());
        assert!(
            read(
                "x/custom",
                br#"{"jsonrpc":"2.0","id":3,"method":"x/custom"}"#
            )
            .is_none()
        );
        let versioned = br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert!(read("tools/list", versioned).is_none());
    }
}
