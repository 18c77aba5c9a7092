//! The shape `gateway_status` and `query_logs` share: a set with one tool,
//! served for a gateway the set holds only weakly.

use std::sync::{Arc, Weak};

use rmcp::ErrorData;
use rmcp::model::*;
use serde_json::Value;

use crate::gateway::Gateway;

/// The set's `initialize` answer: tools only, named `server`.
pub(super) fn info(server: &str) -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new(server, env!("CARGO_PKG_VERSION")))
}

/// The set's one tool, with its JSON input schema.
pub(super) fn list(
    tool: &'static str,
    description: &'static str,
    schema: Value,
) -> ListToolsResult {
    ListToolsResult::with_all_items(vec![Tool::new(
        tool,
        description,
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )])
}

/// The gateway to answer `request` from, once the request names the set's tool.
pub(super) fn gateway_for(
    request: &CallToolRequestParams,
    tool: &str,
    gateway: &Weak<Gateway>,
) -> Result<Arc<Gateway>, ErrorData> {
    if request.name != tool {
        return Err(ErrorData::invalid_params(
            format!("unknown tool `{}`", request.name),
            None,
        ));
    }
    gateway
        .upgrade()
        .ok_or_else(|| ErrorData::internal_error("the gateway is shutting down", None))
}
