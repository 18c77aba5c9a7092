//! The aggregated lists: every backend's catalog merged, each name listed once
//! (for the backend calls are routed to), in backend-name order.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use super::Snapshot;
use crate::backend::Backend;

impl Snapshot {
    /// All exposed tools. A name that two backends expose is listed once, for
    /// the backend calls are routed to.
    pub fn tools(&self) -> Vec<Tool> {
        self.owned_items(
            |b| b.catalog().tools.clone(),
            |s, t: &Tool| s.route_tool(&t.name),
        )
    }

    pub fn prompts(&self) -> Vec<Prompt> {
        self.owned_items(
            |b| b.catalog().prompts.clone(),
            |s, p: &Prompt| s.route_prompt(&p.name),
        )
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

    /// Each backend's items that route back to that backend.
    fn owned_items<T, R>(
        &self,
        items: impl Fn(&Backend) -> Vec<T>,
        route: impl Fn(&Self, &T) -> Option<(Arc<Backend>, R)>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for b in self.backends.values() {
            for item in items(b) {
                if route(self, &item).is_some_and(|(owner, _)| Arc::ptr_eq(&owner, b)) {
                    out.push(item);
                }
            }
        }
        out
    }

    /// Hashes of the aggregated tools, prompts and resources (with templates),
    /// so the coordinator tells a session only about lists that changed.
    pub fn list_hashes(&self) -> [u64; 3] {
        fn hash<T: serde::Serialize>(items: &T) -> u64 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_vec(items).unwrap_or_default().hash(&mut h);
            h.finish()
        }
        [
            hash(&self.tools()),
            hash(&self.prompts()),
            hash(&(self.resources(), self.templates())),
        ]
    }
}
