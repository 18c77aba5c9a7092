//! The gateway's own tools, exposed with bare names next to the backends'.
//!
//! `gateway_status` reports backends, sessions and notification counters (the
//! same data as `GET /status`).

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, Tool};
use serde_json::json;

use crate::gateway::Gateway;

pub const STATUS_TOOL: &str = "gateway_status";

pub fn tools() -> Vec<Tool> {
    let schema = json!({"type": "object", "properties": {}});
    vec![Tool::new(
        STATUS_TOOL,
        "Manifold's state: each backend with its state and tool counts, live client sessions, and counters of notifications received, forwarded, coalesced and dropped.",
        std::sync::Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )]
}

/// Answers a call to a built-in tool, or `None` when the name is not one.
pub fn call(gateway: &Gateway, request: &CallToolRequestParams) -> Option<CallToolResult> {
    (request.name == STATUS_TOOL).then(|| {
        let status = gateway.status_json();
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(status);
        result
    })
}
