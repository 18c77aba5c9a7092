//! A minimal legacy MCP HTTP+SSE server (protocol 2024-11-05), so the fixture backend can
//! play an old-style SSE server in tests; rmcp 3.x only serves streamable HTTP.
//!
//! - `GET /sse` opens a session: a fresh handler is served over in-memory channels, the
//!   first event is `endpoint` (`/messages?session_id=<id>`), then every server message
//!   follows as an `event: message`.
//! - `POST /messages?session_id=<id>` hands one JSON-RPC message to that session and answers
//!   `202 Accepted` (`404` for an unknown session, `400` for bad JSON).
//! - A session lives exactly as long as its GET stream: the client dropping it ends the
//!   session, and the session ending (or `serve` shutting down) closes the stream.
//!
//! It is a test fixture and must not be used as a real server: session ids are sequential,
//! and there is no authentication, no origin check and no keep-alive.

use std::{
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt, channel::mpsc, stream, stream::BoxStream};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, combinators::UnsyncBoxBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use rmcp::{
    ServerHandler, ServiceExt,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    service::QuitReason,
};
use sse_stream::{Sse, SseBody};
use tokio::net::TcpListener;
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::TaskTracker,
};

/// Messages buffered per direction per session; a full buffer makes the POST (inbound) or
/// the handler (outbound) wait, which is the backpressure we want.
const SESSION_BUFFER: usize = 32;

/// Largest POST body accepted; far above any test message.
const MAX_POST_BYTES: usize = 4 * 1024 * 1024;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The server end of one session's in-memory transport, as rmcp's `IntoTransport` takes it.
type SessionTransport = (
    mpsc::Sender<ServerJsonRpcMessage>,
    mpsc::Receiver<ClientJsonRpcMessage>,
);

/// Serves legacy SSE on `listener` until `ct` is cancelled, creating one handler per session
/// with `make_handler`. Returns once every connection and session task has finished.
///
/// # Errors
///
/// Returns the error if accepting a connection fails (after shutting down the rest).
pub async fn serve<S, F>(
    listener: TcpListener,
    make_handler: F,
    ct: CancellationToken,
) -> std::io::Result<()>
where
    S: ServerHandler,
    F: Fn() -> S + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        sessions: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        make_handler,
        tracker: TaskTracker::new(),
        ct,
    });
    let result = loop {
        let stream = tokio::select! {
            () = shared.ct.cancelled() => break Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => break Err(error),
            },
        };
        let conn_shared = Arc::clone(&shared);
        let conn_ct = shared.ct.clone();
        // One task per connection. Ends when the client closes the connection, or when `ct`
        // is cancelled: the connection is then dropped, and with it any SSE body, which
        // ends that body's session.
        shared.tracker.spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&conn_shared);
                async move { Ok::<_, Infallible>(shared.route(req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = conn_ct.cancelled() => {}
                outcome = conn => if let Err(error) = outcome {
                    tracing::debug!(%error, "SSE fixture connection failed");
                },
            }
        });
    };
    // On an accept error, take the open sessions down too rather than leaving them orphaned.
    shared.ct.cancel();
    shared.tracker.close();
    shared.tracker.wait().await;
    result
}

/// State shared by every connection of one `serve` call.
struct Shared<F> {
    /// Open sessions: id → the inbound half of the session's transport. The session task
    /// removes its entry when the session ends, so POSTs to it get 404.
    sessions: Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>,
    next_id: AtomicU64,
    make_handler: F,
    /// Connection and session tasks, so `serve` can wait for them at shutdown.
    tracker: TaskTracker,
    /// Server-wide shutdown; every session token is a child of it.
    ct: CancellationToken,
}

impl<S, F> Shared<F>
where
    S: ServerHandler,
    F: Fn() -> S + Send + Sync + 'static,
{
    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/sse") => self.open_session(),
            (&Method::POST, "/messages") => self.post_message(req).await,
            (_, "/sse" | "/messages") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn open_session(self: Arc<Self>) -> Response<Body> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (inbound_tx, inbound_rx) = mpsc::channel(SESSION_BUFFER);
        let (outbound_tx, outbound_rx) = mpsc::channel(SESSION_BUFFER);
        self.sessions().insert(id.clone(), inbound_tx);

        // Cancelled when the GET body is dropped (client gone), when the handler's service
        // stops, or when `serve` shuts down.
        let session_ct = self.ct.child_token();
        let handler = (self.make_handler)();
        let task_ct = session_ct.clone();
        let task_id = id.clone();
        let shared = Arc::clone(&self);
        // The session task. Ends when the handler's service stops: on its own, or because
        // `session_ct` was cancelled. It waits for the service loop, so once `serve` returns no
        // handler is left running.
        self.tracker.spawn(async move {
            let transport = (outbound_tx, inbound_rx);
            match run_session(handler, transport, task_ct.clone()).await {
                Ok(reason) => {
                    tracing::debug!(session = %task_id, ?reason, "SSE fixture session ended");
                }
                // The client left before initializing: normal, not worth a warning.
                Err(error) if task_ct.is_cancelled() => {
                    tracing::debug!(session = %task_id, %error, "SSE fixture session ended early");
                }
                Err(error) => {
                    tracing::warn!(session = %task_id, %error, "SSE fixture session failed");
                }
            }
            shared.sessions().remove(&task_id);
            task_ct.cancel();
        });

        let endpoint = Sse::default()
            .event("endpoint")
            .data(format!("/messages?session_id={id}"));
        let messages = outbound_rx.filter_map(move |message| {
            let event = match serde_json::to_string(&message) {
                Ok(data) => Some(Sse::default().event("message").data(data)),
                Err(error) => {
                    tracing::warn!(session = %id, %error, "unserializable server message; dropped");
                    None
                }
            };
            std::future::ready(event)
        });
        let events = stream::once(std::future::ready(endpoint))
            .chain(messages)
            .take_until(session_ct.clone().cancelled_owned())
            .map(Ok::<_, Infallible>)
            .boxed();
        let body = SseBody::new(SessionEvents {
            events,
            _end_session_on_drop: session_ct.drop_guard(),
        });

        let mut response = Response::new(body.boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    async fn post_message(&self, req: Request<Incoming>) -> Response<Body> {
        let Some(id) = session_id(req.uri().query()) else {
            return text(StatusCode::BAD_REQUEST, "missing session_id");
        };
        // Clone the sender so the lock is not held across the awaits below.
        let Some(mut session) = self.sessions().get(&id).cloned() else {
            return text(StatusCode::NOT_FOUND, "unknown session");
        };
        let body = match Limited::new(req.into_body(), MAX_POST_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "message too large");
            }
            Err(error) => return text(StatusCode::BAD_REQUEST, format!("bad body: {error}")),
        };
        let message = match serde_json::from_slice::<ClientJsonRpcMessage>(&body) {
            Ok(message) => message,
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON-RPC message: {error}"),
                );
            }
        };
        if session.send(message).await.is_err() {
            return text(StatusCode::NOT_FOUND, "session ended");
        }
        text(StatusCode::ACCEPTED, "Accepted")
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves one handler until its service stops or `ct` is cancelled.
async fn run_session<S: ServerHandler>(
    handler: S,
    transport: SessionTransport,
    ct: CancellationToken,
) -> Result<QuitReason, Box<dyn std::error::Error + Send + Sync>> {
    let running = handler.serve_with_ct(transport, ct).await?;
    Ok(running.waiting().await?)
}

/// A session's SSE events, owning the guard that ends the session when hyper drops the body
/// (the client went away or the connection closed).
struct SessionEvents {
    events: BoxStream<'static, Result<Sse, Infallible>>,
    _end_session_on_drop: DropGuard,
}

impl Stream for SessionEvents {
    type Item = Result<Sse, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

fn session_id(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "session_id")
        .map(|(_, value)| value.into_owned())
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
