//! The priority message bus: any client, and any code in the gateway,
//! publishes prioritized messages; every client can read the history and
//! subscribe to receive them as MCP `notifications/message`.
//!
//! Three ways in, one way out:
//!
//! - the `send_client_message` tool (`publish.rs`), which records the
//!   calling client as the sender and refuses the gateway's own event kinds;
//! - the Rust API: [`send`], [`send_normal`] and friends, from anywhere in
//!   the process, without a handle;
//! - `tracing` events with target `queue` ([`layer()`]), so gateway code
//!   publishes with `tracing::info!(target: "queue", backend = %name, "backend up")`.
//!
//! Everything goes through the store (history, ids, and the event feed that
//! reaches every instance), then `deliver.rs` sends each message to the
//! matching subscriptions of this instance's sessions.

mod deliver;
mod filter;
pub mod layer;
mod publish;
mod tools;

use std::sync::{Arc, Mutex, Weak};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use deliver::{routed_to, to_json};
pub use filter::Filter;
pub use layer::layer;

use super::messaging::Presence;
use super::{ServeFn, serve_fn};
use crate::config::BusConfig;
use crate::gateway::Gateway;
use crate::ratelimit::KeyedLimiter;
pub use crate::store::Priority;
use crate::store::{BusMessage, BusSender, Store, now_ms};

/// Messages published from Rust code wait here for the store; beyond it
/// they are dropped (a log flood must not grow memory).
const API_QUEUE: usize = 4096;

/// The publishing end of the bus most recently started in this process, for
/// [`send`] and the tracing layer, which have no handle to pass around.
static SINK: Mutex<Option<mpsc::Sender<BusMessage>>> = Mutex::new(None);

/// What every connection of the bus set shares.
pub(crate) struct Bus {
    pub config: BusConfig,
    pub store: Store,
    pub presence: Arc<Presence>,
    pub subscriptions: Arc<deliver::Subscriptions>,
    /// To name this instance's sessions by their global ids.
    pub gateway: Weak<Gateway>,
    /// Publishes per client (`rate_limit`); `None` when unlimited.
    pub limiter: Option<KeyedLimiter>,
    /// Stops the delivery and API tasks when the set is dropped with the gateway.
    _stop: DropGuard,
}

/// Builds the shared state, installs the Rust API's sink and starts the
/// delivery task; returns how to serve a connection.
pub fn start(
    config: BusConfig,
    store: Store,
    presence: Arc<Presence>,
    gateway: Weak<Gateway>,
) -> ServeFn {
    let stop = CancellationToken::new();
    let subscriptions = Arc::new(deliver::Subscriptions::default());
    // Delivers each bus message to the matching subscriptions here; ends
    // when this set is dropped.
    tokio::spawn(deliver::deliver_task(
        store.events(),
        subscriptions.clone(),
        presence.clone(),
        gateway.clone(),
        stop.clone(),
    ));
    let (tx, rx) = mpsc::channel(API_QUEUE);
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    // Publishes what Rust code and the tracing layer send; ends when this set
    // is dropped or another bus replaces the sink.
    tokio::spawn(api_task(rx, store.clone(), config.history, stop.clone()));
    let shared = Arc::new(Bus {
        limiter: KeyedLimiter::per_minute(config.rate_limit),
        config,
        store,
        presence,
        subscriptions,
        gateway,
        _stop: stop.drop_guard(),
    });
    serve_fn(move || tools::BusServer {
        shared: shared.clone(),
    })
}

async fn api_task(
    mut rx: mpsc::Receiver<BusMessage>,
    store: Store,
    keep: usize,
    stop: CancellationToken,
) {
    loop {
        let mut message = tokio::select! {
            _ = stop.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        // Whatever the caller filled in: this way in is the gateway's own.
        message.sender = BusSender::Gateway;
        if let Err(e) = store.bus_publish(message, keep).await {
            // Not at target `queue`: that would publish the failure to publish.
            tracing::debug!(error = %e, "bus message not published");
        }
    }
}

/// Publishes a message on the bus of this process, if one runs. Returns
/// false when there is no bus or its queue is full (the message is dropped).
pub fn send(priority: Priority, content: impl Into<String>, metadata: Map<String, Value>) -> bool {
    publish(BusMessage {
        id: 0,
        priority,
        content: content.into(),
        client_id: None,
        session_id: None,
        metadata,
        sent_at_ms: now_ms(),
        sender: BusSender::Gateway,
    })
}

/// Publishes a fully built message (routing included); see [`send`].
pub fn publish(message: BusMessage) -> bool {
    let sink = SINK.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sink.is_some_and(|s| s.try_send(message).is_ok())
}

pub fn send_low(content: impl Into<String>) -> bool {
    send(Priority::Low, content, Map::new())
}
pub fn send_normal(content: impl Into<String>) -> bool {
    send(Priority::Normal, content, Map::new())
}
pub fn send_high(content: impl Into<String>) -> bool {
    send(Priority::High, content, Map::new())
}
pub fn send_urgent(content: impl Into<String>) -> bool {
    send(Priority::Urgent, content, Map::new())
}
pub fn send_critical(content: impl Into<String>) -> bool {
    send(Priority::Critical, content, Map::new())
}
