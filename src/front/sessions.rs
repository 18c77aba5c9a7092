//! The MCP session table of the HTTP front: rmcp's local session manager,
//! with session ids that name this instance (`<instance_id>.<uuid>`) and,
//! with `[sessions] store = "redis"`, sessions that outlive their instance.
//!
//! How a session moves (see docs/scale-out.md):
//! - after `initialize`, rmcp writes the client's parameters to the shared
//!   table through [`SharedStore`], and the auth layer adds the client id;
//! - a request for a session this instance does not hold is checked against
//!   the client id in the table (another client's session is "not found"),
//!   then rmcp restores it by replaying `initialize` through
//!   [`Sessions::restore_session`], which records this instance as the new
//!   holder and announces the move;
//! - the previous holder, if it is alive, hears the announcement and closes
//!   its copy (and with it the session's per-session backends).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rmcp::model::{
    ClientJsonRpcMessage, GetExtensions, ProgressToken, RequestId, ServerJsonRpcMessage,
    ServerNotification,
};
use rmcp::service::{OriginatingRequestId, TxJsonRpcMessage};
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use rmcp::transport::streamable_http_server::session::{EventStore, RestoreOutcome};
use rmcp::{ErrorData, Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use super::session::FrontSession;
use crate::store::sessions::SharedSessions;

/// The `Mcp-Session-Id` of the session an `initialize` starts (or restores),
/// put in that request's extensions for the session's handler.
#[derive(Clone, Debug)]
pub struct SessionName(pub Arc<str>);

/// The session table handed to rmcp's `StreamableHttpService`.
pub struct Sessions {
    pub local: LocalSessionManager,
    instance: Arc<str>,
    shared: Option<Shared>,
    /// The JSON-RPC ids of the requests in flight in each session (see
    /// [`Sessions::claim`]).
    in_flight: Arc<Mutex<HashSet<(SessionId, RequestId)>>>,
    /// What the direct path needs of each session held here (see [`Held`]),
    /// by the ids this instance made (the fast hasher is enough).
    held: Arc<Mutex<HeldTable>>,
}

type HeldTable = foldhash::HashMap<SessionId, Arc<Held>>;

/// A session held here, as the direct path calls it (decision 0020): its
/// handler and client handle once it is initialized, the calls it is
/// serving itself, and when rmcp's session worker last heard of it.
pub struct Held {
    handler: OnceLock<(Weak<FrontSession>, Peer<RoleServer>)>,
    /// Calls answered by the direct path, by their request id.
    pub calls: Divert,
    /// When a message last went through rmcp's session worker, whose idle
    /// timer ends the session (`server.session_idle_timeout`).
    worker_seen: Mutex<Instant>,
    /// Cancelled when the session ends, as rmcp cancels its own calls then.
    pub closed: CancellationToken,
}

impl Held {
    /// The session's handler and client handle, once initialized and alive.
    pub fn handler(&self) -> Option<(Arc<FrontSession>, Peer<RoleServer>)> {
        let (handler, peer) = self.handler.get()?;
        Some((handler.upgrade()?, peer.clone()))
    }

    /// Whether rmcp's worker heard of the session within `within`.
    pub fn worker_fresh(&self, within: Duration) -> bool {
        lock(&self.worker_seen).elapsed() < within
    }

    fn saw_worker(&self) {
        *lock(&self.worker_seen) = Instant::now();
    }
}

/// The calls of a session that the direct path serves: what the session
/// sends for one of them (its progress, its requests to the client) goes to
/// that call's own answer instead of rmcp's session worker, and a client's
/// cancellation reaches it.
#[derive(Default)]
pub struct Divert(Mutex<Calls>);

#[derive(Default)]
struct Calls {
    by_id: HashMap<RequestId, Call>,
    by_token: HashMap<ProgressToken, RequestId>,
}

struct Call {
    to: tokio::sync::mpsc::UnboundedSender<ServerJsonRpcMessage>,
    cancel: CancellationToken,
    token: Option<ProgressToken>,
}

/// A call's place in its session's [`Divert`], removed when dropped.
pub struct Diverted {
    held: Arc<Held>,
    id: RequestId,
}

impl Drop for Diverted {
    fn drop(&mut self) {
        let mut calls = lock(&self.held.calls.0);
        if let Some(call) = calls.by_id.remove(&self.id)
            && let Some(token) = call.token
        {
            calls.by_token.remove(&token);
        }
    }
}

impl Divert {
    /// Takes the session's messages for call `id` (and its progress token)
    /// until the returned guard is dropped.
    pub fn register(
        held: &Arc<Held>,
        id: RequestId,
        token: Option<ProgressToken>,
        to: tokio::sync::mpsc::UnboundedSender<ServerJsonRpcMessage>,
        cancel: CancellationToken,
    ) -> Diverted {
        let mut calls = lock(&held.calls.0);
        if let Some(token) = &token {
            calls.by_token.insert(token.clone(), id.clone());
        }
        calls.by_id.insert(id.clone(), Call { to, cancel, token });
        Diverted {
            held: held.clone(),
            id,
        }
    }

    /// Cancels call `id` if the direct path serves it.
    pub fn cancel(&self, id: &RequestId) -> bool {
        match lock(&self.0).by_id.get(id) {
            Some(call) => {
                call.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// The message back when no call of the direct path wants it.
    fn take(&self, message: ServerJsonRpcMessage) -> Option<ServerJsonRpcMessage> {
        let calls = lock(&self.0);
        if calls.by_id.is_empty() {
            return Some(message);
        }
        let id = match &message {
            ServerJsonRpcMessage::Request(r) => r
                .request
                .extensions()
                .get::<OriginatingRequestId>()
                .map(|o| &o.0),
            ServerJsonRpcMessage::Notification(n) => match &n.notification {
                ServerNotification::ProgressNotification(p) => {
                    calls.by_token.get(&p.params.progress_token)
                }
                _ => None,
            },
            _ => None,
        };
        match id.and_then(|id| calls.by_id.get(id)) {
            // A call whose answer has gone: the message is dropped, as rmcp
            // drops what comes for a closed request stream.
            Some(call) => {
                let _ = call.to.send(message);
                None
            }
            None => Some(message),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// rmcp's session transport, with what belongs to the direct path's calls
/// taken out on the way ([`Divert`]); forgets its session when dropped.
pub struct SessionTransport {
    inner: LocalTransport,
    held: Arc<Held>,
    table: Weak<Mutex<HeldTable>>,
    id: SessionId,
}

impl Drop for SessionTransport {
    fn drop(&mut self) {
        self.held.closed.cancel();
        if let Some(table) = self.table.upgrade() {
            let mut table = lock(&table);
            if table
                .get(&self.id)
                .is_some_and(|h| Arc::ptr_eq(h, &self.held))
            {
                table.remove(&self.id);
            }
        }
    }
}

impl rmcp::transport::Transport<RoleServer> for SessionTransport {
    type Error = <LocalTransport as rmcp::transport::Transport<RoleServer>>::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let sent = self.held.calls.take(item).map(|item| self.inner.send(item));
        async move {
            match sent {
                Some(sent) => sent.await,
                None => Ok(()),
            }
        }
    }

    fn receive(
        &mut self,
    ) -> impl Future<Output = Option<rmcp::service::RxJsonRpcMessage<RoleServer>>> + Send {
        self.inner.receive()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Holds a request's id in its session until the request's stream ends.
pub struct InFlight {
    table: Arc<Mutex<HashSet<(SessionId, RequestId)>>>,
    key: (SessionId, RequestId),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.table).remove(&self.key);
    }
}

/// The shared side of the table.
struct Shared {
    table: Arc<SharedSessions>,
    ttl: Duration,
    /// When each held session's expiry was last pushed back, so that a busy
    /// session costs Redis one `PEXPIRE` per `ttl / 8`, not one per request.
    touched: Mutex<HashMap<SessionId, Instant>>,
}

impl Sessions {
    /// A table for `instance`; `shared` makes sessions movable between instances.
    pub fn new(
        local: LocalSessionManager,
        instance: Arc<str>,
        shared: Option<(Arc<SharedSessions>, Duration)>,
    ) -> Self {
        Self {
            local,
            instance,
            shared: shared.map(|(table, ttl)| Shared {
                table,
                ttl,
                touched: Mutex::new(HashMap::new()),
            }),
            in_flight: Arc::default(),
            held: Arc::default(),
        }
    }

    /// The direct path's view of session `id`, if this instance holds it.
    pub fn held(&self, id: &SessionId) -> Option<Arc<Held>> {
        lock(&self.held).get(id).cloned()
    }

    /// Records the handler and client handle of session `name` at its
    /// `initialize`, so the direct path can call it.
    pub fn attach(&self, name: &str, handler: Weak<FrontSession>, peer: Peer<RoleServer>) {
        let id: SessionId = name.to_string().into();
        if let Some(held) = self.held(&id) {
            let _ = held.handler.set((handler, peer));
        }
    }

    /// Claims request `request` in `session` for the direct path (as
    /// `create_stream` claims the requests it takes); `None` when its id is
    /// already in flight.
    pub fn claim_request(&self, session: &SessionId, request: &RequestId) -> Option<InFlight> {
        let key = (session.clone(), request.clone());
        lock(&self.in_flight).insert(key.clone()).then(|| InFlight {
            table: self.in_flight.clone(),
            key,
        })
    }

    /// How long rmcp's worker lets a session sit idle.
    pub fn idle_timeout(&self) -> Duration {
        self.local
            .session_config
            .keep_alive
            .unwrap_or(Duration::MAX)
    }

    /// A session transport that lets the direct path take its calls' messages.
    fn wrap(&self, id: &SessionId, inner: LocalTransport) -> SessionTransport {
        let held = Arc::new(Held {
            handler: OnceLock::new(),
            calls: Divert::default(),
            worker_seen: Mutex::new(Instant::now()),
            closed: CancellationToken::new(),
        });
        lock(&self.held).insert(id.clone(), held.clone());
        SessionTransport {
            inner,
            held,
            table: Arc::downgrade(&self.held),
            id: id.clone(),
        }
    }

    /// Notes that a message of session `id` goes through rmcp's worker.
    fn via_worker(&self, id: &SessionId) {
        if let Some(held) = self.held(id) {
            held.saw_worker();
        }
    }

    /// Claims a request's id in its session. rmcp routes a response to the
    /// stream of the request with its id, so a second request reusing the id
    /// of one still in flight would take that one's answer and leave it
    /// waiting forever; it is refused instead. `None` for the refused one.
    fn claim(&self, id: &SessionId, message: &ClientJsonRpcMessage) -> Option<Option<InFlight>> {
        let ClientJsonRpcMessage::Request(request) = message else {
            return Some(None);
        };
        self.claim_request(id, &request.id).map(Some)
    }

    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    /// The shared table, when sessions are shared.
    pub fn shared(&self) -> Option<(&Arc<SharedSessions>, Duration)> {
        self.shared.as_ref().map(|s| (&s.table, s.ttl))
    }

    /// Closes `session` here if this instance holds it (it moved elsewhere).
    pub async fn drop_moved(&self, session: &str) -> bool {
        let id: SessionId = session.to_string().into();
        if !self.local.has_session(&id).await.unwrap_or(false) {
            return false;
        }
        if let Some(shared) = &self.shared {
            shared.lock_touched().remove(&id);
        }
        let _ = self.local.close_session(&id).await;
        true
    }

    /// Pushes back the shared expiry of `id` when it is due; never waits.
    pub fn touch(&self, id: &SessionId) {
        let Some(shared) = &self.shared else { return };
        let due = {
            let mut touched = shared.lock_touched();
            let now = Instant::now();
            match touched.get(id) {
                Some(at) if now.duration_since(*at) < shared.ttl / 8 => false,
                _ => {
                    touched.insert(id.clone(), now);
                    true
                }
            }
        };
        if due {
            let table = shared.table.clone();
            let (id, ttl) = (id.to_string(), shared.ttl);
            tokio::spawn(async move {
                if let Err(e) = table.touch(&id, ttl).await {
                    tracing::warn!(error = %e, "cannot extend a shared session's expiry");
                }
            });
        }
    }

    fn new_id(&self) -> SessionId {
        format!("{}.{}", self.instance, uuid::Uuid::new_v4()).into()
    }
}

impl Shared {
    fn lock_touched(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Instant>> {
        lock(&self.touched)
    }
}

type LocalTransport = <LocalSessionManager as SessionManager>::Transport;

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = SessionTransport;

    async fn create_session(&self) -> Result<(SessionId, SessionTransport), Self::Error> {
        // rmcp's local manager mints plain UUIDs; its restore path creates a
        // session under an id of our choosing, which is how ids name the
        // instance that minted them.
        loop {
            let id = self.new_id();
            if let RestoreOutcome::Restored(transport) =
                self.local.restore_session(id.clone()).await?
            {
                let transport = self.wrap(&id, transport);
                return Ok((id, transport));
            }
            // A UUID collision: mint another.
        }
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        mut message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        // The handler learns its session's id here (rmcp does not tell it):
        // the id is the session's global name in the coordinator.
        message.insert_extension(SessionName(id.to_string().into()));
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if let Some(shared) = &self.shared {
            shared.lock_touched().remove(id);
        }
        self.local.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.via_worker(id);
        let Some(claim) = self.claim(id, &message) else {
            let request_id = match &message {
                ClientJsonRpcMessage::Request(r) => Some(r.id.clone()),
                _ => None,
            };
            let error = ErrorData::invalid_request(
                format!(
                    "request id {} is already used by a request in flight in this session; use a new id for each request",
                    request_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                None,
            );
            let reply =
                ServerSseMessage::from_message(ServerJsonRpcMessage::error(error, request_id));
            return Ok(futures::stream::iter([reply]).left_stream());
        };
        let stream = self.local.create_stream(id, message).await?;
        // The claim ends with the request's answer (or its stream, if the
        // client goes away first), so the id is free again for the next request.
        let mut claim = claim;
        Ok(stream
            .map(move |m| {
                if let Some(held) = &claim
                    && answers(&m, &held.key.1)
                {
                    claim = None;
                }
                m
            })
            .right_stream())
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.touch(id);
        self.via_worker(id);
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.via_worker(id);
        self.local.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.via_worker(id);
        self.local.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<SessionTransport>, Self::Error> {
        let Some(shared) = &self.shared else {
            return Ok(RestoreOutcome::NotSupported);
        };
        let outcome = match self.local.restore_session(id.clone()).await? {
            RestoreOutcome::Restored(t) => RestoreOutcome::Restored(self.wrap(&id, t)),
            RestoreOutcome::AlreadyPresent => RestoreOutcome::AlreadyPresent,
            _ => RestoreOutcome::NotSupported,
        };
        if let RestoreOutcome::Restored(_) = &outcome {
            tracing::info!(session = %id, "session restored from the shared session store");
            crate::metrics::session_moved("restored");
            if let Err(e) = shared
                .table
                .announce_move(&id, &self.instance, shared.ttl)
                .await
            {
                tracing::warn!(session = %id, error = %e, "cannot announce a restored session");
            }
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

/// Whether `m` is the answer (result or error) to request `id`.
fn answers(m: &ServerSseMessage, id: &RequestId) -> bool {
    match m.message.as_deref() {
        Some(ServerJsonRpcMessage::Response(r)) => r.id == *id,
        Some(ServerJsonRpcMessage::Error(e)) => e.id.as_ref() == Some(id),
        _ => false,
    }
}

/// rmcp's view of the shared table: the `initialize` parameters it replays.
pub struct SharedStore {
    pub table: Arc<SharedSessions>,
    pub instance: Arc<str>,
    pub ttl: Duration,
}

#[async_trait::async_trait]
impl SessionStore for SharedStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let Some(record) = self.table.load(session_id).await? else {
            return Ok(None);
        };
        let Some(init) = record.init else {
            return Ok(None);
        };
        Ok(Some(SessionState::new(serde_json::from_str(&init)?)))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let init = serde_json::to_string(&state.initialize_params)?;
        self.table
            .put(
                session_id,
                &[("init", &init), ("owner", &self.instance)],
                self.ttl,
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.table.delete(session_id).await?)
    }
}

/// How long the old holder of a moved session lets its calls in flight
/// finish before it closes its copy anyway.
const RELEASE_GRACE: Duration = Duration::from_secs(30);

/// Closes the local copy of every session another instance took over,
/// until `stop` is cancelled. A copy with calls in flight (`busy`) is
/// closed once they end (within `RELEASE_GRACE`, 30 s), so a move never cuts
/// an answer off.
pub fn follow_moves(
    sessions: Arc<Sessions>,
    busy: impl Fn(&str) -> bool + Send + Sync + 'static,
    on_drop: impl Fn(&str) + Send + Sync + 'static,
    stop: CancellationToken,
) {
    let Some((table, _)) = sessions.shared() else {
        return;
    };
    let table = table.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn({
        let stop = stop.clone();
        async move { table.follow_moves(tx, stop).await }
    });
    let (busy, on_drop) = (Arc::new(busy), Arc::new(on_drop));
    tokio::spawn(async move {
        while let Some(moved) = rx.recv().await {
            if *moved.to == *sessions.instance {
                continue;
            }
            let (sessions, busy, on_drop) = (sessions.clone(), busy.clone(), on_drop.clone());
            // One task per move, so a busy session holds back no other.
            tokio::spawn(async move {
                let deadline = Instant::now() + RELEASE_GRACE;
                while busy(&moved.session) && Instant::now() < deadline {
                    // Polled: calls in flight end within their own timeouts.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if sessions.drop_moved(&moved.session).await {
                    crate::metrics::session_moved("released");
                    tracing::info!(session = %moved.session, to = %moved.to, "session moved to another instance; closed here");
                    on_drop(&moved.session);
                }
            });
        }
    });
}
