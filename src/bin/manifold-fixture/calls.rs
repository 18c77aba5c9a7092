//! `tools/call`: what each fixture tool does. The list clients see is in `tools.rs`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};

use crate::server::{Fixture, schema, text_arg};

type Answer = Result<CallToolResponse, ErrorData>;
type Params = Option<JsonObject>;
type Ctx = RequestContext<RoleServer>;

fn text(s: String) -> Answer {
    Ok(CallToolResult::success(vec![ContentBlock::text(s)]).into())
}

fn num(args: &Params, key: &str) -> Option<u64> {
    args.as_ref()?.get(key)?.as_u64()
}

/// Counts a call in `running` while it lasts (also when it is cancelled).
struct Running<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Running<'a> {
    fn start(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why the last request to the client failed, for `stats`: a call whose
/// caller is gone (a parked call that expired) leaves its reason here.
static LAST_FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A request to the client failed: a tool error that says why.
fn failed(e: rmcp::service::ServiceError) -> Answer {
    let why = format!("request failed: {e}");
    *LAST_FAILURE.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
    Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into())
}

impl Fixture {
    pub(crate) async fn call(&self, request: CallToolRequestParams, ctx: Ctx) -> Answer {
        let _running = (request.name != "stats").then(|| Running::start(&self.state.running));
        let args = &request.arguments;
        if self.args.eras
            && let Some(answer) = super::eras::call(&request, &ctx).await
        {
            return answer;
        }
        match request.name.as_ref() {
            "meta" => text(serde_json::to_string(&ctx.meta).unwrap_or_default()),
            "echo" => match text_arg(args, "message") {
                Some(m) => text(m.to_string()),
                None => Err(ErrorData::invalid_params("missing `message`", None)),
            },
            "add" => add(args),
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text("fixture failure")]).into()),
            "rpc_error" => Err(ErrorData::new(
                ErrorCode(-32042),
                "fixture rpc error",
                Some(json!({"detail": 42})),
            )),
            "sleep" => {
                let ms = num(args, "ms").unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(format!("slept {ms} ms"))
            }
            "hang" => std::future::pending().await,
            "env" => env(),
            "stderr" => stderr(num(args, "bytes").unwrap_or(0)).await,
            "append" if self.args.append_tool => append(args).await,
            "crash" => std::process::exit(3),
            "resource_link" => Ok(CallToolResult::success(vec![ContentBlock::ResourceLink(
                Resource::new("fixture://info", "info"),
            )])
            .into()),
            "progress" => progress(args, &ctx).await,
            "sample" => sample(args, &ctx).await,
            "elicit" => elicit(args, &ctx).await,
            "roots" => match ctx.peer.list_roots().await {
                Ok(r) => text(
                    r.roots
                        .iter()
                        .map(|r| r.uri.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Err(e) => failed(e),
            },
            "log" => log(args, &ctx).await,
            "roots_later" => self.roots_later(args, &ctx),
            "add_tool" => self.add_tool(args, &ctx).await,
            "flood" => self.flood(num(args, "count").unwrap_or(1000), &ctx).await,
            "announce" => {
                for _ in 0..num(args, "count").unwrap_or(1) {
                    let _ = ctx.peer.notify_tool_list_changed().await;
                }
                text("announced".into())
            }
            "touch" => {
                let uri = text_arg(args, "uri")
                    .unwrap_or("fixture://info")
                    .to_string();
                let param = ResourceUpdatedNotificationParam::new(uri);
                let _ = ctx.peer.notify_resource_updated(param.clone()).await;
                // And on listen streams (2026-07-28) that asked for this URI.
                self.to_listeners(ServerNotification::ResourceUpdatedNotification(
                    ResourceUpdatedNotification::new(param),
                ))
                .await;
                text("touched".into())
            }
            "wait_cancel" => {
                ctx.ct.cancelled().await;
                self.state.cancelled.fetch_add(1, Ordering::SeqCst);
                text("cancelled".into())
            }
            "stats" => self.stats(),
            name if self.has_tool(name) => text(format!("called {name}")),
            name => Err(ErrorData::invalid_params(format!("no tool `{name}`"), None)),
        }
    }

    fn has_tool(&self, name: &str) -> bool {
        let tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        tools.iter().any(|t| t.name == name)
    }

    fn push_tool(&self, name: String, description: &'static str) {
        let empty = schema(json!({"type": "object", "properties": {}}));
        let mut tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        tools.push(Tool::new(name, description, empty));
    }

    /// Asks the client for its roots `count` times, `later_ms` after answering,
    /// then logs "roots asked"; `stats` shows the last answer.
    fn roots_later(&self, args: &Params, ctx: &Ctx) -> Answer {
        let (peer, state) = (ctx.peer.clone(), self.state.clone());
        let (ms, count) = (
            num(args, "later_ms").unwrap_or(50),
            num(args, "count").unwrap_or(1),
        );
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
            let done =
                LoggingMessageNotificationParam::new(LoggingLevel::Info, json!("roots asked"))
                    .with_logger("fixture");
            let _ = peer.notify_logging_message(done).await;
        });
        text("asking".into())
    }

    async fn add_tool(&self, args: &Params, ctx: &Ctx) -> Answer {
        if let Some(at) = num(args, "at_ms") {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await;
        }
        let name = text_arg(args, "name").unwrap_or("added").to_string();
        self.push_tool(name.clone(), "Added at run time");
        // A 2026-07-28 server announces changes only on listen streams.
        if !self.args.modern_only {
            let _ = ctx.peer.notify_tool_list_changed().await;
        }
        self.to_listeners(ServerNotification::ToolListChangedNotification(
            Default::default(),
        ))
        .await;
        text(format!("added {name}"))
    }

    /// Sends `n` on every open listen stream; rmcp's sink drops it for the
    /// streams whose filter did not ask for it.
    async fn to_listeners(&self, n: ServerNotification) {
        let listeners = self
            .state
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for sink in listeners {
            let _ = sink.send(n.clone()).await;
        }
    }

    async fn flood(&self, count: u64, ctx: &Ctx) -> Answer {
        for i in 0..count {
            let param = LoggingMessageNotificationParam::new(
                LoggingLevel::Info,
                json!(format!("flood {i}")),
            );
            let _ = ctx.peer.notify_logging_message(param).await;
        }
        self.push_tool("flooded".into(), "Added after a flood");
        let _ = ctx.peer.notify_tool_list_changed().await;
        text(format!("sent {count}"))
    }

    fn stats(&self) -> Answer {
        let state = &self.state;
        text(
            json!({
                "pid": std::process::id(),
                "cancelled": state.cancelled.load(Ordering::SeqCst),
                "subscriptions": *state.subscriptions.lock().unwrap_or_else(|p| p.into_inner()),
                "log_level": *state.log_level.lock().unwrap_or_else(|p| p.into_inner()),
                "last_roots": *state.last_roots.lock().unwrap_or_else(|p| p.into_inner()),
                "roots_answers": state.roots_answers.load(Ordering::SeqCst),
                "running": state.running.load(Ordering::SeqCst),
                "last_failure": *LAST_FAILURE.lock().unwrap_or_else(|p| p.into_inner()),
            })
            .to_string(),
        )
    }
}

fn add(args: &Params) -> Answer {
    let get = |k: &str| args.as_ref().and_then(|a| a.get(k)).and_then(Value::as_f64);
    match (get("a"), get("b")) {
        (Some(a), Some(b)) => text(format!("{}", a + b)),
        _ => Err(ErrorData::invalid_params(
            "`a` and `b` must be numbers",
            None,
        )),
    }
}

fn env() -> Answer {
    let mut vars: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    vars.sort();
    text(vars.join("\n"))
}

/// Writes `bytes` bytes without a newline, then invalid UTF-8, to stderr.
async fn stderr(bytes: u64) -> Answer {
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

async fn append(args: &Params) -> Answer {
    tokio::time::sleep(Duration::from_millis(num(args, "ms").unwrap_or(0))).await;
    let (Some(path), Some(line)) = (text_arg(args, "path"), text_arg(args, "line")) else {
        return Err(ErrorData::invalid_params(
            "`path` and `line` are required",
            None,
        ));
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    match written {
        Ok(()) => text(format!("appended to {path}")),
        Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "cannot append to {path}: {e}"
        ))])
        .into()),
    }
}

async fn progress(args: &Params, ctx: &Ctx) -> Answer {
    let steps = num(args, "steps").unwrap_or(3);
    let delay = Duration::from_millis(num(args, "delay_ms").unwrap_or(10));
    if let Some(token) = ctx.meta.get_progress_token() {
        for i in 1..=steps {
            let p =
                ProgressNotificationParam::new(token.clone(), i as f64).with_total(steps as f64);
            let _ = ctx.peer.notify_progress(p).await;
            tokio::time::sleep(delay).await;
        }
    }
    text(format!("{steps} steps done"))
}

/// Asks the client to sample `rounds` times (1 by default), one after the
/// other; returns the answers' texts joined by `|`.
async fn sample(args: &Params, ctx: &Ctx) -> Answer {
    tokio::time::sleep(Duration::from_millis(num(args, "delay_ms").unwrap_or(0))).await;
    let prompt = text_arg(args, "prompt").unwrap_or("hello");
    let mut texts = Vec::new();
    for _ in 0..num(args, "rounds").unwrap_or(1) {
        let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
        match ctx.peer.create_message(params).await {
            Ok(r) => texts.push(
                serde_json::to_value(&r)
                    .ok()
                    .and_then(|v| v["content"]["text"].as_str().map(String::from))
                    .unwrap_or_default(),
            ),
            Err(e) => return failed(e),
        }
    }
    text(texts.join("|"))
}

async fn elicit(args: &Params, ctx: &Ctx) -> Answer {
    let message = text_arg(args, "message").unwrap_or("Who are you?");
    let params: ElicitRequestParams = serde_json::from_value(json!({
        "mode": "form",
        "message": message,
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
    }))
    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    match ctx.peer.send_request(request).await {
        Ok(ClientResult::ElicitResult(r)) => text(serde_json::to_string(&r).unwrap_or_default()),
        Ok(_) => Err(ErrorData::internal_error(
            "unexpected elicitation result",
            None,
        )),
        Err(e) => failed(e),
    }
}

/// A log message at `level`, now or (`later_ms`) after the call has answered.
async fn log(args: &Params, ctx: &Ctx) -> Answer {
    let level: LoggingLevel =
        serde_json::from_value(json!(text_arg(args, "level").unwrap_or("info")))
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
    let message = text_arg(args, "message").unwrap_or("hello").to_string();
    let param = LoggingMessageNotificationParam::new(level, json!(message)).with_logger("fixture");
    match num(args, "later_ms") {
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
