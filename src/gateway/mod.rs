//! The running gateway: the mounted backends (a swappable [`Snapshot`]), the
//! [`Hub`] sessions and backend handlers share, and the settings backends
//! read live.
//!
//! A gateway starts empty ([`Gateway::new`]); the reload module applies the
//! first config to it exactly as it applies every later one. This module
//! never decides what to mount: it holds what it is given, answers questions
//! about it (status, readiness, instructions) and serves per-session
//! connections. It knows nothing of clients' credentials or the built-in sets.

#![allow(deprecated)] // logging is deprecated by SEP-2577 but is the ≤2025-11-25 wire protocol

mod private;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use rmcp::model::LoggingLevel;

use crate::backend::{Backend, BackendEnv, BackendState, InProcessSets, LiveEnv, NoSets};
use crate::config::ServerConfig;
use crate::coordinator::{Hub, ListKinds, ListSource};
pub use crate::router::Snapshot;
pub use private::PrivateBackends;
pub use status::View;

/// The running gateway: configuration, backends, and the hub sessions share.
pub struct Gateway {
    /// The `[server]` settings in force; swapped by a reload.
    server: ArcSwap<ServerConfig>,
    snapshot: ArcSwap<Snapshot>,
    pub hub: Arc<Hub>,
    /// What backends are started with and read live; swapped by a reload.
    env: LiveEnv,
    /// Shared by every HTTP and SSE backend (connection pool, TLS roots).
    http: reqwest::Client,
    /// Sessions' own connections to `per_session` backends.
    pub private: PrivateBackends,
    /// The audit log: the request path and the gateway's events record here;
    /// a reload applies a new `[audit]` with `audit.apply`.
    pub audit: crate::audit::Audit,
    /// The outcome of the last reload, for status and metrics.
    last_reload: Mutex<Option<serde_json::Value>>,
    /// The log level last applied to each shared backend: the most verbose
    /// asked for by a session that may see it.
    applied_log_floor: Mutex<HashMap<u64, LoggingLevel>>,
}

impl Gateway {
    /// A gateway with no backends. Its list task (coalescing list changes)
    /// runs until the gateway is dropped.
    pub fn new(server: ServerConfig, audit: &crate::config::AuditConfig) -> Arc<Self> {
        let hub = Hub::new(&server.instance_id);
        let http = reqwest::Client::builder()
            .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let audit = crate::audit::Audit::start(audit, http.clone());
        let env = env_for(
            &server,
            hub.clone(),
            http.clone(),
            Arc::new(NoSets),
            audit.clone(),
        );
        let gateway = Arc::new(Self {
            snapshot: ArcSwap::from_pointee(Snapshot::empty(server.separator.clone())),
            server: ArcSwap::from_pointee(server),
            hub: hub.clone(),
            env: Arc::new(ArcSwap::from_pointee(env)),
            http,
            private: PrivateBackends::default(),
            audit,
            last_reload: Mutex::new(None),
            applied_log_floor: Mutex::new(HashMap::new()),
        });
        let source: Arc<dyn ListSource> = gateway.clone();
        crate::coordinator::spawn_list_task(&hub, Arc::downgrade(&source));
        gateway
    }

    /// The backend environment for `server` settings and these in-process sets.
    pub fn env_for(&self, server: &ServerConfig, builtins: Arc<dyn InProcessSets>) -> BackendEnv {
        env_for(
            server,
            self.hub.clone(),
            self.http.clone(),
            builtins,
            self.audit.clone(),
        )
    }

    /// The live environment backends are started with.
    pub fn live_env(&self) -> &LiveEnv {
        &self.env
    }

    /// Puts new settings, environment and backends in force at once. Running
    /// backends see the new environment at their next step; sessions see the
    /// new snapshot at their next request.
    pub fn install(&self, server: ServerConfig, env: BackendEnv, snapshot: Snapshot) {
        self.env.store(Arc::new(env));
        self.server.store(Arc::new(server));
        self.snapshot.store(Arc::new(snapshot));
        self.hub.lists_recompute();
    }

    /// Applies to each shared backend the most verbose level asked for by a
    /// session that may see it, where that changed.
    pub async fn apply_log_floor(&self) {
        let snapshot = self.snapshot.load_full();
        let changed: Vec<(&Arc<Backend>, LoggingLevel)> = {
            let mut applied = self
                .applied_log_floor
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            snapshot
                .backends
                .values()
                .filter_map(|b| {
                    let floor = self.hub.log_floor_for(b.name())?;
                    (applied.insert(b.id, floor) != Some(floor)).then_some((b, floor))
                })
                .collect()
        };
        futures::future::join_all(changed.into_iter().map(|(b, level)| b.set_log_level(level)))
            .await;
    }

    /// The `[server]` settings in force.
    pub fn server(&self) -> Arc<ServerConfig> {
        self.server.load_full()
    }

    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The snapshot as an owned `Arc`, for holding across awaits.
    pub fn snapshot_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Waits until every backend has finished its first connect attempt.
    pub async fn settled(&self) {
        let snapshot = self.snapshot.load_full();
        futures::future::join_all(snapshot.backends.values().map(|b| b.settled())).await;
    }

    /// Whether every backend has finished its first connect attempt.
    pub fn is_settled(&self) -> bool {
        self.snapshot
            .load()
            .backends
            .values()
            .all(|b| b.state() != BackendState::Connecting)
    }

    /// Records the outcome of a reload, for status.
    pub fn record_reload(&self, outcome: serde_json::Value) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }

    /// Stops every backend (sessions' own ones too) and waits for their
    /// connections (and children) to end.
    pub async fn shutdown(&self) {
        let snapshot = self.snapshot.load_full();
        let private = self.private.take_all();
        futures::future::join_all(
            snapshot
                .backends
                .values()
                .chain(private.iter())
                .map(|b| b.stop()),
        )
        .await;
    }

    /// A mounted or per-session backend by connection id.
    fn backend_by_id(&self, id: u64) -> Option<Arc<Backend>> {
        self.snapshot
            .load()
            .by_id(id)
            .cloned()
            .or_else(|| self.private.by_id(id))
    }
}

impl ListSource for Gateway {
    fn refresh(&self, backends: Vec<(u64, ListKinds)>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let found: Vec<(Arc<Backend>, ListKinds)> = backends
                .into_iter()
                .filter_map(|(id, kinds)| self.backend_by_id(id).map(|b| (b, kinds)))
                .collect();
            let refreshed =
                futures::future::join_all(found.iter().map(|(b, k)| b.refresh(*k))).await;
            for ((backend, _), result) in found.iter().zip(refreshed) {
                if let Err(e) = result {
                    tracing::warn!(backend = %backend.name(), error = %e, "list refresh failed");
                }
            }
        })
    }

    fn list_hashes(&self) -> [u64; 3] {
        self.snapshot.load().list_hashes()
    }
}

/// What backends are started with, from the `[server]` settings.
fn env_for(
    server: &ServerConfig,
    hub: Arc<Hub>,
    http: reqwest::Client,
    builtins: Arc<dyn InProcessSets>,
    audit: crate::audit::Audit,
) -> BackendEnv {
    BackendEnv {
        audit,
        separator: server.separator.clone(),
        connect_timeout: server.connect_timeout,
        hub,
        http,
        relay_timeout: server.relay_timeout,
        builtins,
        restart_min_backoff: server.restart_min_backoff,
        restart_max_backoff: server.restart_max_backoff,
        health_interval: server.health_interval,
        health_timeout: server.health_timeout,
        down_backends: server.down_backends,
    }
}
