//! `get_messages`: take the caller's pending messages, as Markdown for the
//! model and as JSON for programs.

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::json;

use super::markdown::{fenced, inline};
use super::{Messaging, MessagingError, string_arg, tool_ok};
use crate::builtin::Caller;
use crate::store::{Message, now_ms};

pub async fn get_messages(
    m: &Messaging,
    caller: &Caller,
    args: &JsonObject,
) -> Result<CallToolResult, MessagingError> {
    let client = m.act_as(
        caller,
        "client_id",
        string_arg(args, "client_id")?.as_deref(),
    )?;
    let messages = m
        .store
        .pop_all_once(&client, caller.idempotency_key().as_deref())
        .await?;
    m.store.touch(&client).await?;
    let now = now_ms();
    let structured: Vec<_> = messages
        .iter()
        .map(|msg| {
            json!({
                "id": msg.id,
                "from": msg.sender,
                "message": msg.body,
                "sent_at_ms": msg.sent_at_ms,
            })
        })
        .collect();
    Ok(tool_ok(
        markdown(&client, &messages, now),
        json!({"client_id": client, "messages": structured}),
    ))
}

/// The messages as Markdown: a heading, then one section per message, its
/// body fenced so that no body can pass for a heading or another message.
pub fn markdown(client: &str, messages: &[Message], now_ms: u64) -> String {
    let client = inline(client);
    if messages.is_empty() {
        return format!("No messages for {client}.");
    }
    let count = match messages.len() {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    };
    let mut out = format!("# {count} for {client}\n");
    for msg in messages {
        out.push_str(&format!(
            "\n## From {}, {}\n\n{}\n",
            inline(&msg.sender),
            relative(now_ms.saturating_sub(msg.sent_at_ms)),
            fenced(&msg.body)
        ));
    }
    out
}

/// "just now", "45 seconds ago", "1 minute ago", "2 hours ago", "3 days ago".
pub fn relative(age_ms: u64) -> String {
    let secs = age_ms / 1000;
    let (n, unit) = match secs {
        0..5 => return "just now".into(),
        5..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86_400 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(1_200), "just now");
        assert_eq!(relative(45_000), "45 seconds ago");
        assert_eq!(relative(60_000), "1 minute ago");
        assert_eq!(relative(150_000), "2 minutes ago");
        assert_eq!(relative(2 * 3_600_000), "2 hours ago");
        assert_eq!(relative(86_400_000), "1 day ago");
    }

    #[test]
    fn markdown_names_sender_and_age() {
        let msg = Message {
            id: 1,
            sender: "bob".into(),
            recipient: "alice".into(),
            body: "lunch?".into(),
            sent_at_ms: 1_000,
            expires_at_ms: u64::MAX,
        };
        let text = markdown("alice", &[msg], 121_000);
        assert_eq!(
            text,
            "# 1 message for alice\n\n## From bob, 2 minutes ago\n\n```text\nlunch?\n```\n"
        );
        assert_eq!(markdown("alice", &[], 0), "No messages for alice.");
    }
}
