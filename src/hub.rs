//! The hub: what client sessions and backend handlers share.
//!
//! It holds the session registry and nothing that owns a backend: a backend's
//! client handler keeps an `Arc<Hub>`, and if the hub held backends the two
//! would keep each other alive and an unmounted backend's child would never
//! die (rmcp notes, P19).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::{Peer, RoleServer};

/// Which aggregated lists changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListKinds {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

impl ListKinds {
    pub const ALL: Self = Self {
        tools: true,
        prompts: true,
        resources: true,
    };
}

/// How long one client may take to accept a notification before it is dropped for
/// that client; a stuck client must never hold up the others.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Hub {
    /// Live client sessions by our own id. A std mutex: held only to copy or
    /// edit the map, never across an await.
    sessions: Mutex<HashMap<u64, Peer<RoleServer>>>,
    next_session: AtomicU64,
}

impl Hub {
    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn register(&self, id: u64, peer: Peer<RoleServer>) {
        self.lock().insert(id, peer);
    }

    pub fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer<RoleServer>>> {
        // A panic while holding this lock cannot leave the map half-edited.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every live session that lists changed. Each session is notified from
    /// its own task with a timeout, so a slow client delays nobody else.
    pub fn broadcast_list_changed(&self, kinds: ListKinds) {
        let peers: Vec<(u64, Peer<RoleServer>)> = {
            let mut sessions = self.lock();
            sessions.retain(|_, p| !p.is_transport_closed());
            sessions.iter().map(|(id, p)| (*id, p.clone())).collect()
        };
        for (id, peer) in peers {
            // Ends when the notifications are sent or the timeout passes.
            tokio::spawn(async move {
                let send = async {
                    if kinds.tools {
                        peer.notify_tool_list_changed().await?;
                    }
                    if kinds.prompts {
                        peer.notify_prompt_list_changed().await?;
                    }
                    if kinds.resources {
                        peer.notify_resource_list_changed().await?;
                    }
                    Ok::<_, rmcp::service::ServiceError>(())
                };
                match tokio::time::timeout(NOTIFY_TIMEOUT, send).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(session = id, error = %e, "list_changed not delivered")
                    }
                    Err(_) => tracing::warn!(session = id, "list_changed dropped: client too slow"),
                }
            });
        }
    }
}
