//! The bus tools: `send_client_message`, `get_queue_messages`,
//! `subscribe_to_messages`, `unsubscribe_from_messages`.

use std::sync::Arc;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::deliver::{Subscription, routed_to, to_json};
use super::{Bus, Filter};
use crate::builtin::Caller;
use crate::config::BusConfig;
use crate::store::{BusMessage, BusSender, StoreError};

pub const SEND: &str = "send_client_message";
pub const HISTORY: &str = "get_queue_messages";
pub const SUBSCRIBE: &str = "subscribe_to_messages";
pub const UNSUBSCRIBE: &str = "unsubscribe_from_messages";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("`{field}` {reason}")]
    BadArgument { field: &'static str, reason: String },
    #[error("this request carries no session id: subscriptions need a live MCP session")]
    NoSession,
    #[error(
        "{what} is reserved for the gateway's own events; reword the message (readers tell the gateway's messages by `sender.kind = \"gateway\"`)"
    )]
    Reserved { what: String },
    #[error(
        "rate limit: client \"{client}\" may publish {limit} bus messages per minute ([bus] rate_limit); try again in {retry_ms} ms"
    )]
    RateLimited {
        client: String,
        limit: u32,
        retry_ms: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn bad(field: &'static str, reason: impl Into<String>) -> BusError {
    BusError::BadArgument {
        field,
        reason: reason.into(),
    }
}

pub struct BusServer {
    pub shared: Arc<Bus>,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn tools(config: &BusConfig) -> Vec<Tool> {
    let history = config.history;
    let filter = json!({
        "description": "A priority (low, normal, high, urgent, critical) for that one and above, or a list of priorities for exactly those. Omit for all.",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    });
    vec![
        Tool::new(
            SEND,
            format!(
                "Publish a message on the gateway's priority bus. Subscribed clients receive it as a log notification whose level follows the priority; everyone can read it with get_queue_messages. The gateway records you as its sender. At most {} messages per minute per client.",
                config.rate_limit
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "content": {"type": "string", "minLength": 1, "description": format!("The message (at most {} bytes). It may not start like one of the gateway's own events (backend up/down, restarting backend, config reloaded).", config.max_message_bytes)},
                    "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent", "critical"], "default": "normal"},
                    "client_id": {"type": "string", "description": "Deliver only to this client's subscriptions."},
                    "session_id": {"type": ["string", "integer"], "description": "Deliver only to this session's subscription: its id (`<instance_id>.<uuid>`, the `Mcp-Session-Id`), on whichever instance holds it. A number is taken as a session of this instance, as earlier versions numbered them."},
                    "metadata": {"type": "object", "description": format!("Free-form data sent along with the message (at most {} bytes as JSON; keys `sender` and `source` are reserved).", config.max_metadata_bytes)},
                },
                "required": ["content"],
            })),
        ),
        Tool::new(
            HISTORY,
            format!(
                "Read recent bus messages, newest last (the gateway keeps the last {history})."
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "default": 100},
                    "priority_filter": filter,
                    "since": {"description": "Only messages after this message id (a number), or sent at or after this RFC 3339 time.", "anyOf": [{"type": "integer"}, {"type": "string"}]},
                },
            })),
        ),
        Tool::new(
            SUBSCRIBE,
            "Receive bus messages as notifications/message in this session from now on (level: low=debug, normal=info, high=warning, urgent=error, critical=critical). Calling again replaces the filter.",
            schema(json!({"type": "object", "properties": {"priority_filter": filter}})),
        ),
        Tool::new(
            UNSUBSCRIBE,
            "Stop receiving bus messages in this session.",
            schema(json!({"type": "object", "properties": {}})),
        ),
    ]
}

pub(super) fn ok(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

impl BusServer {
    /// The caller's client id: authenticated, else the one it acts as in
    /// messaging, else its client name.
    pub(super) fn identity(&self, caller: &Caller) -> Option<String> {
        caller
            .auth
            .clone()
            .or_else(|| {
                caller
                    .session
                    .and_then(|s| self.shared.presence.client_of(s))
            })
            .or_else(|| caller.client.clone())
    }

    async fn history(
        &self,
        caller: &Caller,
        args: &JsonObject,
    ) -> Result<CallToolResult, BusError> {
        let limit = match args.get("limit") {
            None | Some(Value::Null) => 100,
            Some(v) => match v.as_u64() {
                Some(n @ 1..) => n as usize,
                _ => return Err(bad("limit", "must be a whole number of at least 1")),
            },
        };
        let filter =
            Filter::parse(args.get("priority_filter")).map_err(|e| bad("priority_filter", e))?;
        let since = since(args.get("since"))?;
        let identity = self.identity(caller);
        let all = self.shared.store.bus_history().await?;
        let mut picked: Vec<&BusMessage> = all
            .iter()
            .filter(|m| filter.admits(m.priority))
            .filter(|m| routed_to(m, caller.session_name.as_deref(), identity.as_deref()))
            .filter(|m| match since {
                Some(Since::Id(id)) => m.id > id,
                Some(Since::Time(ms)) => m.sent_at_ms >= ms,
                None => true,
            })
            .collect();
        if picked.len() > limit {
            picked.drain(..picked.len() - limit);
        }
        let mut text = format!("{} bus message(s), newest last:\n", picked.len());
        for m in &picked {
            text.push_str(&format!(
                "\n[{}] #{} from {}: {}",
                m.priority.name().to_uppercase(),
                m.id,
                describe(&m.sender),
                one_line(&m.content)
            ));
            if !m.metadata.is_empty() {
                text.push_str(&format!(" {}", Value::Object(m.metadata.clone())));
            }
        }
        let items: Vec<Value> = picked.iter().map(|m| to_json(m)).collect();
        Ok(ok(text, json!({"messages": items})))
    }

    fn subscribe(&self, caller: &Caller, args: &JsonObject) -> Result<CallToolResult, BusError> {
        let session = caller.session.ok_or(BusError::NoSession)?;
        let filter =
            Filter::parse(args.get("priority_filter")).map_err(|e| bad("priority_filter", e))?;
        let text = format!(
            "Subscribed: bus messages of {} now arrive in this session as notifications/message (logger \"{}\").",
            filter.describe(),
            super::deliver::LOGGER
        );
        self.shared.subscriptions.set(
            session,
            Subscription {
                filter,
                auth: caller.auth.clone(),
            },
        );
        Ok(ok(text, json!({"subscribed": true, "session": session})))
    }

    fn unsubscribe(&self, caller: &Caller) -> Result<CallToolResult, BusError> {
        let session = caller.session.ok_or(BusError::NoSession)?;
        let was = self.shared.subscriptions.remove(session);
        let text = if was {
            "Unsubscribed: no more bus notifications in this session."
        } else {
            "This session was not subscribed."
        };
        Ok(ok(
            text.into(),
            json!({"subscribed": false, "was_subscribed": was}),
        ))
    }
}

/// The sender as the text of `get_queue_messages` names it; ids are quoted
/// so that none can pass for a label.
fn describe(sender: &BusSender) -> String {
    match sender {
        BusSender::Gateway => "the gateway".into(),
        BusSender::Client {
            client_id,
            session_id,
            authenticated,
        } => {
            let mut s = match client_id {
                Some(id) => format!("client {}", Value::from(id.as_str())),
                None => "an unknown client".into(),
            };
            if let Some(session) = session_id {
                s.push_str(&format!(" (session {session})"));
            }
            if *authenticated {
                s.push_str(" [authenticated]");
            }
            s
        }
    }
}

/// Content on one line: as is when it has no control character, else as a
/// JSON string, so a message can never start a line that looks like another.
fn one_line(content: &str) -> String {
    if content.chars().any(char::is_control) {
        Value::from(content).to_string()
    } else {
        content.to_string()
    }
}

enum Since {
    Id(u64),
    Time(u64),
}

fn since(v: Option<&Value>) -> Result<Option<Since>, BusError> {
    let reason = "must be a message id or an RFC 3339 time such as 2026-01-31T12:00:00Z";
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|id| Some(Since::Id(id)))
            .ok_or_else(|| bad("since", reason)),
        Some(Value::String(s)) => {
            if let Ok(id) = s.trim().parse::<u64>() {
                return Ok(Some(Since::Id(id)));
            }
            let t = humantime::parse_rfc3339_weak(s.trim()).map_err(|_| bad("since", reason))?;
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Ok(Some(Since::Time(ms)))
        }
        Some(_) => Err(bad("since", reason)),
    }
}

impl ServerHandler for BusServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("manifold-bus", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(&self.shared.config)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Caller::of(&ctx);
        let args = request.arguments.unwrap_or_default();
        let outcome = match request.name.as_ref() {
            SEND => self.send(&caller, &args).await,
            HISTORY => self.history(&caller, &args).await,
            SUBSCRIBE => self.subscribe(&caller, &args),
            UNSUBSCRIBE => self.unsubscribe(&caller),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{other}`"),
                    None,
                ));
            }
        };
        let result = outcome
            .unwrap_or_else(|e| CallToolResult::error(vec![ContentBlock::text(e.to_string())]));
        Ok(result.into())
    }
}
