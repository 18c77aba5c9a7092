//! One client session: the rmcp `ServerHandler` the front runs per client.
//!
//! A session holds only the shared gateway and its own id. Every request
//! reads the gateway's current snapshot, so a config swap reaches live
//! sessions on their next request. Errors are turned into wire errors here,
//! in one place: unroutable requests are JSON-RPC errors; a backend that is
//! down or slow is a tool error the model can read; a backend's own JSON-RPC
//! error passes through unchanged.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::backend::{Backend, CallError, prefix_uri};
use crate::gateway::Gateway;

pub struct FrontSession {
    gateway: Arc<Gateway>,
    id: u64,
}

impl FrontSession {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let id = gateway.hub.new_session_id();
        Self { gateway, id }
    }
}

impl Drop for FrontSession {
    fn drop(&mut self) {
        self.gateway.hub.unregister(self.id);
    }
}

/// The `_meta` keys worth passing on: everything but protocol negotiation
/// (which belongs to our own connection with the backend) and the progress
/// token (rmcp assigns its own).
fn forwarded_meta(ctx: &RequestContext<RoleServer>) -> Option<RequestMetaObject> {
    let mut meta = RequestMetaObject::new();
    for (k, v) in ctx.meta.0.0.iter() {
        if k == "progressToken" || k.starts_with("io.modelcontextprotocol/") {
            continue;
        }
        meta.0.0.insert(k.clone(), v.clone());
    }
    (!meta.0.0.is_empty()).then_some(meta)
}

fn unknown(kind: &str, name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown {kind} `{name}`"), None)
}

/// For requests other than `tools/call`, a failed backend is a JSON-RPC error.
fn rpc_error(e: CallError) -> ErrorData {
    match e {
        CallError::Rpc(e) => e,
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

fn unexpected(backend: &Backend) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "backend `{}` sent an unexpected response type",
            backend.name()
        ),
        None,
    )
}

/// Rewrites the backend's resource URIs in a result to their exposed form.
fn prefix_contents(prefix: &str, contents: &mut [ResourceContents]) {
    for c in contents {
        match c {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => {
                *uri = prefix_uri(prefix, uri);
            }
            _ => {}
        }
    }
}

fn prefix_blocks(prefix: &str, blocks: &mut [ContentBlock]) {
    if prefix.is_empty() {
        return;
    }
    for block in blocks {
        match block {
            ContentBlock::ResourceLink(r) => r.uri = prefix_uri(prefix, &r.uri),
            ContentBlock::Resource(e) => {
                prefix_contents(prefix, std::slice::from_mut(&mut e.resource))
            }
            _ => {}
        }
    }
}

impl ServerHandler for FrontSession {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("manifold", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.gateway.instructions())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        self.gateway.hub.register(self.id, context.peer.clone());
        tracing::debug!(session = self.id, client = %request.client_info.name, "session initialized");
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.gateway.snapshot().tools(),
        ))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(
            self.gateway.snapshot().prompts(),
        ))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(
            self.gateway.snapshot().resources(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            self.gateway.snapshot().templates(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some((backend, original)) = self.gateway.snapshot().route_tool(&request.name) else {
            return Err(unknown("tool", &request.name));
        };
        let mut params = CallToolRequestParams::new(original.to_string());
        params.arguments = request.arguments;
        params.input_responses = request.input_responses;
        params.request_state = request.request_state;
        params.meta = forwarded_meta(&context);
        let outcome = backend
            .request(
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                &context.ct,
            )
            .await;
        match outcome {
            Ok(ServerResult::CallToolResult(mut result)) => {
                prefix_blocks(&backend.config.prefix, &mut result.content);
                Ok(CallToolResponse::Complete(result))
            }
            Ok(ServerResult::InputRequiredResult(r)) => Ok(CallToolResponse::InputRequired(r)),
            Ok(ServerResult::CreateTaskResult(r)) => Ok(CallToolResponse::Task(r)),
            Ok(_) => Err(unexpected(&backend)),
            Err(CallError::Rpc(e)) => Err(e),
            Err(e) => {
                tracing::debug!(session = self.id, tool = %request.name, backend = %backend.name(), error = %e, "call failed");
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text(e.to_string()),
                ])))
            }
        }
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let Some((backend, original)) = self.gateway.snapshot().route_prompt(&request.name) else {
            return Err(unknown("prompt", &request.name));
        };
        let mut params = request;
        params.name = original.to_string();
        params.meta = forwarded_meta(&context);
        match backend
            .request(
                ClientRequest::GetPromptRequest(GetPromptRequest::new(params)),
                &context.ct,
            )
            .await
            .map_err(rpc_error)?
        {
            ServerResult::GetPromptResult(r) => Ok(GetPromptResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            _ => Err(unexpected(&backend)),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some((backend, uri)) = self.gateway.snapshot().route_uri(&request.uri) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                None,
            ));
        };
        let mut params = request;
        params.uri = uri;
        params.meta = forwarded_meta(&context);
        match backend
            .request(
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params)),
                &context.ct,
            )
            .await
            .map_err(rpc_error)?
        {
            ServerResult::ReadResourceResult(mut r) => {
                prefix_contents(&backend.config.prefix, &mut r.contents);
                Ok(ReadResourceResponse::Complete(r))
            }
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            _ => Err(unexpected(&backend)),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let snapshot = self.gateway.snapshot();
        let mut params = request;
        let backend = match &mut params.r#ref {
            Reference::Prompt(p) => {
                let (backend, original) = snapshot
                    .route_prompt(&p.name)
                    .ok_or_else(|| unknown("prompt", &p.name))?;
                p.name = original.to_string();
                backend
            }
            Reference::Resource(r) => {
                let (backend, uri) = snapshot
                    .route_uri(&r.uri)
                    .ok_or_else(|| unknown("resource template", &r.uri))?;
                r.uri = uri;
                backend
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        drop(snapshot);
        params.meta = forwarded_meta(&context);
        match backend
            .request(
                ClientRequest::CompleteRequest(CompleteRequest::new(params)),
                &context.ct,
            )
            .await
            .map_err(rpc_error)?
        {
            ServerResult::CompleteResult(r) => Ok(r),
            _ => Err(unexpected(&backend)),
        }
    }
}
