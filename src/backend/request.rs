//! One forwarded request: a call slot, the request itself, and while it
//! runs its progress and the backend's requests relayed to the client.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rmcp::model::{CancelledNotificationParam, ClientRequest, ServerResult};
use rmcp::service::{PeerRequestOptions, ServiceError};
use rmcp::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use super::post::Post;
use super::task_bridge::Waiting;
use super::wire::{Sent, Wire};
use super::{Backend, CallError, Origin, Sink};
use crate::coordinator::{CallEvent, Fate, Kind, RelayJob};

tokio::task_local! {
    /// The client's request a call runs for, set where the front runs the
    /// call outside rmcp's own request task (its direct path, decision
    /// 0020). The requests relayed to the client name it, as rmcp names the
    /// request of the task it runs, so they travel with that request's answer.
    pub static CLIENT_REQUEST: rmcp::model::RequestId;
}

/// A connection a request is sent on without rmcp's service loop.
enum Direct {
    Wire(Arc<Wire>),
    Post(Arc<Post>),
}

/// The wait for a task made for a client that cannot take one.
type TaskWait<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ServerResult, CallError>> + Send + 'a>,
>;

impl Backend {
    /// Forwards one request for a client and waits for its answer, the
    /// backend's timeout, or the client's cancellation, whichever comes first.
    ///
    /// While it waits, this task also delivers the call's progress (with the
    /// client's own token) and relays the backend's sampling, elicitation and
    /// roots requests to the client. They are sent from this task so that
    /// rmcp puts them on the stream of the client's request (rmcp notes, P1).
    pub async fn request(
        &self,
        request: ClientRequest,
        origin: Origin<'_>,
    ) -> Result<ServerResult, CallError> {
        let _slot = self.take_slot(origin.cancel).await?;
        let peer = self.peer()?;
        let mut options =
            PeerRequestOptions::with_timeout(self.timeout()).reset_timeout_on_progress();
        if let Some(mut declared) = origin.client_capabilities.clone()
            && self.speaks_2026()
        {
            // A backend's own tasks are relayed only where it advertises
            // the extension; elsewhere the gateway's (job queue) serve them.
            if !self.relays_tasks()
                && let Some(extensions) = declared.extensions.as_mut()
            {
                extensions.remove(rmcp::model::TASKS_EXTENSION_ID);
            }
            let mut meta = rmcp::model::RequestMetaObject::new();
            meta.set_client_capabilities(declared);
            options.meta = Some(meta);
        }
        let relay_timeout = self.env.load().relay_timeout;
        // Bounded: progress beyond it is dropped (and counted), never queued
        // without limit. A parked call's events go to its own channel instead.
        let (client, (events_tx, mut events), parked) = match origin.sink {
            Sink::Peer(peer) => (Some(peer), tokio::sync::mpsc::channel(64), None),
            Sink::Parked {
                events,
                client,
                registered,
            } => {
                let unused = tokio::sync::mpsc::channel(1).1;
                (None, (events, unused), Some((client, registered)))
            }
        };
        // Registers the call under the token and id the backend is sent.
        let (parked, registered) = parked.unzip();
        let register = |token, id| {
            let (route, call) = self.hub.calls.register(
                self.id,
                token,
                id,
                origin.session,
                origin.progress_token.clone(),
                events_tx,
                parked,
            );
            if let Some(registered) = registered {
                let _ = registered.set(call);
            }
            route
        };
        let (sent, _route) = match self.direct(&request) {
            // Sent here: the route is registered before the request is
            // written, so nothing the backend sends about it finds none.
            Some(Direct::Wire(wire)) => {
                let id = wire.next_id();
                let route = register(rmcp::model::ProgressToken(id.clone()), id.clone());
                let pending = wire.call(request, id).map_err(|e| self.map_error(e))?;
                (Sent::Direct(pending), route)
            }
            Some(Direct::Post(post)) => {
                let id = post.next_id();
                let route = register(rmcp::model::ProgressToken(id.clone()), id.clone());
                let posted = post.call(request, id).map_err(|e| self.map_error(e))?;
                (Sent::Posted(posted), route)
            }
            None => {
                let _gate = self.routing_gate.write().await;
                let handle = peer
                    .send_request_with_option(request, options)
                    .await
                    .map_err(|e| self.map_error(e))?;
                let route = register(handle.progress_token.clone(), handle.id.clone());
                (Sent::Rmcp(handle), route)
            }
        };
        let id = sent.id().clone();
        let response = sent.answer(self, &peer, self.timeout());
        tokio::pin!(response);
        // Boxed: the set keeps a stub of its future type, made even when
        // empty, and most calls relay nothing (an unboxed relay future made
        // each call allocate and copy 2.9 KB).
        let mut relays: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        // A task made for a client that cannot take one: the call waits for
        // it to end (see `task_bridge`), still registered, so its progress
        // and questions keep reaching the client.
        let takes_tasks = origin
            .client_capabilities
            .as_ref()
            .is_some_and(|c| c.supports_tasks());
        let mut bridged: Option<(String, TaskWait<'_>)> = None;
        let task_limit = tokio::time::sleep(self.timeout());
        tokio::pin!(task_limit);
        loop {
            tokio::select! {
                result = &mut response, if bridged.is_none() => {
                    let result = result.map_err(|e| self.map_error(e));
                    if !takes_tasks && let Ok(ServerResult::CreateTaskResult(created)) = &result {
                        let task = created.task.clone();
                        tracing::debug!(backend = %self.name(), task = %task.task_id, "waiting for a task the client cannot take");
                        let waiting = Waiting {
                            peer: &peer,
                            client,
                            capabilities: origin.client_capabilities.as_ref(),
                            relay_timeout,
                        };
                        bridged = Some((task.task_id.clone(), Box::pin(self.finish_task(task, waiting))));
                        task_limit.as_mut().reset(tokio::time::Instant::now() + self.timeout());
                        continue;
                    }
                    self.before_answer(client, &mut events).await;
                    return result;
                }
                result = async {
                    match bridged.as_mut() {
                        Some((_, wait)) => wait.await,
                        None => std::future::pending().await,
                    }
                }, if bridged.is_some() => {
                    self.before_answer(client, &mut events).await;
                    return result;
                }
                () = &mut task_limit, if bridged.is_some() => {
                    if let Some((task, _)) = bridged.take() {
                        Box::pin(self.cancel_task(&peer, &task)).await;
                    }
                    return Err(CallError::Timeout { backend: self.name().to_string(), timeout: self.timeout() });
                }
                Some(event) = events.recv(), if client.is_some() => match (event, client) {
                    (CallEvent::Progress(p), Some(client)) => {
                        if bridged.is_some() {
                            // Progress keeps a waited-for task alive, as it does a call.
                            task_limit.as_mut().reset(tokio::time::Instant::now() + self.timeout());
                        }
                        self.forward_progress(client, p).await
                    }
                    (CallEvent::Relay(job), Some(client)) => relays.push(Box::pin(relay(client.clone(), job, relay_timeout))),
                    _ => {}
                },
                Some(()) = relays.next(), if !relays.is_empty() => {}
                _ = origin.cancel.cancelled() => {
                    if let Some((task, _)) = bridged.take() {
                        Box::pin(self.cancel_task(&peer, &task)).await;
                        return Err(CallError::Cancelled);
                    }
                    let reason = origin.cancel_reason.and_then(|r| r.get().cloned());
                    let reason = reason.unwrap_or_else(|| "cancelled by the client".into());
                    let param = CancelledNotificationParam::new(Some(id), Some(reason));
                    if let Err(e) = Box::pin(peer.notify_cancelled(param)).await {
                        tracing::debug!(backend = %self.name(), error = %e, "could not forward cancellation");
                    }
                    return Err(CallError::Cancelled);
                }
            }
        }
    }

    /// How to send `request` without rmcp's service loop, if it can be
    /// (decisions 0022 and 0023): on a stdio or streamable-HTTP backend
    /// that connected with `initialize` (a 2026-07-28 one gets rmcp's
    /// per-request `_meta` and headers), a request whose answer needs
    /// nothing of rmcp's (lists feed the backend's list tap, which watches
    /// rmcp's sends).
    fn direct(&self, request: &ClientRequest) -> Option<Direct> {
        let direct = matches!(
            request,
            ClientRequest::CallToolRequest(_)
                | ClientRequest::GetPromptRequest(_)
                | ClientRequest::ReadResourceRequest(_)
                | ClientRequest::CompleteRequest(_)
        );
        if !direct || self.speaks_2026() {
            return None;
        }
        if let Some(wire) = self.wire.load_full().filter(|w| w.is_open()) {
            return Some(Direct::Wire(wire));
        }
        self.post
            .load_full()
            .filter(|p| p.ready())
            .map(Direct::Post)
    }

    /// Lets the progress sent before an answer reach the client first.
    async fn before_answer(
        &self,
        client: Option<&Peer<RoleServer>>,
        events: &mut tokio::sync::mpsc::Receiver<CallEvent>,
    ) {
        match client {
            Some(client) => self.flush_progress(client, events).await,
            // A parked call's waiting request is another task: let what the backend
            // sent just before its answer (handled by other tasks) find the call
            // still registered.
            None => {
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Forwards the progress still queued for the call, ahead of its answer
    /// (routed as it arrived: see `ordering`).
    async fn flush_progress(
        &self,
        client: &Peer<RoleServer>,
        events: &mut tokio::sync::mpsc::Receiver<CallEvent>,
    ) {
        while let Ok(event) = events.try_recv() {
            if let CallEvent::Progress(p) = event {
                self.forward_progress(client, p).await;
            }
        }
    }

    /// Waits for a free call slot (with `max_concurrent`), no longer than
    /// the call's own timeout and only while the client still wants it.
    async fn take_slot(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, CallError> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        let timeout = self.timeout();
        let busy = || CallError::Busy {
            backend: self.name().to_string(),
            limit: self.config.max_concurrent.unwrap_or_default(),
            waited: timeout,
        };
        tokio::select! {
            permit = tokio::time::timeout(timeout, slots.clone().acquire_owned()) => match permit {
                Ok(Ok(p)) => Ok(Some(p)),
                Ok(Err(_)) => Err(CallError::Unavailable { backend: self.name().to_string(), reason: "stopped".into() }),
                Err(_) => Err(busy()),
            },
            _ = cancel.cancelled() => Err(CallError::Cancelled),
        }
    }

    /// Boxed: rmcp's send future is large, and it is awaited at several
    /// points of [`Backend::request`], whose future would hold room for each.
    fn forward_progress<'a>(
        &'a self,
        client: &'a Peer<RoleServer>,
        param: rmcp::model::ProgressNotificationParam,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let fate = match client.notify_progress(param).await {
                Ok(()) => Fate::Forwarded,
                Err(_) => Fate::Dropped,
            };
            self.hub.counters.add(Kind::Progress, fate, 1);
        })
    }

    pub(super) fn map_error(&self, e: ServiceError) -> CallError {
        let backend = self.name().to_string();
        match e {
            ServiceError::McpError(e) => CallError::Rpc(e),
            ServiceError::Timeout { timeout } => CallError::Timeout { backend, timeout },
            ServiceError::TransportClosed => CallError::Closed { backend },
            other => CallError::Failed {
                backend,
                message: other.to_string(),
            },
        }
    }
}

/// Sends one server→client request to the client and hands its answer back
/// to the backend's handler. Runs inside the client's call task.
async fn relay(client: Peer<RoleServer>, job: RelayJob, timeout: Duration) {
    let RelayJob {
        mut request,
        reply,
        cancel,
    } = job;
    if let Ok(id) = CLIENT_REQUEST.try_with(Clone::clone) {
        use rmcp::model::GetExtensions;
        request
            .extensions_mut()
            .insert(rmcp::service::OriginatingRequestId(id));
    }
    let handle = match client
        .send_request_with_option(request, PeerRequestOptions::with_timeout(timeout))
        .await
    {
        Ok(h) => h,
        Err(e) => {
            let _ = reply.send(Err(rmcp::ErrorData::internal_error(
                format!("could not reach the client: {e}"),
                None,
            )));
            return;
        }
    };
    let id = handle.id.clone();
    tokio::select! {
        answer = handle.await_response() => {
            let answer = answer.map_err(|e| match e {
                ServiceError::McpError(e) => e,
                ServiceError::Timeout { timeout } => rmcp::ErrorData::internal_error(
                    format!("the client did not answer within {}", humantime::format_duration(timeout)),
                    None,
                ),
                other => rmcp::ErrorData::internal_error(format!("the client did not answer: {other}"), None),
            });
            let _ = reply.send(answer);
        }
        _ = cancel.cancelled() => {
            let param = CancelledNotificationParam::new(Some(id), Some("cancelled by the server".into()));
            let _ = client.notify_cancelled(param).await;
        }
    }
}
