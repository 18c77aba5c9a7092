//! Listed items keep the fields rmcp's model has no place for.
//!
//! The backends' list answers keep such fields (a 2025-11-25 tool's
//! `execution`, a vendor's own) in each item's `_meta` under a private key
//! (see `backend::extras`). rmcp's typed results carry them that far; here
//! they are moved back to the top level of their items before a client sees
//! them:
//! - over HTTP, in the JSON answer to a list request, after rmcp wrote it
//!   ([`lift_in_answer`]): the one place that both session clients and
//!   2026-07-28 requests (served by rmcp without a session) pass;
//! - over stdio, by [`FrontService`], which hands rmcp the result as the
//!   JSON it would have written, with the fields in place.
//!
//! A list answer that reaches an HTTP client as an SSE stream (only when
//! something is sent before it) keeps the fields in `_meta`.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};
use rmcp::RoleServer;
use rmcp::model::{
    ClientNotification, ClientRequest, CustomResult, ErrorData, ProtocolVersion, ServerConfig,
    ServerResult,
};
use rmcp::service::{NotificationContext, RequestContext, Service};
use serde_json::Value;

use super::reject::Body;
use super::session::FrontSession;
use crate::backend::extras;

/// The result array of each list method.
fn list_array(method: &str) -> Option<&'static str> {
    Some(match method {
        "tools/list" => "tools",
        "prompts/list" => "prompts",
        "resources/list" => "resources",
        "resources/templates/list" => "resourceTemplates",
        _ => return None,
    })
}

/// The answer to an HTTP request for `method`, with listed items' extra
/// fields in place when it is a list answer in JSON that carries any.
pub async fn lift_in_answer(method: Option<&str>, response: Response<Body>) -> Response<Body> {
    let Some(array) = method.and_then(list_array) else {
        return response;
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let lifted = memchr::memmem::find(&bytes, extras::FIELDS.as_bytes())
        .and_then(|_| lifted_json(&bytes, array));
    let bytes = lifted.map(Bytes::from).unwrap_or(bytes);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, Full::new(bytes).boxed())
}

/// A JSON-RPC answer with its result's items lifted, if it parses.
fn lifted_json(bytes: &[u8], array: &str) -> Option<Vec<u8>> {
    let mut answer: Value = serde_json::from_slice(bytes).ok()?;
    let items = answer.get_mut("result")?.get_mut(array)?.as_array_mut()?;
    if !extras::lift(items) {
        return None;
    }
    serde_json::to_vec(&answer).ok()
}

/// One stdio client's service: [`FrontSession`]'s handler, with list
/// results that carry extra fields handed over as JSON with them in place.
pub struct FrontService(pub FrontSession);

impl Service<RoleServer> for FrontService {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        Service::handle_request(&self.0, request, context)
            .await
            .map(with_listed_fields)
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Service::handle_notification(&self.0, notification, context).await
    }

    fn get_info(&self) -> ServerConfig {
        Service::get_info(&self.0)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Service::supported_protocol_versions(&self.0)
    }
}

/// A list result whose items carry extra fields, as JSON with the fields in
/// place; anything else as it is.
fn with_listed_fields(result: ServerResult) -> ServerResult {
    let (carries, array) = match &result {
        ServerResult::ListToolsResult(r) => (
            r.tools.iter().any(|t| extras::carries(t.meta.as_ref())),
            "tools",
        ),
        ServerResult::ListPromptsResult(r) => (
            r.prompts.iter().any(|p| extras::carries(p.meta.as_ref())),
            "prompts",
        ),
        ServerResult::ListResourcesResult(r) => (
            r.resources.iter().any(|x| extras::carries(x.meta.as_ref())),
            "resources",
        ),
        ServerResult::ListResourceTemplatesResult(r) => (
            r.resource_templates
                .iter()
                .any(|x| extras::carries(x.meta.as_ref())),
            "resourceTemplates",
        ),
        _ => return result,
    };
    if !carries {
        return result;
    }
    let Ok(mut json) = serde_json::to_value(&result) else {
        return result;
    };
    if let Some(Value::Array(items)) = json.get_mut(array) {
        extras::lift(items);
    }
    ServerResult::CustomResult(CustomResult(json))
}
