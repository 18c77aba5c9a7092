//! Mounted backends: one rmcp client per backend, supervised by its own task.
//!
//! A [`Backend`] is what the router hands a call to. It owns the current
//! connection's [`Peer`], the [`Catalog`] of what it exposes, and its state.
//! The connection itself (`RunningService`) is owned by the backend's
//! supervisor task, which ends when the backend is stopped or the connection
//! closes. Nothing here knows about client sessions except through the
//! [`Hub`], which owns no backends.

mod catalog;
mod client;
mod connect;
pub mod sse;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::model::{ClientRequest, ServerPeerInfo, ServerResult};
use rmcp::service::{PeerRequestOptions, ServiceError};
use rmcp::{Peer, RoleClient};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use catalog::{Catalog, RawLists, prefix_uri};

use crate::config::BackendConfig;
use crate::hub::{Hub, ListKinds};

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
    #[error("backend `{backend}` failed: {message}")]
    Failed { backend: String, message: String },
    /// The backend answered with a JSON-RPC error: passed to the client as is.
    #[error("{0}")]
    Rpc(rmcp::ErrorData),
    /// The client cancelled the request.
    #[error("cancelled by the client")]
    Cancelled,
}

/// Settings a backend needs from outside its own table.
#[derive(Clone)]
pub struct BackendEnv {
    pub separator: String,
    pub connect_timeout: Duration,
    pub hub: Arc<Hub>,
    /// Shared by every HTTP and SSE backend (connection pool, TLS roots).
    pub http: reqwest::Client,
}

pub struct Backend {
    pub config: BackendConfig,
    separator: String,
    /// Current state; a watch so `check --connect` and startup can await the
    /// first connect attempt. Ends with the backend.
    state: watch::Sender<BackendState>,
    /// The live connection's handle, `None` while not connected. Read on every call.
    peer: ArcSwapOption<Peer<RoleClient>>,
    catalog: ArcSwap<Catalog>,
    /// The lists as the backend sent them, so one kind can be refreshed alone.
    raw: Mutex<RawLists>,
    /// Serializes list refreshes so two `list_changed` cannot interleave.
    refresh_lock: tokio::sync::Mutex<()>,
    server_info: ArcSwapOption<ServerPeerInfo>,
    /// The stdio child's pid (0 when none), for status and tests.
    pid: AtomicU32,
    /// Cancelled by [`Backend::stop`] or drop: tells the supervisor to close
    /// the connection (and kill a child process) and end.
    shutdown: CancellationToken,
    /// The supervisor task, awaited by `stop` so a stopped backend's child is gone.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Backend {
    /// Creates the backend and starts connecting in the background.
    pub fn start(config: BackendConfig, env: &BackendEnv) -> Arc<Self> {
        let (state, _) = watch::channel(BackendState::Connecting);
        let backend = Arc::new(Self {
            config,
            separator: env.separator.clone(),
            state,
            peer: ArcSwapOption::empty(),
            catalog: ArcSwap::from_pointee(Catalog::default()),
            raw: Mutex::new(RawLists::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
            server_info: ArcSwapOption::empty(),
            pid: AtomicU32::new(0),
            shutdown: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(connect::supervise(Arc::downgrade(&backend), env.clone()));
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

    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    fn set_state(&self, state: BackendState) {
        match &state {
            BackendState::Up => tracing::info!(backend = %self.name(), "backend up"),
            BackendState::Down(reason) => {
                tracing::warn!(backend = %self.name(), %reason, "backend down")
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

    /// Forwards one request and waits for its answer, the backend's timeout,
    /// or `cancel` (the client gave up), whichever comes first.
    pub async fn request(
        &self,
        request: ClientRequest,
        cancel: &CancellationToken,
    ) -> Result<ServerResult, CallError> {
        let peer = self.peer()?;
        let timeout = self.config.timeout;
        let options = PeerRequestOptions::with_timeout(timeout).reset_timeout_on_progress();
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| self.map_error(e))?;
        let id = handle.id.clone();
        tokio::select! {
            result = handle.await_response() => result.map_err(|e| self.map_error(e)),
            _ = cancel.cancelled() => {
                let param = rmcp::model::CancelledNotificationParam::new(Some(id), Some("cancelled by the client".into()));
                if let Err(e) = peer.notify_cancelled(param).await {
                    tracing::debug!(backend = %self.name(), error = %e, "could not forward cancellation");
                }
                Err(CallError::Cancelled)
            }
        }
    }

    fn map_error(&self, e: ServiceError) -> CallError {
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
