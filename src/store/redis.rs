//! The shared store: Redis, so several gateway instances form one messaging
//! system and messages outlive a gateway restart.
//!
//! Keys, all under `{prefix}:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `inbox:{client}` | list | JSON [`Message`]s, oldest first; expires with its newest message |
//! | `inboxes` | set | clients that may have an inbox (for the expiry sweep) |
//! | `msg:seq`, `bus:seq` | counter | the last message and bus ids |
//! | `clients` | hash | client id → JSON [`ClientRecord`]; dropped with its `seen` entry |
//! | `seen` | hash | client id → last activity (ms since epoch); expired by `checkin_ttl` unless live |
//! | `live:{client}` | string | set while some instance has a live session for the client |
//! | `bus:history` | list | JSON [`BusMessage`]s, oldest first, trimmed to the configured length |
//! | `events` | pub/sub channel | JSON [`Event`]s: what wakes waiters and pushes notifications |
//!
//! Writes that someone may wait for are one atomic pipeline ending in
//! `PUBLISH`, so a listener woken by the event always finds the write.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::{Client, Script};
use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;

use super::StoreError;
use super::scripts::{EXPIRE_CHECKINS, SWEEP, TAKE_REPLY};
use super::types::{BusMessage, ClientRecord, Event, Message, now_ms};

/// The longest pause between attempts to re-open the event subscription.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct RedisStore {
    client: Option<Client>,
    /// For messages: the URL without its password.
    url: String,
    prefix: String,
    /// Opened on first use; reconnects by itself after a failure.
    con: OnceCell<ConnectionManager>,
    take_reply: Script,
    sweep: Script,
    expire_checkins: Script,
}

impl RedisStore {
    /// Starts the event subscriber (it ends when `stop` is cancelled). A bad
    /// URL was rejected at config time; should it still fail here, every
    /// operation reports it.
    pub fn open(
        url: &str,
        prefix: &str,
        events: broadcast::Sender<Event>,
        stop: CancellationToken,
    ) -> Self {
        let client = Client::open(url).ok();
        let store = Self {
            client: client.clone(),
            url: redact(url),
            prefix: prefix.to_string(),
            con: OnceCell::new(),
            take_reply: Script::new(TAKE_REPLY),
            sweep: Script::new(SWEEP),
            expire_checkins: Script::new(EXPIRE_CHECKINS),
        };
        if let Some(client) = client {
            // Forwards the shared event channel to this instance's listeners;
            // ends when the store is dropped (`stop`).
            tokio::spawn(subscribe(
                client,
                store.key("events"),
                store.url.clone(),
                events,
                stop,
            ));
        }
        store
    }

    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    pub(super) fn err(&self, source: redis::RedisError) -> StoreError {
        StoreError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    pub(super) async fn con(&self) -> Result<ConnectionManager, StoreError> {
        let client = self.client.as_ref().ok_or_else(|| {
            self.err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "invalid redis_url",
            )))
        })?;
        self.con
            .get_or_try_init(|| client.get_connection_manager())
            .await
            .cloned()
            .map_err(|e| self.err(e))
    }

    /// Gives `message` its id and encodes what queuing it writes.
    pub(super) async fn prepare(
        &self,
        con: &mut ConnectionManager,
        mut message: Message,
    ) -> Result<Prepared, StoreError> {
        let id: u64 = redis::cmd("INCR")
            .arg(self.key("msg:seq"))
            .query_async(con)
            .await
            .map_err(|e| self.err(e))?;
        message.id = id;
        Ok(Prepared {
            id,
            inbox: self.key(&format!("inbox:{}", message.recipient)),
            ttl: message
                .expires_at_ms
                .saturating_sub(message.sent_at_ms)
                .max(1),
            json: serde_json::to_string(&message)?,
            recipient: message.recipient.clone(),
            event: serde_json::to_string(&Event::Inbox(message))?,
        })
    }

    pub async fn push(&self, message: Message) -> Result<u64, StoreError> {
        let mut con = self.con().await?;
        let p = self.prepare(&mut con, message).await?;
        redis::pipe()
            .atomic()
            .cmd("RPUSH")
            .arg(&p.inbox)
            .arg(p.json)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&p.inbox)
            .arg(p.ttl)
            .ignore()
            .cmd("SADD")
            .arg(self.key("inboxes"))
            .arg(p.recipient)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.key("events"))
            .arg(p.event)
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(p.id)
    }

    pub async fn pop_all(&self, recipient: &str) -> Result<Vec<Message>, StoreError> {
        let mut con = self.con().await?;
        let inbox = self.key(&format!("inbox:{recipient}"));
        let (items,): (Vec<String>,) = redis::pipe()
            .atomic()
            .cmd("LRANGE")
            .arg(&inbox)
            .arg(0)
            .arg(-1)
            .cmd("DEL")
            .arg(&inbox)
            .ignore()
            .cmd("SREM")
            .arg(self.key("inboxes"))
            .arg(recipient)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        unexpired(items)
    }

    pub async fn take_reply(
        &self,
        recipient: &str,
        sender: &str,
        after: u64,
    ) -> Result<Option<Message>, StoreError> {
        let mut con = self.con().await?;
        let raw: Option<String> = self
            .take_reply
            .key(self.key(&format!("inbox:{recipient}")))
            .arg(sender)
            .arg(after)
            .arg(now_ms())
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(raw.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    pub async fn pending(&self, recipient: &str) -> Result<usize, StoreError> {
        let mut con = self.con().await?;
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key(&format!("inbox:{recipient}")))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        let now = now_ms();
        let mut n = 0;
        for raw in items {
            let m: Message = serde_json::from_str(&raw)?;
            n += usize::from(!m.expired(now));
        }
        Ok(n)
    }

    pub async fn checkin(&self, record: ClientRecord) -> Result<(), StoreError> {
        let mut con = self.con().await?;
        let json = serde_json::to_string(&record)?;
        redis::pipe()
            .cmd("HSET")
            .arg(self.key("clients"))
            .arg(&record.id)
            .arg(json)
            .ignore()
            .cmd("HSET")
            .arg(self.key("seen"))
            .arg(&record.id)
            .arg(record.checked_in_ms)
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn touch(&self, client: &str) -> Result<(), StoreError> {
        let mut con = self.con().await?;
        redis::cmd("HSET")
            .arg(self.key("seen"))
            .arg(client)
            .arg(now_ms())
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn is_checked_in(&self, client: &str) -> Result<bool, StoreError> {
        let mut con = self.con().await?;
        redis::cmd("HEXISTS")
            .arg(self.key("clients"))
            .arg(client)
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let mut con = self.con().await?;
        let (clients, seen): (HashMap<String, String>, HashMap<String, u64>) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.key("clients"))
            .cmd("HGETALL")
            .arg(self.key("seen"))
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(clients.len());
        for raw in clients.values() {
            let mut c: ClientRecord = serde_json::from_str(raw)?;
            c.last_seen_ms = seen.get(&c.id).copied().unwrap_or(c.checked_in_ms);
            out.push(c);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// How many check-ins are kept.
    pub async fn checkin_count(&self) -> Result<usize, StoreError> {
        let mut con = self.con().await?;
        redis::cmd("HLEN")
            .arg(self.key("clients"))
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    /// Forgets clients not seen since `cutoff_ms`, unless in `keep` or marked
    /// live by any instance; returns how many check-ins went.
    pub async fn expire_checkins(
        &self,
        cutoff_ms: u64,
        keep: &[String],
    ) -> Result<usize, StoreError> {
        let mut con = self.con().await?;
        let mut call = self.expire_checkins.key(self.key("clients"));
        call.key(self.key("seen"))
            .arg(cutoff_ms)
            .arg(self.key("live:"));
        for k in keep {
            call.arg(k);
        }
        call.invoke_async(&mut con).await.map_err(|e| self.err(e))
    }

    pub async fn mark_live(&self, clients: &[String], ttl: Duration) -> Result<(), StoreError> {
        if clients.is_empty() {
            return Ok(());
        }
        let mut con = self.con().await?;
        let mut pipe = redis::pipe();
        for c in clients {
            pipe.cmd("SET")
                .arg(self.key(&format!("live:{c}")))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        pipe.query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn live(&self, clients: &[String]) -> Result<Vec<bool>, StoreError> {
        if clients.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.con().await?;
        let mut pipe = redis::pipe();
        for c in clients {
            pipe.cmd("EXISTS").arg(self.key(&format!("live:{c}")));
        }
        pipe.query_async(&mut con).await.map_err(|e| self.err(e))
    }

    pub async fn bus_publish(
        &self,
        mut message: BusMessage,
        keep: usize,
    ) -> Result<u64, StoreError> {
        let mut con = self.con().await?;
        let id: u64 = redis::cmd("INCR")
            .arg(self.key("bus:seq"))
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        message.id = id;
        let history = self.key("bus:history");
        let json = serde_json::to_string(&message)?;
        let event = serde_json::to_string(&Event::Bus(message))?;
        redis::pipe()
            .atomic()
            .cmd("RPUSH")
            .arg(&history)
            .arg(json)
            .ignore()
            .cmd("LTRIM")
            .arg(&history)
            .arg(-(keep as i64))
            .arg(-1)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.key("events"))
            .arg(event)
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(id)
    }

    pub async fn bus_history(&self) -> Result<Vec<BusMessage>, StoreError> {
        let mut con = self.con().await?;
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key("bus:history"))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        items
            .iter()
            .map(|raw| serde_json::from_str(raw).map_err(StoreError::from))
            .collect()
    }

    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut con = self.con().await?;
        let recipients: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("inboxes"))
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        let now = now_ms();
        let mut dropped = 0;
        for r in recipients {
            let n: usize = self
                .sweep
                .key(self.key(&format!("inbox:{r}")))
                .key(self.key("inboxes"))
                .arg(now)
                .arg(&r)
                .invoke_async(&mut con)
                .await
                .map_err(|e| self.err(e))?;
            dropped += n;
        }
        Ok(dropped)
    }
}

/// Keeps one pub/sub subscription to the shared event channel open and
/// forwards what arrives. After every (re)subscription it sends
/// [`Event::Resync`], since events published while it was away are lost.
async fn subscribe(
    client: Client,
    channel: String,
    url: String,
    events: broadcast::Sender<Event>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let opened = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = opened => r,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                let _ = events.send(Event::Resync);
                let mut stream = pubsub.into_on_message();
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = stream.next() => next,
                    };
                    let Some(msg) = next else { break };
                    match serde_json::from_slice::<Event>(msg.get_payload_bytes()) {
                        Ok(event) => {
                            let _ = events.send(event);
                        }
                        Err(e) => tracing::debug!(error = %e, "ignored a malformed store event"),
                    }
                }
                tracing::warn!(store = %url, "message store event feed lost; reconnecting");
            }
            Err(e) => {
                tracing::warn!(store = %url, error = %e, "cannot subscribe to message store events")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The URL with any password replaced, for messages.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The messages stored as `items` (JSON texts) that have not expired.
pub(super) fn unexpired(items: Vec<String>) -> Result<Vec<Message>, StoreError> {
    let now = now_ms();
    let mut out = Vec::with_capacity(items.len());
    for raw in items {
        let m: Message = serde_json::from_str(&raw)?;
        if !m.expired(now) {
            out.push(m);
        }
    }
    Ok(out)
}

/// A message with its id, ready to queue: its inbox key, the inbox's expiry
/// (ms), its JSON, its recipient and the event that announces it.
pub(super) struct Prepared {
    pub id: u64,
    pub inbox: String,
    pub ttl: u64,
    pub json: String,
    pub recipient: String,
    pub event: String,
}
