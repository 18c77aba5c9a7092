//! `query_logs`: the audit log's local store, newest first, as a tool.
//!
//! With `[auth]` on, a client sees only its own entries unless its token is
//! marked `admin = true`; the filter is forced here, whatever the caller asks.

use std::sync::Weak;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::{Caller, ServeFn, serve_fn};
use crate::audit::LogQuery;
use crate::gateway::Gateway;

pub const TOOL: &str = "query_logs";

pub fn serve(gateway: Weak<Gateway>) -> ServeFn {
    serve_fn(move || LogsServer {
        gateway: gateway.clone(),
    })
}

struct LogsServer {
    /// Weak: the gateway owns this set's backend, which owns this server.
    gateway: Weak<Gateway>,
}

/// Restricts `q` to what `caller` may see: with auth on and no admin marker,
/// its own entries only.
pub fn scope(mut q: LogQuery, auth: Option<&str>, admin: bool) -> LogQuery {
    if let Some(id) = auth
        && !admin
    {
        q.client = Some(id.to_string());
    }
    q
}

impl ServerHandler for LogsServer {
    fn get_info(&self) -> ServerConfig {
        super::single::info("manifold-logs")
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::to_value(schemars::schema_for!(LogQuery)).unwrap_or_default();
        Ok(super::single::list(
            TOOL,
            "Search the gateway's audit log (every tool call, prompt, resource read and gateway event), newest first. Filters: tool, client, backend, status (success, error, timeout, cancelled, denied), since/until (RFC 3339), correlation_id, text; limit (default 100).",
            schema,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let gateway = super::single::gateway_for(&request, TOOL, &self.gateway)?;
        let args = Value::Object(request.arguments.unwrap_or_default());
        let q: LogQuery = serde_json::from_value(args)
            .map_err(|e| ErrorData::invalid_params(format!("query_logs: {e}"), None))?;
        let caller = Caller::of(&ctx);
        let q = scope(q, caller.auth.as_deref(), caller.admin);
        match gateway.audit.query(q).await {
            Ok(entries) => {
                let body = json!({"count": entries.len(), "entries": entries});
                let mut result = CallToolResult::success(vec![ContentBlock::text(
                    serde_json::to_string_pretty(&body).unwrap_or_default(),
                )]);
                result.structured_content = Some(body);
                Ok(result.into())
            }
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
        }
    }
}
