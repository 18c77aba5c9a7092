//! `checkin_client`, `list_clients` and `get_my_identity`.

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Value, json};

use super::inbox::relative;
use super::markdown::inline;
use super::{Messaging, MessagingError, string_arg, tool_ok};
use crate::builtin::Caller;
use crate::store::{ClientRecord, now_ms};

pub async fn checkin(
    m: &Messaging,
    caller: &Caller,
    args: &JsonObject,
) -> Result<CallToolResult, MessagingError> {
    let id = m.act_as(
        caller,
        "client_id",
        string_arg(args, "client_id")?.as_deref(),
    )?;
    let name = string_arg(args, "name")?
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| id.clone());
    let capabilities = args.get("capabilities").cloned().unwrap_or(Value::Null);
    check_sizes(&name, &capabilities)?;
    if !m.store.is_checked_in(&id).await? && m.store.checkin_count().await? >= m.config.max_checkins
    {
        return Err(MessagingError::TooManyCheckins {
            limit: m.config.max_checkins,
        });
    }
    let record = ClientRecord {
        id: id.clone(),
        name: name.clone(),
        capabilities,
        checked_in_ms: now_ms(),
        last_seen_ms: 0,
    };
    m.store.checkin(record).await?;
    let pending = m.store.pending(&id).await?;
    Ok(tool_ok(
        format!(
            "Checked in as {id} ({name}). {pending} message(s) wait for you; messages sent to you while connected arrive as notifications."
        ),
        json!({"client_id": id, "name": name, "pending": pending}),
    ))
}

/// The longest check-in name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The largest `capabilities`, in bytes of compact JSON.
pub const MAX_CAPABILITIES_BYTES: usize = 4096;
/// The most entries a `capabilities` list or object may have.
pub const MAX_CAPABILITIES_ITEMS: usize = 64;

/// Check-ins are kept (and listed to everyone) until they expire, so their
/// free-form parts are bounded.
fn check_sizes(name: &str, capabilities: &Value) -> Result<(), MessagingError> {
    let bad = |field, reason: String| MessagingError::BadArgument { field, reason };
    if name.len() > MAX_NAME_BYTES {
        return Err(bad(
            "name",
            format!(
                "is {} bytes, over the limit of {MAX_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    let items = match capabilities {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    if items > MAX_CAPABILITIES_ITEMS {
        return Err(bad(
            "capabilities",
            format!("has {items} entries, over the limit of {MAX_CAPABILITIES_ITEMS}"),
        ));
    }
    let size = capabilities.to_string().len();
    if size > MAX_CAPABILITIES_BYTES {
        return Err(bad(
            "capabilities",
            format!("is {size} bytes as JSON, over the limit of {MAX_CAPABILITIES_BYTES}"),
        ));
    }
    Ok(())
}

pub async fn list(m: &Messaging) -> Result<CallToolResult, MessagingError> {
    let clients = m.store.clients().await?;
    let local = m
        .gateway
        .upgrade()
        .map(|gw| m.presence.live_clients(&gw))
        .unwrap_or_default();
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    let elsewhere = m.store.live_elsewhere(&ids).await?;
    let now = now_ms();
    let mut text = match clients.len() {
        0 => "No client has checked in yet.".to_string(),
        n => format!(
            "{n} client(s) checked in:\n\n| id | name | last seen | connected | capabilities |\n|---|---|---|---|---|\n"
        ),
    };
    let mut rows = Vec::new();
    for (c, far) in clients.iter().zip(elsewhere) {
        let live = far || local.contains(&c.id);
        let caps = match &c.capabilities {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            inline(&c.id),
            inline(&c.name),
            relative(now.saturating_sub(c.last_seen_ms)),
            if live { "yes" } else { "no" },
            inline(&caps)
        ));
        rows.push(json!({
            "client_id": c.id,
            "name": c.name,
            "capabilities": c.capabilities,
            "checked_in_ms": c.checked_in_ms,
            "last_seen_ms": c.last_seen_ms,
            "live": live,
        }));
    }
    Ok(tool_ok(text, json!({"clients": rows})))
}

pub fn identity(m: &Messaging, caller: &Caller) -> CallToolResult {
    let who = m.identity(caller);
    let auth = caller.auth.is_some();
    let head = match (&who, auth) {
        (Some(id), true) => format!(
            "You are `{id}`: the client id bound to your access token. You can send only as `{id}` and read only your own queue."
        ),
        (Some(id), false) => format!(
            "This session last acted as `{id}`. This gateway does not authenticate clients, so a client id is whatever you name: use your own, and keep it stable."
        ),
        (None, _) => "This session has no client id yet. This gateway does not authenticate clients: pick a stable id and use it as `sender_id` / `client_id`.".to_string(),
    };
    let example = json!({
        "my_id": who.clone().unwrap_or_else(|| "alice-laptop".into()),
        "recipients": {"bob-desktop": "Bob's IDE; ask him about the backend"},
        "server_info": {"name": "manifold", "notes": "one gateway for all of us"},
    });
    let text = format!(
        "{head}\n\nTo keep your identity across sessions, put an `mcp_recipients.json` file in your workspace and read `my_id` from it before messaging:\n\n```json\n{}\n```\n\n`recipients` maps the ids you talk to onto notes about them; `server_info` is free-form notes about this gateway. Call `checkin_client` so others see you in `list_clients`.",
        serde_json::to_string_pretty(&example).unwrap_or_default()
    );
    tool_ok(
        text,
        json!({
            "client_id": who,
            "authenticated": auth,
            "client_name": caller.client,
            "session": caller.session_name,
        }),
    )
}
