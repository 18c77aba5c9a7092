//! Routing and aggregation: which mounted backend owns an exposed name, and
//! the aggregated lists every client sees.
//!
//! A [`Snapshot`] is the set of mounted backends at one point in time. The
//! gateway swaps whole snapshots (hot reload); every request reads one once
//! and keeps the `Arc<Backend>` it resolved until it finishes. This module
//! only reads backends' catalogs: it never starts, stops or calls a backend.

mod aggregate;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::backend::Backend;

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
    /// Whether some backend serves tool calls as tasks (`tasks` is set).
    pub serves_tasks: bool,
}

impl Snapshot {
    pub fn new(
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
        let serves_tasks = backends
            .values()
            .any(|b| b.config.tasks != crate::config::TaskSupport::Forbidden);
        Self {
            generation,
            backends,
            by_prefix,
            bare,
            separator,
            serves_tasks,
        }
    }

    /// A snapshot with no backends (a gateway before its first config is applied).
    pub fn empty(separator: String) -> Self {
        Self::new(0, BTreeMap::new(), separator)
    }

    /// The mounted backend with this connection id, if it is mounted.
    pub fn by_id(&self, id: u64) -> Option<&Arc<Backend>> {
        self.backends.values().find(|b| b.id == id)
    }

    /// The backends that may own `name`, most specific first.
    fn candidates<'a>(&'a self, prefix: Option<&str>) -> impl Iterator<Item = &'a Arc<Backend>> {
        prefix
            .and_then(|p| self.by_prefix.get(p))
            .into_iter()
            .chain(self.bare.iter())
    }

    fn prefix_of<'a>(&self, exposed: &'a str) -> Option<&'a str> {
        exposed.split_once(self.separator.as_str()).map(|(p, _)| p)
    }

    /// The backend and original name of an exposed tool.
    pub fn route_tool(&self, exposed: &str) -> Option<(Arc<Backend>, Arc<str>)> {
        self.candidates(self.prefix_of(exposed))
            .find_map(|b| b.catalog().tool(exposed).map(|n| (b.clone(), n.clone())))
    }

    pub fn route_prompt(&self, exposed: &str) -> Option<(Arc<Backend>, Arc<str>)> {
        self.candidates(self.prefix_of(exposed))
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
}
