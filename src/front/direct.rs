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
//! ([`params::typed_request`](super::params::typed_request)) and then:
//!
//! - once the session has initialized here, its handler is called in this
//!   task ([`Call`], decision 0020): no hand-off to rmcp's session worker,
//!   service loop and per-request task. What the call sends before its
//!   answer (progress, requests to the client) is taken off the session's
//!   transport ([`Divert`]) and written first, as SSE; otherwise the answer
//!   is plain JSON. A client's `notifications/cancelled` is noted here on its
//!   way to rmcp, which does not know these calls;
//! - otherwise (the session's first requests, or one whose rmcp worker has
//!   been idle a quarter of its timeout) it is handed to the session table
//!   ([`Sessions`], which keeps its in-flight id claim), and the session's
//!   messages for the request become the answer: plain JSON when the first
//!   message is the answer, otherwise an SSE stream as rmcp writes it
//!   (priming event, event ids, `retry`, keep-alive comments).
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
use std::future::Future;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use rmcp::service::{RequestContext, Service as _};
use rmcp::{Peer, RoleServer};

use super::layers::{RequestSpan, Rpc, SESSION_HEADER};
use super::reject::{Body, codes, jsonrpc_error};
use super::request::PolledInSpan;
use super::session::FrontSession;
use super::sessions::{Divert, Held, InFlight, Sessions};
use crate::backend::CLIENT_REQUEST;

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
        if rpc.id.is_none() && rpc.method.as_deref() == Some("notifications/cancelled") {
            return Served::Declined(self.note_cancel(req).await);
        }
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
        let (parts, bytes) = split(req).await;
        let Some(mut request) = read(method, &bytes) else {
            return Served::Declined(Request::from_parts(parts, Full::new(bytes)));
        };
        let id = request.id.clone();
        if let Some(held) = self.sessions.held(&session)
            && held.worker_fresh(self.sessions.idle_timeout() / 4)
            && let Some((handler, peer)) = held.handler()
            && let Some(claim) = self.sessions.claim_request(&session, &id)
        {
            self.sessions.touch(&session);
            let call = Call {
                held,
                handler,
                peer,
                claim,
                shutdown: self.shutdown.clone(),
            };
            return Served::Answered(call.run(request, parts).await);
        }
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
        sse(Events {
            head: Some(Bytes::from(head)).filter(|h| !h.is_empty()),
            stream,
            keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            shutdown: Box::pin(self.shutdown.clone().cancelled_owned()),
        })
    }

    /// Lets a call the direct path serves hear of the client's cancellation
    /// (rmcp's session does not know the call); rmcp then gets the
    /// notification as well.
    async fn note_cancel(&self, req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
        let Some(held) = req
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| self.sessions.held(&SessionId::from(s.to_owned())))
        else {
            return req;
        };
        let (parts, bytes) = split(req).await;
        #[derive(serde::Deserialize)]
        struct Cancelled {
            params: rmcp::model::CancelledNotificationParam,
        }
        if let Ok(Cancelled { params }) = serde_json::from_slice(&bytes)
            && let Some(id) = params.request_id
            && held.calls.cancel(&id)
        {
            tracing::debug!(request = %id, "client cancelled a call of the direct path");
        }
        Request::from_parts(parts, Full::new(bytes))
    }
}

/// A request the direct path answers by calling the session's handler
/// itself, in the connection's task (decision 0020): no hop through rmcp's
/// session worker, service loop and per-request task.
struct Call {
    held: Arc<Held>,
    handler: Arc<FrontSession>,
    peer: Peer<RoleServer>,
    claim: InFlight,
    /// Ends an open SSE answer at shutdown.
    shutdown: CancellationToken,
}

impl Call {
    async fn run(
        self,
        request: rmcp::model::JsonRpcRequest<rmcp::model::ClientRequest>,
        parts: http::request::Parts,
    ) -> Response<Body> {
        let Self {
            held,
            handler,
            peer,
            claim,
            shutdown,
        } = self;
        let id = request.id;
        let mut inner = request.request;
        // As rmcp's service loop builds a handler's context.
        let meta = std::mem::take(inner.get_meta_mut());
        let mut extensions = std::mem::take(inner.extensions_mut());
        // The handler runs in this future, which the trace layer polls in
        // the request's span; moved to a task of its own, it takes the span.
        let span = parts
            .extensions
            .get::<RequestSpan>()
            .map_or_else(tracing::Span::none, |s| s.0.clone());
        extensions.insert(parts);
        extensions.insert(PolledInSpan);
        // Cancelled by the client's notification, or when the session ends.
        let cancel = held.closed.child_token();
        let (to, mut from) = tokio::sync::mpsc::unbounded_channel();
        let diverted = Divert::register(
            &held,
            id.clone(),
            meta.get_progress_token(),
            to.clone(),
            cancel.clone(),
        );
        let mut context = RequestContext::new(id.clone(), peer);
        context.ct = cancel;
        context.meta = meta;
        context.extensions = extensions;
        let work = CLIENT_REQUEST.scope(id.clone(), async move {
            let result = handler.handle_request(inner, context).await;
            // What the call sent before its answer has been taken by now.
            drop(diverted);
            drop(claim);
            match result {
                Ok(result) => ServerJsonRpcMessage::response(result, id),
                Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
            }
        });
        let mut work = Detached(Some(Box::pin(work)), span);
        let silent = tokio::time::sleep(KEEP_ALIVE);
        tokio::pin!(silent);
        let head = tokio::select! {
            biased;
            answer = &mut work => match from.try_recv() {
                Err(_) => return json(Some(&answer)),
                // Sent before the answer, in the same step: it goes first.
                Ok(first) => {
                    let _ = to.send(answer);
                    event(ServerSseMessage::from_message(first))
                }
            },
            Some(first) = from.recv() => event(ServerSseMessage::from_message(first)),
            // Silent this long: the client gets a stream now, with a
            // keep-alive comment, as on rmcp's path.
            () = &mut silent => Bytes::from_static(b":\n\n"),
        };
        // The call sent something before its answer (or kept silent): the
        // answer becomes an SSE stream, and the call goes on in a task of its own.
        if let Some(task) = work.0.take() {
            let task = async move {
                let _ = to.send(task.await);
            };
            tokio::spawn(task.instrument(work.1.clone()));
        } else {
            drop(to);
        }
        let rest = futures::stream::unfold(from, |mut from| async move {
            let m = from.recv().await?;
            Some((ServerSseMessage::from_message(m), from))
        });
        let body = Events {
            head: Some(head),
            stream: Box::pin(rest),
            keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            shutdown: Box::pin(shutdown.cancelled_owned()),
        };
        sse(body)
    }
}

/// A call's work, which goes on in a task of its own if its answer is no
/// longer awaited (the client went away): the call still ends as it would
/// (audited, its slot released), and only its answer is lost.
struct Detached(
    Option<Pin<Box<dyn Future<Output = ServerJsonRpcMessage> + Send>>>,
    tracing::Span,
);

impl Future for Detached {
    type Output = ServerJsonRpcMessage;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ServerJsonRpcMessage> {
        let Some(work) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let answer = std::task::ready!(work.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(answer)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(work) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let task = async move {
                let _ = work.await;
            };
            runtime.spawn(task.instrument(self.1.clone()));
        }
    }
}

/// An SSE answer.
fn sse(body: Events) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(BodyExt::boxed(body))
        .unwrap_or_default()
}

type Messages = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;

/// The request's session and method, when the request is one this path takes
/// as far as its headers and envelope tell.
fn eligible<'r>(rpc: &'r Rpc, headers: &HeaderMap) -> Option<(SessionId, &'r str)> {
    let method = rpc.method.as_deref()?;
    if rpc.id.is_none() || rpc.modern || matches!(method, "initialize" | "server/discover") {
        return None;
    }
    let session = headers.get(SESSION_HEADER)?.to_str().ok()?;
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

/// A request's parts and its (already buffered) body.
async fn split(req: Request<Full<Bytes>>) -> (http::request::Parts, Bytes) {
    let (parts, body) = req.into_parts();
    match body.collect().await {
        Ok(collected) => (parts, collected.to_bytes()),
        Err(never) => match never {},
    }
}

/// The request read by its method, when it reads and names no protocol
/// version of its own in `_meta` (such a request is rmcp's to check).
fn read(
    method: &str,
    body: &[u8],
) -> Option<rmcp::model::JsonRpcRequest<rmcp::model::ClientRequest>> {
    let fast = (method == "tools/call")
        .then(|| super::params::call_request(body))
        .flatten();
    let request = match fast {
        Some(request) => request,
        None => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let request = super::params::typed_request(method, &mut de)?.ok()?;
            de.end().ok()?;
            request
        }
    };
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
