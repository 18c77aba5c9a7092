//! The gateway core: the current snapshot of mounted backends and the routing
//! rules over it.
//!
//! Every request reads the snapshot once (`ArcSwap::load`), so swapping in a
//! new one (hot reload) never blocks or drops a session; a call keeps the
//! `Arc<Backend>` it resolved until it finishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::backend::{Backend, BackendEnv, BackendState};
use crate::config::{Config, ServerConfig};
use crate::hub::Hub;

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
    fn new(generation: u64, backends: BTreeMap<String, Arc<Backend>>, separator: String) -> Self {
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
        let owner = self.bare.iter().find(owns).or(match self.bare.as_slice() {
            [only] => Some(only),
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
    pub server: ServerConfig,
    snapshot: ArcSwap<Snapshot>,
    pub hub: Arc<Hub>,
}

impl Gateway {
    /// Starts every enabled backend (each connects in its own task) and
    /// returns at once; see [`Gateway::settled`].
    pub fn start(config: Config) -> Arc<Self> {
        let hub = Arc::new(Hub::default());
        let env = BackendEnv {
            separator: config.server.separator.clone(),
            connect_timeout: config.server.connect_timeout,
            hub: hub.clone(),
            http: reqwest::Client::builder()
                .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
        };
        let backends = config
            .enabled_backends()
            .map(|b| (b.name.clone(), Backend::start(b.clone(), &env)))
            .collect();
        let snapshot = Snapshot::new(1, backends, config.server.separator.clone());
        Arc::new(Self {
            server: config.server,
            snapshot: ArcSwap::from_pointee(snapshot),
            hub,
        })
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
            out.insert(name.clone(), entry);
        }
        serde_json::Value::Object(out)
    }

    /// Stops every backend and waits for their connections (and children) to end.
    pub async fn shutdown(&self) {
        let snapshot = self.snapshot.load_full();
        futures::future::join_all(snapshot.backends.values().map(|b| b.stop())).await;
    }

    /// Instructions for clients: ours, then one block per backend that has any.
    pub fn instructions(&self) -> String {
        let snapshot = self.snapshot.load();
        let sep = &self.server.separator;
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
