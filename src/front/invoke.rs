//! Calling a tool on behalf of a client without its MCP session: the
//! [`ToolInvoker`] behind jobs and `POST /api/v1/execute`.
//!
//! It takes the same steps as `FrontSession::call_tool_inner`: route the
//! exposed name, check the client's allow-list, add the `_meta` identity
//! keys for built-in sets, forward through the backend (its timeout, its
//! `max_concurrent`), and prefix resource links in the result. Jobs also
//! take a slot of the client's `[limits]` (waiting for one rather than
//! failing). Progress and server→client requests need a client peer: they
//! go to a `Loopback`, an in-process MCP client whose progress
//! notifications are handed to the job that asked, by progress token, and
//! which declines sampling, elicitation and roots (a job has nobody to ask).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use tokio_util::sync::CancellationToken;

use super::Front;
use super::policy::{Client, LimitError, Policy};
use crate::backend::{CallError, Origin, Sink};
use crate::builtin::{AUTH_META_KEY, CLIENT_META_KEY, SESSION_META_KEY};
use crate::config::{Isolation, TransportConfig};
use crate::gateway::Gateway;
use crate::jobs::{Caller, InvokeError, Progress, ProgressSink, ToolInvoker};

/// Progress sinks by the progress token we gave each call.
type Sinks = Arc<Mutex<HashMap<String, ProgressSink>>>;

/// The client half of the loopback: hands progress to the job's sink.
#[derive(Clone)]
struct Collector {
    sinks: Sinks,
}

impl ClientHandler for Collector {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let key = token_key(&params.progress_token);
        let sink = self
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(sink) = sink {
            sink(Progress {
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
    }
}

/// The server half: does nothing itself; its peer is what backends relay to.
struct Silent;
impl ServerHandler for Silent {}

fn token_key(t: &ProgressToken) -> String {
    match &t.0 {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.to_string(),
    }
}

/// An in-process MCP connection standing in for a client session.
struct Loopback {
    peer: Peer<RoleServer>,
    sinks: Sinks,
    /// Keep both ends of the pipe running as long as the invoker lives.
    _server: RunningService<RoleServer, Silent>,
    _client: RunningService<RoleClient, Collector>,
}

impl Loopback {
    async fn open() -> Result<Self, String> {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let sinks: Sinks = Arc::default();
        let collector = Collector {
            sinks: sinks.clone(),
        };
        let server = tokio::spawn(async move { Silent.serve(a).await });
        let client = collector
            .serve(b)
            .await
            .map_err(|e| format!("loopback client: {e}"))?;
        let server = server
            .await
            .map_err(|e| format!("loopback server: {e}"))?
            .map_err(|e| format!("loopback server: {e}"))?;
        Ok(Self {
            peer: server.peer().clone(),
            sinks,
            _server: server,
            _client: client,
        })
    }
}

/// Calls tools through the gateway's router as a given client.
pub struct GatewayInvoker {
    gateway: Weak<Gateway>,
    /// The clients' auth and limits in force (they follow reloads).
    policy: Arc<Policy>,
    loopback: Loopback,
    next_token: AtomicU64,
    /// Itself, for the `'static` futures of [`ToolInvoker::call`].
    me: Weak<GatewayInvoker>,
}

/// Removes a call's progress sink when the call ends.
struct SinkGuard<'a>(&'a Sinks, String);
impl Drop for SinkGuard<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

impl GatewayInvoker {
    pub async fn new(gateway: &Arc<Gateway>, policy: Arc<Policy>) -> Result<Arc<Self>, String> {
        let loopback = Loopback::open().await?;
        Ok(Arc::new_cyclic(|me| Self {
            gateway: Arc::downgrade(gateway),
            policy,
            loopback,
            next_token: AtomicU64::new(1),
            me: me.clone(),
        }))
    }

    fn self_arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    fn gateway(&self) -> Result<Arc<Gateway>, InvokeError> {
        self.gateway
            .upgrade()
            .ok_or_else(|| InvokeError::Unavailable("the gateway is shutting down".into()))
    }

    /// The caller's client (with its allow-lists), when auth is on.
    fn client(&self, caller: &Caller) -> Result<Option<Arc<Client>>, InvokeError> {
        let auth = self.policy.auth();
        if !auth.enabled() {
            return Ok(None);
        }
        let Some(id) = &caller.auth else {
            return Err(InvokeError::Forbidden(
                "this gateway requires auth, and the request has no client id".into(),
            ));
        };
        auth.client(id).map(Some).ok_or_else(|| {
            InvokeError::Forbidden(format!("client `{id}` is no longer configured in [auth]"))
        })
    }

    /// Waits for a slot of the client's `[limits]`, as long as `cancel` allows.
    async fn admit(
        &self,
        caller: &Caller,
        cancel: &CancellationToken,
    ) -> Result<super::policy::Admitted, InvokeError> {
        // Without auth a job has no address: its limits are counted under one name.
        let key = caller.auth.clone().unwrap_or_else(|| "jobs".into());
        loop {
            let wait = match self.policy.limits().admit(&key) {
                Ok(admitted) => return Ok(admitted),
                Err(LimitError::RateLimited { retry_after, .. }) => retry_after,
                Err(_) => Duration::from_millis(20),
            };
            tokio::select! {
                _ = cancel.cancelled() => return Err(InvokeError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One call, as [`ToolInvoker::call`] but without taking a `[limits]`
    /// slot: for requests that the HTTP limits layer admitted already.
    pub fn call_admitted<'a>(
        &'a self,
        caller: &'a Caller,
        tool: &'a str,
        arguments: Option<JsonObject>,
        progress: Option<ProgressSink>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<CallToolResult, InvokeError>> {
        // Boxed: the backend call borrows the loopback peer across awaits,
        // which callers' futures could not be proven `Send` with otherwise.
        async move {
            let started = Instant::now();
            let audited = self.gateway.upgrade().filter(|g| g.audit.enabled());
            let args = audited
                .as_ref()
                .and_then(|_| arguments.clone().map(serde_json::Value::Object));
            let result = self
                .call_now(caller, tool, arguments, progress, cancel)
                .await;
            if let Some(gateway) = audited {
                let backend = gateway
                    .snapshot()
                    .route_tool(tool)
                    .map(|(b, _)| b.name().to_string());
                super::audit::record_invoked(
                    &gateway.audit,
                    super::audit::Invoked {
                        tool,
                        backend: backend.as_deref(),
                        args,
                        caller,
                        started,
                    },
                    &result,
                )
                .await;
            }
            result
        }
        .boxed()
    }

    async fn call_now(
        &self,
        caller: &Caller,
        tool: &str,
        arguments: Option<JsonObject>,
        progress: Option<ProgressSink>,
        cancel: &CancellationToken,
    ) -> Result<CallToolResult, InvokeError> {
        let gateway = self.gateway()?;
        let client = self.client(caller)?;
        let Some((backend, original)) = gateway.snapshot().route_tool(tool) else {
            return Err(InvokeError::UnknownTool { tool: tool.into() });
        };
        if let Some(c) = &client
            && !c.may_call_tool(backend.name(), tool)
        {
            return Err(InvokeError::Forbidden(denied(&c.id, tool)));
        }
        if backend.config.isolation == Isolation::PerSession {
            return Err(InvokeError::NotAllowed(format!(
                "tool `{tool}` belongs to backend `{}`, which runs one connection per client session; it cannot be called without a session",
                backend.name()
            )));
        }
        let mut params = CallToolRequestParams::new(original.to_string());
        params.arguments = arguments;
        if matches!(backend.config.transport, TransportConfig::Builtin { .. }) {
            params.meta = builtin_meta(caller);
        }
        let key = format!("job-{}", self.next_token.fetch_add(1, Ordering::Relaxed));
        let _sink = progress.map(|sink| {
            self.loopback
                .sinks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), sink);
            SinkGuard(&self.loopback.sinks, key.clone())
        });
        let origin = Origin {
            // A session id of its own, so nothing meant for a real session is attributed to it.
            session: gateway.hub.new_session_id(),
            sink: Sink::Peer(&self.loopback.peer),
            progress_token: _sink
                .as_ref()
                .map(|_| ProgressToken(NumberOrString::String(key.clone().into()))),
            cancel,
            cancel_reason: None,
            // A job has no client to ask: a 2026-07-28 backend is told so.
            client_capabilities: Some(ClientCapabilities::default()),
        };
        let started = Instant::now();
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let outcome = backend.request(request, origin).await;
        let (label, result) = call_result(&backend, outcome);
        crate::metrics::request("tools/call", backend.name(), label, started.elapsed());
        result
    }
}

/// What a built-in set learns of the caller: its session and client id.
fn builtin_meta(caller: &Caller) -> Option<RequestMetaObject> {
    let mut meta = RequestMetaObject::new();
    if let Some(session) = caller.session {
        meta.0.0.insert(SESSION_META_KEY.into(), session.into());
    }
    if let Some(id) = &caller.auth {
        meta.0.0.insert(AUTH_META_KEY.into(), id.clone().into());
        meta.0.0.insert(CLIENT_META_KEY.into(), id.clone().into());
    }
    (!meta.0.0.is_empty()).then_some(meta)
}

/// A backend's answer as the invoker's result, with its metrics label.
fn call_result(
    backend: &crate::backend::Backend,
    outcome: Result<ServerResult, CallError>,
) -> (&'static str, Result<CallToolResult, InvokeError>) {
    match outcome {
        Ok(ServerResult::CallToolResult(mut r)) => {
            for block in &mut r.content {
                super::pipeline::prefix_block(&backend.config.prefix, block);
            }
            (
                if r.is_error == Some(true) {
                    "tool_error"
                } else {
                    "ok"
                },
                Ok(r),
            )
        }
        Ok(_) => (
            "error",
            Err(InvokeError::Failed(format!(
                "backend `{}` sent an unexpected response type",
                backend.name()
            ))),
        ),
        Err(CallError::Rpc(e)) => (
            "error",
            Err(InvokeError::Rpc {
                code: e.code.0,
                message: e.message.to_string(),
            }),
        ),
        Err(CallError::Cancelled) => ("error", Err(InvokeError::Cancelled)),
        Err(e @ CallError::Timeout { .. }) => ("timeout", Err(InvokeError::Timeout(e.to_string()))),
        Err(
            e @ (CallError::Unavailable { .. } | CallError::Busy { .. } | CallError::Closed { .. }),
        ) => ("error", Err(InvokeError::Unavailable(e.to_string()))),
        Err(e) => ("error", Err(InvokeError::Failed(e.to_string()))),
    }
}

fn denied(client: &str, tool: &str) -> String {
    format!("client `{client}` is not allowed to use tool `{tool}` (see its allow-list in [auth])")
}

impl ToolInvoker for GatewayInvoker {
    fn resolve(&self, caller: &Caller, tool: &str) -> Result<String, InvokeError> {
        let gateway = self.gateway()?;
        let client = self.client(caller)?;
        let Some((backend, _)) = gateway.snapshot().route_tool(tool) else {
            return Err(InvokeError::UnknownTool { tool: tool.into() });
        };
        if let Some(c) = &client
            && !c.may_call_tool(backend.name(), tool)
        {
            return Err(InvokeError::Forbidden(denied(&c.id, tool)));
        }
        Ok(backend.name().to_string())
    }

    fn call(
        &self,
        caller: Caller,
        tool: String,
        arguments: Option<JsonObject>,
        progress: ProgressSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<CallToolResult, InvokeError>> {
        let this = self.gateway.clone();
        let me = self.self_arc();
        async move {
            let Some(me) = me else {
                return Err(InvokeError::Unavailable(
                    "the gateway is shutting down".into(),
                ));
            };
            if this.upgrade().is_none() {
                return Err(InvokeError::Unavailable(
                    "the gateway is shutting down".into(),
                ));
            }
            let _admitted = me.admit(&caller, &cancel).await?;
            me.call_admitted(&caller, &tool, arguments, Some(progress), &cancel)
                .await
        }
        .boxed()
    }
}

/// Gives the job queue, when `@jobs` is mounted, its way to call tools,
/// once every backend has made its first connect attempt: jobs left queued
/// by a previous run would otherwise start before their tools are known.
pub async fn attach_jobs(front: &Front) {
    let Some(jobs) = front.reloader.jobs() else {
        return;
    };
    let gateway = &front.gateway;
    let invoker = match GatewayInvoker::new(gateway, front.policy.clone()).await {
        Ok(invoker) => invoker,
        Err(e) => {
            tracing::error!(error = %e, "jobs: cannot start the tool invoker; no job will run");
            return;
        }
    };
    let gateway = Arc::downgrade(gateway);
    // Ends after the first connect attempts (bounded by the connect timeout).
    tokio::spawn(async move {
        if let Some(gw) = gateway.upgrade() {
            let limit = gw.server().connect_timeout + Duration::from_millis(500);
            let _ = tokio::time::timeout(limit, gw.settled()).await;
        }
        jobs.attach(invoker);
    });
}
