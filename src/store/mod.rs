//! Storage behind the messaging and bus tool sets: client inboxes with a TTL,
//! check-ins, and the bus history, on an embedded engine ([`memory`]) or a
//! shared one ([`redis`]).
//!
//! Besides storing, a store is the *event source* of the built-ins: every
//! write that someone may be waiting for (a message landing in an inbox, a
//! bus message) is announced on [`Store::events`]. With Redis the
//! announcement goes through Redis pub/sub, so it reaches every gateway
//! instance sharing the store; that is what wakes `send_message_and_wait` on
//! instance A when the reply is sent on instance B. Nobody polls.
//!
//! This module knows nothing of MCP, sessions or identity rules.

pub mod memory;
pub mod redis;
mod redis_once;
mod scripts;
pub mod sessions;
mod types;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use types::{BusMessage, BusSender, ClientRecord, Event, Message, Priority, now_ms};

use crate::config::StoreConfig;

/// Events beyond this many unread by a listener make it lag; a lagging
/// listener re-reads the store, so nothing is lost but a wake-up.
const EVENT_CAPACITY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("message store (redis at {url}): {source}")]
    Redis {
        url: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("message store: stored record is not valid: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A handle on the store; clones share it. When the last clone is dropped,
/// the store's background tasks (Redis subscriber, expiry sweeper) end.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// Inbox and bus events; every listener gets its own receiver. The
    /// sender lives here so that listeners see `Closed` when the store goes.
    events: broadcast::Sender<Event>,
    /// Cancels the store's tasks when the last handle is dropped.
    _stop: DropGuard,
}

enum Engine {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl Store {
    /// Opens the configured store and starts its background tasks (needs a
    /// tokio runtime). Never fails: a Redis that is down is an error on use,
    /// reported to the caller of each tool, and reconnected in the background.
    pub fn open(config: &StoreConfig, ttl: Duration) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let stop = CancellationToken::new();
        let engine = match config {
            StoreConfig::Memory => Engine::Memory(memory::MemoryStore::new(events.clone())),
            StoreConfig::Redis { url, key_prefix } => Engine::Redis(redis::RedisStore::open(
                url.expose(),
                key_prefix,
                events.clone(),
                stop.clone(),
            )),
        };
        let store = Self {
            inner: Arc::new(Inner {
                engine,
                events,
                _stop: stop.clone().drop_guard(),
            }),
        };
        // Drops expired messages every so often so that unread inboxes do not
        // grow; ends when the store is dropped (cancelled, or the weak handle dies).
        tokio::spawn(sweep(Arc::downgrade(&store.inner), ttl, stop));
        store
    }

    pub fn kind(&self) -> &'static str {
        match self.inner.engine {
            Engine::Memory(_) => "memory",
            Engine::Redis(_) => "redis",
        }
    }

    /// A new listener on inbox and bus events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Queues a message (its `id` is assigned here) and announces it; returns its id.
    pub async fn push(&self, message: Message) -> Result<u64, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.push(message)),
            Engine::Redis(r) => r.push(message).await,
        }
    }

    /// [`Store::push`] done once per client request (`once`, see
    /// `Caller::idempotency_key`): a request re-sent after its instance died
    /// gets the first run's id instead of queuing the message again. On the
    /// memory store, which dies with its instance, it is `push`.
    pub async fn push_once(&self, message: Message, once: Option<&str>) -> Result<u64, StoreError> {
        match (&self.inner.engine, once) {
            (Engine::Redis(r), Some(key)) => r.push_once(message, key).await,
            _ => self.push(message).await,
        }
    }

    /// [`Store::pop_all`] done once per client request: a re-sent request gets
    /// the messages the first run took (else they would be lost with it).
    pub async fn pop_all_once(
        &self,
        recipient: &str,
        once: Option<&str>,
    ) -> Result<Vec<Message>, StoreError> {
        match (&self.inner.engine, once) {
            (Engine::Redis(r), Some(key)) => r.pop_all_once(recipient, key).await,
            _ => self.pop_all(recipient).await,
        }
    }

    /// Removes and returns every unexpired message for `recipient`, oldest first.
    pub async fn pop_all(&self, recipient: &str) -> Result<Vec<Message>, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.pop_all(recipient)),
            Engine::Redis(r) => r.pop_all(recipient).await,
        }
    }

    /// Removes and returns the oldest unexpired message for `recipient` from
    /// `sender` whose id is greater than `after`.
    pub async fn take_reply(
        &self,
        recipient: &str,
        sender: &str,
        after: u64,
    ) -> Result<Option<Message>, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.take_reply(recipient, sender, after)),
            Engine::Redis(r) => r.take_reply(recipient, sender, after).await,
        }
    }

    /// How many unexpired messages wait for `recipient`.
    pub async fn pending(&self, recipient: &str) -> Result<usize, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.pending(recipient)),
            Engine::Redis(r) => r.pending(recipient).await,
        }
    }

    pub async fn checkin(&self, record: ClientRecord) -> Result<(), StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => {
                m.checkin(record);
                Ok(())
            }
            Engine::Redis(r) => r.checkin(record).await,
        }
    }

    /// Records that `client` did something now (for `list_clients`).
    pub async fn touch(&self, client: &str) -> Result<(), StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => {
                m.touch(client);
                Ok(())
            }
            Engine::Redis(r) => r.touch(client).await,
        }
    }

    pub async fn is_checked_in(&self, client: &str) -> Result<bool, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.is_checked_in(client)),
            Engine::Redis(r) => r.is_checked_in(client).await,
        }
    }

    /// Every check-in, with `last_seen_ms` filled in, sorted by id.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.clients()),
            Engine::Redis(r) => r.clients().await,
        }
    }

    /// How many check-ins are kept.
    pub async fn checkin_count(&self) -> Result<usize, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.checkin_count()),
            Engine::Redis(r) => r.checkin_count().await,
        }
    }

    /// Forgets every client not seen for `ttl` (its check-in and its last
    /// activity), except those in `live` and, in a shared store, those any
    /// instance marked live; returns how many check-ins went.
    pub async fn expire_checkins(
        &self,
        ttl: Duration,
        live: &[String],
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(ttl.as_millis() as u64);
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.expire_checkins(cutoff, live)),
            Engine::Redis(r) => r.expire_checkins(cutoff, live).await,
        }
    }

    /// Marks clients as having a live session on this instance for `ttl`
    /// (shared stores only: the memory store knows its sessions directly).
    pub async fn mark_live(&self, clients: &[String], ttl: Duration) -> Result<(), StoreError> {
        match &self.inner.engine {
            Engine::Memory(_) => Ok(()),
            Engine::Redis(r) => r.mark_live(clients, ttl).await,
        }
    }

    /// Which of `clients` another instance marked live (always none for memory).
    pub async fn live_elsewhere(&self, clients: &[String]) -> Result<Vec<bool>, StoreError> {
        match &self.inner.engine {
            Engine::Memory(_) => Ok(vec![false; clients.len()]),
            Engine::Redis(r) => r.live(clients).await,
        }
    }

    /// Appends to the bus history (keeping the last `keep`), assigns the id,
    /// and announces the message to every instance.
    pub async fn bus_publish(&self, message: BusMessage, keep: usize) -> Result<u64, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.bus_publish(message, keep)),
            Engine::Redis(r) => r.bus_publish(message, keep).await,
        }
    }

    /// The bus history, oldest first.
    pub async fn bus_history(&self) -> Result<Vec<BusMessage>, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.bus_history()),
            Engine::Redis(r) => r.bus_history().await,
        }
    }

    async fn sweep_once(&self) -> Result<usize, StoreError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(m.sweep()),
            Engine::Redis(r) => r.sweep().await,
        }
    }
}

/// Every `ttl / 4` (between 1 s and 30 s), drops expired messages.
async fn sweep(store: std::sync::Weak<Inner>, ttl: Duration, stop: CancellationToken) {
    let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(inner) = store.upgrade() else { return };
        let store = Store { inner };
        match store.sweep_once().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "expired messages dropped"),
            Err(e) => tracing::debug!(error = %e, "expiry sweep failed"),
        }
    }
}
