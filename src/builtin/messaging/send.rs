//! `send_message` and `send_message_and_wait`.
//!
//! The wait never polls: it listens to the store's event feed (subscribed
//! before the message is sent, so a fast reply cannot slip by) and re-reads
//! the store only when a message from the peer lands in the sender's inbox,
//! or when the feed says it may have missed something.

use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Messaging, MessagingError, string_arg, tool_ok};
use crate::builtin::Caller;
use crate::store::{Event, Message, now_ms};

const DEFAULT_TIMEOUT_SECS: f64 = 60.0;

/// Checks a send request (everything but the rate limit last, so a bad
/// request costs no token) and builds the message.
async fn prepare(
    m: &Messaging,
    caller: &Caller,
    args: &JsonObject,
) -> Result<Message, MessagingError> {
    let sender = m.act_as(
        caller,
        "sender_id",
        string_arg(args, "sender_id")?.as_deref(),
    )?;
    let recipient = match string_arg(args, "recipient_id")? {
        Some(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => {
            return Err(MessagingError::EmptyId {
                field: "recipient_id",
            });
        }
    };
    let body = string_arg(args, "message")?.ok_or(MessagingError::BadArgument {
        field: "message",
        reason: "is required".into(),
    })?;
    if body.len() > m.config.max_message_bytes {
        return Err(MessagingError::TooLarge {
            bytes: body.len(),
            limit: m.config.max_message_bytes,
        });
    }
    if m.config.require_checkin && !m.store.is_checked_in(&recipient).await? {
        return Err(MessagingError::NotCheckedIn { recipient });
    }
    if let Some(Err(wait)) = m.limiter.as_ref().map(|l| l.check(&sender)) {
        return Err(MessagingError::RateLimited {
            sender,
            limit: m.config.rate_limit,
            retry_ms: wait.as_millis().max(1) as u64,
        });
    }
    let now = now_ms();
    Ok(Message {
        id: 0,
        sender,
        recipient,
        body,
        sent_at_ms: now,
        expires_at_ms: now + m.config.message_ttl.as_millis() as u64,
    })
}

pub async fn send(
    m: &Messaging,
    caller: &Caller,
    args: &JsonObject,
) -> Result<CallToolResult, MessagingError> {
    let message = prepare(m, caller, args).await?;
    let (sender, recipient) = (message.sender.clone(), message.recipient.clone());
    let id = m
        .store
        .push_once(message, caller.idempotency_key().as_deref())
        .await?;
    m.store.touch(&sender).await?;
    let ttl = humantime::format_duration(m.config.message_ttl);
    Ok(tool_ok(
        format!("Message {id} sent to {recipient}; it waits in their queue for up to {ttl}."),
        json!({"status": "sent", "message_id": id, "recipient_id": recipient}),
    ))
}

fn timeout_arg(args: &JsonObject, max: Duration) -> Result<Duration, MessagingError> {
    let max_secs = max.as_secs();
    let secs = match args.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS.min(max_secs as f64),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        Some(_) => f64::NAN,
    };
    if !(secs > 0.0 && secs <= max_secs as f64) {
        return Err(MessagingError::BadTimeout {
            given: secs,
            max: max_secs,
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn send_and_wait(
    m: &Messaging,
    caller: &Caller,
    args: &JsonObject,
    cancelled: &CancellationToken,
) -> Result<CallToolResult, MessagingError> {
    let timeout = timeout_arg(args, m.config.max_wait)?;
    let message = prepare(m, caller, args).await?;
    let (sender, recipient) = (message.sender.clone(), message.recipient.clone());
    // Listen before sending: the reply may land before `push` returns.
    let mut events = m.store.events();
    let started = Instant::now();
    let id = m
        .store
        .push_once(message, caller.idempotency_key().as_deref())
        .await?;
    m.store.touch(&sender).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(reply) = m.store.take_reply(&sender, &recipient, id).await? {
            let waited = started.elapsed();
            return Ok(tool_ok(
                format!(
                    "Reply from {} after {:.1} s:\n\n{}",
                    super::markdown::inline(&recipient),
                    waited.as_secs_f64(),
                    super::markdown::fenced(&reply.body)
                ),
                json!({
                    "status": "replied",
                    "message_id": id,
                    "waited_ms": waited.as_millis() as u64,
                    "reply": {"id": reply.id, "from": reply.sender, "message": reply.body},
                }),
            ));
        }
        // Wait for something that may be the reply.
        loop {
            let event = tokio::select! {
                _ = cancelled.cancelled() => return Err(MessagingError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(timed_out(m, &recipient, id, timeout));
                }
                event = events.recv() => event,
            };
            match event {
                Ok(Event::Inbox(x)) if x.recipient == sender && x.sender == recipient => break,
                Ok(Event::Resync) | Err(RecvError::Lagged(_)) => break,
                Ok(_) => {}
                Err(RecvError::Closed) => return Err(MessagingError::Closed),
            }
        }
    }
}

fn timed_out(m: &Messaging, recipient: &str, id: u64, timeout: Duration) -> CallToolResult {
    let ttl = humantime::format_duration(m.config.message_ttl);
    tool_ok(
        format!(
            "No reply from {recipient} within {:.0} s. Your message (id {id}) stays in their queue for up to {ttl}; a later reply will wait in your queue (get_messages).",
            timeout.as_secs_f64()
        ),
        json!({"status": "timeout", "message_id": id, "recipient_id": recipient}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_must_be_positive_and_at_most_the_maximum() {
        let max = Duration::from_secs(600);
        let args = |v: Value| json!({ "timeout": v }).as_object().cloned().unwrap();
        assert_eq!(
            timeout_arg(&JsonObject::new(), max).unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            timeout_arg(&args(json!(0.5)), max).unwrap(),
            Duration::from_millis(500)
        );
        for bad in [json!(0), json!(-1), json!(601), json!("soon"), json!([1])] {
            let e = timeout_arg(&args(bad.clone()), max).unwrap_err();
            assert!(
                e.to_string()
                    .contains("more than 0 and at most 600 seconds"),
                "{bad}: {e}"
            );
        }
    }
}
