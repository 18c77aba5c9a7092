//! Sessions' own connections to backends with `isolation = "per_session"`.
//!
//! One table for the whole gateway, so a session's first calls that race
//! each other start one process (lookup-or-start under one lock), the number
//! of sessions holding their own connection to a backend is capped
//! (`max_sessions`), and list changes from such a connection can be found by
//! its id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::ClientCapabilities;

use super::Gateway;
use crate::backend::{Backend, CallError};

/// Session id → backend name → that session's own connection.
#[derive(Default)]
pub struct PrivateBackends {
    map: Mutex<HashMap<u64, HashMap<String, Arc<Backend>>>>,
}

impl PrivateBackends {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, HashMap<String, Arc<Backend>>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn by_id(&self, id: u64) -> Option<Arc<Backend>> {
        self.lock()
            .values()
            .flat_map(|m| m.values())
            .find(|b| b.id == id)
            .cloned()
    }

    /// This session's own connections.
    pub fn of_session(&self, session: u64) -> Vec<Arc<Backend>> {
        self.lock()
            .get(&session)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a session's connections; the caller stops them.
    pub fn remove_session(&self, session: u64) -> Vec<Arc<Backend>> {
        self.lock()
            .remove(&session)
            .map(|m| m.into_values().collect())
            .unwrap_or_default()
    }

    pub(super) fn take_all(&self) -> Vec<Arc<Backend>> {
        self.lock()
            .drain()
            .flat_map(|(_, m)| m.into_values())
            .collect()
    }
}

impl Gateway {
    /// The backend that serves `session` for the mounted backend `shared`:
    /// itself, or the session's own connection when it is isolated per
    /// session (started on first use, with `capabilities` mirrored toward the
    /// backend, and waited for until its first connect attempt ends).
    pub async fn resolve(
        &self,
        shared: Arc<Backend>,
        session: u64,
        capabilities: impl FnOnce() -> ClientCapabilities,
    ) -> Result<Arc<Backend>, CallError> {
        if shared.config.isolation != crate::config::Isolation::PerSession {
            return Ok(shared);
        }
        let name = shared.name().to_string();
        let (backend, replaced) = {
            let mut map = self.private.lock();
            let current = map
                .get(&session)
                .and_then(|m| m.get(&name))
                .filter(|b| b.config == shared.config)
                .cloned();
            match current {
                Some(b) => (b, None),
                None => {
                    let holders = map
                        .iter()
                        .filter(|(s, m)| **s != session && m.contains_key(&name))
                        .count();
                    if holders >= shared.config.max_sessions {
                        return Err(CallError::SessionLimit {
                            backend: name,
                            limit: shared.config.max_sessions,
                        });
                    }
                    let b = Backend::start(
                        shared.config.clone(),
                        &self.env,
                        capabilities(),
                        Some(session),
                    );
                    let old = map.entry(session).or_default().insert(name, b.clone());
                    (b, old)
                }
            }
        };
        if let Some(old) = replaced {
            // A reload changed the backend's config: the old connection goes.
            tokio::spawn(async move { old.stop().await });
        }
        let _ = tokio::time::timeout(self.server().connect_timeout, backend.settled()).await;
        Ok(backend)
    }
}
