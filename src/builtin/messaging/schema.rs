//! The messaging tools as clients list them: bare names, JSON schemas.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

use crate::config::MessagingConfig;

pub const CHECKIN: &str = "checkin_client";
pub const SEND: &str = "send_message";
pub const SEND_AND_WAIT: &str = "send_message_and_wait";
pub const GET_MESSAGES: &str = "get_messages";
pub const IDENTITY: &str = "get_my_identity";
pub const LIST_CLIENTS: &str = "list_clients";

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn id(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "description": what})
}

pub fn tools(config: &MessagingConfig) -> Vec<Tool> {
    let ttl = humantime::format_duration(config.message_ttl);
    let max_wait = config.max_wait.as_secs();
    let message = json!({
        "type": "string",
        "description": format!("The message text (at most {} bytes).", config.max_message_bytes),
    });
    vec![
        Tool::new(
            CHECKIN,
            "Announce this client to the others connected to this gateway: its id, a readable name and what it can do. Optional, but list_clients shows only clients that checked in.",
            schema(json!({
                "type": "object",
                "properties": {
                    "client_id": id("Your client id (see get_my_identity)."),
                    "name": {"type": "string", "description": "A readable name, e.g. \"Alice's VS Code\" (at most 256 bytes)."},
                    "capabilities": {"description": "What you can do for others: free-form text, a list or an object (at most 4096 bytes as JSON, 64 entries)."},
                },
                "required": ["client_id"],
            })),
        ),
        Tool::new(
            SEND,
            format!(
                "Send a message to another client's queue and return at once. The recipient is notified if it is connected and reads it with get_messages; unread messages expire after {ttl}."
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "sender_id": id("Your own client id."),
                    "recipient_id": id("The client id to send to."),
                    "message": message,
                },
                "required": ["sender_id", "recipient_id", "message"],
            })),
        ),
        Tool::new(
            SEND_AND_WAIT,
            "Send a message to another client, then wait until that client replies (sends a message back to you) and return the reply, or say that it timed out.",
            schema(json!({
                "type": "object",
                "properties": {
                    "sender_id": id("Your own client id."),
                    "recipient_id": id("The client id to send to and wait for."),
                    "message": message,
                    "timeout": {
                        "type": "number", "exclusiveMinimum": 0, "maximum": max_wait, "default": 60,
                        "description": format!("Seconds to wait for the reply (at most {max_wait}).")
                    },
                },
                "required": ["sender_id", "recipient_id", "message"],
            })),
        ),
        Tool::new(
            GET_MESSAGES,
            "Take the messages waiting for you, oldest first, formatted as Markdown with sender and age. Each message is returned once.",
            schema(json!({
                "type": "object",
                "properties": {"client_id": id("Your own client id.")},
                "required": ["client_id"],
            })),
        ),
        Tool::new(
            IDENTITY,
            "Tell who you are on this gateway, and how to set your identity in an mcp_recipients.json file.",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            LIST_CLIENTS,
            "List the clients that checked in: name, capabilities, when last seen, and whether they are connected now.",
            schema(json!({"type": "object", "properties": {}})),
        ),
    ]
}
