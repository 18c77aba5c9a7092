//! Built-in tool sets: MCP servers that run inside the gateway process.
//!
//! Each set is an rmcp `ServerHandler` served over an in-process pipe of messages
//! and mounted as an ordinary [`crate::backend::Backend`] with transport
//! [`TransportConfig::Builtin`] and an empty prefix. The router, timeouts,
//! progress, cancellation, list changes and the coordinator therefore treat
//! a built-in set exactly like a mounted server. Built-in backend names start
//! with `@`, which user backend names cannot, so they never collide.
//!
//! A set learns who is calling from two `_meta` keys the front adds to
//! requests for built-in backends only: [`SESSION_META_KEY`] (our session id)
//! and [`CLIENT_META_KEY`] (the client's name, or its authenticated id).
//! When the request was authenticated, the front also adds [`AUTH_META_KEY`]
//! (the client id bound to the token); its presence means "auth is on" and
//! sets such as messaging enforce identity rules then.

pub mod bus;
pub mod jobs;
pub mod logs;
pub mod messaging;
mod single;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};

use crate::config::{BackendConfig, Config, Isolation, NameFilter, TransportConfig};
use crate::gateway::Gateway;

/// `_meta` key carrying the calling session's id to built-in sets.
pub const SESSION_META_KEY: &str = "io.manifold/session";
/// `_meta` key carrying the calling session's global id
/// (`<instance_id>.<uuid>`) to built-in sets.
pub const SESSION_NAME_META_KEY: &str = "io.manifold/session-id";
/// `_meta` key carrying the JSON-RPC id of the client's request to built-in
/// sets: with the session id, it names one request of one client, so a
/// request a load balancer re-sends after its instance died is recognised.
pub const REQUEST_META_KEY: &str = "io.manifold/request";
/// `_meta` key carrying the calling client's identity to built-in sets.
pub const CLIENT_META_KEY: &str = "io.manifold/client";
/// `_meta` key carrying the client id its bearer token proved (only when
/// `[auth]` is configured); unlike [`CLIENT_META_KEY`] a client cannot choose it.
pub const AUTH_META_KEY: &str = "io.manifold/auth";
/// `_meta` key present (true) when the authenticated client's token is marked
/// `admin`; like [`AUTH_META_KEY`], only the front sets it.
pub const ADMIN_META_KEY: &str = "io.manifold/admin";

pub use crate::backend::ServeFn;

/// Wraps a handler factory as a [`ServeFn`].
pub fn serve_fn<S, F>(make: F) -> ServeFn
where
    S: ServerHandler,
    F: Fn() -> S + Send + Sync + 'static,
{
    let make = Arc::new(make);
    Arc::new(move |end: crate::backend::ServerEnd| {
        let make = make.clone();
        Box::pin(async move {
            match make().serve(end.into_transport()).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => tracing::warn!(error = %e, "built-in tool set failed to start"),
            }
        })
    })
}

/// The built-in sets by backend name.
#[derive(Clone, Default)]
pub struct BuiltinSets {
    sets: HashMap<String, ServeFn>,
    /// The settings the messaging and bus state was built with, when it was.
    messaging: Option<(crate::config::MessagingConfig, crate::config::BusConfig)>,
    /// The job queue, when `[jobs]` mounted it (with the settings it was opened with).
    jobs: Option<(crate::config::JobsConfig, Arc<crate::jobs::Jobs>)>,
    /// The store the bus publishes through, when `@bus` is mounted.
    bus_store: Option<crate::store::Store>,
}

impl crate::backend::InProcessSets for BuiltinSets {
    fn get(&self, name: &str) -> Option<ServeFn> {
        self.sets.get(name).cloned()
    }
}

impl BuiltinSets {
    /// The job queue, if `@jobs` is mounted.
    pub fn jobs(&self) -> Option<&Arc<crate::jobs::Jobs>> {
        self.jobs.as_ref().map(|(_, j)| j)
    }

    /// The bus's store (history and event feed), if `@bus` is mounted.
    pub fn bus_store(&self) -> Option<&crate::store::Store> {
        self.bus_store.as_ref()
    }
}

/// The backend config of a built-in set: bare names, shared, generous timeout.
fn builtin_backend(set: &str, config: &Config) -> BackendConfig {
    BackendConfig {
        name: format!("@{set}"),
        prefix: String::new(),
        enabled: true,
        timeout: config.server.call_timeout,
        transport: TransportConfig::Builtin {
            set: set.to_string(),
        },
        isolation: Isolation::Shared,
        tools: NameFilter::default(),
        prompts: NameFilter::default(),
        max_concurrent: None,
        max_sessions: crate::config::DEFAULT_MAX_SESSIONS,
        tasks: crate::config::TaskSupport::Forbidden,
        lifecycle: crate::config::Lifecycle::Initialize,
    }
}

/// The messaging set's backend: a `send_message_and_wait` may wait up to
/// `max_wait`, so the call timeout must not cut it short.
fn messaging_backend(m: &crate::config::MessagingConfig, config: &Config) -> BackendConfig {
    let mut backend = builtin_backend("messaging", config);
    backend.timeout = backend
        .timeout
        .max(m.max_wait + std::time::Duration::from_secs(10));
    backend
}

/// Every built-in set this config enables, with the backend that mounts it.
/// `previous` is what the running gateway has (on a reload), whose state is kept.
pub fn enabled(
    config: &Config,
    gateway: Weak<Gateway>,
    previous: Option<&BuiltinSets>,
) -> (BuiltinSets, Vec<BackendConfig>) {
    let mut sets = BuiltinSets::default();
    let mut backends = Vec::new();
    let status = builtin_backend("gateway", config);
    sets.sets
        .insert("gateway".into(), status::serve(gateway.clone()));
    backends.push(status);
    jobs::mount(config, &gateway, previous, &mut sets, &mut backends);
    // `query_logs` whenever the audit log has a local store to read.
    if config.audit.local != crate::config::LocalStore::None {
        sets.sets
            .insert("logs".into(), logs::serve(gateway.clone()));
        backends.push(builtin_backend("logs", config));
    }
    // A reload keeps the messaging and bus state (store, queues, waiters,
    // subscriptions, the bus sink): the running `@messaging` and `@bus`
    // backends are reused and hold it, so building new state would split it.
    let previous = previous.filter(|p| p.messaging.is_some()).cloned();
    let wanted = (config.messaging.clone(), config.bus.clone());
    if let Some(previous) = previous {
        if previous.messaging.as_ref() != Some(&wanted) {
            tracing::warn!(
                "[messaging] and [bus] cannot change while running; restart to apply the new settings"
            );
        }
        if let Some((m, b)) = &previous.messaging {
            if m.enabled
                && let Some(serve) = previous.sets.get("messaging")
            {
                sets.sets.insert("messaging".into(), serve.clone());
                backends.push(messaging_backend(m, config));
            }
            if b.enabled
                && let Some(serve) = previous.sets.get("bus")
            {
                sets.sets.insert("bus".into(), serve.clone());
                sets.bus_store = previous.bus_store.clone();
                backends.push(builtin_backend("bus", config));
            }
        }
        sets.messaging = previous.messaging;
        return (sets, backends);
    }
    if config.messaging.enabled || config.bus.enabled {
        // One store and one view of who is who, shared by both sets.
        let store =
            crate::store::Store::open(&config.messaging.store, config.messaging.message_ttl);
        let presence = messaging::Presence::new();
        if config.messaging.enabled {
            let serve = messaging::start(
                config.messaging.clone(),
                store.clone(),
                presence.clone(),
                gateway.clone(),
            );
            sets.sets.insert("messaging".into(), serve);
            backends.push(messaging_backend(&config.messaging, config));
        }
        if config.bus.enabled {
            sets.bus_store = Some(store.clone());
            let serve = bus::start(config.bus.clone(), store, presence, gateway);
            sets.sets.insert("bus".into(), serve);
            backends.push(builtin_backend("bus", config));
        }
        sets.messaging = Some(wanted);
    }
    (sets, backends)
}

/// Who is calling a built-in set, from the `_meta` keys the front adds.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// This instance's key for the calling session.
    pub session: Option<u64>,
    /// The calling session's global id, as audit, status and the bus show it.
    pub session_name: Option<String>,
    /// The JSON-RPC id of the client's request (see [`REQUEST_META_KEY`]).
    pub request: Option<String>,
    pub client: Option<String>,
    /// The authenticated client id; `None` when auth is off.
    pub auth: Option<String>,
    /// Whether the authenticated client is an administrator.
    pub admin: bool,
}

impl Caller {
    /// What names this call among every call of every client, when the
    /// front said (its session's global id and its JSON-RPC id): a store
    /// uses it to do a re-sent request's work once.
    pub fn idempotency_key(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.session_name.as_ref()?,
            self.request.as_ref()?
        ))
    }

    pub fn of(ctx: &RequestContext<RoleServer>) -> Self {
        let meta = &ctx.meta.0.0;
        let text = |key: &str| meta.get(key).and_then(|v| v.as_str()).map(String::from);
        Self {
            session: meta.get(SESSION_META_KEY).and_then(|v| v.as_u64()),
            session_name: text(SESSION_NAME_META_KEY),
            request: text(REQUEST_META_KEY),
            client: text(CLIENT_META_KEY),
            auth: text(AUTH_META_KEY),
            admin: meta.get(ADMIN_META_KEY).and_then(|v| v.as_bool()) == Some(true),
        }
    }
}
