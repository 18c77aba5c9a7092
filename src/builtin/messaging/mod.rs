//! Client-to-client messaging: IDEs and agents connected to the gateway send
//! each other messages, wait for replies, and are pushed a notification when
//! one arrives.
//!
//! The state lives in a [`Store`] (per-recipient inboxes with a TTL,
//! check-ins); this module adds MCP, the identity rules, input limits and the
//! per-sender rate limit. Identity: when a request is authenticated (the
//! front adds [`crate::builtin::AUTH_META_KEY`]), a caller may only send as,
//! check in as and read the queue of its own client id. Without auth, client
//! ids act as credentials: whoever names an id acts as it.

mod clients;
mod inbox;
mod markdown;
mod presence;
mod schema;
mod send;

use std::sync::{Arc, Weak};
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use presence::Presence;

use super::{Caller, ServeFn, serve_fn};
use crate::config::MessagingConfig;
use crate::gateway::Gateway;
use crate::ratelimit::KeyedLimiter;
use crate::store::{Store, StoreError};

/// A bad request or a store failure, as the caller reads it in the tool result.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("`{field}` is required and must not be empty")]
    EmptyId { field: &'static str },
    #[error("`{field}` {reason}")]
    BadArgument { field: &'static str, reason: String },
    #[error("message is {bytes} bytes, over the limit of {limit} bytes (`max_message_bytes`)")]
    TooLarge { bytes: usize, limit: usize },
    #[error(
        "recipient \"{recipient}\" has not checked in (this gateway sets `require_checkin`); list_clients shows who has"
    )]
    NotCheckedIn { recipient: String },
    #[error("`timeout` must be more than 0 and at most {max} seconds, got {given}")]
    BadTimeout { given: f64, max: u64 },
    #[error(
        "rate limit: sender \"{sender}\" may send {limit} messages per minute; try again in {retry_ms} ms"
    )]
    RateLimited {
        sender: String,
        limit: u32,
        retry_ms: u64,
    },
    #[error(
        "`{field}` is \"{claimed}\", but this request is authenticated as \"{auth}\": you may only act as yourself"
    )]
    NotYou {
        field: &'static str,
        claimed: String,
        auth: String,
    },
    #[error(
        "the gateway keeps at most {limit} check-ins (`max_checkins`) and is full; check-ins expire after `checkin_ttl` without activity"
    )]
    TooManyCheckins { limit: usize },
    #[error("the request was cancelled while waiting for the reply")]
    Cancelled,
    #[error("the gateway is shutting down")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every connection of the messaging set shares.
pub(crate) struct Messaging {
    pub config: MessagingConfig,
    pub store: Store,
    pub presence: Arc<Presence>,
    /// Messages per sender (`rate_limit`); `None` when unlimited.
    pub limiter: Option<KeyedLimiter>,
    pub gateway: Weak<Gateway>,
    /// Stops the push task when the set is dropped with the gateway.
    _stop: DropGuard,
}

/// Builds the shared state and starts the push task; returns how to serve a connection.
pub fn start(
    config: MessagingConfig,
    store: Store,
    presence: Arc<Presence>,
    gateway: Weak<Gateway>,
) -> ServeFn {
    let stop = CancellationToken::new();
    // Pushes a notification to the recipient's live sessions for every
    // message that lands; ends when this set is dropped.
    tokio::spawn(presence::push_task(
        store.events(),
        store.clone(),
        presence.clone(),
        gateway.clone(),
        stop.clone(),
    ));
    // Forgets check-ins of clients gone for `checkin_ttl`; ends with this set.
    tokio::spawn(presence::expire_task(
        store.clone(),
        presence.clone(),
        gateway.clone(),
        config.checkin_ttl,
        stop.clone(),
    ));
    let shared = Arc::new(Messaging {
        limiter: KeyedLimiter::per_minute(config.rate_limit),
        config,
        store,
        presence,
        gateway,
        _stop: stop.drop_guard(),
    });
    serve_fn(move || MessagingServer {
        shared: shared.clone(),
    })
}

struct MessagingServer {
    shared: Arc<Messaging>,
}

impl Messaging {
    /// The id `claimed` in `field`, checked: non-empty, and the caller's own
    /// when auth is on. On success this session now acts as that client.
    pub fn act_as(
        &self,
        caller: &Caller,
        field: &'static str,
        claimed: Option<&str>,
    ) -> Result<String, MessagingError> {
        let id = match claimed.map(str::trim) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => return Err(MessagingError::EmptyId { field }),
        };
        if let Some(auth) = &caller.auth
            && *auth != id
        {
            return Err(MessagingError::NotYou {
                field,
                claimed: id,
                auth: auth.clone(),
            });
        }
        if let Some(session) = caller.session {
            self.presence.bind(session, &id);
        }
        Ok(id)
    }

    /// Who this caller is: its authenticated id, else the id it last acted as.
    pub fn identity(&self, caller: &Caller) -> Option<String> {
        caller
            .auth
            .clone()
            .or_else(|| caller.session.and_then(|s| self.presence.client_of(s)))
    }
}

/// A string argument, `None` when absent or null.
fn string_arg(args: &JsonObject, field: &'static str) -> Result<Option<String>, MessagingError> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MessagingError::BadArgument {
            field,
            reason: "must be a string".into(),
        }),
    }
}

fn tool_error(e: MessagingError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.to_string())])
}

/// A successful result with text for the model and the same facts as JSON.
fn tool_ok(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

impl ServerHandler for MessagingServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("manifold-messaging", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(schema::tools(
            &self.shared.config,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Caller::of(&ctx);
        let args = request.arguments.unwrap_or_default();
        let m = &self.shared;
        // With auth a session is its token's client from its first call on,
        // so pushes find it even before it names itself.
        if let (Some(auth), Some(session)) = (&caller.auth, caller.session) {
            m.presence.bind(session, auth);
        }
        let outcome = match request.name.as_ref() {
            schema::CHECKIN => clients::checkin(m, &caller, &args).await,
            schema::SEND => send::send(m, &caller, &args).await,
            schema::SEND_AND_WAIT => send::send_and_wait(m, &caller, &args, &ctx.ct).await,
            schema::GET_MESSAGES => inbox::get_messages(m, &caller, &args).await,
            schema::IDENTITY => Ok(clients::identity(m, &caller)),
            schema::LIST_CLIENTS => clients::list(m).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{other}`"),
                    None,
                ));
            }
        };
        Ok(outcome.unwrap_or_else(tool_error).into())
    }
}

/// How long a `live:{client}` mark lasts in a shared store; refreshed at a
/// third of it while the session lives.
pub(crate) const LIVE_TTL: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    fn messaging() -> Messaging {
        let config = MessagingConfig::default();
        Messaging {
            store: Store::open(&StoreConfig::Memory, config.message_ttl),
            limiter: None,
            config,
            presence: Presence::new(),
            gateway: Weak::new(),
            _stop: CancellationToken::new().drop_guard(),
        }
    }

    #[tokio::test]
    async fn with_auth_a_caller_acts_only_as_its_own_id() {
        let m = messaging();
        let authed = Caller {
            session: Some(1),
            client: Some("vscode".into()),
            auth: Some("alice".into()),
            ..Caller::default()
        };
        assert_eq!(
            m.act_as(&authed, "sender_id", Some("alice")).unwrap(),
            "alice"
        );
        let e = m.act_as(&authed, "client_id", Some("bob")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`client_id` is \"bob\", but this request is authenticated as \"alice\": you may only act as yourself"
        );
        assert_eq!(m.identity(&authed).as_deref(), Some("alice"));
    }

    #[tokio::test]
    async fn without_auth_client_ids_act_as_credentials() {
        let m = messaging();
        let open = Caller {
            session: Some(2),
            client: None,
            auth: None,
            ..Caller::default()
        };
        assert_eq!(m.identity(&open), None);
        assert_eq!(m.act_as(&open, "sender_id", Some(" bob ")).unwrap(), "bob");
        assert_eq!(m.identity(&open).as_deref(), Some("bob"));
        assert!(matches!(
            m.act_as(&open, "sender_id", Some("")),
            Err(MessagingError::EmptyId { .. })
        ));
    }
}
