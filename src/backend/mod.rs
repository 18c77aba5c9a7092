//! Mounted backends: one rmcp client per backend, supervised by its own task.
//!
//! A [`Backend`] is what the router hands a call to. It owns the current
//! connection's [`Peer`], the [`Catalog`] of what it exposes, and its state.
//! The connection itself (`RunningService`) is owned by the backend's
//! supervisor task, which ends when the backend is stopped or the connection
//! closes. Nothing here knows about client sessions except through the
//! [`Hub`], which owns no backends.

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod catalog;
mod client;
mod connect;
pub mod extras;
mod http_tap;
mod inprocess;
mod lines;
mod needs;
mod open;
mod ordering;
mod post;
mod request;
pub mod spawn;
pub mod sse;
mod stderr;
mod task_bridge;
mod wire;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::model::{
    ClientCapabilities, LoggingLevel, ProgressToken, ServerPeerInfo, SetLevelRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::ServiceError;
use rmcp::{Peer, RoleClient, RoleServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use catalog::{
    Catalog, RawLists, prefix_block, prefix_contents, prefix_task_payload, prefix_uri,
};
pub use inprocess::{InProcessSets, NoSets, ServeFn, ServerEnd};
pub use needs::{ask_client, shared_capabilities};
pub use request::CLIENT_REQUEST;

use crate::config::BackendConfig;
use crate::coordinator::{Hub, ListKinds};

/// Where a backend is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendState {
    Connecting,
    Up,
    /// Not usable, with the reason shown to users.
    Down(String),
    Stopped,
}

impl BackendState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Up => "up",
            Self::Down(_) => "down",
            Self::Stopped => "stopped",
        }
    }
}

/// Why a forwarded request did not produce a backend answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("backend `{backend}` is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
    #[error("backend `{backend}` did not answer within {}", humantime::format_duration(*.timeout))]
    Timeout { backend: String, timeout: Duration },
    #[error("backend `{backend}` closed the connection during the call")]
    Closed { backend: String },
    #[error("backend `{backend}` is busy: all {limit} call slots (max_concurrent) stayed taken for {}", humantime::format_duration(*.waited))]
    Busy {
        backend: String,
        limit: usize,
        waited: Duration,
    },
    #[error("backend `{backend}` failed: {message}")]
    Failed { backend: String, message: String },
    /// The backend answered with a JSON-RPC error: passed to the client as is.
    #[error("{0}")]
    Rpc(rmcp::ErrorData),
    /// The client cancelled the request.
    #[error("cancelled by the client")]
    Cancelled,
    /// A `per_session` backend already has its own connection for `limit` sessions.
    #[error(
        "backend `{backend}` already runs a separate connection for {limit} sessions (its `max_sessions`); try again when one ends"
    )]
    SessionLimit { backend: String, limit: usize },
}

/// The environment backends read live: a reload swaps in a new one and
/// running backends see it at their next step (connect, health check,
/// restart, relayed request) without reconnecting.
pub type LiveEnv = Arc<ArcSwap<BackendEnv>>;

/// Settings a backend needs from outside its own table.
#[derive(Clone)]
pub struct BackendEnv {
    pub separator: String,
    pub connect_timeout: Duration,
    pub hub: Arc<Hub>,
    /// Shared by every HTTP and SSE backend (connection pool, TLS roots).
    pub http: reqwest::Client,
    /// How long a client may take to answer a relayed sampling, elicitation
    /// or roots request.
    pub relay_timeout: Duration,
    /// The in-process servers, for backends with transport `Builtin`.
    pub builtins: Arc<dyn InProcessSets>,
    pub restart_min_backoff: Duration,
    pub restart_max_backoff: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub down_backends: crate::config::DownBackends,
    /// Where the backend's up, down and restart events are recorded.
    pub audit: crate::audit::Audit,
}

/// The client request a backend request is made for.
pub struct Origin<'a> {
    /// Our id of the client session.
    pub session: u64,
    /// Where the call's progress and server→client requests go.
    pub sink: Sink<'a>,
    /// The client's progress token, if it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// Cancelled when the client cancels its request.
    pub cancel: &'a CancellationToken,
    /// What the backend is told when `cancel` fires ("cancelled by the
    /// client" when unset): a parked call that expired says so.
    pub cancel_reason: Option<&'a std::sync::OnceLock<String>>,
    /// What the calling client declared: a backend connected at 2026-07-28
    /// is told these (instead of all the gateway relays) in the request's
    /// `_meta`, so it asks only what the client can answer, or refuses with
    /// -32021 as it would directly. `None`: the connection's own.
    pub client_capabilities: Option<ClientCapabilities>,
}

/// Where a call's events go.
pub enum Sink<'a> {
    /// To this client session's handle, sent from the call's own task so rmcp
    /// puts them on the stream of the client's request (rmcp notes, P1).
    Peer(&'a Peer<RoleServer>),
    /// To this channel, unopened: a parked call of a 2026-07-28 client, whose
    /// requests come and go per round (`front::parked`). Its relays are
    /// checked against the capabilities in `client`.
    Parked {
        events: tokio::sync::mpsc::Sender<crate::coordinator::CallEvent>,
        client: crate::coordinator::calls::Parked,
        /// Set to the call's routing entry once registered, so the parked
        /// call can point it at each request that takes it up.
        registered: Arc<std::sync::OnceLock<Arc<crate::coordinator::calls::Call>>>,
    },
}

/// Unique per backend connection owner, so routes of a replaced or
/// per-session backend never collide with another's.
static NEXT_BACKEND_ID: AtomicU64 = AtomicU64::new(1);

pub struct Backend {
    pub config: BackendConfig,
    /// Unique among all backends this process ever started.
    pub id: u64,
    /// The client session this connection belongs to (`isolation =
    /// "per_session"`); what it sends unprompted goes to that session only.
    pub owner: Option<u64>,
    separator: String,
    hub: Arc<Hub>,
    /// Shared with the gateway; read live (see [`LiveEnv`]).
    env: LiveEnv,
    /// Records this backend's up, down and restart events.
    pub(crate) audit: crate::audit::Audit,
    /// Held for writing while a request is sent and its route registered, and
    /// for reading by notification handlers before they look a route up, so a
    /// backend that answers instantly cannot outrun the registration (rmcp notes, P4).
    pub(crate) routing_gate: tokio::sync::RwLock<()>,
    /// Which client each task this backend made was handed to.
    task_owners: Mutex<task_bridge::TaskOwners>,
    /// Keeps the fields of listed items rmcp's model drops (see `extras`).
    pub(crate) list_tap: Arc<extras::ListTap>,
    /// The backend's own URIs sessions subscribed to, for a backend that
    /// speaks 2026-07-28: its listen stream asks for their updates, and is
    /// opened again when this set changes.
    listen_uris: watch::Sender<std::collections::BTreeSet<String>>,
    /// Current state; a watch so `check --connect` and startup can await the
    /// first connect attempt. Ends with the backend.
    state: watch::Sender<BackendState>,
    /// The live connection's handle, `None` while not connected. Read on every call.
    peer: ArcSwapOption<Peer<RoleClient>>,
    /// The live stdio connection's write half, on which calls are sent
    /// without rmcp's service loop (decision 0022); `None` for the other
    /// transports and while not connected.
    wire: ArcSwapOption<wire::Wire>,
    /// The live streamable-HTTP connection's direct calls (decision 0023);
    /// `None` for the other transports and while not connected.
    post: ArcSwapOption<post::Post>,
    catalog: ArcSwap<Catalog>,
    /// The lists as the backend sent them, so one kind can be refreshed alone.
    raw: Mutex<RawLists>,
    /// Serializes list refreshes so two `list_changed` cannot interleave.
    refresh_lock: tokio::sync::Mutex<()>,
    server_info: ArcSwapOption<ServerPeerInfo>,
    /// `max_concurrent` call slots; a call holds one until it is answered.
    /// Dropped with the backend; waiters then fail as unavailable.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// The stdio child's pid (0 when none), for status and tests.
    pid: AtomicU32,
    /// How many times the supervisor reconnected after a failure.
    restarts: AtomicU64,
    /// Why it last went down and when, kept after it comes back (status, console).
    last_error: Mutex<Option<(String, std::time::SystemTime)>>,
    /// The per-call timeout in milliseconds: `config.timeout` at first, then
    /// whatever a reload sets, without reconnecting.
    timeout_ms: AtomicU64,
    /// Cancelled by [`Backend::stop`] or drop: tells the supervisor to close
    /// the connection (and kill a child process) and end.
    shutdown: CancellationToken,
    /// The supervisor task, awaited by `stop` so a stopped backend's child is gone.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Backend {
    /// Creates the backend and starts connecting in the background.
    /// `capabilities` is what the gateway tells the backend it supports.
    /// `owner` is the client session a per-session connection belongs to.
    pub fn start(
        config: BackendConfig,
        live: &LiveEnv,
        capabilities: ClientCapabilities,
        owner: Option<u64>,
    ) -> Arc<Self> {
        let env = live.load();
        let (state, _) = watch::channel(BackendState::Connecting);
        let slots = config
            .max_concurrent
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        let config_timeout_ms = config.timeout.as_millis() as u64;
        let backend = Arc::new(Self {
            slots,
            config,
            id: NEXT_BACKEND_ID.fetch_add(1, Ordering::Relaxed),
            owner,
            separator: env.separator.clone(),
            hub: env.hub.clone(),
            env: live.clone(),
            audit: env.audit.clone(),
            routing_gate: tokio::sync::RwLock::new(()),
            list_tap: Arc::default(),
            task_owners: Mutex::default(),
            listen_uris: watch::Sender::new(Default::default()),
            state,
            peer: ArcSwapOption::empty(),
            wire: ArcSwapOption::empty(),
            post: ArcSwapOption::empty(),
            catalog: ArcSwap::from_pointee(Catalog::default()),
            raw: Mutex::new(RawLists::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
            server_info: ArcSwapOption::empty(),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            timeout_ms: AtomicU64::new(config_timeout_ms),
            shutdown: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(connect::supervise(
            Arc::downgrade(&backend),
            live.clone(),
            capabilities,
        ));
        *backend.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        backend
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn state(&self) -> BackendState {
        self.state.borrow().clone()
    }

    /// Waits until the first connect attempt has finished (up or down).
    pub async fn settled(&self) -> BackendState {
        let mut rx = self.state.subscribe();
        let state = rx.wait_for(|s| *s != BackendState::Connecting).await;
        match state {
            Ok(s) => s.clone(),
            Err(_) => BackendState::Stopped,
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    pub fn server_info(&self) -> Option<Arc<ServerPeerInfo>> {
        self.server_info.load_full()
    }

    /// Whether the backend speaks 2026-07-28 (it refused `initialize`): it
    /// asks with `InputRequired` results instead of requests during a call.
    pub fn speaks_2026(&self) -> bool {
        self.server_info()
            .is_some_and(|i| !i.protocol_version.has_initialize())
    }

    /// Whether the backend makes tasks of its own (the tasks extension),
    /// which the gateway relays to clients that declared the extension. A
    /// 2026-07-28 connection learns per request whether the client did, a
    /// per-session one has that client's own capabilities; a shared
    /// initialize-era one was told the gateway takes tasks, and a call whose
    /// client cannot take one waits for it to end (`task_bridge`).
    pub fn relays_tasks(&self) -> bool {
        self.server_info()
            .is_some_and(|i| i.capabilities.supports_tasks())
    }

    /// Remembers which client (and session) a task of this backend was handed to.
    pub fn task_made_for(&self, task: &str, client: Option<&str>, session: u64) {
        self.task_owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(task, client, session);
    }

    /// The session a task was handed to, which gets its status notifications.
    fn task_session(&self, task: &str) -> Option<u64> {
        self.task_owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .session(task)
    }

    /// Whether `client` may use this backend's task `task`: the one it was
    /// handed to, or any client for a task this process never handed out.
    pub fn task_belongs_to(&self, task: &str, client: Option<&str>) -> bool {
        self.task_owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allows(task, client)
    }

    /// The URIs a 2026-07-28 backend's listen stream asks updates for; marked
    /// changed when sessions subscribe or unsubscribe.
    pub(crate) fn listen_uris(&self) -> watch::Receiver<std::collections::BTreeSet<String>> {
        self.listen_uris.subscribe()
    }

    /// Whether the backend advertised `resources.subscribe`.
    pub fn supports_subscriptions(&self) -> bool {
        self.server_info().is_some_and(|i| {
            i.capabilities
                .resources
                .as_ref()
                .is_some_and(|r| r.subscribe == Some(true))
        })
    }

    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes the per-call timeout of a running backend (a reload that
    /// changed nothing else).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The reason it last went down, and when; `None` if it never did.
    pub fn last_error(&self) -> Option<(String, std::time::SystemTime)> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether calls to this backend are in flight (for draining on reload).
    pub fn busy(&self) -> bool {
        self.hub.calls.in_flight(self.id) > 0
    }

    fn set_state(&self, state: BackendState) {
        match &state {
            // Target `queue`: logged, and published on the bus (builtin::bus).
            BackendState::Up => {
                tracing::info!(target: "queue", backend = %self.name(), "backend up");
                self.audit.event(
                    "info",
                    "backend_up",
                    format!("backend {} up", self.name()),
                    serde_json::json!({"backend": self.name(), "transport": self.config.transport.kind()}),
                );
            }
            BackendState::Down(reason) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((reason.clone(), std::time::SystemTime::now()));
                tracing::warn!(target: "queue", backend = %self.name(), %reason, "backend down");
                self.audit.event(
                    "warning",
                    "backend_down",
                    format!("backend {} down: {reason}", self.name()),
                    serde_json::json!({"backend": self.name(), "transport": self.config.transport.kind(), "reason": reason}),
                );
            }
            _ => {}
        }
        self.state.send_replace(state);
    }

    fn peer(&self) -> Result<Arc<Peer<RoleClient>>, CallError> {
        match self.peer.load_full() {
            Some(p) if !p.is_transport_closed() => Ok(p),
            _ => Err(CallError::Unavailable {
                backend: self.name().to_string(),
                reason: match self.state() {
                    BackendState::Down(reason) => reason,
                    BackendState::Connecting => "still connecting".into(),
                    BackendState::Stopped => "stopped".into(),
                    BackendState::Up => "connection closed".into(),
                },
            }),
        }
    }

    /// Subscribes at the backend to one of its own resource URIs.
    pub async fn subscribe(&self, uri: String) -> Result<(), CallError> {
        let peer = self.peer()?;
        if self.speaks_2026() {
            // 2026-07-28 has no resources/subscribe: the listen stream asks.
            self.listen_uris.send_modify(|uris| {
                uris.insert(uri);
            });
            return Ok(());
        }
        peer.subscribe(SubscribeRequestParams::new(uri))
            .await
            .map_err(|e| self.map_error(e))
    }

    pub async fn unsubscribe(&self, uri: String) -> Result<(), CallError> {
        let peer = self.peer()?;
        if self.speaks_2026() {
            self.listen_uris.send_modify(|uris| {
                uris.remove(&uri);
            });
            return Ok(());
        }
        peer.unsubscribe(UnsubscribeRequestParams::new(uri))
            .await
            .map_err(|e| self.map_error(e))
    }

    /// Sets the backend's log level, if it does logging.
    pub async fn set_log_level(&self, level: LoggingLevel) {
        let supports = self
            .server_info()
            .is_some_and(|i| i.capabilities.logging.is_some());
        let Ok(peer) = self.peer() else { return };
        if supports && let Err(e) = peer.set_level(SetLevelRequestParams::new(level)).await {
            tracing::debug!(backend = %self.name(), error = %e, "setting the log level failed");
        }
    }

    /// Tells the backend the clients' roots changed.
    pub async fn roots_changed(&self) {
        if let Ok(peer) = self.peer()
            && let Err(e) = peer.notify_roots_list_changed().await
        {
            tracing::debug!(backend = %self.name(), error = %e, "roots/list_changed not delivered");
        }
    }

    /// Re-reads the given lists from the backend and rebuilds the catalog.
    pub async fn refresh(&self, kinds: ListKinds) -> Result<(), ServiceError> {
        let _serial = self.refresh_lock.lock().await;
        let Some(peer) = self.peer.load_full() else {
            return Ok(());
        };
        let caps = self
            .server_info()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.list_tap.take();
        if kinds.tools && caps.tools.is_some() {
            raw.tools = peer.list_all_tools().await?;
        }
        if kinds.prompts && caps.prompts.is_some() {
            raw.prompts = peer.list_all_prompts().await?;
        }
        if kinds.resources && caps.resources.is_some() {
            raw.resources = peer.list_all_resources().await?;
            raw.templates = peer.list_all_resource_templates().await?;
        }
        self.list_tap.take().apply(&mut raw, kinds);
        let catalog = Catalog::build(&self.config, &self.separator, raw.clone());
        for name in &catalog.too_long {
            tracing::warn!(backend = %self.name(), name = %name, "name hidden: longer than 64 characters");
        }
        *self.raw.lock().unwrap_or_else(|p| p.into_inner()) = raw;
        self.catalog.store(Arc::new(catalog));
        Ok(())
    }

    /// Closes the connection (killing a stdio child's process group) and waits
    /// for the supervisor to finish.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A weak handle the backend's client handler keeps (a strong one would keep
/// the backend alive through its own connection).
pub(crate) type BackendRef = Weak<Backend>;
