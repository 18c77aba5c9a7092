//! One client session: the rmcp `ServerHandler` the front runs per client.
//!
//! A session holds the shared gateway, the auth and limits in force, its own
//! id and its coordinator entry. Every request reads the gateway's current
//! snapshot, so a config swap reaches live sessions on their next request.
//! Forwarded requests take the one path of `pipeline.rs`; lists are
//! filtered by one helper; errors become wire errors in
//! `pipeline::wire`.

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::Policy;
use super::pipeline::{Mrtr, Target, prefix_block, prefix_contents, wire};
use super::request::Req;
use crate::backend::Backend;
use crate::config::Isolation;
use crate::coordinator::Session;
use crate::gateway::Gateway;
use crate::router::Snapshot;

pub struct FrontSession {
    pub(super) gateway: Arc<Gateway>,
    policy: Arc<Policy>,
    /// Calls of 2026-07-28 clients waiting for their answers, shared by all handlers.
    pub(super) parked: Arc<super::parked::ParkedCalls>,
    /// The running config's built-in state: the job queue that runs tasks.
    pub(super) reloader: Arc<crate::reload::Reloader>,
    pub(super) id: u64,
    /// The session's global id: its `Mcp-Session-Id` over HTTP, else one
    /// minted on first use (see [`FrontSession::name`]).
    name: OnceLock<Arc<str>>,
    /// Set at `initialize`; absent for a handler that never initialized.
    pub(super) session: OnceLock<Arc<Session>>,
    /// The authenticated client of the HTTP request this handler was made
    /// for (see `modern::CALLER`); `None` without auth, over stdio, and for
    /// a session's handler (made before its `initialize` arrives).
    pub(super) caller: Option<Arc<super::policy::Client>>,
    /// The authenticated client that initialized the session (`None`
    /// without auth). Later requests must come from the same client, so a
    /// leaked session id is no use with another token.
    client: OnceLock<Option<Arc<str>>>,
    /// Over HTTP: this handler and the session table it tells at
    /// `initialize`, so that the direct path can call it (decision 0020).
    pub(super) attach: Option<(
        std::sync::Weak<FrontSession>,
        Arc<super::sessions::Sessions>,
    )>,
}

impl FrontSession {
    pub fn new(
        gateway: Arc<Gateway>,
        policy: Arc<Policy>,
        parked: Arc<super::parked::ParkedCalls>,
        reloader: Arc<crate::reload::Reloader>,
    ) -> Self {
        let id = gateway.hub.new_session_id();
        Self {
            gateway,
            policy,
            parked,
            reloader,
            id,
            name: OnceLock::new(),
            session: OnceLock::new(),
            caller: super::modern::current_caller(),
            client: OnceLock::new(),
            attach: None,
        }
    }

    /// Starts handling one request: its client, span and time limit.
    pub(super) fn req(&self, method: &'static str, ctx: &RequestContext<RoleServer>) -> Req {
        let timeout = self.policy.limits().config.request_timeout;
        if let Some(super::sessions::SessionName(name)) = ctx.extensions.get() {
            let _ = self.name.set(name.clone());
        }
        let req = Req::new(method, ctx, self.name().clone(), timeout);
        if let Some(bound) = self.client.get()
            && bound.as_deref() != req.client_id()
        {
            req.refuse(wire::other_client());
        }
        self.register_request(ctx, &req);
        req
    }

    /// The session's global id (`<instance_id>.<uuid>`). Over HTTP it is the
    /// `Mcp-Session-Id`, which `initialize` brings; a handler without one
    /// (stdio, a 2026-07-28 request) mints its own on first use.
    pub(super) fn name(&self) -> &Arc<str> {
        self.name.get_or_init(|| self.gateway.hub.mint_name())
    }

    pub(super) fn session(&self) -> Result<&Arc<Session>, ErrorData> {
        self.session.get().ok_or_else(wire::not_initialized)
    }
}

impl ServerHandler for FrontSession {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
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
        self.advertise_tasks(&mut capabilities);
        ServerConfig::new(capabilities)
            .with_server_info(self.gateway.implementation(&|_| true))
            .with_instructions(self.gateway.instructions(&|_| true))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        let req = self.req("server/discover", &context);
        req.run(async { Ok(self.discover_for(&req)) }).await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tool_definition(name)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(self.accepted_filter(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.listen_stream(context).await
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
            // With auth, the session is the token's client's (status lists it so).
            let name = req
                .client_id()
                .map_or_else(|| request.client_info.name.clone(), String::from);
            let session = self.gateway.hub.register(
                (self.id, self.name().clone()),
                crate::coordinator::Mode::Legacy,
                context.peer.clone(),
                request.capabilities.clone(),
                name,
                Self::visibility(&req),
                self.gateway.snapshot().list_hashes(),
            );
            let mut result = self.negotiate_initialize(&request)?;
            session.set_protocol(result.protocol_version.to_string());
            let _ = self.session.set(session);
            if let Some((me, sessions)) = &self.attach
                && let Some(super::sessions::SessionName(name)) = context.extensions.get()
            {
                sessions.attach(name, me.clone(), context.peer.clone());
            }
            tracing::debug!(client = %request.client_info.name, "session initialized");
            if req.restricted().is_some() {
                let visible = |b: &str| req.sees_backend(b);
                result.instructions = Some(self.gateway.instructions(&visible));
                result.server_info = self.gateway.implementation(&visible);
            }
            Ok(result)
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
            let items = self.visible(&req, Snapshot::tools, |t| Target::Tool(&t.name));
            Ok(self.hinted(&req, &context, ListToolsResult::with_all_items(items)))
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
            let items = self.visible(&req, Snapshot::prompts, |p| Target::Prompt(&p.name));
            Ok(self.hinted(&req, &context, ListPromptsResult::with_all_items(items)))
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
            let items = self.visible(&req, Snapshot::resources, |r| Target::Resource(&r.uri));
            Ok(self.hinted(&req, &context, ListResourcesResult::with_all_items(items)))
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
            let items = self.visible(&req, Snapshot::templates, |t| {
                Target::Resource(&t.uri_template)
            });
            Ok(self.hinted(
                &req,
                &context,
                ListResourceTemplatesResult::with_all_items(items),
            ))
        })
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let req = self.req("tools/call", &context);
        // A call served as a task is audited when its job runs, with the job's id.
        let became_task = std::sync::atomic::AtomicBool::new(false);
        let target = self.audit_target(&request.name, || {
            request.arguments.clone().map(serde_json::Value::Object)
        });
        let result = req
            .run(async {
                if let Some(task) = self.call_as_task(&req, &context, &request).await {
                    became_task.store(task.is_ok(), std::sync::atomic::Ordering::Relaxed);
                    return task;
                }
                let exposed = request.name.clone();
                let mut request = request;
                let mrtr = Mrtr {
                    state: request.request_state.take(),
                    responses: request.input_responses.take(),
                    what: bind_if_modern(&context, || {
                        serde_json::json!(["tools/call", &exposed, &request.arguments])
                    }),
                };
                let outcome = self
                    .relay(
                        &req,
                        &context,
                        Target::Tool(&exposed),
                        Some(mrtr),
                        |own, meta| {
                            let mut params = CallToolRequestParams::new(own);
                            params.arguments = request.arguments;
                            params.meta = meta;
                            ClientRequest::CallToolRequest(CallToolRequest::new(params))
                        },
                        |prefix, result| match result {
                            ServerResult::CallToolResult(mut r) => {
                                for block in &mut r.content {
                                    prefix_block(prefix, block);
                                }
                                Some(CallToolResponse::Complete(r))
                            }
                            ServerResult::InputRequiredResult(r) => {
                                Some(CallToolResponse::InputRequired(r))
                            }
                            ServerResult::CreateTaskResult(r) => Some(CallToolResponse::Task(r)),
                            _ => None,
                        },
                    )
                    .await;
                let mut response = match outcome {
                    Ok(response) => response,
                    Err(failure) => CallToolResponse::Complete(wire::tool(failure)?),
                };
                self.name_backend_task(&req, &exposed, &mut response);
                if matches!(&response, CallToolResponse::Complete(r) if r.is_error == Some(true)) {
                    req.tool_error();
                }
                Ok(response)
            })
            .await;
        if !became_task.load(std::sync::atomic::Ordering::Relaxed) {
            self.audit(&req, target, &result, "call_tool").await;
        }
        result
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let req = self.req("tasks/get", &context);
        req.run(self.get_task_for(&req, &context, &request.task_id))
            .await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let req = self.req("tasks/update", &context);
        req.run(self.update_task_for(&req, &context, request)).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let req = self.req("tasks/cancel", &context);
        req.run(self.cancel_task_for(&req, &context, &request.task_id))
            .await
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
                let exposed = request.name.clone();
                let mut request = request;
                let mrtr = Mrtr {
                    state: request.request_state.take(),
                    responses: request.input_responses.take(),
                    what: bind_if_modern(&context, || {
                        serde_json::json!(["prompts/get", &exposed, &request.arguments])
                    }),
                };
                self.relay(
                    &req,
                    &context,
                    Target::Prompt(&exposed),
                    Some(mrtr),
                    |own, meta| {
                        let mut params = request;
                        params.name = own;
                        params.meta = meta;
                        ClientRequest::GetPromptRequest(GetPromptRequest::new(params))
                    },
                    |prefix, result| match result {
                        ServerResult::GetPromptResult(mut r) => {
                            for message in &mut r.messages {
                                prefix_block(prefix, &mut message.content);
                            }
                            Some(GetPromptResponse::Complete(r))
                        }
                        ServerResult::InputRequiredResult(r) => {
                            Some(GetPromptResponse::InputRequired(r))
                        }
                        _ => None,
                    },
                )
                .await
                .map_err(wire::rpc)
            })
            .await;
        self.audit(&req, target, &result, "get_prompt").await;
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
                let exposed = request.uri.clone();
                let mut request = request;
                let mrtr = Mrtr {
                    state: request.request_state.take(),
                    responses: request.input_responses.take(),
                    what: bind_if_modern(&context, || {
                        serde_json::json!(["resources/read", &exposed])
                    }),
                };
                self.relay(
                    &req,
                    &context,
                    Target::Resource(&exposed),
                    Some(mrtr),
                    |own, meta| {
                        let mut params = request;
                        params.uri = own;
                        params.meta = meta;
                        ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params))
                    },
                    |prefix, result| match result {
                        ServerResult::ReadResourceResult(mut r) => {
                            prefix_contents(prefix, &mut r.contents);
                            Some(ReadResourceResponse::Complete(r))
                        }
                        ServerResult::InputRequiredResult(r) => {
                            Some(ReadResourceResponse::InputRequired(r))
                        }
                        _ => None,
                    },
                )
                .await
                .map_err(wire::rpc)
            })
            .await;
        self.audit(&req, target, &result, "read_resource").await;
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
                let named = match &request.r#ref {
                    Reference::Prompt(p) => p.name.clone(),
                    Reference::Resource(r) => r.uri.clone(),
                    _ => {
                        return Err(ErrorData::invalid_params(
                            "unsupported completion reference",
                            None,
                        ));
                    }
                };
                let target = match &request.r#ref {
                    Reference::Prompt(_) => Target::Prompt(&named),
                    _ => Target::Resource(&named),
                };
                self.relay(
                    &req,
                    &context,
                    target,
                    None,
                    |own, meta| {
                        let mut params = request;
                        match &mut params.r#ref {
                            Reference::Prompt(p) => p.name = own,
                            Reference::Resource(r) => r.uri = own,
                            _ => {}
                        }
                        params.meta = meta;
                        ClientRequest::CompleteRequest(CompleteRequest::new(params))
                    },
                    |_, result| match result {
                        ServerResult::CompleteResult(r) => Some(r),
                        _ => None,
                    },
                )
                .await
                .map_err(wire::rpc)
            })
            .await;
        self.audit(&req, target, &result, "complete").await;
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
            // Shared backends follow the most verbose level of the sessions
            // that may see them; this session's own connections its own level.
            self.gateway.apply_log_floor().await;
            let private = self.gateway.private.of_session(self.id);
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
        req.run(self.add_subscription(&req, &request.uri, &context.peer))
            .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let req = self.req("resources/unsubscribe", &context);
        req.run(self.remove_subscription(&req, &request.uri)).await
    }

    /// rmcp takes a request for a method it types but whose params do not
    /// fit for a custom request: that gets -32602 naming the mismatch, any
    /// other method -32601 (as rmcp's default).
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let misfit = super::params::misfit(&request.method, request.params.as_ref());
        Err(misfit
            .unwrap_or_else(|| ErrorData::new(ErrorCode::METHOD_NOT_FOUND, request.method, None)))
    }

    async fn on_roots_list_changed(&self, _: NotificationContext<RoleServer>) {
        let snapshot = self.gateway.snapshot_full();
        let private = self.gateway.private.of_session(self.id);
        // Only backends this client may see: they ask for roots next.
        let may_see = |b: &&Arc<Backend>| self.session.get().is_some_and(|s| s.may_see(b.name()));
        let shared = snapshot
            .backends
            .values()
            .filter(|b| b.config.isolation == Isolation::Shared)
            .filter(may_see);
        futures::future::join_all(shared.chain(private.iter()).map(|b| b.roots_changed())).await;
    }
}

/// What binds a parked call to its request; only a 2026-07-28 client's
/// request can be parked, so others skip building it (`Null`).
fn bind_if_modern(
    context: &RequestContext<RoleServer>,
    what: impl FnOnce() -> serde_json::Value,
) -> serde_json::Value {
    if super::modern::is_modern(context) {
        what()
    } else {
        serde_json::Value::Null
    }
}
