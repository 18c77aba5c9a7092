//! Sessions shared between gateway instances (`[sessions] store = "redis"`).
//!
//! What another instance needs to take over a session: the client's
//! `initialize` parameters (to replay the handshake), the client id the
//! session is bound to (so nobody else can take it over), and which instance
//! holds it now (so the previous holder can be told to let go).
//!
//! Keys, all under `{prefix}:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `session:{id}` | hash | `init` (JSON), `client`, `owner` (instance id); expires after the idle timeout, refreshed while the session is used |
//! | `session-moved` | pub/sub channel | JSON [`Moved`]: a session was taken over by `to` |
//! | `lists-changed` | pub/sub channel | JSON [`ListsChanged`]: an instance's aggregated lists changed |
//!
//! This module knows nothing of MCP or HTTP: it stores strings.

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;

use super::StoreError;

/// One session as another instance needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client's `initialize` parameters, as JSON.
    pub init: Option<String>,
    /// The client id the session is bound to (none without auth).
    pub client: Option<String>,
    /// The instance that holds the session now.
    pub owner: Option<String>,
}

/// "Session `session` is now held by instance `to`."
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Moved {
    pub session: String,
    pub to: String,
}

/// "Instance `from` now serves lists with these hashes (tools, prompts,
/// resources)": a hint for listen streams held elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListsChanged<'a> {
    pub from: &'a str,
    pub hashes: [u64; 3],
}

/// The shared session table on Redis. Cheap to share behind an `Arc`.
pub struct SharedSessions {
    client: Option<redis::Client>,
    url: String,
    prefix: String,
    con: OnceCell<ConnectionManager>,
}

/// The longest pause between attempts to re-open the `session-moved` subscription.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl SharedSessions {
    /// A table on `url` (checked at config time) with keys under `prefix`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            client: redis::Client::open(url).ok(),
            url: super::redis::redact(url),
            prefix: prefix.to_string(),
            con: OnceCell::new(),
        }
    }

    fn key(&self, session: &str) -> String {
        format!("{}:session:{session}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:session-moved", self.prefix)
    }

    fn lists_channel(&self) -> String {
        format!("{}:lists-changed", self.prefix)
    }

    fn err(&self, source: redis::RedisError) -> StoreError {
        StoreError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    async fn con(&self) -> Result<ConnectionManager, StoreError> {
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

    /// Sets `fields` of `session` and (re)starts its expiry: one round trip.
    pub async fn put(
        &self,
        session: &str,
        fields: &[(&str, &str)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(session);
        let mut con = self.con().await?;
        redis::pipe()
            .atomic()
            .hset_multiple(&key, fields)
            .ignore()
            .pexpire(&key, ttl_ms(ttl))
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    /// Restarts the expiry of `session`; false when it is gone.
    pub async fn touch(&self, session: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut con = self.con().await?;
        con.pexpire(self.key(session), ttl_ms(ttl))
            .await
            .map_err(|e| self.err(e))
    }

    /// The record of `session`, if it is known and not expired.
    pub async fn load(&self, session: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut con = self.con().await?;
        let (init, client, owner): (Option<String>, Option<String>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.key(session))
                .arg("init")
                .arg("client")
                .arg("owner")
                .query_async(&mut con)
                .await
                .map_err(|e| self.err(e))?;
        if init.is_none() && client.is_none() && owner.is_none() {
            return Ok(None);
        }
        Ok(Some(SessionRecord {
            init,
            client,
            owner,
        }))
    }

    /// Forgets `session` (deleted by its client).
    pub async fn delete(&self, session: &str) -> Result<(), StoreError> {
        let mut con = self.con().await?;
        con.del(self.key(session)).await.map_err(|e| self.err(e))
    }

    /// Records that `to` holds `session` now, and tells every instance.
    pub async fn announce_move(
        &self,
        session: &str,
        to: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(session);
        let moved = serde_json::to_string(&Moved {
            session: session.to_string(),
            to: to.to_string(),
        })?;
        let mut con = self.con().await?;
        redis::pipe()
            .atomic()
            .hset(&key, "owner", to)
            .ignore()
            .pexpire(&key, ttl_ms(ttl))
            .ignore()
            .publish(self.channel(), moved)
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    /// Tells every instance that `from`'s aggregated lists changed.
    pub async fn announce_lists(&self, from: &str, hashes: [u64; 3]) -> Result<(), StoreError> {
        let message = serde_json::to_string(&ListsChanged { from, hashes })?;
        let mut con = self.con().await?;
        con.publish::<_, _, ()>(self.lists_channel(), message)
            .await
            .map_err(|e| self.err(e))
    }

    /// Delivers every [`Moved`] announcement to `tx` until `stop` is
    /// cancelled, re-subscribing after a connection loss.
    pub async fn follow_moves(&self, tx: mpsc::Sender<Moved>, stop: CancellationToken) {
        self.follow(self.channel(), tx, stop, |p| serde_json::from_str(p))
            .await
    }

    /// Delivers every other instance's [`ListsChanged`] as `(from, hashes)`
    /// to `tx` until `stop` is cancelled.
    pub async fn follow_lists(
        &self,
        tx: mpsc::Sender<(String, [u64; 3])>,
        stop: CancellationToken,
    ) {
        self.follow(self.lists_channel(), tx, stop, |p| {
            serde_json::from_str::<ListsChanged>(p).map(|l| (l.from.to_string(), l.hashes))
        })
        .await
    }

    /// Delivers each message of `channel`, parsed by `parse`, to `tx` until
    /// `stop` is cancelled, re-subscribing after a connection loss.
    async fn follow<T>(
        &self,
        channel: String,
        tx: mpsc::Sender<T>,
        stop: CancellationToken,
        parse: impl Fn(&str) -> Result<T, serde_json::Error>,
    ) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                _ = stop.cancelled() => return,
                p = subscribed => p,
            };
            match pubsub {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            _ = stop.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match parse(&payload) {
                            Ok(message) => {
                                if tx.send(message).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(%channel, error = %e, "ignoring a malformed message")
                            }
                        }
                    }
                    tracing::warn!(url = %self.url, %channel, "subscription ended; re-subscribing");
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, %channel, error = %e, "cannot subscribe; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}
