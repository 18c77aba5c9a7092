//! The gateway core: the current snapshot of mounted backends and the routing
//! rules over it.
//!
//! Every request reads the snapshot once (`ArcSwap::load`), so swapping in a
//! new one (hot reload) never blocks or drops a session; a call keeps the
//! `Arc<Backend>` it resolved until it finishes.

#![allow(deprecated)] // logging is deprecated by SEP-2577 but is the ≤2025-11-25 wire protocol

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rmcp::model::{LoggingLevel, Prompt, Resource, ResourceTemplate, Tool};
use tokio::sync::mpsc;

use crate::backend::{Backend, BackendEnv, BackendState, shared_capabilities};
use crate::config::{Config, ServerConfig};
use crate::coordinator::{Fate, Hub, Kind, ListEvent, ListKinds};

/// List changes arriving within this window are merged into one notification per session.
const LIST_COALESCE_WINDOW: Duration = Duration::from_millis(25);

/// The mounted backends at one point in time.
pub struct Snapshot {
    pub generation: u64,
    /// By backend name; iteration order is the order names are resolved in.
    pub backends: BTreeMap<String, Arc<Backend>>,
    /// Non-empty prefix → backend, for the routing fast path.
    by_prefix: HashMap<String, Arc<Backend>>,
    /// Backends with `prefix = ""`, searched after the prefix match.
    bare: Vec<Arc<Backend>>,
    separator: String,
}

impl Snapshot {
    pub(crate) fn new(
        generation: u64,
        backends: BTreeMap<String, Arc<Backend>>,
        separator: String,
    ) -> Self {
        let mut by_prefix = HashMap::new();
        let mut bare = Vec::new();
        for b in backends.values() {
            if b.config.prefix.is_empty() {
                bare.push(b.clone());
            } else {
                by_prefix.insert(b.config.prefix.clone(), b.clone());
            }
        }
        Self {
            generation,
            backends,
            by_prefix,
            bare,
            separator,
        }
    }

    /// The backends that may own `name`, most specific first.
    fn candidates<'a>(&'a self, prefix: Option<&str>) -> impl Iterator<Item = &'a Arc<Backend>> {
        prefix
            .and_then(|p| self.by_prefix.get(p))
            .into_iter()
            .chain(self.bare.iter())
    }

    /// The backend and original name of an exposed tool.
    pub fn route_tool(&self, exposed: &str) -> Option<(Arc<Backend>, Arc<str>)> {
        let prefix = exposed.split_once(self.separator.as_str()).map(|(p, _)| p);
        self.candidates(prefix)
            .find_map(|b| b.catalog().tool(exposed).map(|n| (b.clone(), n.clone())))
    }

    pub fn route_prompt(&self, exposed: &str) -> Option<(Arc<Backend>, Arc<str>)> {
        let prefix = exposed.split_once(self.separator.as_str()).map(|(p, _)| p);
        self.candidates(prefix)
            .find_map(|b| b.catalog().prompt(exposed).map(|n| (b.clone(), n.clone())))
    }

    /// The backend and the backend's own URI for an exposed resource URI (or
    /// URI template). Bare backends claim URIs that match one of their
    /// resources or templates' schemes.
    pub fn route_uri(&self, exposed: &str) -> Option<(Arc<Backend>, String)> {
        if let Some((prefix, rest)) = exposed.split_once('+')
            && let Some(b) = self.by_prefix.get(prefix)
        {
            return Some((b.clone(), rest.to_string()));
        }
        let owns = |b: &&Arc<Backend>| {
            let c = b.catalog();
            c.resources.iter().any(|r| r.uri == exposed)
                || c.templates.iter().any(|t| {
                    let literal = t.uri_template.split('{').next().unwrap_or_default();
                    !literal.is_empty() && exposed.starts_with(literal)
                })
        };
        // A URI no listing mentions goes to the one bare backend that serves
        // resources at all, if there is exactly one.
        let with_resources: Vec<&Arc<Backend>> = self
            .bare
            .iter()
            .filter(|b| {
                b.server_info()
                    .is_some_and(|i| i.capabilities.resources.is_some())
            })
            .collect();
        let owner = self
            .bare
            .iter()
            .find(owns)
            .or(match with_resources.as_slice() {
                [only] => Some(*only),
                _ => None,
            })?;
        Some((owner.clone(), exposed.to_string()))
    }

    /// All exposed tools, in backend-name order. A name that two backends expose
    /// is listed once, for the backend calls are routed to.
    pub fn tools(&self) -> Vec<Tool> {
        let mut out = Vec::new();
        for b in self.backends.values() {
            let c = b.catalog();
            for t in &c.tools {
                if self
                    .route_tool(&t.name)
                    .is_some_and(|(owner, _)| Arc::ptr_eq(&owner, b))
                {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    pub fn prompts(&self) -> Vec<Prompt> {
        let mut out = Vec::new();
        for b in self.backends.values() {
            let c = b.catalog();
            for p in &c.prompts {
                if self
                    .route_prompt(&p.name)
                    .is_some_and(|(owner, _)| Arc::ptr_eq(&owner, b))
                {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.backends
            .values()
            .flat_map(|b| b.catalog().resources.clone())
            .collect()
    }

    pub fn templates(&self) -> Vec<ResourceTemplate> {
        self.backends
            .values()
            .flat_map(|b| b.catalog().templates.clone())
            .collect()
    }
}

/// The running gateway: configuration, backends, and the hub sessions share.
pub struct Gateway {
    /// The `[server]` settings in force; swapped by a reload.
    pub(crate) server: ArcSwap<ServerConfig>,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub hub: Arc<Hub>,
    /// The `[auth]` and `[limits]` in force for clients; a reload applies a
    /// new config with `policy.update(&config)`.
    pub policy: Arc<crate::front::Policy>,
    /// What backends are started with (per-session ones too); swapped by a reload.
    pub(crate) env: ArcSwap<BackendEnv>,
    /// The audit log: the request path and the gateway's events record here;
    /// a reload applies a new `[audit]` with `audit.apply`.
    pub audit: crate::audit::Audit,
    /// Serializes reloads; held across a whole reload, never by requests.
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// The outcome of the last reload, for status and metrics.
    pub(crate) last_reload: Mutex<Option<serde_json::Value>>,
    /// The log level last applied to the backends (the most verbose any session asked for).
    applied_log_floor: Mutex<Option<LoggingLevel>>,
}

impl Gateway {
    /// Starts every enabled backend (each connects in its own task) and
    /// returns at once; see [`Gateway::settled`].
    pub fn start(config: Config) -> Arc<Self> {
        let (hub, list_events) = Hub::new();
        let gateway = Arc::new_cyclic(|weak: &Weak<Gateway>| {
            let (builtins, builtin_backends) = crate::builtin::enabled(&config, weak.clone());
            let http = reqwest::Client::builder()
                .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default();
            let audit = crate::audit::Audit::start(&config.audit, http.clone());
            let env = backend_env(&config.server, hub.clone(), http, builtins, audit.clone());
            let backends = builtin_backends
                .iter()
                .chain(config.enabled_backends())
                .map(|b| {
                    (
                        b.name.clone(),
                        Backend::start(b.clone(), &env, shared_capabilities(), None),
                    )
                })
                .collect();
            let snapshot = Snapshot::new(1, backends, config.server.separator.clone());
            Self {
                server: ArcSwap::from_pointee(config.server.clone()),
                snapshot: ArcSwap::from_pointee(snapshot),
                hub: hub.clone(),
                policy: Arc::new(crate::front::Policy::new(&config)),
                env: ArcSwap::from_pointee(env),
                audit,
                reload_lock: tokio::sync::Mutex::new(()),
                last_reload: Mutex::new(None),
                applied_log_floor: Mutex::new(None),
            }
        });
        // Ends when the gateway is dropped (the hub's sender goes with it).
        tokio::spawn(list_task(Arc::downgrade(&gateway), list_events));
        gateway
    }

    /// Hashes of the aggregated tools, prompts and resources (with templates).
    pub fn list_hashes(&self) -> [u64; 3] {
        fn hash<T: serde::Serialize>(items: &T) -> u64 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_vec(items).unwrap_or_default().hash(&mut h);
            h.finish()
        }
        let s = self.snapshot.load();
        [
            hash(&s.tools()),
            hash(&s.prompts()),
            hash(&(s.resources(), s.templates())),
        ]
    }

    /// Applies the most verbose level any session asked for to every backend, if it changed.
    pub async fn apply_log_floor(&self) {
        let floor = self.hub.log_floor();
        {
            let mut applied = self
                .applied_log_floor
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *applied == floor {
                return;
            }
            *applied = floor;
        }
        if let Some(level) = floor {
            let snapshot = self.snapshot.load_full();
            futures::future::join_all(snapshot.backends.values().map(|b| b.set_log_level(level)))
                .await;
        }
    }

    /// The `[server]` settings in force.
    pub fn server(&self) -> Arc<ServerConfig> {
        self.server.load_full()
    }

    pub(crate) fn env(&self) -> Arc<BackendEnv> {
        self.env.load_full()
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

    /// The state of every backend, as JSON for `/readyz` and status tools.
    pub fn backends_json(&self) -> serde_json::Value {
        let snapshot = self.snapshot.load();
        let mut out = serde_json::Map::new();
        for (name, b) in &snapshot.backends {
            let c = b.catalog();
            let state = b.state();
            let mut entry = serde_json::json!({
                "state": state.label(),
                "transport": b.config.transport.kind(),
                "tools": c.tools.len(),
                "prompts": c.prompts.len(),
                "resources": c.resources.len(),
            });
            if let BackendState::Down(reason) = state {
                entry["reason"] = reason.into();
            }
            if let Some(pid) = b.pid() {
                entry["pid"] = pid.into();
            }
            entry["restarts"] = b.restarts().into();
            out.insert(name.clone(), entry);
        }
        serde_json::Value::Object(out)
    }

    /// Everything `gateway_status` and `GET /status` report.
    pub fn status_json(&self) -> serde_json::Value {
        let sessions: Vec<serde_json::Value> = self
            .hub
            .sessions()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id,
                    "client": s.client_name,
                    "subscriptions": s.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).len(),
                })
            })
            .collect();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.is_settled(),
            "backends": self.backends_json(),
            "sessions": sessions,
            "subscriptions": self.hub.subscription_count(),
            "notifications": self.hub.counters.to_json(),
            "unattributable_requests": self.hub.unattributable.load(std::sync::atomic::Ordering::Relaxed),
            "generation": self.snapshot.load().generation,
            "last_reload": self.last_reload.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "audit": self.audit.status_json(),
        })
    }

    /// Stops every backend and waits for their connections (and children) to end.
    pub async fn shutdown(&self) {
        let snapshot = self.snapshot.load_full();
        futures::future::join_all(snapshot.backends.values().map(|b| b.stop())).await;
    }

    /// Instructions for clients: ours, then one block per backend that has any.
    pub fn instructions(&self) -> String {
        let snapshot = self.snapshot.load();
        let server = self.server();
        let sep = &server.separator;
        let mut text = String::from(
            "Manifold is an MCP gateway. Tools and prompts of each mounted server are named \
             `{prefix}{separator}{name}`; resource URIs are `{prefix}+{uri}`.",
        );
        for b in snapshot.backends.values() {
            if b.state() != BackendState::Up {
                continue;
            }
            let Some(instr) = b.server_info().and_then(|i| i.instructions.clone()) else {
                continue;
            };
            if instr.trim().is_empty() {
                continue;
            }
            let naming = if b.config.prefix.is_empty() {
                "names unprefixed".to_string()
            } else {
                format!("names prefixed `{}{sep}`", b.config.prefix)
            };
            text.push_str(&format!("\n\n## {} ({naming})\n{}", b.name(), instr.trim()));
        }
        text
    }
}

/// What backends are started with, from the `[server]` settings.
pub(crate) fn backend_env(
    server: &ServerConfig,
    hub: Arc<Hub>,
    http: reqwest::Client,
    builtins: crate::builtin::BuiltinSets,
    audit: crate::audit::Audit,
) -> BackendEnv {
    BackendEnv {
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
        audit,
    }
}

/// Refreshes backends' caches when they announce changes, and tells each
/// session once per coalescing window, only if its view of a list changed.
async fn list_task(gateway: Weak<Gateway>, mut events: mpsc::UnboundedReceiver<ListEvent>) {
    while let Some(first) = events.recv().await {
        tokio::time::sleep(LIST_COALESCE_WINDOW).await;
        let mut batch = vec![first];
        while let Ok(e) = events.try_recv() {
            batch.push(e);
        }
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        let mut refresh: Vec<(Arc<Backend>, ListKinds)> = Vec::new();
        let mut announced = [0u64; 3];
        for event in batch {
            match event {
                ListEvent::Changed { backend, kinds } => {
                    for (i, flag) in [kinds.tools, kinds.prompts, kinds.resources]
                        .into_iter()
                        .enumerate()
                    {
                        announced[i] += flag as u64;
                    }
                    let Some(backend) = backend.upgrade() else {
                        continue;
                    };
                    match refresh.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &backend)) {
                        Some((_, k)) => *k = k.union(kinds),
                        None => refresh.push((backend, kinds)),
                    }
                }
                ListEvent::Recompute(_) => {}
            }
        }
        let refreshed = futures::future::join_all(refresh.iter().map(|(b, k)| b.refresh(*k))).await;
        for ((backend, _), result) in refresh.iter().zip(refreshed) {
            if let Err(e) = result {
                tracing::warn!(backend = %backend.name(), error = %e, "list refresh failed");
            }
        }
        // Announcements beyond the first of each kind in a window were merged.
        for (i, kind) in [
            Kind::ToolsListChanged,
            Kind::PromptsListChanged,
            Kind::ResourcesListChanged,
        ]
        .into_iter()
        .enumerate()
        {
            gateway
                .hub
                .counters
                .add(kind, Fate::Coalesced, announced[i].saturating_sub(1));
        }
        let flagged = gateway.hub.publish_lists(gateway.list_hashes());
        tracing::debug!(sessions = flagged, "list changes published");
    }
}
