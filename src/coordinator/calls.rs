//! In-flight calls: which client session caused each request the gateway has
//! open on a backend, so progress and server→client requests reach exactly
//! that session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, ClientResult, ProgressNotificationParam, ProgressToken, RequestId,
    ServerRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What a backend sends for one call, delivered to the task serving that call.
pub enum CallEvent {
    /// Progress, already carrying the client's own token.
    Progress(ProgressNotificationParam),
    /// A server→client request to relay to the caller (sampling, elicitation, roots).
    Relay(RelayJob),
}

pub struct RelayJob {
    pub request: ServerRequest,
    pub reply: oneshot::Sender<Result<ClientResult, ErrorData>>,
    /// Cancelled when the backend cancels its request.
    pub cancel: CancellationToken,
}

/// The client of a parked call (a 2026-07-28 client's call, whose
/// server→client requests become `InputRequired` rounds): what its request
/// declared, since no session outlives a round to ask.
pub struct Parked {
    pub capabilities: ClientCapabilities,
    pub client_name: String,
}

/// One request the gateway has open on a backend.
pub struct Call {
    /// The client session (or 2026-07-28 request) the call's events go to.
    /// A parked call moves to each retry's request as it arrives.
    session: AtomicU64,
    /// Set for a parked call: its relays go to whichever request is
    /// attached, and are checked against these capabilities.
    pub parked: Option<Parked>,
    /// The backend-side id of the request (what a streamable-HTTP backend's
    /// stream origin names).
    pub backend_request: RequestId,
    pub client_token: Option<ProgressToken>,
    /// The last progress value forwarded, to drop stale or reordered ones.
    last_progress: Mutex<Option<f64>>,
    pub events: mpsc::Sender<CallEvent>,
}

impl Call {
    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    /// Points the call's events (logs, attribution) at another request.
    pub fn attach(&self, session: u64) {
        self.session.store(session, Ordering::Relaxed);
    }

    /// Whether `progress` moves forward; records it if so.
    pub fn advance(&self, progress: f64) -> bool {
        let mut last = self.last_progress.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|l| progress <= l) {
            return false;
        }
        *last = Some(progress);
        true
    }
}

/// How a server→client request from a backend maps to a client session.
pub enum Attribution {
    Call(Arc<Call>),
    /// No call is in flight on that backend.
    Outside,
    /// Calls from several sessions are in flight and the wire does not say
    /// which one this belongs to.
    Ambiguous {
        sessions: usize,
    },
}

#[derive(Default)]
struct Inner {
    /// Per backend instance, in start order.
    /// Both keyed by what the gateway chose (backend ids, and the tokens it
    /// or rmcp sent): the fast hasher is enough.
    by_backend: foldhash::HashMap<u64, Vec<Arc<Call>>>,
    by_token: foldhash::HashMap<(u64, ProgressToken), Arc<Call>>,
}

#[derive(Default)]
pub struct Calls {
    inner: Mutex<Inner>,
}

/// Removes its call from the tables when the call ends, however it ends.
pub struct CallGuard<'a> {
    calls: &'a Calls,
    backend: u64,
    token: ProgressToken,
    call: Arc<Call>,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.calls.lock();
        inner.by_token.remove(&(self.backend, self.token.clone()));
        if let Some(list) = inner.by_backend.get_mut(&self.backend) {
            list.retain(|c| !Arc::ptr_eq(c, &self.call));
            if list.is_empty() {
                inner.by_backend.remove(&self.backend);
            }
        }
    }
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        backend: u64,
        backend_token: ProgressToken,
        backend_request: RequestId,
        session: u64,
        client_token: Option<ProgressToken>,
        events: mpsc::Sender<CallEvent>,
        parked: Option<Parked>,
    ) -> (CallGuard<'_>, Arc<Call>) {
        let call = Arc::new(Call {
            session: AtomicU64::new(session),
            parked,
            backend_request,
            client_token,
            last_progress: Mutex::new(None),
            events,
        });
        let mut inner = self.lock();
        inner
            .by_token
            .insert((backend, backend_token.clone()), call.clone());
        inner
            .by_backend
            .entry(backend)
            .or_default()
            .push(call.clone());
        drop(inner);
        let guard = CallGuard {
            calls: self,
            backend,
            token: backend_token,
            call: call.clone(),
        };
        (guard, call)
    }

    /// How many calls each session has open, over all backends.
    pub fn in_flight_by_session(&self) -> HashMap<u64, usize> {
        let mut counts = HashMap::new();
        for call in self.lock().by_backend.values().flatten() {
            *counts.entry(call.session()).or_insert(0) += 1;
        }
        counts
    }

    /// How many calls are open on a backend.
    pub fn in_flight(&self, backend: u64) -> usize {
        self.lock().by_backend.get(&backend).map_or(0, Vec::len)
    }

    pub fn by_token(&self, backend: u64, token: &ProgressToken) -> Option<Arc<Call>> {
        self.lock().by_token.get(&(backend, token.clone())).cloned()
    }

    /// The call a server→client request belongs to. `origin` is the backend
    /// request whose stream carried it, when the transport says (streamable HTTP).
    pub fn attribute(&self, backend: u64, origin: Option<&RequestId>) -> Attribution {
        let inner = self.lock();
        let Some(calls) = inner.by_backend.get(&backend) else {
            return Attribution::Outside;
        };
        if let Some(id) = origin
            && let Some(call) = calls.iter().find(|c| &c.backend_request == id)
        {
            return Attribution::Call(call.clone());
        }
        let first = calls[0].session();
        if calls.iter().all(|c| c.session() == first) {
            // One session: its most recent call is the best guess, and the
            // answer goes to the right client whichever call it was.
            return calls
                .last()
                .cloned()
                .map_or(Attribution::Outside, Attribution::Call);
        }
        let mut sessions: Vec<u64> = calls.iter().map(|c| c.session()).collect();
        sessions.sort_unstable();
        sessions.dedup();
        Attribution::Ambiguous {
            sessions: sessions.len(),
        }
    }
}
