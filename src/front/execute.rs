//! `POST /api/v1/execute`: the queue and every exposed tool over plain HTTP,
//! for scripts and services that do not speak MCP.
//!
//! `{"command": "queue", "params": {"action": …}}` answers the same JSON as
//! the `queue` tool; `{"command": "<exposed tool>", "params": {…}}` calls
//! that tool once and answers its `CallToolResult`. The request has passed
//! the same stack as MCP (origin, auth, body size, limits); the client's
//! allow-list is checked here. Errors are `{"error": {"kind", "message"}}`
//! with a status that fits, never a 500 with a trace.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use rmcp::model::JsonObject;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::Front;
use super::invoke::GatewayInvoker;
use super::layers::Caller as Authenticated;
use super::reject::{Body, json_response};
use crate::jobs::{Caller, InvokeError, JobError, ToolInvoker, actions};

/// The tool name `command` takes for the job queue.
const QUEUE: &str = "queue";

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        json!({"error": {"kind": kind, "message": message.into()}}),
    )
}

/// The HTTP status of a queue error.
pub fn job_status(e: &JobError) -> StatusCode {
    match e {
        JobError::BadRequest(_) => StatusCode::BAD_REQUEST,
        JobError::NotFound { .. } => StatusCode::NOT_FOUND,
        JobError::Conflict(_) => StatusCode::CONFLICT,
        JobError::Forbidden(_) => StatusCode::FORBIDDEN,
        JobError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
        JobError::NotReady | JobError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn invoke_error(e: InvokeError) -> Response<Body> {
    let (status, kind) = match &e {
        InvokeError::UnknownTool { .. } => (StatusCode::NOT_FOUND, "not_found"),
        InvokeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        InvokeError::NotAllowed(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        // Invalid params from the tool's own server: the caller's input.
        InvokeError::Rpc { code: -32602, .. } => (StatusCode::BAD_REQUEST, "bad_request"),
        InvokeError::Rpc { .. } | InvokeError::Failed(_) => {
            (StatusCode::BAD_GATEWAY, "backend_error")
        }
        InvokeError::Unavailable(_) | InvokeError::Cancelled => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        InvokeError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
    };
    let message = match e {
        InvokeError::UnknownTool { tool } => {
            format!("unknown command `{tool}`: name `queue` or a tool this gateway exposes")
        }
        other => other.to_string(),
    };
    error(status, kind, message)
}

/// Answers one `POST /api/v1/execute`.
pub async fn handle(
    front: &Front,
    invoker: &OnceCell<Arc<GatewayInvoker>>,
    req: Request<Full<Bytes>>,
) -> Response<Body> {
    let auth = req
        .extensions()
        .get::<Authenticated>()
        .map(|c| c.0.id.to_string());
    let mut caller = Caller::new(auth, None);
    // The call's audit entry carries the id the client gets in `x-request-id`.
    caller.correlation_id = req
        .extensions()
        .get::<super::layers::RequestId>()
        .map(|r| r.0.to_string());
    let body = match http_body_util::BodyExt::collect(req.into_body()).await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let (command, params) = match parse(&body) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let invoker = match invoker
        .get_or_try_init(|| GatewayInvoker::new(&front.gateway, front.policy.clone()))
        .await
    {
        Ok(i) => i,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    };
    if command == QUEUE
        && let Some(jobs) = front.reloader.jobs()
    {
        if let Err(e) = invoker.resolve(&caller, QUEUE) {
            return invoke_error(e);
        }
        return match actions::dispatch(&jobs, &caller, &params).await {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => error(job_status(&e), e.kind(), e.to_string()),
        };
    }
    let cancel = CancellationToken::new();
    // An HTTP client that goes away drops this future; the guard still
    // tells the backend call to stop.
    let _cancel_on_drop = cancel.clone().drop_guard();
    let call = invoker.call_admitted(&caller, &command, Some(params), None, &cancel);
    let limit = front.policy.limits().config.request_timeout;
    let outcome = match limit {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(InvokeError::Timeout(format!(
                "request timed out after {} (limits.request_timeout)",
                humantime::format_duration(limit)
            ))),
        },
        None => call.await,
    };
    match outcome {
        Ok(result) => match serde_json::to_value(&result) {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => error(StatusCode::BAD_GATEWAY, "backend_error", e.to_string()),
        },
        Err(e) => invoke_error(e),
    }
}

/// `command` and `params` of a request body.
fn parse(body: &[u8]) -> Result<(String, JsonObject), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("the body must be a JSON object {{\"command\": …, \"params\": {{…}}}}: {e}")
    })?;
    let Value::Object(mut obj) = v else {
        return Err("the body must be a JSON object {\"command\": …, \"params\": {…}}".into());
    };
    let command = match obj.remove("command") {
        Some(Value::String(c)) if !c.trim().is_empty() => c,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err("`command` is required: \"queue\" or the name of an exposed tool".into());
        }
        Some(_) => return Err("`command` must be a string".into()),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => JsonObject::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err("`params` must be an object".into()),
    };
    if let Some(key) = obj.keys().next() {
        return Err(format!(
            "unknown key `{key}` (expected `command` and `params`)"
        ));
    }
    Ok((command, params))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn bodies_are_checked_before_anything_runs() {
        assert!(parse(br#"{"command":"queue","params":{"action":"health"}}"#).is_ok());
        assert!(parse(br#"{"command":"x"}"#).unwrap().1.is_empty());
        assert!(parse(b"[1]").unwrap_err().contains("JSON object"));
        assert!(parse(b"{").unwrap_err().contains("JSON object"));
        assert!(
            parse(br#"{"params":{}}"#)
                .unwrap_err()
                .contains("`command` is required")
        );
        assert!(
            parse(br#"{"command":"x","params":[1]}"#)
                .unwrap_err()
                .contains("`params` must be an object")
        );
        assert!(
            parse(br#"{"command":"x","extra":1}"#)
                .unwrap_err()
                .contains("unknown key `extra`")
        );
    }
}
