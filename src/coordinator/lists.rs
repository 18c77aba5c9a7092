//! List changes: backends' `list_changed` announcements are merged per
//! backend, refreshed once per coalescing window, and published only to the
//! sessions whose view of a list actually changed.
//!
//! Pending work is a map keyed by backend id plus a "recompute" flag, so it
//! is bounded by the number of backends however often they announce: a
//! backend that floods `list_changed` is refreshed at most once per window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::{Fate, Hub, Kind, ListKinds};

/// List changes arriving within this window are merged into one notification per session.
pub const LIST_COALESCE_WINDOW: Duration = Duration::from_millis(25);

/// What the list task needs from the layer that owns backends: refresh the
/// caches of backends (by id) and hash the aggregated lists. Implemented by
/// the gateway, so the coordinator names no backend type.
pub trait ListSource: Send + Sync + 'static {
    /// Re-reads the given lists of each backend; unknown ids are skipped.
    fn refresh(&self, backends: Vec<(u64, ListKinds)>) -> BoxFuture<'_, ()>;
    /// Hashes of the aggregated tools, prompts and resources as they are now.
    fn list_hashes(&self) -> [u64; 3];
}

/// Changes waiting for the next window.
#[derive(Default)]
pub(super) struct Pending {
    /// Backend id → the lists it announced.
    changed: HashMap<u64, ListKinds>,
    /// The set of backends or their state changed: publish without a refresh.
    recompute: bool,
    /// Announcements per kind in this window, to count the coalesced ones.
    announced: [u64; 3],
}

/// The hub's side of the list task: where announcements are merged.
#[derive(Default)]
pub(super) struct ListQueue {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl ListQueue {
    pub(super) fn changed(&self, backend: u64, kinds: ListKinds) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let entry = p.changed.entry(backend).or_default();
            *entry = entry.union(kinds);
            for (i, flag) in [kinds.tools, kinds.prompts, kinds.resources]
                .into_iter()
                .enumerate()
            {
                p.announced[i] += u64::from(flag);
            }
        }
        self.wake.notify_one();
    }

    pub(super) fn recompute(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recompute = true;
        self.wake.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs the list task for `hub` until the hub or the source (the gateway) is dropped.
pub fn spawn_list_task(hub: &Arc<Hub>, source: Weak<dyn ListSource>) {
    let queue = hub.lists.clone();
    let hub = Arc::downgrade(hub);
    // Holds neither the hub nor the gateway: ends at the first wake-up after
    // either is gone.
    tokio::spawn(async move {
        loop {
            queue.wake.notified().await;
            tokio::time::sleep(LIST_COALESCE_WINDOW).await;
            let (Some(source), Some(hub)) = (source.upgrade(), hub.upgrade()) else {
                return;
            };
            let batch = queue.take();
            if batch.changed.is_empty() && !batch.recompute {
                continue;
            }
            source.refresh(batch.changed.into_iter().collect()).await;
            // Announcements beyond the first of each kind in a window were merged.
            for (i, kind) in [
                Kind::ToolsListChanged,
                Kind::PromptsListChanged,
                Kind::ResourcesListChanged,
            ]
            .into_iter()
            .enumerate()
            {
                hub.counters
                    .add(kind, Fate::Coalesced, batch.announced[i].saturating_sub(1));
            }
            let flagged = hub.publish_lists(source.list_hashes());
            tracing::debug!(sessions = flagged, "list changes published");
        }
    });
}
