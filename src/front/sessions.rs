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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rmcp::ErrorData;
use rmcp::model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage};
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use rmcp::transport::streamable_http_server::session::{EventStore, RestoreOutcome};
use tokio_util::sync::CancellationToken;

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
}

/// Holds a request's id in its session until the request's stream ends.
struct InFlight {
    table: Arc<Mutex<HashSet<(SessionId, RequestId)>>>,
    key: (SessionId, RequestId),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
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
        let key = (id.clone(), request.id.clone());
        let fresh = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        fresh.then(|| {
            Some(InFlight {
                table: self.in_flight.clone(),
                key,
            })
        })
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
    fn touch(&self, id: &SessionId) {
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
        self.touched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Transport = <LocalSessionManager as SessionManager>::Transport;

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = Transport;

    async fn create_session(&self) -> Result<(SessionId, Transport), Self::Error> {
        // rmcp's local manager mints plain UUIDs; its restore path creates a
        // session under an id of our choosing, which is how ids name the
        // instance that minted them.
        loop {
            let id = self.new_id();
            if let RestoreOutcome::Restored(transport) =
                self.local.restore_session(id.clone()).await?
            {
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
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.local.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.local.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Transport>, Self::Error> {
        let Some(shared) = &self.shared else {
            return Ok(RestoreOutcome::NotSupported);
        };
        let outcome = self.local.restore_session(id.clone()).await?;
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
