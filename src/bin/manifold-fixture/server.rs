//! The fixture's MCP server: its state and every request but `tools/call`
//! (`calls.rs`); its tool list is in `tools.rs`.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;

use crate::Args;

#[derive(Clone)]
pub(crate) struct Fixture {
    pub(crate) args: Arc<Args>,
    /// Shared by every session of this process; `add_tool` grows it.
    pub(crate) tools: Arc<Mutex<Vec<Tool>>>,
    pub(crate) state: Arc<State>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Calls of `wait_cancel` that ended because the client cancelled.
    pub(crate) cancelled: AtomicU64,
    /// URIs clients subscribed to.
    pub(crate) subscriptions: Mutex<BTreeSet<String>>,
    /// The last `logging/setLevel`.
    pub(crate) log_level: Mutex<Option<String>>,
    /// The answer to the last `roots_later` ask (root URIs, or the error).
    pub(crate) last_roots: Mutex<Option<Value>>,
    /// Tool calls (other than `stats`) running now: tests wait on it to
    /// know a call has reached the backend.
    pub(crate) running: AtomicU64,
    /// How many `roots_later` asks were answered.
    pub(crate) roots_answers: AtomicU64,
    /// Open `subscriptions/listen` streams (2026-07-28 clients): `add_tool`
    /// announces its change on them too.
    pub(crate) listeners: Mutex<Vec<rmcp::service::SubscriptionSink>>,
}

pub(crate) fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

pub(crate) fn text_arg<'a>(args: &'a Option<JsonObject>, key: &str) -> Option<&'a str> {
    args.as_ref()?.get(key)?.as_str()
}

impl Fixture {
    pub(crate) fn new(args: Args) -> Self {
        Self {
            tools: Arc::new(Mutex::new(crate::tools::list(&args))),
            args: Arc::new(args),
            state: Arc::new(State::default()),
        }
    }
}

impl ServerHandler for Fixture {
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        if self.args.modern_only {
            std::borrow::Cow::Owned(vec![ProtocolVersion::V_2026_07_28])
        } else if self.args.legacy_only {
            std::borrow::Cow::Owned(
                ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .filter(|v| v.has_initialize())
                    .cloned()
                    .collect(),
            )
        } else {
            std::borrow::Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp keeps only what was asked and what `get_info` advertises.
        Some(requested.clone())
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        let sink = context.sink().clone();
        self.state
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink.clone());
        context.cancelled().await;
        self.state
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id() != sink.id());
        Ok(())
    }

    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_completions()
            .build();
        if self.args.eras {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(TASKS_EXTENSION_ID.to_string(), JsonObject::new());
        }
        ServerConfig::new(capabilities)
            .with_server_info(if self.args.eras {
                super::eras::implementation(&self.args.name)
            } else {
                Implementation::new(self.args.name.clone(), "0.1.0")
            })
            .with_instructions(format!("Fixture server {}.", self.args.name))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let size = if self.args.page_size == 0 {
            usize::MAX
        } else {
            self.args.page_size
        };
        let start: usize = request
            .and_then(|r| r.cursor)
            .map(|c| {
                c.parse()
                    .map_err(|_| ErrorData::invalid_params("bad cursor", None))
            })
            .transpose()?
            .unwrap_or(0);
        let tools = self.tools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let end = start.saturating_add(size).min(tools.len());
        let mut result = ListToolsResult::with_all_items(tools[start.min(end)..end].to_vec());
        if end < tools.len() {
            result.next_cursor = Some(end.to_string());
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.call(request, ctx).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        super::tasks::get(&request.task_id)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        super::tasks::update(&request.task_id, &request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        super::tasks::cancel(&request.task_id)
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "greet",
            Some("Greets someone"),
            Some(vec![PromptArgument::new("name").with_required(true)]),
        )]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(
                format!("no prompt `{}`", request.name),
                None,
            ));
        }
        let name = text_arg(&request.arguments, "name").unwrap_or("world");
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Hello, {name}!"),
        )])
        .into())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut items = vec![Resource::new("fixture://info", "info")];
        if self.args.eras {
            items.extend(super::eras::resources());
        }
        Ok(ListResourcesResult::with_all_items(items))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("fixture://items/{id}", "item"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if self.args.eras
            && let Some(app) = super::eras::read(&request.uri)
        {
            return Ok(app.into());
        }
        let text = if request.uri == "fixture://info" {
            format!("fixture {}", self.args.name)
        } else if let Some(id) = request.uri.strip_prefix("fixture://items/") {
            format!("item {id}")
        } else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri)]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request.uri);
        Ok(())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let level = serde_json::to_value(request.level)
            .ok()
            .and_then(|v| v.as_str().map(String::from));
        *self
            .state
            .log_level
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = level;
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values: Vec<String> = match &request.r#ref {
            Reference::Prompt(p) if p.name == "greet" => ["alice", "albert", "bob"]
                .into_iter()
                .filter(|v| v.starts_with(&request.argument.value))
                .map(String::from)
                .collect(),
            Reference::Resource(r) if r.uri == "fixture://items/{id}" => {
                vec![format!("{}1", request.argument.value)]
            }
            _ => vec![],
        };
        Ok(CompleteResult::new(
            CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?,
        ))
    }
}
