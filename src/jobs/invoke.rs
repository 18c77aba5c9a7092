//! How the runner calls a tool: through a [`ToolInvoker`] that the front
//! implements (`front::invoke`), so a job goes through the same route →
//! allow-list → limits → forward path as a direct call. This module defines
//! the contract only; it knows nothing of the gateway.

use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, JsonObject};
use tokio_util::sync::CancellationToken;

use super::model::Progress;

/// Who a job acts for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Where the caller's job ids live: its authenticated client id, or ""
    /// when auth is off (one namespace for everyone).
    pub namespace: String,
    /// The authenticated client id; `None` when auth is off.
    pub auth: Option<String>,
    /// The MCP session that made the request, if any (to notify it later).
    pub session: Option<u64>,
    /// The job this call runs for (its id in the caller's namespace), for the audit log.
    pub job: Option<String>,
}

impl Caller {
    /// The caller as the front knows it: `auth` is its token's client id.
    pub fn new(auth: Option<String>, session: Option<u64>) -> Self {
        Self {
            namespace: auth.clone().unwrap_or_default(),
            auth,
            session,
            job: None,
        }
    }
}

/// Receives the progress the backend reports for one call.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// Why a call did not produce a tool result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("unknown tool `{tool}`")]
    UnknownTool { tool: String },
    /// The caller's allow-list does not include the tool (the message says which).
    #[error("{0}")]
    Forbidden(String),
    /// The tool cannot be run this way (the message says why).
    #[error("{0}")]
    NotAllowed(String),
    /// The backend is down, stopped, or refused for lack of capacity.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// The backend answered with a JSON-RPC error.
    #[error("{message} (JSON-RPC error {code})")]
    Rpc { code: i32, message: String },
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

/// Calls exposed tools as a given caller.
pub trait ToolInvoker: Send + Sync + 'static {
    /// The backend (by name) that serves `tool` for this caller, or why the
    /// caller may not call it. Cheap: no I/O.
    fn resolve(&self, caller: &Caller, tool: &str) -> Result<String, InvokeError>;

    /// Calls `tool` once, as `caller`, under the same limits as a direct
    /// call. Progress goes to `progress`; cancelling `cancel` cancels the
    /// call at the backend (`notifications/cancelled`) and returns
    /// [`InvokeError::Cancelled`].
    fn call(
        &self,
        caller: Caller,
        tool: String,
        arguments: Option<JsonObject>,
        progress: ProgressSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<CallToolResult, InvokeError>>;
}

/// Told when a job ends (after the end is stored).
pub trait JobListener: Send + Sync + 'static {
    fn finished(&self, job: &super::Job, instance: &str);
}
