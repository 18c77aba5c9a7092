//! Which live sessions act as which client ids, and the push of a
//! notification to them when a message arrives.
//!
//! A session acts as a client id once it names it in a call that passes the
//! identity rules (`checkin_client`, `send_*` as sender, `get_messages`), or
//! always as its authenticated id. A session may act as one id at a time; the
//! last one named wins. Bindings of ended sessions are dropped when found.

#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use rmcp::model::{
    LoggingLevel, LoggingMessageNotification, LoggingMessageNotificationParam, ServerNotification,
};
use serde_json::json;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::LIVE_TTL;
use crate::gateway::Gateway;
use crate::store::{Event, Message, Store};

/// The logger name on messaging push notifications.
pub const LOGGER: &str = "manifold/messaging";

#[derive(Default)]
pub struct Presence {
    /// Both directions of the binding; locked briefly, never across an await.
    bindings: Mutex<Bindings>,
    /// Woken when a client id gains its first session here, so a shared
    /// store learns at once that it is live.
    gained: Notify,
}

#[derive(Default)]
struct Bindings {
    by_session: HashMap<u64, String>,
    by_client: HashMap<String, HashSet<u64>>,
}

impl Presence {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bindings> {
        self.bindings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bind(&self, session: u64, client: &str) {
        let mut b = self.lock();
        if b.by_session.get(&session).is_some_and(|c| c == client) {
            return;
        }
        if let Some(old) = b.by_session.insert(session, client.to_string())
            && let Some(set) = b.by_client.get_mut(&old)
        {
            set.remove(&session);
            if set.is_empty() {
                b.by_client.remove(&old);
            }
        }
        let set = b.by_client.entry(client.to_string()).or_default();
        set.insert(session);
        if set.len() == 1 {
            drop(b);
            self.gained.notify_one();
        }
    }

    pub fn client_of(&self, session: u64) -> Option<String> {
        self.lock().by_session.get(&session).cloned()
    }

    pub fn sessions_of(&self, client: &str) -> Vec<u64> {
        self.lock()
            .by_client
            .get(client)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn forget(&self, session: u64) {
        let mut b = self.lock();
        if let Some(client) = b.by_session.remove(&session)
            && let Some(set) = b.by_client.get_mut(&client)
        {
            set.remove(&session);
            if set.is_empty() {
                b.by_client.remove(&client);
            }
        }
    }

    /// Drops bindings of sessions the hub no longer has; returns the client
    /// ids that still have a live session here.
    pub fn live_clients(&self, gateway: &Gateway) -> Vec<String> {
        let sessions: Vec<u64> = self.lock().by_session.keys().copied().collect();
        for s in sessions {
            if gateway.hub.session(s).is_none() {
                self.forget(s);
            }
        }
        self.lock().by_client.keys().cloned().collect()
    }
}

/// Pushes a `notifications/message` (notice) to each live session of a
/// message's recipient, and keeps the shared store's `live` marks fresh.
/// Ends when `stop` is cancelled or the store's event feed closes.
pub async fn push_task(
    mut events: broadcast::Receiver<Event>,
    store: Store,
    presence: Arc<Presence>,
    gateway: Weak<Gateway>,
    stop: CancellationToken,
) {
    let mut refresh = tokio::time::interval(LIVE_TTL / 3);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            event = events.recv() => match event {
                Ok(Event::Inbox(m)) => {
                    if let Some(gw) = gateway.upgrade() {
                        push(&gw, &presence, &m);
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = refresh.tick() => mark_live(&store, &presence, &gateway).await,
            _ = presence.gained.notified() => mark_live(&store, &presence, &gateway).await,
        }
    }
}

/// Every `ttl / 4` (between 1 s and 1 min), forgets the clients not seen for
/// `ttl` that no session here acts as (nor, with a shared store, any session
/// elsewhere). Ends when `stop` is cancelled.
pub async fn expire_task(
    store: Store,
    presence: Arc<Presence>,
    gateway: Weak<Gateway>,
    ttl: std::time::Duration,
    stop: CancellationToken,
) {
    let every = (ttl / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(gw) = gateway.upgrade() else { return };
        let live = presence.live_clients(&gw);
        drop(gw);
        match store.expire_checkins(ttl, &live).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "check-ins expired"),
            Err(e) => tracing::debug!(error = %e, "check-in expiry failed"),
        }
    }
}

async fn mark_live(store: &Store, presence: &Presence, gateway: &Weak<Gateway>) {
    if store.kind() == "memory" {
        return;
    }
    let Some(gw) = gateway.upgrade() else { return };
    let live = presence.live_clients(&gw);
    drop(gw);
    if let Err(e) = store.mark_live(&live, LIVE_TTL).await {
        tracing::debug!(error = %e, "cannot mark clients live");
    }
}

fn push(gateway: &Gateway, presence: &Presence, m: &Message) {
    for id in presence.sessions_of(&m.recipient) {
        let Some(session) = gateway.hub.session(id) else {
            presence.forget(id);
            continue;
        };
        let data = json!({
            "type": "message",
            "id": m.id,
            "from": m.sender,
            "to": m.recipient,
            "message": m.body,
            "sent_at": humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.sent_at_ms)
            ).to_string(),
            "hint": "call get_messages to take it from your queue, or reply with send_message",
        });
        let param =
            LoggingMessageNotificationParam::new(LoggingLevel::Notice, data).with_logger(LOGGER);
        let n =
            ServerNotification::LoggingMessageNotification(LoggingMessageNotification::new(param));
        if !session.enqueue(n) {
            tracing::debug!(
                session = id,
                "message push dropped: the session's queue is full"
            );
        }
    }
}
