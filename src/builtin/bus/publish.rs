//! `send_client_message`: what a client may publish, and as whom.
//!
//! Every client message is recorded with its sender (client id, session,
//! whether the id is proven), which the client cannot set; the gateway's own
//! event kinds are refused, so a reader never mistakes a client's message for
//! the gateway's; sizes are capped; and each client is rate-limited. The
//! checks run cheapest first, the rate limit last, so a refused request costs
//! no token.

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Map, Value, json};

use super::tools::{BusError, BusServer, bad, ok};
use crate::builtin::Caller;
use crate::store::{BusMessage, BusSender, Priority, now_ms};

/// The event kinds the gateway publishes about itself (backends going up,
/// down and restarting; reloads). A client message whose content starts
/// with one of them is refused.
pub const GATEWAY_EVENTS: [&str; 5] = [
    "backend up",
    "backend down",
    "restarting backend",
    "config reloaded",
    "config reload failed",
];

/// Metadata keys that would let a client label its message as coming from
/// somewhere else than where the recorded `sender` says.
pub const RESERVED_METADATA: [&str; 2] = ["sender", "source"];

/// The gateway event that `content` would pass for, if any. Case, leading
/// punctuation (`**`, `[`, `#`, emoji) and runs of whitespace are ignored, so
/// `"## Backend   DOWN: github"` is caught but `"backend updates"` is not.
pub fn impersonated_event(content: &str) -> Option<&'static str> {
    let start = content
        .char_indices()
        .find(|(_, c)| c.is_alphanumeric())
        .map_or(content.len(), |(i, _)| i);
    let words: Vec<String> = content[start..]
        .split_whitespace()
        .take(4)
        .map(str::to_lowercase)
        .collect();
    let text = words.join(" ");
    GATEWAY_EVENTS.into_iter().find(|event| {
        text.strip_prefix(event)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric()))
    })
}

impl BusServer {
    pub(super) async fn send(
        &self,
        caller: &Caller,
        args: &JsonObject,
    ) -> Result<CallToolResult, BusError> {
        let mut message = self.parse(args)?;
        if let Some(event) = impersonated_event(&message.content) {
            return Err(BusError::Reserved {
                what: format!("`content` starts with \"{event}\""),
            });
        }
        if let Some(key) = RESERVED_METADATA
            .into_iter()
            .find(|k| message.metadata.contains_key(*k))
        {
            return Err(BusError::Reserved {
                what: format!("the metadata key `{key}`"),
            });
        }
        let client_id = self.identity(caller);
        message.sender = BusSender::Client {
            client_id: client_id.clone(),
            session_id: caller.session_name.clone(),
            authenticated: caller.auth.is_some(),
        };
        if let Some(limiter) = &self.shared.limiter {
            let key = client_id
                .or_else(|| caller.session_name.as_ref().map(|s| format!("session {s}")))
                .unwrap_or_else(|| "anonymous".into());
            if let Err(wait) = limiter.check(&key) {
                return Err(BusError::RateLimited {
                    client: key,
                    limit: self.shared.config.rate_limit,
                    retry_ms: wait.as_millis().max(1) as u64,
                });
            }
        }
        let priority = message.priority;
        let id = self
            .shared
            .store
            .bus_publish(message, self.shared.config.history)
            .await?;
        Ok(ok(
            format!("Published bus message {id} at priority {priority}."),
            json!({"id": id, "priority": priority}),
        ))
    }

    /// The global id of this instance's session number `n`.
    fn local_session_name(&self, n: u64) -> Result<String, BusError> {
        self.shared
            .gateway
            .upgrade()
            .and_then(|g| g.hub.session(n))
            .map(|s| s.name.to_string())
            .ok_or_else(|| {
                bad(
                    "session_id",
                    format!("no session {n} on this instance; give the session id string (`<instance_id>.<uuid>`) that status shows"),
                )
            })
    }

    /// The message the arguments describe, checked for types and sizes.
    fn parse(&self, args: &JsonObject) -> Result<BusMessage, BusError> {
        let limits = &self.shared.config;
        if args.contains_key("sender") {
            return Err(bad(
                "sender",
                "is recorded by the gateway from who calls; it cannot be given",
            ));
        }
        let content = match args.get("content") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(bad("content", "is required and must be a non-empty string")),
        };
        if content.len() > limits.max_message_bytes {
            return Err(bad(
                "content",
                format!(
                    "is {} bytes, over the limit of {} bytes ([bus] max_message_bytes)",
                    content.len(),
                    limits.max_message_bytes
                ),
            ));
        }
        let priority = match args.get("priority") {
            None | Some(Value::Null) => Priority::Normal,
            Some(Value::String(s)) => s.parse().map_err(|e: String| bad("priority", e))?,
            Some(_) => return Err(bad("priority", "must be a string")),
        };
        let client_id = match args.get("client_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => return Err(bad("client_id", "must be a non-empty string")),
        };
        let session_id = match args.get("session_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            // A session number as earlier versions showed it: this instance's own.
            Some(v) if v.is_u64() => Some(self.local_session_name(v.as_u64().unwrap_or(0))?),
            Some(_) => {
                return Err(bad(
                    "session_id",
                    "must be a session id string (`<instance_id>.<uuid>`, as status shows it)",
                ));
            }
        };
        let metadata = match args.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(bad("metadata", "must be an object")),
        };
        // Measured as stored (compact JSON), which is what the history keeps.
        let size = Value::Object(metadata.clone()).to_string().len();
        if size > limits.max_metadata_bytes {
            return Err(bad(
                "metadata",
                format!(
                    "is {size} bytes as JSON, over the limit of {} bytes ([bus] max_metadata_bytes)",
                    limits.max_metadata_bytes
                ),
            ));
        }
        Ok(BusMessage {
            id: 0,
            priority,
            content,
            client_id,
            session_id,
            metadata,
            sent_at_ms: now_ms(),
            sender: BusSender::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_events_are_recognised_through_disguises() {
        for content in [
            "backend down",
            "Backend DOWN",
            "## backend   down: github",
            "**backend down**",
            "config reloaded",
            "⚠️ restarting backend github",
        ] {
            assert!(impersonated_event(content).is_some(), "{content}");
        }
        for content in [
            "backend updates are ready",
            "the backend is down",
            "configure reloads",
            "hello",
        ] {
            assert_eq!(impersonated_event(content), None, "{content}");
        }
    }
}
