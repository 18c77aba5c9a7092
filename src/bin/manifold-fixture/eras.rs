//! Fixture tools for what newer protocol revisions added (`--eras`):
//! sampling with tools and URL-mode elicitation with its completion notice
//! (2025-11-25), an MCP Apps tool whose `_meta` names a `ui://` resource,
//! and server info with a title, icons and a website.

use std::time::Duration;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};

use super::server::{schema, text_arg};

/// The app resource the `app` tool's `_meta.ui.resourceUri` names.
pub const APP_URI: &str = "ui://app/view.html";

pub fn tools() -> Vec<Tool> {
    let obj = schema(json!({"type": "object"}));
    let mut app = Tool::new("app", "Shows an MCP Apps view", obj.clone());
    app.meta = Some(MetaObject(
        json!({"ui": {"resourceUri": APP_URI}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ));
    vec![
        super::tasks::tool(),
        Tool::new(
            "sample_tools",
            "Asks the client to sample with a `lookup` tool offered; returns its text",
            obj.clone(),
        ),
        Tool::new(
            "elicit_url",
            "Asks the client to visit a URL (elicitation `id`); sends elicitation/complete `complete_ms` after the answer",
            obj,
        ),
        app,
        Tool::new(
            "ask",
            "Asks the client to sample with an InputRequired result (2026-07-28); returns the answer",
            schema(json!({"type": "object"})),
        ),
        Tool::new(
            "region",
            "Returns its `region`, which clients also send as the Mcp-Param-Region header",
            schema(
                json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}),
            ),
        ),
    ]
}

pub fn resources() -> Vec<Resource> {
    vec![Resource::new(APP_URI, "app view").with_mime_type("text/html;profile=mcp-app")]
}

pub fn read(uri: &str) -> Option<ReadResourceResult> {
    (uri == APP_URI)
        .then(|| ReadResourceResult::new(vec![ResourceContents::text("<html>app</html>", uri)]))
}

/// Who the fixture says it is with `--eras`.
pub fn implementation(name: &str) -> Implementation {
    let mut me = Implementation::new(name.to_string(), "0.1.0");
    me.title = Some(format!("Fixture {name}"));
    me.website_url = Some(format!("https://{name}.example.invalid/"));
    me.icons = Some(vec![Icon::new(format!(
        "https://{name}.example.invalid/icon.png"
    ))]);
    me
}

/// Handles the era tools; `None` for any other name.
pub async fn call(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<Result<CallToolResponse, ErrorData>> {
    let text = |s: String| Ok(CallToolResult::success(vec![ContentBlock::text(s)]).into());
    let failed = |e: rmcp::service::ServiceError| {
        Ok(CallToolResult::error(vec![ContentBlock::text(format!("request failed: {e}"))]).into())
    };
    Some(match request.name.as_ref() {
        "task_sleep" => {
            let declared = ctx
                .client_capabilities()
                .is_some_and(|c| c.supports_tasks());
            Ok(super::tasks::sleep(&request.arguments, declared, ctx.peer.clone()).await)
        }
        "app" => text("app shown".into()),
        "region" => text(
            text_arg(&request.arguments, "region")
                .unwrap_or("none")
                .to_string(),
        ),
        "sample_tools" => {
            let lookup = Tool::new(
                "lookup",
                "Looks a word up",
                schema(json!({"type": "object"})),
            );
            let mut params =
                CreateMessageRequestParams::new(vec![SamplingMessage::user_text("use lookup")], 50);
            params.tools = Some(vec![lookup]);
            // The generic request: `create_message` would check the gateway's capabilities itself.
            let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
            match ctx.peer.send_request(request).await {
                Ok(ClientResult::CreateMessageResult(r)) => text(
                    serde_json::to_value(&r)
                        .ok()
                        .and_then(|v| v["content"]["text"].as_str().map(String::from))
                        .unwrap_or_default(),
                ),
                Ok(_) => Err(ErrorData::internal_error(
                    "unexpected sampling result",
                    None,
                )),
                Err(e) => failed(e),
            }
        }
        "elicit_url" => elicit_url(request, ctx).await,
        "ask" => ask(request),
        _ => return None,
    })
}

/// A URL-mode elicitation, then `notifications/elicitation/complete` after the call.
async fn elicit_url(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let text = |s: String| Ok(CallToolResult::success(vec![ContentBlock::text(s)]).into());
    let failed = |e: rmcp::service::ServiceError| {
        Ok(CallToolResult::error(vec![ContentBlock::text(format!("request failed: {e}"))]).into())
    };
    let id = text_arg(&request.arguments, "id")
        .unwrap_or("e1")
        .to_string();
    let params = ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message: "Sign in".into(),
        url: format!("https://login.example.invalid/{id}"),
        elicitation_id: id.clone(),
    };
    let ask = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    match ctx.peer.send_request(ask).await {
        Ok(ClientResult::ElicitResult(r)) => {
            let ms = request
                .arguments
                .as_ref()
                .and_then(|a| a.get("complete_ms"))
                .and_then(Value::as_u64)
                .unwrap_or(20);
            let peer = ctx.peer.clone();
            // After the call, as a server does once the user finished at the URL.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let done = CustomNotification::new(
                    "notifications/elicitation/complete",
                    Some(json!({"elicitationId": id})),
                );
                let _ = peer
                    .send_notification(ServerNotification::CustomNotification(done))
                    .await;
            });
            text(serde_json::to_string(&r).unwrap_or_default())
        }
        Ok(_) => Err(ErrorData::internal_error(
            "unexpected elicitation result",
            None,
        )),
        Err(e) => failed(e),
    }
}

/// The request state `ask` hands out and expects back.
const ASK_STATE: &str = "fixture-ask-1";

/// A 2026-07-28 server's way to ask: `InputRequired` first, the answer from
/// the retry's `inputResponses` (with the state it handed out) after.
fn ask(request: &CallToolRequestParams) -> Result<CallToolResponse, ErrorData> {
    let Some(responses) = &request.input_responses else {
        let question = CreateMessageRequest::new(CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text("who are you?")],
            20,
        ));
        let requests = [("who".to_string(), InputRequest::CreateMessage(question))].into();
        return Ok(InputRequiredResult::new(Some(requests), Some(ASK_STATE.into())).into());
    };
    if request.request_state.as_deref() != Some(ASK_STATE) {
        return Err(ErrorData::invalid_params("ask: wrong requestState", None));
    }
    let answer = responses["who"]["content"]["text"]
        .as_str()
        .or_else(|| {
            responses
                .get("who")
                .and_then(|v| v["content"][0]["text"].as_str())
        })
        .unwrap_or("no answer");
    Ok(CallToolResult::success(vec![ContentBlock::text(format!("asked: {answer}"))]).into())
}
