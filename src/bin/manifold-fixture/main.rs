//! `manifold-fixture`: a small, fast MCP server of our own, for tests and
//! benchmarks. It speaks stdio, streamable HTTP or legacy SSE, and has tools
//! that succeed, fail, hang, crash or answer with a JSON-RPC error on demand,
//! and tools that make it send what a backend may send unprompted: progress,
//! sampling, elicitation and roots requests, log messages, list changes and
//! resource updates.

#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol
//!
//! ```text
//! manifold-fixture --transport stdio
//! manifold-fixture --transport http --listen 127.0.0.1:0   # prints "listening http://ADDR/mcp"
//! manifold-fixture --transport sse  --listen 127.0.0.1:0   # prints "listening http://ADDR/sse"
//! ```

mod eras;
mod sse_server;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Clone)]
struct Args {
    #[arg(long, default_value = "stdio")]
    transport: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Shown in instructions and resource text.
    #[arg(long, default_value = "fixture")]
    name: String,
    /// Add this many extra tools `tool_0` … (to exercise pagination).
    #[arg(long, default_value_t = 0)]
    extra_tools: usize,
    /// Serve `tools/list` in pages of this size (0: one page).
    #[arg(long, default_value_t = 0)]
    page_size: usize,
    /// Add a tool whose name is 70 characters long.
    #[arg(long)]
    long_tool: bool,
    /// Add `env` (prints this process's environment) and `stderr` (writes a
    /// long line without newline and invalid UTF-8 to stderr).
    #[arg(long)]
    process_tools: bool,
    /// Add `append`, which appends a line to a file: a side effect that
    /// tests count outside the gateway (jobs run exactly once).
    #[arg(long)]
    append_tool: bool,
    /// Add tool `meta`, which returns the request's `_meta` (audit tests).
    #[arg(long)]
    meta_tool: bool,
    /// Add the tools and resources of newer protocol revisions (`eras.rs`)
    /// and a title, icons and website in the server info.
    #[arg(long)]
    eras: bool,
}

#[derive(Clone)]
struct Fixture {
    args: Arc<Args>,
    /// Shared by every session of this process; `add_tool` grows it.
    tools: Arc<Mutex<Vec<Tool>>>,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Calls of `wait_cancel` that ended because the client cancelled.
    cancelled: AtomicU64,
    /// URIs clients subscribed to.
    subscriptions: Mutex<BTreeSet<String>>,
    /// The last `logging/setLevel`.
    log_level: Mutex<Option<String>>,
    /// The answer to the last `roots_later` ask (root URIs, or the error).
    last_roots: Mutex<Option<Value>>,
    /// How many `roots_later` asks were answered.
    roots_answers: AtomicU64,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn text_arg<'a>(args: &'a Option<JsonObject>, key: &str) -> Option<&'a str> {
    args.as_ref()?.get(key)?.as_str()
}

impl Fixture {
    fn new(args: Args) -> Self {
        let message = schema(
            json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
        );
        let empty = schema(json!({"type": "object", "properties": {}}));
        let obj = schema(json!({"type": "object"}));
        let mut tools = vec![
            Tool::new("echo", "Returns its `message` argument", message),
            Tool::new(
                "add",
                "Adds two numbers",
                schema(
                    json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
                ),
            ),
            Tool::new("fail", "Always returns a tool error", empty.clone()),
            Tool::new(
                "rpc_error",
                "Answers with JSON-RPC error -32042",
                empty.clone(),
            ),
            Tool::new(
                "sleep",
                "Sleeps `ms` milliseconds",
                schema(json!({"type": "object", "properties": {"ms": {"type": "integer"}}})),
            ),
            Tool::new("hang", "Never answers", empty.clone()),
            Tool::new("crash", "Exits the process mid-call", empty.clone()),
            Tool::new(
                "resource_link",
                "Returns a link to fixture://info",
                empty.clone(),
            ),
            Tool::new(
                "progress",
                "Sends `steps` progress notifications, `delay_ms` apart",
                obj.clone(),
            ),
            Tool::new(
                "sample",
                "Asks the client to sample (after `delay_ms`); returns its text",
                obj.clone(),
            ),
            Tool::new(
                "elicit",
                "Asks the client for input; returns its answer",
                obj.clone(),
            ),
            Tool::new(
                "roots",
                "Asks the client for its roots; returns their URIs",
                obj.clone(),
            ),
            Tool::new(
                "log",
                "Sends a log message at `level` (after the call, `later_ms` later, when given)",
                obj.clone(),
            ),
            Tool::new(
                "roots_later",
                "Asks the client for its roots `count` times, `later_ms` after answering, then logs \"roots asked\"; `stats` shows the answer",
                obj.clone(),
            ),
            Tool::new(
                "add_tool",
                "Adds tool `name` (at epoch ms `at_ms`) and announces the change",
                obj.clone(),
            ),
            Tool::new(
                "announce",
                "Announces a tool list change without changing anything",
                empty.clone(),
            ),
            Tool::new(
                "flood",
                "Sends `count` log messages, then adds tool `flooded` and announces it",
                obj.clone(),
            ),
            Tool::new("touch", "Sends resources/updated for `uri`", obj.clone()),
            Tool::new(
                "wait_cancel",
                "Waits until the client cancels the call",
                empty.clone(),
            ),
            Tool::new(
                "stats",
                "Returns pid, cancellations, subscriptions and log level",
                empty.clone(),
            ),
        ];
        for i in 0..args.extra_tools {
            tools.push(Tool::new(
                format!("tool_{i}"),
                "An extra tool",
                empty.clone(),
            ));
        }
        if args.process_tools {
            tools.push(Tool::new(
                "env",
                "Returns this process's environment, one NAME=VALUE a line",
                empty.clone(),
            ));
            tools.push(Tool::new(
                "stderr",
                "Writes `bytes` bytes without a newline, then invalid UTF-8 and a newline, to stderr",
                obj.clone(),
            ));
        }
        if args.append_tool {
            tools.push(Tool::new(
                "append",
                "Waits `ms` milliseconds, then appends `line` and a newline to the file `path`",
                obj.clone(),
            ));
        }
        if args.meta_tool {
            tools.push(Tool::new(
                "meta",
                "Returns the request's `_meta` as JSON",
                empty.clone(),
            ));
        }
        if args.eras {
            tools.extend(eras::tools());
        }
        if args.long_tool {
            tools.push(Tool::new(
                "l".repeat(70),
                "A tool with a very long name",
                empty,
            ));
        }
        Self {
            args: Arc::new(args),
            tools: Arc::new(Mutex::new(tools)),
            state: Arc::new(State::default()),
        }
    }
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_completions()
                .build(),
        )
        .with_server_info(if self.args.eras {
            eras::implementation(&self.args.name)
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
        let text = |s: String| Ok(CallToolResult::success(vec![ContentBlock::text(s)]).into());
        let num = |k: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(k))
                .and_then(Value::as_u64)
        };
        let failed = |e: rmcp::service::ServiceError| {
            Ok(
                CallToolResult::error(vec![ContentBlock::text(format!("request failed: {e}"))])
                    .into(),
            )
        };
        if self.args.eras
            && let Some(answer) = eras::call(&request, &ctx).await
        {
            return answer;
        }
        match request.name.as_ref() {
            "meta" => text(serde_json::to_string(&ctx.meta).unwrap_or_default()),
            "echo" => match text_arg(&request.arguments, "message") {
                Some(m) => text(m.to_string()),
                None => Err(ErrorData::invalid_params("missing `message`", None)),
            },
            "add" => {
                let get = |k: &str| {
                    request
                        .arguments
                        .as_ref()
                        .and_then(|a| a.get(k))
                        .and_then(Value::as_f64)
                };
                match (get("a"), get("b")) {
                    (Some(a), Some(b)) => text(format!("{}", a + b)),
                    _ => Err(ErrorData::invalid_params(
                        "`a` and `b` must be numbers",
                        None,
                    )),
                }
            }
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text("fixture failure")]).into()),
            "rpc_error" => Err(ErrorData::new(
                ErrorCode(-32042),
                "fixture rpc error",
                Some(json!({"detail": 42})),
            )),
            "sleep" => {
                let ms = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("ms"))
                    .and_then(Value::as_u64)
                    .unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(format!("slept {ms} ms"))
            }
            "hang" => std::future::pending().await,
            "env" => {
                let mut vars: Vec<String> = std::env::vars_os()
                    .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                    .collect();
                vars.sort();
                text(vars.join("\n"))
            }
            "stderr" => {
                let bytes = num("bytes").unwrap_or(0);
                // Blocking writes: the gateway must drain the pipe for them to finish.
                let written = tokio::task::spawn_blocking(move || {
                    let mut err = std::io::stderr().lock();
                    let chunk = vec![b'x'; 1 << 20];
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        err.write_all(&chunk[..n])?;
                        left -= n as u64;
                    }
                    err.write_all(b"\xff\xfe not UTF-8 \xc3\n")?;
                    err.flush()
                })
                .await;
                match written {
                    Ok(Ok(())) => text(format!("wrote {bytes} bytes to stderr")),
                    Ok(Err(e)) => text(format!("stderr write failed: {e}")),
                    Err(e) => text(format!("stderr writer failed: {e}")),
                }
            }
            "append" if self.args.append_tool => {
                tokio::time::sleep(Duration::from_millis(num("ms").unwrap_or(0))).await;
                let (Some(path), Some(line)) = (text_arg(&request.arguments, "path"), text_arg(&request.arguments, "line")) else {
                    return Err(ErrorData::invalid_params("`path` and `line` are required", None));
                };
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
                match written {
                    Ok(()) => text(format!("appended to {path}")),
                    Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(format!("cannot append to {path}: {e}"))]).into()),
                }
            }
            "crash" => std::process::exit(3),
            "resource_link" => Ok(CallToolResult::success(vec![ContentBlock::ResourceLink(
                Resource::new("fixture://info", "info"),
            )])
            .into()),
            "progress" => {
                let steps = num("steps").unwrap_or(3);
                let delay = Duration::from_millis(num("delay_ms").unwrap_or(10));
                if let Some(token) = ctx.meta.get_progress_token() {
                    for i in 1..=steps {
                        let p = ProgressNotificationParam::new(token.clone(), i as f64).with_total(steps as f64);
                        let _ = ctx.peer.notify_progress(p).await;
                        tokio::time::sleep(delay).await;
                    }
                }
                text(format!("{steps} steps done"))
            }
            "sample" => {
                tokio::time::sleep(Duration::from_millis(num("delay_ms").unwrap_or(0))).await;
                let prompt = text_arg(&request.arguments, "prompt").unwrap_or("hello");
                let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
                match ctx.peer.create_message(params).await {
                    Ok(r) => text(serde_json::to_value(&r).ok().and_then(|v| v["content"]["text"].as_str().map(String::from)).unwrap_or_default()),
                    Err(e) => failed(e),
                }
            }
            "elicit" => {
                let message = text_arg(&request.arguments, "message").unwrap_or("Who are you?");
                let params: ElicitRequestParams = serde_json::from_value(json!({
                    "mode": "form",
                    "message": message,
                    "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
                }))
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                match ctx.peer.send_request(ServerRequest::ElicitRequest(ElicitRequest::new(params))).await {
                    Ok(ClientResult::ElicitResult(r)) => text(serde_json::to_string(&r).unwrap_or_default()),
                    Ok(_) => Err(ErrorData::internal_error("unexpected elicitation result", None)),
                    Err(e) => failed(e),
                }
            }
            "roots" => match ctx.peer.list_roots().await {
                Ok(r) => text(r.roots.iter().map(|r| r.uri.clone()).collect::<Vec<_>>().join(",")),
                Err(e) => failed(e),
            },
            "log" => {
                let level: LoggingLevel = serde_json::from_value(json!(text_arg(&request.arguments, "level").unwrap_or("info")))
                    .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
                let message = text_arg(&request.arguments, "message").unwrap_or("hello").to_string();
                let param = LoggingMessageNotificationParam::new(level, json!(message)).with_logger("fixture");
                match num("later_ms") {
                    // Outside any call: sent after the answer.
                    Some(ms) => {
                        let peer = ctx.peer.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            let _ = peer.notify_logging_message(param).await;
                        });
                    }
                    None => {
                        let _ = ctx.peer.notify_logging_message(param).await;
                    }
                }
                text("logged".into())
            }
            "roots_later" => {
                let (peer, state) = (ctx.peer.clone(), self.state.clone());
                let (ms, count) = (num("later_ms").unwrap_or(50), num("count").unwrap_or(1));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    for _ in 0..count {
                        let answer = match peer.list_roots().await {
                            Ok(r) => json!(r.roots.iter().map(|r| r.uri.clone()).collect::<Vec<_>>()),
                            Err(e) => json!(e.to_string()),
                        };
                        *state.last_roots.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
                        state.roots_answers.fetch_add(1, Ordering::SeqCst);
                    }
                    let done = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!("roots asked")).with_logger("fixture");
                    let _ = peer.notify_logging_message(done).await;
                });
                text("asking".into())
            }
            "add_tool" => {
                if let Some(at) = num("at_ms") {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await;
                }
                let name = text_arg(&request.arguments, "name").unwrap_or("added").to_string();
                let empty = schema(json!({"type": "object", "properties": {}}));
                self.tools.lock().unwrap_or_else(|p| p.into_inner()).push(Tool::new(name.clone(), "Added at run time", empty));
                let _ = ctx.peer.notify_tool_list_changed().await;
                text(format!("added {name}"))
            }
            "flood" => {
                let count = num("count").unwrap_or(1000);
                for i in 0..count {
                    let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(format!("flood {i}")));
                    let _ = ctx.peer.notify_logging_message(param).await;
                }
                let empty = schema(json!({"type": "object", "properties": {}}));
                self.tools.lock().unwrap_or_else(|p| p.into_inner()).push(Tool::new("flooded", "Added after a flood", empty));
                let _ = ctx.peer.notify_tool_list_changed().await;
                text(format!("sent {count}"))
            }
            "announce" => {
                for _ in 0..num("count").unwrap_or(1) {
                    let _ = ctx.peer.notify_tool_list_changed().await;
                }
                text("announced".into())
            }
            "touch" => {
                let uri = text_arg(&request.arguments, "uri").unwrap_or("fixture://info").to_string();
                let _ = ctx.peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await;
                text("touched".into())
            }
            "wait_cancel" => {
                ctx.ct.cancelled().await;
                self.state.cancelled.fetch_add(1, Ordering::SeqCst);
                text("cancelled".into())
            }
            "stats" => text(
                json!({
                    "pid": std::process::id(),
                    "cancelled": self.state.cancelled.load(Ordering::SeqCst),
                    "subscriptions": *self.state.subscriptions.lock().unwrap_or_else(|p| p.into_inner()),
                    "log_level": *self.state.log_level.lock().unwrap_or_else(|p| p.into_inner()),
                    "last_roots": *self.state.last_roots.lock().unwrap_or_else(|p| p.into_inner()),
                    "roots_answers": self.state.roots_answers.load(Ordering::SeqCst),
                })
                .to_string(),
            ),
            name if self.tools.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|t| t.name == name) => text(format!("called {name}")),
            name => Err(ErrorData::invalid_params(format!("no tool `{name}`"), None)),
        }
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
            items.extend(eras::resources());
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
            && let Some(app) = eras::read(&request.uri)
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

fn announce(url: String) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening {url}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let fixture = Fixture::new(args.clone());
    match args.transport.as_str() {
        "stdio" => {
            let running = fixture.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        "http" => {
            use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
            use rmcp::transport::streamable_http_server::{
                StreamableHttpServerConfig, StreamableHttpService,
            };
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            let addr = listener.local_addr()?;
            let service = StreamableHttpService::new(
                move || Ok(fixture.clone()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            );
            announce(format!("http://{addr}/mcp"));
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, std::convert::Infallible>(service.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        }
        "sse" => {
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            let addr = listener.local_addr()?;
            announce(format!("http://{addr}/sse"));
            sse_server::serve(listener, move || fixture.clone(), CancellationToken::new()).await?;
        }
        other => return Err(format!("unknown transport `{other}` (stdio, http, sse)").into()),
    }
    Ok(())
}
