//! Calls to a streamable-HTTP backend POSTed by the gateway itself, without
//! rmcp's client worker and service loop (decision 0023).
//!
//! rmcp's streamable-HTTP client sends a request as a message to its
//! service loop, which hands it to the transport's worker task, which POSTs
//! it and spawns a task to read the answer's SSE stream; the answer travels
//! back through two channels and is read first as every other kind of
//! result. For `tools/call`, `prompts/get`, `resources/read` and
//! `completion/complete` on a backend connected with `initialize`, the
//! calling task does this itself: [`Post::call`] makes the request's body,
//! and [`Posted::answer`] POSTs it with the session, protocol version and
//! headers rmcp's client last sent with, and reads the answer (JSON, or the
//! SSE stream) where it arrives.
//!
//! What else the backend sends on a call's stream is handed to rmcp's
//! client as if its own transport had read it ([`Injected`]): progress and
//! log messages are routed first, in order, as `ordering` routes them on
//! arrival, and a request the backend makes (sampling, elicitation, roots)
//! carries the call it came with, as rmcp marks it, so it reaches the
//! caller. A stream that ends before the answer is resumed with
//! `Last-Event-ID`; a session the backend forgot (404) is renewed by rmcp's
//! client (a ping meets the same answer and starts a new session), and the
//! call is sent once more on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderName, HeaderValue, StatusCode, header};
use rmcp::model::{
    CancelledNotificationParam, ClientJsonRpcMessage, ClientRequest, GetExtensions, GetMeta,
    ProgressToken, RequestId, ServerJsonRpcMessage, ServerNotification, ServerResult,
};
use rmcp::service::{InboundStreamOrigin, RxJsonRpcMessage, ServiceError, TxJsonRpcMessage};
use rmcp::transport::{DynamicTransportError, Transport};
use rmcp::{Peer, RoleClient};
use sse_stream::SseStream;
use tokio::sync::{Notify, mpsc};

use super::Backend;

/// Largest answer or event read (rmcp's limit for a stdio line).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How many times in a row a call's stream is resumed without a message.
const MAX_RESUMES: u32 = 5;
/// The wait before resuming when the backend gave none (`retry:`).
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// What rmcp tells a backend when a request times out, said the same way.
const TIMEOUT_REASON: &str = "request timeout";
const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
/// Messages read on calls' streams waiting for rmcp's client.
const INJECTED: usize = 64;

/// Where and how rmcp's client last sent a message on the connection.
struct Link {
    uri: Arc<str>,
    /// `uri` parsed once (reqwest would parse the text on every request).
    url: reqwest::Url,
    session: Option<Arc<str>>,
    auth: Option<String>,
    /// The configured headers and `MCP-Protocol-Version`.
    headers: HashMap<HeaderName, HeaderValue>,
}

/// One streamable-HTTP connection's direct calls.
pub(crate) struct Post {
    http: reqwest::Client,
    /// `None` until rmcp's client has sent its first message after
    /// `initialize` (the session and version are known from then on).
    link: Mutex<Option<Arc<Link>>>,
    /// To rmcp's client, through [`Injected`].
    inject: mpsc::Sender<ServerJsonRpcMessage>,
    next_id: AtomicI64,
}

impl Post {
    /// A connection's direct calls, and the receiving end to give
    /// [`Injected`].
    pub(super) fn new(http: reqwest::Client) -> (Arc<Self>, mpsc::Receiver<ServerJsonRpcMessage>) {
        let (inject, injected) = mpsc::channel(INJECTED);
        let post = Arc::new(Self {
            http,
            link: Mutex::new(None),
            inject,
            next_id: AtomicI64::new(super::wire::FIRST_ID),
        });
        (post, injected)
    }

    fn link(&self) -> Option<Arc<Link>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether calls can be sent here: rmcp's client has sent with a session.
    pub(super) fn ready(&self) -> bool {
        self.link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Notes where and how rmcp's client sends `message` (its session and
    /// headers change when it renews the session).
    pub(super) fn note(
        &self,
        message: &ClientJsonRpcMessage,
        uri: &Arc<str>,
        session: Option<&Arc<str>>,
        auth: Option<&String>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) {
        if let ClientJsonRpcMessage::Request(r) = message
            && matches!(r.request, ClientRequest::InitializeRequest(_))
        {
            return;
        }
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = link.as_ref()
            && known.session.as_ref() == session
            && known.auth.as_ref() == auth
            && known.uri == *uri
            && known.headers == *headers
        {
            return;
        }
        let Ok(url) = reqwest::Url::parse(uri) else {
            return; // rmcp's client could not send there either
        };
        *link = Some(Arc::new(Link {
            uri: uri.clone(),
            url,
            session: session.cloned(),
            auth: auth.cloned(),
            headers: headers.clone(),
        }));
    }

    /// The id (and progress token) of the next call sent here: from 2³² up,
    /// apart from rmcp's own.
    pub(super) fn next_id(&self) -> RequestId {
        RequestId::Number(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Makes `request` the body of call `id`, its progress token the same
    /// number. Nothing is sent until the answer is awaited.
    pub(super) fn call(
        self: &Arc<Self>,
        mut request: ClientRequest,
        id: RequestId,
    ) -> Result<Posted, ServiceError> {
        request
            .get_meta_mut()
            .set_progress_token(ProgressToken(id.clone()));
        let is_call = matches!(request, ClientRequest::CallToolRequest(_));
        let body = match super::wire::call_line(&mut request, &id) {
            Some(line) => line,
            None => serde_json::to_vec(&ClientJsonRpcMessage::request(request, id.clone())),
        }
        .map_err(|e| failed(format!("could not write the request: {e}")))?;
        Ok(Posted {
            id,
            body: Bytes::from(body),
            is_call,
            post: self.clone(),
        })
    }

    fn with_link(&self, request: reqwest::RequestBuilder, link: &Link) -> reqwest::RequestBuilder {
        let mut request = request;
        if let Some(token) = &link.auth {
            request = request.bearer_auth(token);
        }
        for (name, value) in &link.headers {
            request = request.header(name, value);
        }
        if let Some(session) = &link.session {
            request = request.header(SESSION_ID, session.as_ref());
        }
        request
    }

    async fn send(&self, link: &Link, body: Bytes) -> reqwest::Result<reqwest::Response> {
        let request = self
            .http
            .post(link.url.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        self.with_link(request, link).send().await
    }

    /// Asks for the rest of a call's stream after the event `last`.
    async fn resume(&self, link: &Link, last: &str) -> reqwest::Result<reqwest::Response> {
        let request = self
            .http
            .get(link.url.clone())
            .header(header::ACCEPT, "text/event-stream")
            .header(LAST_EVENT_ID, last);
        self.with_link(request, link).send().await
    }
}

/// A call made by [`Post::call`]; sent and answered by [`Posted::answer`].
pub(super) struct Posted {
    pub(super) id: RequestId,
    body: Bytes,
    /// A `tools/call`: its answer is read straight into `CallToolResult`.
    is_call: bool,
    post: Arc<Post>,
}

impl Posted {
    /// Sends the call and waits for its answer, or a timeout of `timeout`
    /// without an answer or progress (then the backend is told the call is
    /// cancelled, as rmcp tells it).
    pub(super) async fn answer(
        self,
        backend: &Backend,
        peer: &Peer<RoleClient>,
        timeout: Duration,
    ) -> Result<ServerResult, ServiceError> {
        let progress = Notify::new();
        let exchange = self.exchange(backend, peer, &progress);
        tokio::pin!(exchange);
        let limit = tokio::time::sleep(timeout);
        tokio::pin!(limit);
        loop {
            tokio::select! {
                biased;
                answer = &mut exchange => return answer,
                () = &mut limit => {
                    let param = CancelledNotificationParam::new(Some(self.id.clone()), Some(TIMEOUT_REASON.into()));
                    let _ = peer.notify_cancelled(param).await;
                    return Err(ServiceError::Timeout { timeout });
                }
                () = progress.notified() => {
                    limit.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
        }
    }

    async fn exchange(
        &self,
        backend: &Backend,
        peer: &Peer<RoleClient>,
        progress: &Notify,
    ) -> Result<ServerResult, ServiceError> {
        let mut link = self.post.link().ok_or(ServiceError::TransportClosed)?;
        let mut renewed = false;
        let response = loop {
            let response = self
                .post
                .send(&link, self.body.clone())
                .await
                .map_err(|e| failed(format!("could not reach the backend: {e}")))?;
            if response.status() == StatusCode::NOT_FOUND && link.session.is_some() && !renewed {
                // The backend forgot the session. rmcp's client starts a new
                // one when its own next request meets the same answer; the
                // call is then sent again on it (it was not run).
                renewed = true;
                let _ = peer
                    .send_request(ClientRequest::PingRequest(Default::default()))
                    .await;
                if let Some(fresh) = self.post.link()
                    && fresh.session != link.session
                {
                    link = fresh;
                    continue;
                }
                return Err(failed("the backend's session expired and was not renewed"));
            }
            break response;
        };
        let status = response.status();
        if !status.is_success() || status == StatusCode::ACCEPTED {
            return Err(failed(format!("the backend answered HTTP {status}")));
        }
        let kind = super::http_tap::content_type(&response);
        if kind.starts_with(b"application/json") {
            let body = super::http_tap::read_capped(response, MAX_MESSAGE)
                .await
                .map_err(|e| failed(format!("reading the backend's answer: {e}")))?;
            let message = self
                .read(&body)
                .map_err(|e| failed(format!("the backend's answer is not JSON-RPC: {e}")))?;
            return match self.on_message(backend, message, progress).await {
                Some(answer) => answer,
                None => Err(failed("the backend's JSON answer was not the call's")),
            };
        }
        if kind.starts_with(b"text/event-stream") {
            return self.stream(response, &link, backend, progress).await;
        }
        Err(failed(format!(
            "the backend answered with content type {:?}",
            String::from_utf8_lossy(&kind)
        )))
    }

    /// Reads the call's SSE stream up to its answer, resuming it where it
    /// ended (`Last-Event-ID`) if it ends first.
    async fn stream(
        &self,
        mut response: reqwest::Response,
        link: &Link,
        backend: &Backend,
        progress: &Notify,
    ) -> Result<ServerResult, ServiceError> {
        let mut last_event: Option<String> = None;
        let mut retry = DEFAULT_RETRY;
        let mut resumes = 0;
        loop {
            // Bytes read since the last event: an event never ended is cut off.
            let pending = Arc::new(AtomicUsize::new(0));
            let counted = pending.clone();
            let bytes = response.bytes_stream().map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                if counted.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len() > MAX_MESSAGE {
                    return Err(std::io::Error::other("an event over the size limit"));
                }
                Ok(chunk)
            });
            let mut events = SseStream::from_bytes_stream(bytes);
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::debug!(backend = %backend.name(), error = %e, "a call's stream broke");
                        break;
                    }
                };
                pending.store(0, Ordering::Relaxed);
                if let Some(id) = event.id {
                    last_event = Some(id);
                }
                if let Some(ms) = event.retry {
                    retry = Duration::from_millis(ms);
                }
                let Some(data) = event.data.filter(|d| !d.is_empty()) else {
                    continue; // a priming event, or a comment
                };
                resumes = 0;
                match self.read(data.as_bytes()) {
                    Ok(message) => {
                        if let Some(answer) = self.on_message(backend, message, progress).await {
                            return answer;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(backend = %backend.name(), error = %e, "ignoring an unreadable backend message");
                    }
                }
            }
            let Some(last) = last_event.as_deref() else {
                return Err(failed(
                    "the backend ended the call's stream without answering",
                ));
            };
            resumes += 1;
            tracing::debug!(backend = %backend.name(), last_event = last, after_ms = retry.as_millis() as u64, "a call's stream ended before its answer: resuming it");
            if resumes > MAX_RESUMES {
                return Err(failed(
                    "the backend ended the call's stream without answering, and resuming it gave nothing",
                ));
            }
            tokio::time::sleep(retry).await;
            response = self
                .post
                .resume(link, last)
                .await
                .map_err(|e| failed(format!("could not resume the call's stream: {e}")))?;
            let status = response.status();
            if !status.is_success() {
                return Err(failed(format!(
                    "resuming the call's stream: the backend answered HTTP {status}"
                )));
            }
        }
    }

    /// One message: a tools/call's answer straight into its result, as the
    /// stdio reader reads it; anything else as rmcp reads it.
    fn read(&self, data: &[u8]) -> serde_json::Result<ServerJsonRpcMessage> {
        if self.is_call
            && let Some((id, result)) = super::lines::answer_parts(data)
            && id == self.id
            && let Ok(result) = serde_json::from_str(result.get())
        {
            return Ok(ServerJsonRpcMessage::response(
                ServerResult::CallToolResult(result),
                id,
            ));
        }
        serde_json::from_slice(data)
    }

    /// What a message from the backend does: the call's answer ends the
    /// call (`Some`); anything else goes on to rmcp's client (`None`).
    async fn on_message(
        &self,
        backend: &Backend,
        mut message: ServerJsonRpcMessage,
        progress: &Notify,
    ) -> Option<Result<ServerResult, ServiceError>> {
        match &mut message {
            ServerJsonRpcMessage::Response(r) if r.id == self.id => {
                let ServerJsonRpcMessage::Response(r) = message else {
                    unreachable!()
                };
                return Some(Ok(r.result));
            }
            ServerJsonRpcMessage::Error(e) if e.id.as_ref() == Some(&self.id) => {
                let ServerJsonRpcMessage::Error(e) = message else {
                    unreachable!()
                };
                return Some(Err(ServiceError::McpError(e.error)));
            }
            ServerJsonRpcMessage::Notification(n) => {
                if let ServerNotification::ProgressNotification(p) = &n.notification
                    && p.params.progress_token.0 == self.id
                {
                    progress.notify_one();
                }
                super::ordering::route_on_arrival(backend, &mut message).await;
            }
            ServerJsonRpcMessage::Request(r) => {
                // As rmcp marks a request read on a call's stream: it is
                // relayed to that call's client.
                r.request
                    .extensions_mut()
                    .insert(InboundStreamOrigin::OutboundRequest(self.id.clone()));
            }
            _ => {}
        }
        if self.post.inject.send(message).await.is_err() {
            return Some(Err(ServiceError::TransportClosed));
        }
        None
    }
}

/// A failure to send or read, as rmcp reports its transport's.
fn failed(message: impl Into<String>) -> ServiceError {
    ServiceError::TransportSend(DynamicTransportError::from_parts(
        "streamable-http",
        std::any::TypeId::of::<Post>(),
        Box::new(std::io::Error::other(message.into())),
    ))
}

/// rmcp's streamable-HTTP transport, also yielding what calls sent by
/// [`Post`] read on their streams and hand on.
pub(super) struct Injected<T> {
    inner: T,
    injected: mpsc::Receiver<ServerJsonRpcMessage>,
}

impl<T> Injected<T> {
    pub(super) fn new(inner: T, injected: mpsc::Receiver<ServerJsonRpcMessage>) -> Self {
        Self { inner, injected }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Injected<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    /// Cancel-safe, as both receives are. Ends when the connection does.
    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        tokio::select! {
            biased;
            message = self.inner.receive() => message,
            Some(message) = self.injected.recv() => Some(message),
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
