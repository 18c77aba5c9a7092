//! One MCP request as a session handles it: who asks (the client its token
//! proved), in which span, until when (`limits.request_timeout`), and how it
//! ended (counted in the metrics).
//!
//! What the layers learned arrives through the request's `http::request::Parts`
//! in the context's extensions, where rmcp (or the direct path, which builds
//! the context as rmcp does) puts them. On rmcp's path the handler runs in a
//! task of rmcp's and enters the request's span itself; on the direct path it
//! runs inside the HTTP request's future, already in that span (decision
//! 0021). Over stdio there are no parts: no client id and a fresh span.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rmcp::model::ErrorCode;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use super::layers::{Caller, RequestSpan, Rpc, SESSION_HEADER};
use super::policy::Client;
use super::reject::codes;

/// Marks a request whose handler runs inside the HTTP request's own future,
/// which [`layers::trace`](super::layers::trace) polls inside the request's
/// span (the direct path, decision 0020). Whoever moves such work to another
/// task instruments it with the span.
#[derive(Clone, Copy, Debug)]
pub(super) struct PolledInSpan;

/// How long a timed-out call gets to tell its backend it was cancelled.
const CANCEL_GRACE: Duration = Duration::from_millis(250);

pub(super) struct Req {
    /// The authenticated client; `None` without `[auth]` (or over stdio).
    pub client: Option<Arc<Client>>,
    method: &'static str,
    span: tracing::Span,
    /// The request's future is already polled inside `span` (the direct
    /// path runs the handler in the HTTP request's own future), so the work
    /// need not enter it again.
    in_span: bool,
    pub(super) started: Instant,
    timeout: Option<Duration>,
    /// Given to the backend call: cancelled when the client cancels the
    /// request or it runs out of time. A child of rmcp's token, so it ends
    /// with the request.
    pub cancel: CancellationToken,
    backend: OnceLock<String>,
    tool_error: AtomicBool,
    /// Set when the request may not run at all (see [`Req::refuse`]).
    refused: OnceLock<ErrorData>,
    /// The gateway's request id (`x-request-id`): the audit log's
    /// `correlation_id`, also sent to the backend in `_meta`.
    pub correlation_id: Arc<str>,
    /// `http` or `stdio`, for the audit log.
    pub transport: &'static str,
    /// The session's global id (`<instance_id>.<uuid>`), for the audit log.
    pub session_name: Arc<str>,
}

impl Req {
    pub fn new(
        method: &'static str,
        ctx: &RequestContext<RoleServer>,
        session_name: Arc<str>,
        timeout: Option<Duration>,
    ) -> Self {
        let parts = ctx.extensions.get::<http::request::Parts>();
        let client = parts
            .and_then(|p| p.extensions.get::<Caller>())
            .map(|c| c.0.clone());
        let http_span =
            parts.and_then(|p| p.extensions.get::<RequestSpan>().map(|s| (p, s.0.clone())));
        let span = match http_span {
            // Each record reformats the span's fields: only what the HTTP
            // layers did not already record (decision 0021).
            Some((p, span)) => {
                if p.headers.get(SESSION_HEADER).map(|v| v.as_bytes())
                    != Some(session_name.as_bytes())
                {
                    span.record("session", tracing::field::display(&*session_name));
                }
                if p.extensions.get::<Rpc>().and_then(|r| r.method.as_deref()) != Some(method) {
                    span.record("method", method);
                }
                span
            }
            None => tracing::info_span!(
                "request",
                method,
                session = &*session_name,
                tool = Empty,
                backend = Empty,
                client = Empty
            ),
        };
        let in_span = ctx.extensions.get::<PolledInSpan>().is_some();
        let correlation_id = parts
            .and_then(|p| p.extensions.get::<super::layers::RequestId>())
            .map(|r| r.0.clone())
            .unwrap_or_else(|| super::layers::trace::new_request_id().into());
        let transport = if parts.is_some() { "http" } else { "stdio" };
        Self {
            client,
            method,
            span,
            in_span,
            started: Instant::now(),
            timeout,
            cancel: ctx.ct.child_token(),
            backend: OnceLock::new(),
            tool_error: AtomicBool::new(false),
            refused: OnceLock::new(),
            correlation_id,
            transport,
            session_name,
        }
    }

    /// The backend the request was routed to, once known.
    pub fn backend(&self) -> Option<&str> {
        self.backend.get().map(String::as_str)
    }

    /// Whether a `tools/call` came back with `isError`.
    pub fn had_tool_error(&self) -> bool {
        self.tool_error.load(Ordering::Relaxed)
    }

    pub fn method(&self) -> &'static str {
        self.method
    }

    pub fn client_id(&self) -> Option<&str> {
        self.client.as_ref().map(|c| &*c.id)
    }

    /// The client, when what it sees is restricted: authenticated, not an admin.
    pub fn restricted(&self) -> Option<&Client> {
        self.client.as_deref().filter(|c| !c.admin)
    }

    /// Whether status and instructions show this client `backend`.
    pub fn sees_backend(&self, backend: &str) -> bool {
        self.restricted().is_none_or(|c| c.may_use_backend(backend))
    }

    /// What `gateway_status` may show a restricted client: its own
    /// sessions and, of `backends`, those it may use.
    pub fn view_meta<'a>(&self, backends: impl Iterator<Item = &'a str>) -> Option<Value> {
        let c = self.restricted()?;
        let names: Vec<&str> = backends.filter(|b| c.may_use_backend(b)).collect();
        Some(json!({"client": &*c.id, "backends": names}))
    }

    /// Notes the backend the request was routed to (span and metrics).
    pub fn routed(&self, backend: &str) {
        self.span
            .record("backend", tracing::field::display(backend));
        let _ = self.backend.set(backend.to_string());
    }

    /// Notes a tool call that came back with `isError`.
    pub fn tool_error(&self) {
        self.tool_error.store(true, Ordering::Relaxed);
    }

    /// Makes [`Req::run`] answer `error` without running the request.
    pub fn refuse(&self, error: ErrorData) {
        let _ = self.refused.set(error);
    }

    /// Whether the client may use `backend`; `Err` is the answer if not.
    pub fn allow_backend(&self, backend: &str, what: &str) -> Result<(), ErrorData> {
        match &self.client {
            Some(c) if !c.may_use_backend(backend) => Err(denied(&c.id, what)),
            _ => Ok(()),
        }
    }

    /// Whether the client may call the exposed tool `tool` of `backend`.
    pub fn allow_tool(&self, backend: &str, tool: &str) -> Result<(), ErrorData> {
        match &self.client {
            Some(c) if !c.may_call_tool(backend, tool) => {
                Err(denied(&c.id, &format!("tool `{tool}`")))
            }
            _ => Ok(()),
        }
    }

    /// Runs the request's work inside its span and time limit, and counts it.
    pub fn run<'a, T: Send + 'a>(
        &'a self,
        work: impl Future<Output = Result<T, ErrorData>> + Send + 'a,
    ) -> impl Future<Output = Result<T, ErrorData>> + Send + 'a {
        // Boxed before anything awaits it: the work of a forwarded request
        // holds tens of kilobytes of state, which inline would make every
        // handler future that big, and rmcp's per-request task (which holds
        // the largest of them) is moved on each spawn (decision 0013).
        let work: std::pin::Pin<Box<dyn Future<Output = Result<T, ErrorData>> + Send + 'a>> =
            Box::pin(work);
        self.finish(work)
    }

    async fn finish<T>(
        &self,
        work: impl Future<Output = Result<T, ErrorData>>,
    ) -> Result<T, ErrorData> {
        let result = match self.refused.get() {
            Some(e) => Err(e.clone()),
            None if self.in_span => self.within_time(work).await,
            None => self.within_time(work.instrument(self.span.clone())).await,
        };
        let outcome = match &result {
            Ok(_) if self.tool_error.load(Ordering::Relaxed) => "tool_error",
            Ok(_) => "ok",
            Err(e) if e.code.0 == codes::REQUEST_TIMEOUT => "timeout",
            Err(e) if e.code.0 == codes::FORBIDDEN => "denied",
            Err(_) => "error",
        };
        let backend = self.backend.get().map(String::as_str).unwrap_or_default();
        crate::metrics::request(self.method, backend, outcome, self.started.elapsed());
        result
    }

    async fn within_time<T>(
        &self,
        work: impl Future<Output = Result<T, ErrorData>>,
    ) -> Result<T, ErrorData> {
        let Some(limit) = self.timeout else {
            return work.await;
        };
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            _ = tokio::time::sleep(limit.saturating_sub(self.started.elapsed())) => {
                // Let a backend call send its cancellation before we drop it.
                self.cancel.cancel();
                let _ = tokio::time::timeout(CANCEL_GRACE, work).await;
                self.span.in_scope(|| tracing::info!(limit = %humantime::format_duration(limit), "request timed out"));
                Err(ErrorData::new(
                    ErrorCode(codes::REQUEST_TIMEOUT),
                    format!(
                        "request timed out after {} (limits.request_timeout)",
                        humantime::format_duration(limit)
                    ),
                    None,
                ))
            }
        }
    }
}

/// The answer to a request outside the client's allow-list.
pub(super) fn denied(client: &str, what: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode(codes::FORBIDDEN),
        format!("client `{client}` is not allowed to use {what} (see its allow-list in [auth])"),
        None,
    )
}
