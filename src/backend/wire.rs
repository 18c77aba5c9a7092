//! The write half of a stdio backend's connection, and the calls sent on it
//! without rmcp's service loop (decision 0022).
//!
//! rmcp's client sends a request through its service loop: a message on the
//! loop's channel, a task spawned to write it, and the answer matched in the
//! loop and handed back through a oneshot; a timeout that resets on progress
//! adds a channel and an async lock per request. For a stdio backend the
//! gateway does this itself: [`Wire::call`] writes the request and the
//! transport's reader (`spawn.rs`) hands the answer to the waiting call as it
//! reads it ([`Wire::claim`]). Everything else (initialize, lists,
//! notifications, the backend's own requests, 2026-07-28 connections) still
//! goes through rmcp, and both write through the same [`Wire`], so messages
//! reach the pipe in the order they were sent.
//!
//! Writes never wait while holding a caller: a line is written at once if
//! the pipe takes it, and what it does not take is left in the outbox for a
//! flusher task, which later lines join (one write for many when the
//! backend is slow to read). A caller that goes away mid-write cannot leave
//! half a line.
//!
//! The calls' ids and progress tokens are numbers from 2³² up: rmcp's own
//! (counters of 32 bits from 0) can never meet them.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::model::{
    CancelledNotificationParam, ClientJsonRpcMessage, ClientRequest, ErrorData, GetMeta,
    MetaObject, NumberOrString, ProgressToken, RequestId, RequestMetaObject, ServerJsonRpcMessage,
    ServerNotification, ServerResult,
};
use rmcp::service::{RequestHandle, ServiceError};
use rmcp::{Peer, RoleClient};
use tokio::io::AsyncWrite;
use tokio::process::ChildStdin;
use tokio::sync::{Notify, oneshot};

use super::lines::CallIds;

/// The first id (and progress token) of a call sent here.
pub(super) const FIRST_ID: i64 = 1 << 32;

/// What rmcp tells a backend when a request times out, said the same way.
const TIMEOUT_REASON: &str = "request timeout";

type Answer = Result<ServerResult, ErrorData>;

type Waiting = foldhash::HashMap<RequestId, Waiter>;

/// A call sent here and not yet answered.
struct Waiter {
    answer: oneshot::Sender<Answer>,
    /// Told of each progress notification for the call (resets its timeout).
    progress: Arc<Notify>,
}

/// What has not reached the pipe yet.
struct Outbox {
    /// `None` once closed.
    stdin: Option<ChildStdin>,
    /// Bytes waiting for the pipe, oldest first.
    buf: Vec<u8>,
    /// A flusher task is writing `buf` out.
    flushing: bool,
}

impl Outbox {
    /// Writes `buf` out as far as the pipe takes it now.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        };
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut *stdin).poll_write(cx, &self.buf[written..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        self.buf.drain(..written);
        result
    }
}

/// A stdio backend's write half, shared by the transport rmcp drives and
/// the calls the gateway sends itself.
pub(crate) struct Wire {
    out: Mutex<Outbox>,
    /// The calls sent here, by the id the gateway gave each; `None` once the
    /// connection has ended.
    waiting: Mutex<Option<Waiting>>,
    next: AtomicU64,
    /// The `tools/call` ids the reader decodes straight into their result.
    calls: Arc<CallIds>,
}

impl Wire {
    pub(super) fn new(stdin: ChildStdin, calls: Arc<CallIds>) -> Arc<Self> {
        Arc::new(Self {
            out: Mutex::new(Outbox {
                stdin: Some(stdin),
                buf: Vec::new(),
                flushing: false,
            }),
            waiting: Mutex::new(Some(Waiting::default())),
            next: AtomicU64::new(0),
            calls,
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Option<Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id (and progress token) of the next call sent here.
    pub(super) fn next_id(&self) -> RequestId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        NumberOrString::Number(FIRST_ID.saturating_add(n as i64))
    }

    /// Whether the connection still takes calls.
    pub(super) fn is_open(&self) -> bool {
        self.waiting().is_some()
    }

    /// Writes one message, as a line. Returns at once: what the pipe does
    /// not take now is written by a flusher task, in order.
    pub(super) fn write(self: &Arc<Self>, message: &ClientJsonRpcMessage) -> std::io::Result<()> {
        self.calls.sent(message);
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.push(line)
    }

    /// Writes one line (with its newline), as [`write`](Self::write) does.
    fn push(self: &Arc<Self>, line: Vec<u8>) -> std::io::Result<()> {
        let mut out = self.outbox();
        if out.stdin.is_none() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        if out.buf.is_empty() {
            out.buf = line;
        } else {
            out.buf.extend_from_slice(&line);
        }
        if out.flushing {
            return Ok(());
        }
        match out.write_out(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Ready(Err(e)) => {
                out.stdin = None;
                Err(e)
            }
            Poll::Pending => {
                out.flushing = true;
                drop(out);
                tokio::spawn(self.clone().flush());
                Ok(())
            }
        }
    }

    /// Writes the outbox out as the pipe takes it.
    async fn flush(self: Arc<Self>) {
        let result = std::future::poll_fn(|cx| {
            let mut out = self.outbox();
            let polled = out.write_out(cx);
            if polled.is_ready() {
                out.flushing = false;
            }
            polled
        })
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "writing to a stdio backend failed");
            self.outbox().stdin = None;
        }
    }

    /// Writes out what is left (for at most `grace`) and closes stdin, which
    /// asks the backend to exit.
    pub(super) async fn close(&self, grace: Duration) -> std::io::Result<()> {
        let flushed = tokio::time::timeout(
            grace,
            std::future::poll_fn(|cx| self.outbox().write_out(cx)),
        )
        .await;
        self.outbox().stdin = None;
        match flushed {
            Ok(Err(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    }

    /// Ends the calls waiting here (they fail as closed) and refuses new ones.
    pub(super) fn shut(&self) {
        self.waiting().take();
    }

    /// Sends `request` as call `id`, its progress token the same number,
    /// and returns the wait for its answer. The caller registers the call's
    /// route first, so nothing the backend sends about it arrives unrouted.
    pub(super) fn call(
        self: &Arc<Self>,
        mut request: ClientRequest,
        id: RequestId,
    ) -> Result<Pending, ServiceError> {
        request
            .get_meta_mut()
            .set_progress_token(ProgressToken(id.clone()));
        let (answer, rx) = oneshot::channel();
        let progress = Arc::new(Notify::new());
        {
            let mut waiting = self.waiting();
            let Some(waiting) = waiting.as_mut() else {
                return Err(ServiceError::TransportClosed);
            };
            waiting.insert(
                id.clone(),
                Waiter {
                    answer,
                    progress: progress.clone(),
                },
            );
        }
        let pending = Pending {
            id,
            rx,
            progress,
            wire: self.clone(),
        };
        let written = match call_line(&mut request, &pending.id) {
            Some(line) => {
                self.calls.sent_call(pending.id.clone());
                line.map_err(std::io::Error::other)
                    .and_then(|line| self.push(line))
            }
            None => self.write(&ClientJsonRpcMessage::request(request, pending.id.clone())),
        };
        match written {
            Ok(()) => Ok(pending),
            Err(_) => Err(ServiceError::TransportClosed),
        }
    }

    /// Takes `message` if it answers a call sent here (`None`), and notes
    /// progress for one; anything else is handed back for rmcp.
    pub(super) fn claim(&self, message: ServerJsonRpcMessage) -> Option<ServerJsonRpcMessage> {
        let (id, answer) = match message {
            ServerJsonRpcMessage::Response(r) if mine(&r.id) => (r.id, Ok(r.result)),
            ServerJsonRpcMessage::Error(e) if e.id.as_ref().is_some_and(mine) => {
                (e.id.unwrap_or(NumberOrString::Number(0)), Err(e.error))
            }
            ServerJsonRpcMessage::Notification(ref n) => {
                if let ServerNotification::ProgressNotification(p) = &n.notification
                    && mine(&p.params.progress_token.0)
                    && let Some(waiting) = self.waiting().as_ref()
                    && let Some(waiter) = waiting.get(&p.params.progress_token.0)
                {
                    waiter.progress.notify_one();
                }
                return Some(message);
            }
            other => return Some(other),
        };
        let waiter = self.waiting().as_mut().and_then(|w| w.remove(&id));
        match waiter {
            Some(waiter) => {
                let _ = waiter.answer.send(answer);
            }
            // Its caller gave up (cancelled, timed out): nobody wants it.
            None => tracing::debug!(%id, "an answer for a call no longer waiting"),
        }
        None
    }
}

/// A `tools/call` written as its line, without rmcp's serializer (`None`
/// for any other request). rmcp writes a request's params by turning them
/// into a `serde_json::Value` first, to merge the `_meta` kept in the
/// request's extensions into the params' own: for a call that is a copy of
/// its arguments into a tree of maps and a second pass over it. This merges
/// the two `_meta` maps alone, as rmcp does (the extensions' keys win), and
/// writes the params straight out, fields in rmcp's order.
pub(super) fn call_line(
    request: &mut ClientRequest,
    id: &RequestId,
) -> Option<serde_json::Result<Vec<u8>>> {
    let ClientRequest::CallToolRequest(call) = request else {
        return None;
    };
    if call.extensions.get::<MetaObject>().is_some() {
        return None; // the legacy form of extension `_meta`: rmcp merges it
    }
    if let Some(RequestMetaObject(MetaObject(extra))) =
        call.extensions.remove::<RequestMetaObject>()
    {
        match call.params.meta.as_mut() {
            Some(meta) => meta.0.0.extend(extra),
            None => call.params.meta = Some(RequestMetaObject(MetaObject(extra))),
        }
    }
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    let written = serde_json::to_writer(&mut line, id).and_then(|()| {
        line.extend_from_slice(b",\"method\":\"tools/call\",\"params\":");
        serde_json::to_writer(&mut line, &call.params)
    });
    Some(written.map(|()| {
        line.extend_from_slice(b"}\n");
        line
    }))
}

/// Whether `id` is one of the calls sent here.
fn mine(id: &RequestId) -> bool {
    matches!(id, NumberOrString::Number(n) if *n >= FIRST_ID)
}

/// A call sent by [`Wire::call`], waiting for its answer. Dropping it
/// forgets the call (an answer arriving later is ignored).
pub(super) struct Pending {
    pub(super) id: RequestId,
    rx: oneshot::Receiver<Answer>,
    progress: Arc<Notify>,
    wire: Arc<Wire>,
}

impl Pending {
    /// The answer, or a timeout of `timeout` without an answer or progress
    /// (then the backend is told the call is cancelled, as rmcp tells it).
    pub(super) async fn answer(
        mut self,
        peer: &Peer<RoleClient>,
        timeout: Duration,
    ) -> Result<ServerResult, ServiceError> {
        let limit = tokio::time::sleep(timeout);
        tokio::pin!(limit);
        loop {
            tokio::select! {
                biased;
                answer = &mut self.rx => return match answer {
                    Ok(answer) => answer.map_err(ServiceError::McpError),
                    Err(_) => Err(ServiceError::TransportClosed),
                },
                () = &mut limit => {
                    let param = CancelledNotificationParam::new(Some(self.id.clone()), Some(TIMEOUT_REASON.into()));
                    let _ = peer.notify_cancelled(param).await;
                    return Err(ServiceError::Timeout { timeout });
                }
                () = self.progress.notified() => {
                    limit.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(waiting) = self.wire.waiting().as_mut() {
            waiting.remove(&self.id);
        }
    }
}

/// A request sent one way or another: by rmcp, or by the gateway itself on
/// a stdio connection's pipe or as its own POST to an HTTP backend.
pub(super) enum Sent {
    Rmcp(RequestHandle<RoleClient>),
    Direct(Pending),
    Posted(super::post::Posted),
}

impl Sent {
    pub(super) fn id(&self) -> &RequestId {
        match self {
            Self::Rmcp(handle) => &handle.id,
            Self::Direct(pending) => &pending.id,
            Self::Posted(posted) => &posted.id,
        }
    }

    pub(super) async fn answer(
        self,
        backend: &super::Backend,
        peer: &Peer<RoleClient>,
        timeout: Duration,
    ) -> Result<ServerResult, ServiceError> {
        match self {
            Self::Rmcp(handle) => handle.await_response().await,
            Self::Direct(pending) => pending.answer(peer, timeout).await,
            // Boxed: an HTTP exchange's future (reqwest's, the SSE reader's)
            // is several kilobytes, and unboxed it would size every call's
            // future, stdio ones too, which rmcp boxes and copies per call.
            Self::Posted(posted) => Box::pin(posted.answer(backend, peer, timeout)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolRequest, CallToolRequestParams};
    use serde_json::{Value, json};

    #[test]
    fn a_call_line_says_what_rmcp_would_write() {
        let params = |with_meta: bool| {
            let mut p = CallToolRequestParams::new("echo").with_arguments(
                json!({"message": "hi", "nested": {"a": [1, 2.5, null, "\u{2028}"]}})
                    .as_object()
                    .cloned()
                    .unwrap(),
            );
            if with_meta {
                let mut own = RequestMetaObject::default();
                own.0.0.insert("mine".into(), json!(1));
                own.0.0.insert("both".into(), json!("params"));
                p.meta = Some(own);
            }
            p
        };
        for with_meta in [false, true] {
            let mut request =
                ClientRequest::CallToolRequest(CallToolRequest::new(params(with_meta)));
            let meta = request.get_meta_mut();
            meta.set_progress_token(ProgressToken(NumberOrString::Number(FIRST_ID)));
            meta.0.0.insert("both".into(), json!("extensions"));
            let id = NumberOrString::Number(FIRST_ID + 7);
            let rmcp: Value =
                serde_json::to_value(ClientJsonRpcMessage::request(request.clone(), id.clone()))
                    .unwrap();
            let line = call_line(&mut request, &id).unwrap().unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            let ours: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(ours, rmcp, "with params' own _meta: {with_meta}");
            assert_eq!(ours["params"]["_meta"]["both"], "extensions");
        }
        let mut other = ClientRequest::PingRequest(Default::default());
        assert!(call_line(&mut other, &NumberOrString::Number(1)).is_none());
    }
}
