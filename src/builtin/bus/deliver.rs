//! Bus subscriptions of this instance's sessions, and the task that sends
//! each bus message to the ones it matches as `notifications/message`.

#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use rmcp::model::{
    LoggingLevel, LoggingMessageNotification, LoggingMessageNotificationParam, ServerNotification,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Filter;
use crate::builtin::messaging::Presence;
use crate::gateway::Gateway;
use crate::store::{BusMessage, Event, Priority};

/// The logger name on bus notifications.
pub const LOGGER: &str = "manifold/bus";

/// One session's subscription.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub filter: Filter,
    /// The authenticated client id at subscribe time, if auth is on.
    pub auth: Option<String>,
}

#[derive(Default)]
pub struct Subscriptions {
    /// Session id → subscription; locked briefly, never across an await.
    /// Entries of ended sessions are removed when a delivery finds them gone.
    by_session: Mutex<HashMap<u64, Subscription>>,
}

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscription>> {
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set(&self, session: u64, sub: Subscription) {
        self.lock().insert(session, sub);
    }
    pub fn remove(&self, session: u64) -> bool {
        self.lock().remove(&session).is_some()
    }
    fn all(&self) -> Vec<(u64, Subscription)> {
        self.lock().iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// LOW→debug, NORMAL→info, HIGH→warning, URGENT→error, CRITICAL→critical.
pub fn level(p: Priority) -> LoggingLevel {
    match p {
        Priority::Low => LoggingLevel::Debug,
        Priority::Normal => LoggingLevel::Info,
        Priority::High => LoggingLevel::Warning,
        Priority::Urgent => LoggingLevel::Error,
        Priority::Critical => LoggingLevel::Critical,
    }
}

/// A bus message as JSON, for notifications and `get_queue_messages`.
pub fn to_json(m: &BusMessage) -> Value {
    let mut v = json!({
        "id": m.id,
        "priority": m.priority,
        "level": m.priority.number(),
        "message": m.content,
        "sent_at": humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.sent_at_ms)
        ).to_string(),
        "metadata": m.metadata,
        "sender": m.sender,
    });
    if let Some(c) = &m.client_id {
        v["client_id"] = c.clone().into();
    }
    if let Some(s) = &m.session_id {
        v["session_id"] = s.clone().into();
    }
    v
}

/// Whether a message routed by `client_id` / `session_id` is for this
/// session, known as `identity`.
pub fn routed_to(m: &BusMessage, session: Option<&str>, identity: Option<&str>) -> bool {
    m.session_id.as_deref().is_none_or(|s| Some(s) == session)
        && m.client_id.as_deref().is_none_or(|c| Some(c) == identity)
}

/// Ends when `stop` is cancelled or the store's feed closes.
pub async fn deliver_task(
    mut events: broadcast::Receiver<Event>,
    subscriptions: Arc<Subscriptions>,
    presence: Arc<Presence>,
    gateway: Weak<Gateway>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(Event::Bus(m)) => {
                if let Some(gw) = gateway.upgrade() {
                    deliver(&gw, &subscriptions, &presence, &m);
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "bus delivery lagged; messages skipped")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn deliver(gateway: &Gateway, subs: &Subscriptions, presence: &Presence, m: &BusMessage) {
    let mut data: Option<Value> = None;
    for (id, sub) in subs.all() {
        if !sub.filter.admits(m.priority) {
            continue;
        }
        let Some(session) = gateway.hub.session(id) else {
            subs.remove(id);
            continue;
        };
        let identity = sub
            .auth
            .clone()
            .or_else(|| presence.client_of(id))
            .unwrap_or_else(|| session.client_name.clone());
        if !routed_to(m, Some(&session.name), Some(&identity)) {
            continue;
        }
        let data = data.get_or_insert_with(|| to_json(m)).clone();
        let param =
            LoggingMessageNotificationParam::new(level(m.priority), data).with_logger(LOGGER);
        let n =
            ServerNotification::LoggingMessageNotification(LoggingMessageNotification::new(param));
        if !session.enqueue(n) {
            tracing::debug!(
                session = id,
                "bus notification dropped: the session's queue is full"
            );
        }
    }
}
