//! A parked call's backend request, running on its own task so it outlives
//! the client request that started it, and the turns a client request
//! attached to it waits for: the result, or the backend's questions.

use std::sync::{Arc, OnceLock};

use rmcp::model::{ClientRequest, ProgressNotificationParam, ProgressToken, ServerResult};
use rmcp::{Peer, RoleServer};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, CallError, Origin, Sink};
use crate::coordinator::calls::{Call, Parked};
use crate::coordinator::{CallEvent, Fate, Hub, Kind, RelayJob};

/// Progress and questions a backend sends during one call, waiting to be
/// read by the request attached to it. Progress beyond this is dropped (and
/// counted), as for any call.
const EVENTS: usize = 64;

/// The progress token a parked call registers under: its progress is kept
/// and given the token of whichever request is attached when it arrives.
const PARKED_TOKEN: &str = "manifold-parked";

/// The client request a parked call's turn is waited for by.
pub(in crate::front) struct Attached<'a> {
    /// Our id of the request (a coordinator session for its duration).
    pub session: u64,
    pub peer: &'a Peer<RoleServer>,
    /// The request's own progress token, if it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// Cancelled when the client cancels the request or it times out.
    pub cancel: &'a CancellationToken,
}

/// What a parked call does next.
pub(in crate::front) enum Turn {
    /// The backend answered (or the call failed).
    Done(Box<Result<ServerResult, CallError>>),
    /// The backend asked the client something (one or more requests at once).
    Asks(Vec<RelayJob>),
}

/// A backend request of a 2026-07-28 client, started by one client request
/// and continued by its retries.
pub(in crate::front) struct Running {
    pub backend: Arc<Backend>,
    /// Progress and relayed requests of the call. The sender lives in the
    /// call's routing entry, which goes with the call's task.
    events: mpsc::Receiver<CallEvent>,
    /// The backend's answer, sent when the call's task ends.
    done: oneshot::Receiver<Result<ServerResult, CallError>>,
    /// Cancels the backend request (which then tells the backend, with `reason`).
    cancel: CancellationToken,
    reason: Arc<OnceLock<String>>,
    /// The call's routing entry, once registered: re-pointed at each attached
    /// request, so the log messages it causes reach that request.
    call: Arc<OnceLock<Arc<Call>>>,
}

impl Running {
    /// Starts the backend request on its own task. It ends when the backend
    /// answers, the call times out, or [`Running::stop`] cancels it.
    pub fn start(
        backend: Arc<Backend>,
        request: ClientRequest,
        session: u64,
        client: Parked,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(EVENTS);
        let (done_tx, done) = oneshot::channel();
        let cancel = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        let call = Arc::new(OnceLock::new());
        let task = (
            backend.clone(),
            cancel.clone(),
            reason.clone(),
            call.clone(),
        );
        // Ends with the backend request: answered, timed out, or cancelled.
        // In the span of the request that started the call.
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let (backend, cancel, reason, call) = task;
                let capabilities = client.capabilities.clone();
                let origin = Origin {
                    session,
                    sink: Sink::Parked {
                        events: events_tx,
                        client,
                        registered: call,
                    },
                    progress_token: Some(ProgressToken(rmcp::model::NumberOrString::String(
                        PARKED_TOKEN.into(),
                    ))),
                    cancel: &cancel,
                    cancel_reason: Some(&reason),
                    client_capabilities: Some(capabilities),
                };
                let _ = done_tx.send(backend.request(request, origin).await);
            },
            span,
        ));
        Self {
            backend,
            events,
            done,
            cancel,
            reason,
            call,
        }
    }

    /// Cancels the backend request, telling the backend `why`.
    pub fn stop(&self, why: String) {
        let _ = self.reason.set(why);
        self.cancel.cancel();
    }

    /// Waits, for the request `to`, for the call's next turn. Progress
    /// meanwhile goes to that request (with its own token; dropped if it
    /// asked for none). When the backend asks something, requests it sends
    /// at the same moment are asked in the same turn.
    pub async fn next_turn(&mut self, to: &Attached<'_>, hub: &Hub) -> Turn {
        if let Some(call) = self.call.get() {
            call.attach(to.session);
        }
        loop {
            tokio::select! {
                result = &mut self.done => {
                    // What the backend sent just before its answer (progress,
                    // a log message) is handled by other tasks: give them a
                    // moment to reach this request's stream before it ends.
                    for _ in 0..2 {
                        tokio::task::yield_now().await;
                    }
                    while let Ok(CallEvent::Progress(p)) = self.events.try_recv() {
                        progress(to, hub, p).await;
                    }
                    return Turn::Done(Box::new(result.unwrap_or_else(|_| Err(CallError::Failed {
                        backend: self.backend.name().to_string(),
                        message: "the call's task ended without an answer".into(),
                    }))));
                }
                Some(event) = self.events.recv() => match event {
                    CallEvent::Progress(p) => progress(to, hub, p).await,
                    CallEvent::Relay(job) => {
                        let mut jobs = vec![job];
                        // Let requests sent together land, so they are asked together.
                        tokio::task::yield_now().await;
                        while let Ok(event) = self.events.try_recv() {
                            match event {
                                CallEvent::Relay(job) => jobs.push(job),
                                CallEvent::Progress(p) => progress(to, hub, p).await,
                            }
                        }
                        return Turn::Asks(jobs);
                    }
                },
                _ = to.cancel.cancelled() => {
                    self.stop("cancelled by the client".into());
                    return Turn::Done(Box::new(Err(CallError::Cancelled)));
                }
            }
        }
    }
}

impl Drop for Running {
    /// A call nobody can take up any more (its request went away mid-turn,
    /// or it was dropped between rounds) is cancelled at the backend; after
    /// the backend answered this does nothing.
    fn drop(&mut self) {
        let _ = self.reason.set("the client's request ended".into());
        self.cancel.cancel();
    }
}

/// Forwards a parked call's progress to the attached request, with its token.
async fn progress(to: &Attached<'_>, hub: &Hub, mut param: ProgressNotificationParam) {
    let Some(token) = to.progress_token.clone() else {
        hub.counters.add(Kind::Progress, Fate::Dropped, 1);
        return;
    };
    param.progress_token = token;
    let fate = match to.peer.notify_progress(param).await {
        Ok(()) => Fate::Forwarded,
        Err(_) => Fate::Dropped,
    };
    hub.counters.add(Kind::Progress, fate, 1);
}
