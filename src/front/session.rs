//! One client session: the rmcp `ServerHandler` the front runs per client.
//!
//! A session holds the shared gateway, its own id, its coordinator entry and
//! the backend connections it owns (backends with `isolation =
//! "per_session"`). Every request reads the gateway's current snapshot, so a
//! config swap reaches live sessions on their next request. Errors become wire
//! errors here, in one place: unroutable requests are JSON-RPC errors; a
//! backend that is down or slow is a tool error the model can read; a
//! backend's own JSON-RPC error passes through unchanged.

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::request::Req;
use crate::backend::{Backend, CallError, Origin, prefix_uri};
use crate::builtin::{ADMIN_META_KEY, AUTH_META_KEY, CLIENT_META_KEY, SESSION_META_KEY};
use crate::config::{Isolation, TransportConfig};
use crate::coordinator::Session;
use crate::gateway::Gateway;

pub struct FrontSession {
    gateway: Arc<Gateway>,
    id: u64,
    /// Set at `initialize`; absent for a handler that never initialized.
    session: OnceLock<Arc<Session>>,
    /// The authenticated client that initialized the session (`None`
    /// without auth). Later requests must come from the same client, so a
    /// leaked session id is no use with another token.
    client: OnceLock<Option<Arc<str>>>,
    /// This session's own connections to `per_session` backends, by backend
    /// name, opened on first use and stopped when the session ends.
    private: Mutex<HashMap<String, Arc<Backend>>>,
}

impl FrontSession {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let id = gateway.hub.new_session_id();
        Self {
            gateway,
            id,
            session: OnceLock::new(),
            client: OnceLock::new(),
            private: Mutex::new(HashMap::new()),
        }
    }

    /// Starts handling one request: its client, span and time limit.
    fn req(&self, method: &'static str, ctx: &RequestContext<RoleServer>) -> Req {
        let timeout = self.gateway.policy.limits().config.request_timeout;
        let req = Req::new(method, ctx, self.id, timeout);
        if let Some(bound) = self.client.get()
            && bound.as_deref() != req.client_id()
        {
            req.refuse(ErrorData::invalid_request(
                "this session was initialized by another client; initialize a new session",
                None,
            ));
        }
        req
    }

    fn session(&self) -> Result<&Arc<Session>, ErrorData> {
        self.session
            .get()
            .ok_or_else(|| ErrorData::invalid_request("the session is not initialized", None))
    }

    /// The backend that serves this session for `shared`: itself, or this
    /// session's own connection when the backend is isolated per session.
    async fn resolve(&self, shared: Arc<Backend>, peer: &rmcp::Peer<RoleServer>) -> Arc<Backend> {
        if shared.config.isolation != Isolation::PerSession {
            return shared;
        }
        let name = shared.name().to_string();
        let existing = self
            .private
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        let backend = match existing {
            Some(b) if b.config == shared.config => b,
            _ => {
                // Toward the backend we mirror what this client can do.
                let capabilities = peer
                    .peer_info()
                    .map(|i| i.capabilities.clone())
                    .unwrap_or_default();
                let b = Backend::start(
                    shared.config.clone(),
                    &self.gateway.env(),
                    capabilities,
                    Some(self.id),
                );
                let old = self
                    .private
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name, b.clone());
                if let Some(old) = old {
                    tokio::spawn(async move { old.stop().await });
                }
                b
            }
        };
        let _ =
            tokio::time::timeout(self.gateway.server().connect_timeout, backend.settled()).await;
        backend
    }

    /// The `_meta` keys worth passing on: everything but protocol negotiation
    /// (which belongs to our own connection with the backend), the progress
    /// token (rmcp assigns its own and we map it back) and our own keys, which
    /// only we set: built-in sets learn the calling session and client from them.
    fn forwarded_meta(
        &self,
        ctx: &RequestContext<RoleServer>,
        to: &Backend,
        req: &Req,
    ) -> Option<RequestMetaObject> {
        let mut meta = RequestMetaObject::new();
        for (k, v) in ctx.meta.0.0.iter() {
            if k == "progressToken"
                || k.starts_with("io.modelcontextprotocol/")
                || k.starts_with("io.manifold/")
            {
                continue;
            }
            meta.0.0.insert(k.clone(), v.clone());
        }
        // Every backend learns the correlation id, so its own logs can be joined with ours.
        meta.0.0.insert(
            crate::audit::CORRELATION_META_KEY.into(),
            req.correlation_id.to_string().into(),
        );
        if matches!(to.config.transport, TransportConfig::Builtin { .. }) {
            meta.0.0.insert(SESSION_META_KEY.into(), self.id.into());
            // An authenticated id is the identity; a self-declared client name only a hint.
            if let Some(id) = req.client_id() {
                meta.0.0.insert(AUTH_META_KEY.into(), id.into());
                meta.0.0.insert(CLIENT_META_KEY.into(), id.into());
                if req.client.as_ref().is_some_and(|c| c.admin) {
                    meta.0.0.insert(ADMIN_META_KEY.into(), true.into());
                }
            } else if let Some(s) = self.session.get() {
                meta.0
                    .0
                    .insert(CLIENT_META_KEY.into(), s.client_name.clone().into());
            }
        }
        (!meta.0.0.is_empty()).then_some(meta)
    }

    /// audit: the name and (unredacted, for now) arguments of a request,
    /// or nothing when the audit log is off, so an off log costs no clone.
    fn audit_target(
        &self,
        name: &str,
        args: impl FnOnce() -> Option<serde_json::Value>,
    ) -> Option<(String, Option<serde_json::Value>)> {
        self.gateway
            .audit
            .enabled()
            .then(|| (name.to_string(), args()))
    }

    /// audit: one entry for a completed request (the front's only audit hook).
    fn audit<T: Clone + Into<ServerResult>>(
        &self,
        req: &Req,
        target: Option<(String, Option<serde_json::Value>)>,
        result: &Result<T, ErrorData>,
        function: &'static str,
    ) {
        let Some((name, args)) = target else { return };
        let client_name = self.session.get().map(|s| s.client_name.clone());
        super::audit::record(
            &self.gateway.audit,
            req,
            super::audit::Target {
                name: &name,
                args,
                client_name: client_name.as_deref(),
            },
            result,
            function,
        );
    }

    async fn forward(
        &self,
        shared: Arc<Backend>,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        req: &Req,
    ) -> (Arc<Backend>, Result<ServerResult, CallError>) {
        let backend = self.resolve(shared, &context.peer).await;
        let origin = Origin {
            session: self.id,
            peer: &context.peer,
            progress_token: context.meta.get_progress_token(),
            cancel: &req.cancel,
        };
        let result = backend.request(request, &origin).await;
        (backend, result)
    }

    async fn call_tool_inner(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        req: &Req,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some((shared, original)) = self.gateway.snapshot().route_tool(&request.name) else {
            return Err(unknown("tool", &request.name));
        };
        req.routed(shared.name());
        req.allow_tool(shared.name(), &request.name)?;
        let mut params = CallToolRequestParams::new(original.to_string());
        params.arguments = request.arguments;
        params.input_responses = request.input_responses;
        params.request_state = request.request_state;
        params.meta = self.forwarded_meta(context, &shared, req);
        let (backend, outcome) = self
            .forward(
                shared,
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                context,
                req,
            )
            .await;
        match outcome {
            Ok(ServerResult::CallToolResult(mut result)) => {
                if result.is_error == Some(true) {
                    req.tool_error();
                }
                for block in &mut result.content {
                    prefix_block(&backend.config.prefix, block);
                }
                Ok(CallToolResponse::Complete(result))
            }
            Ok(ServerResult::InputRequiredResult(r)) => Ok(CallToolResponse::InputRequired(r)),
            Ok(ServerResult::CreateTaskResult(r)) => Ok(CallToolResponse::Task(r)),
            Ok(_) => Err(unexpected(&backend)),
            Err(CallError::Rpc(e)) => Err(e),
            Err(e) => {
                req.tool_error();
                tracing::debug!(error = %e, "call failed");
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text(e.to_string()),
                ])))
            }
        }
    }
}

impl Drop for FrontSession {
    fn drop(&mut self) {
        let orphaned = self.gateway.hub.unregister(self.id);
        let private: Vec<Arc<Backend>> = self
            .private
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, b)| b)
            .collect();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let gateway = self.gateway.clone();
        // Ends after the last unsubscribe, the private connections' shutdown and the log level update.
        runtime.spawn(async move {
            for uri in orphaned {
                let routed = gateway.snapshot().route_uri(&uri);
                if let Some((backend, original)) = routed
                    && let Err(e) = backend.unsubscribe(original).await
                {
                    tracing::debug!(backend = %backend.name(), error = %e, "unsubscribe failed");
                }
            }
            futures::future::join_all(private.iter().map(|b| b.stop())).await;
            // The session may have been the one asking for the most verbose logs.
            gateway.apply_log_floor().await;
        });
    }
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

fn prefix_block(prefix: &str, block: &mut ContentBlock) {
    match block {
        ContentBlock::ResourceLink(r) => r.uri = prefix_uri(prefix, &r.uri),
        ContentBlock::Resource(e) => prefix_contents(prefix, std::slice::from_mut(&mut e.resource)),
        _ => {}
    }
}

impl ServerHandler for FrontSession {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
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
        let req = self.req("initialize", &context);
        req.run(async {
            context.peer.set_peer_info(request.clone());
            let _ = self.client.set(req.client_id().map(Arc::from));
            let session = self.gateway.hub.register(
                self.id,
                context.peer.clone(),
                request.capabilities.clone(),
                request.client_info.name.clone(),
                self.gateway.list_hashes(),
            );
            let _ = self.session.set(session);
            tracing::debug!(client = %request.client_info.name, "session initialized");
            self.negotiate_initialize(&request)
        })
        .await
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let req = self.req("tools/list", &context);
        req.run(async {
            let snapshot = self.gateway.snapshot();
            let mut tools = snapshot.tools();
            if let Some(client) = &req.client {
                tools.retain(|t| {
                    snapshot
                        .route_tool(&t.name)
                        .is_some_and(|(b, _)| client.may_call_tool(b.name(), &t.name))
                });
            }
            Ok(ListToolsResult::with_all_items(tools))
        })
        .await
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let req = self.req("prompts/list", &context);
        req.run(async {
            let snapshot = self.gateway.snapshot();
            let mut prompts = snapshot.prompts();
            if let Some(client) = &req.client {
                prompts.retain(|p| {
                    snapshot
                        .route_prompt(&p.name)
                        .is_some_and(|(b, _)| client.may_use_backend(b.name()))
                });
            }
            Ok(ListPromptsResult::with_all_items(prompts))
        })
        .await
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let req = self.req("resources/list", &context);
        req.run(async {
            let snapshot = self.gateway.snapshot();
            let mut resources = snapshot.resources();
            if let Some(client) = &req.client {
                resources.retain(|r| {
                    snapshot
                        .route_uri(&r.uri)
                        .is_some_and(|(b, _)| client.may_use_backend(b.name()))
                });
            }
            Ok(ListResourcesResult::with_all_items(resources))
        })
        .await
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let req = self.req("resources/templates/list", &context);
        req.run(async {
            let snapshot = self.gateway.snapshot();
            let mut templates = snapshot.templates();
            if let Some(client) = &req.client {
                templates.retain(|t| {
                    snapshot
                        .route_uri(&t.uri_template)
                        .is_some_and(|(b, _)| client.may_use_backend(b.name()))
                });
            }
            Ok(ListResourceTemplatesResult::with_all_items(templates))
        })
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let req = self.req("tools/call", &context);
        // audit: what the call was for, kept only when the audit log is on.
        let target = self.audit_target(&request.name, || {
            request.arguments.clone().map(serde_json::Value::Object)
        });
        let result = req.run(self.call_tool_inner(request, &context, &req)).await;
        self.audit(&req, target, &result, "call_tool");
        result
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let req = self.req("prompts/get", &context);
        let target = self.audit_target(&request.name, || {
            request
                .arguments
                .clone()
                .map(|a| serde_json::to_value(a).unwrap_or_default())
        });
        let result = req
            .run(async {
                let Some((shared, original)) = self.gateway.snapshot().route_prompt(&request.name)
                else {
                    return Err(unknown("prompt", &request.name));
                };
                req.routed(shared.name());
                req.allow_backend(shared.name(), &format!("prompt `{}`", request.name))?;
                let mut params = request;
                params.name = original.to_string();
                params.meta = self.forwarded_meta(&context, &shared, &req);
                let (backend, outcome) = self
                    .forward(
                        shared,
                        ClientRequest::GetPromptRequest(GetPromptRequest::new(params)),
                        &context,
                        &req,
                    )
                    .await;
                match outcome.map_err(rpc_error)? {
                    ServerResult::GetPromptResult(mut r) => {
                        for message in &mut r.messages {
                            prefix_block(&backend.config.prefix, &mut message.content);
                        }
                        Ok(GetPromptResponse::Complete(r))
                    }
                    ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
                    _ => Err(unexpected(&backend)),
                }
            })
            .await;
        self.audit(&req, target, &result, "get_prompt");
        result
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let req = self.req("resources/read", &context);
        let target = self.audit_target(&request.uri, || None);
        let result = req
            .run(async {
                let Some((shared, uri)) = self.gateway.snapshot().route_uri(&request.uri) else {
                    return Err(ErrorData::resource_not_found(
                        format!("unknown resource `{}`", request.uri),
                        None,
                    ));
                };
                req.routed(shared.name());
                req.allow_backend(shared.name(), &format!("resource `{}`", request.uri))?;
                let mut params = request;
                params.uri = uri;
                params.meta = self.forwarded_meta(&context, &shared, &req);
                let (backend, outcome) = self
                    .forward(
                        shared,
                        ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params)),
                        &context,
                        &req,
                    )
                    .await;
                match outcome.map_err(rpc_error)? {
                    ServerResult::ReadResourceResult(mut r) => {
                        prefix_contents(&backend.config.prefix, &mut r.contents);
                        Ok(ReadResourceResponse::Complete(r))
                    }
                    ServerResult::InputRequiredResult(r) => {
                        Ok(ReadResourceResponse::InputRequired(r))
                    }
                    _ => Err(unexpected(&backend)),
                }
            })
            .await;
        self.audit(&req, target, &result, "read_resource");
        result
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let req = self.req("completion/complete", &context);
        let name = match &request.r#ref {
            Reference::Prompt(p) => p.name.clone(),
            Reference::Resource(r) => r.uri.clone(),
            _ => String::new(),
        };
        let target = self.audit_target(&name, || {
            Some(serde_json::json!({"argument": {"name": request.argument.name, "value": request.argument.value}}))
        });
        let result = req
            .run(async {
                let snapshot = self.gateway.snapshot_full();
                let mut params = request;
                let shared = match &mut params.r#ref {
                    Reference::Prompt(p) => {
                        let (backend, original) = snapshot
                            .route_prompt(&p.name)
                            .ok_or_else(|| unknown("prompt", &p.name))?;
                        req.allow_backend(backend.name(), &format!("prompt `{}`", p.name))?;
                        p.name = original.to_string();
                        backend
                    }
                    Reference::Resource(r) => {
                        let (backend, uri) = snapshot
                            .route_uri(&r.uri)
                            .ok_or_else(|| unknown("resource template", &r.uri))?;
                        req.allow_backend(backend.name(), &format!("resource `{}`", r.uri))?;
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
                req.routed(shared.name());
                params.meta = self.forwarded_meta(&context, &shared, &req);
                let (backend, outcome) = self
                    .forward(
                        shared,
                        ClientRequest::CompleteRequest(CompleteRequest::new(params)),
                        &context,
                        &req,
                    )
                    .await;
                match outcome.map_err(rpc_error)? {
                    ServerResult::CompleteResult(r) => Ok(r),
                    _ => Err(unexpected(&backend)),
                }
            })
            .await;
        self.audit(&req, target, &result, "complete");
        result
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let req = self.req("logging/setLevel", &context);
        req.run(async {
            self.session()?.set_log_level(request.level);
            self.gateway.apply_log_floor().await;
            // This session's own connections follow its own level.
            let private: Vec<Arc<Backend>> = self
                .private
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            futures::future::join_all(private.iter().map(|b| b.set_log_level(request.level))).await;
            Ok(())
        })
        .await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let req = self.req("resources/subscribe", &context);
        req.run(async {
            let session = self.session()?.clone();
            let Some((shared, original)) = self.gateway.snapshot().route_uri(&request.uri) else {
                return Err(ErrorData::resource_not_found(
                    format!("unknown resource `{}`", request.uri),
                    None,
                ));
            };
            req.routed(shared.name());
            req.allow_backend(shared.name(), &format!("resource `{}`", request.uri))?;
            let supports = shared.server_info().is_some_and(|i| {
                i.capabilities
                    .resources
                    .as_ref()
                    .is_some_and(|r| r.subscribe == Some(true))
            });
            if !supports {
                return Err(ErrorData::invalid_params(
                    format!(
                        "backend `{}` does not support resource subscriptions (for `{}`)",
                        shared.name(),
                        request.uri
                    ),
                    None,
                ));
            }
            let per_session = shared.config.isolation == Isolation::PerSession;
            let first = self.gateway.hub.subscribe(&session, &request.uri);
            if first || per_session {
                let backend = self.resolve(shared, &context.peer).await;
                if let Err(e) = backend.subscribe(original).await {
                    self.gateway.hub.unsubscribe(&session, &request.uri);
                    return Err(rpc_error(e));
                }
            }
            Ok(())
        })
        .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let req = self.req("resources/unsubscribe", &context);
        req.run(async {
            let session = self.session()?.clone();
            let Some((shared, original)) = self.gateway.snapshot().route_uri(&request.uri) else {
                return Err(ErrorData::resource_not_found(
                    format!("unknown resource `{}`", request.uri),
                    None,
                ));
            };
            req.routed(shared.name());
            let per_session = shared.config.isolation == Isolation::PerSession;
            let last = self.gateway.hub.unsubscribe(&session, &request.uri);
            if last || per_session {
                let backend = self.resolve(shared, &context.peer).await;
                backend.unsubscribe(original).await.map_err(rpc_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn on_roots_list_changed(&self, _: NotificationContext<RoleServer>) {
        let snapshot = self.gateway.snapshot_full();
        let private: Vec<Arc<Backend>> = self
            .private
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let shared = snapshot
            .backends
            .values()
            .filter(|b| b.config.isolation == Isolation::Shared);
        futures::future::join_all(shared.chain(private.iter()).map(|b| b.roots_changed())).await;
    }
}
