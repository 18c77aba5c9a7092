//! Messaging operations done once per client request on the Redis store.
//!
//! A load balancer re-sends a request whose instance died before answering
//! (HAProxy's `retry-on empty-response`). If that instance had already queued
//! the message or taken the inbox, the second run would queue it twice or
//! find the inbox empty, and the messages taken by the first would be lost.
//! Keyed by the request (its session's global id and its JSON-RPC id), the
//! first run records what it did under `{prefix}:once:{key}` for
//! [`ONCE_TTL`], atomically with doing it, and a re-sent request gets the same
//! answer.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::StoreError;
use super::redis::RedisStore;
use super::scripts::{POP_ALL_ONCE, PUSH_ONCE};
use super::types::Message;

/// How long a request's record is kept: longer than any load balancer takes
/// to re-send a request.
pub const ONCE_TTL: Duration = Duration::from_secs(120);

static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(PUSH_ONCE));
static POP_ALL: LazyLock<Script> = LazyLock::new(|| Script::new(POP_ALL_ONCE));

impl RedisStore {
    /// [`RedisStore::push`] once per `once` key; a repeat returns the first id.
    pub async fn push_once(&self, message: Message, once: &str) -> Result<u64, StoreError> {
        let mut con = self.con().await?;
        let p = self.prepare(&mut con, message).await?;
        PUSH.key(p.inbox)
            .key(self.key("inboxes"))
            .key(self.key("events"))
            .key(self.key(&format!("once:push:{once}")))
            .arg(p.json)
            .arg(p.ttl)
            .arg(p.recipient)
            .arg(p.event)
            .arg(p.id)
            .arg(ONCE_TTL.as_millis() as u64)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    /// [`RedisStore::pop_all`] once per `once` key; a repeat returns the same messages.
    pub async fn pop_all_once(
        &self,
        recipient: &str,
        once: &str,
    ) -> Result<Vec<Message>, StoreError> {
        let mut con = self.con().await?;
        let taken: String = POP_ALL
            .key(self.key(&format!("inbox:{recipient}")))
            .key(self.key("inboxes"))
            .key(self.key(&format!("once:pop:{once}")))
            .arg(recipient)
            .arg(ONCE_TTL.as_millis() as u64)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        super::redis::unexpired(serde_json::from_str(&taken)?)
    }
}
