//! `gateway_status`: backends, sessions and notification counters, as a tool
//! (the same data as `GET /status`, plus who the caller is).

use std::sync::Weak;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;

use super::{ServeFn, serve_fn};
use crate::gateway::{Gateway, View};

pub const TOOL: &str = "gateway_status";

/// `_meta` key by which the front restricts what a client that is not an
/// admin sees: `{"client": ID, "backends": [NAMES]}`. Clients cannot set it
/// (the front drops `io.manifold/` keys they send).
pub const VIEW_META_KEY: &str = "io.manifold/view";

pub fn serve(gateway: Weak<Gateway>) -> ServeFn {
    serve_fn(move || StatusServer {
        gateway: gateway.clone(),
    })
}

struct StatusServer {
    /// Weak: the gateway owns this set's backend, which owns this server.
    gateway: Weak<Gateway>,
}

impl ServerHandler for StatusServer {
    fn get_info(&self) -> ServerConfig {
        super::single::info("manifold-status")
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {}});
        Ok(super::single::list(
            TOOL,
            "Manifold's state: each backend with its state and tool counts, live client sessions, and counters of notifications received, forwarded, coalesced and dropped.",
            schema,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let gateway = super::single::gateway_for(&request, TOOL, &self.gateway)?;
        // The front says what a restricted caller may see; absent, it may see all.
        let view = ctx.meta.0.0.get(VIEW_META_KEY);
        let allowed: Option<Vec<&str>> = view
            .and_then(|v| v["backends"].as_array())
            .map(|a| a.iter().filter_map(|b| b.as_str()).collect());
        let backend = |name: &str| allowed.as_ref().is_none_or(|a| a.contains(&name));
        let client = view.and_then(|v| v["client"].as_str());
        let mut status = gateway.status_json(&View {
            backend: &backend,
            client,
        });
        // Who is asking, as the gateway sees it: lets a client check its identity.
        let caller = super::Caller::of(&ctx);
        status["caller"] = json!({
            "session": caller.session_name,
            "client": caller.client,
            "authenticated": ctx.meta.0.0.get(super::AUTH_META_KEY),
        });
        let mut result = CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string_pretty(&status).unwrap_or_default(),
        )]);
        result.structured_content = Some(status);
        Ok(result.into())
    }
}
