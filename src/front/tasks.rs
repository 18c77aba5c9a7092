//! Tool calls served as tasks: the `io.modelcontextprotocol/tasks`
//! extension (SEP-2663), backed by the job queue.
//!
//! A backend with `tasks = "optional"` or `"required"` has its tool calls
//! run as jobs for requests that declare the extension: the answer is a
//! `CreateTaskResult` whose `taskId` is the job's id, given once the job is
//! stored (so a `tasks/get` for it resolves, on any instance sharing the
//! job store). `tasks/get` reads the job, `tasks/cancel` stops it,
//! `tasks/update` is acknowledged (a job never waits for client input).
//! Tasks live in the caller's job namespace, so another client's task is
//! "unknown", and `queue list_jobs` shows them too. See ADR 0016.
//!
//! A backend connected at 2026-07-28 that advertises the extension makes
//! tasks of its own for requests whose client declared it: the gateway
//! names them `<backend>:<its id>` and routes `tasks/*` for such an id to
//! that backend (for a client allowed to use it).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};

use super::pipeline::Target;
use super::request::Req;
use super::session::FrontSession;
use crate::backend::Backend;
use crate::config::TaskSupport;
use crate::jobs::{Caller, Job, JobError, Jobs, State};

/// How often a client is asked to poll `tasks/get`.
const POLL_INTERVAL_MS: u64 = 500;
/// Task ids are job ids with this prefix, so `list_jobs` shows which jobs are tasks.
const TASK_PREFIX: &str = "task-";

impl FrontSession {
    /// Adds the tasks extension to `capabilities` when the gateway offers it:
    /// it serves calls as tasks, or relays a backend's.
    pub(super) fn advertise_tasks(&self, capabilities: &mut ServerCapabilities) {
        let snapshot = self.gateway.snapshot();
        if snapshot.serves_tasks || snapshot.backends.values().any(|b| b.relays_tasks()) {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(TASKS_EXTENSION_ID.to_string(), JsonObject::new());
        }
    }

    /// `Some` when this call is served as a task (or refused because it must
    /// be one); `None` when it is forwarded as usual.
    pub(super) async fn call_as_task(
        &self,
        req: &Req,
        context: &RequestContext<RoleServer>,
        request: &CallToolRequestParams,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        // A retry of an InputRequired round belongs to the call that asked.
        if request.request_state.is_some() || request.input_responses.is_some() {
            return None;
        }
        let snapshot = self.gateway.snapshot();
        if !snapshot.serves_tasks {
            return None;
        }
        let (backend, _) = snapshot.route_tool(&request.name)?;
        let declared = context
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        match (backend.config.tasks, declared) {
            (TaskSupport::Forbidden, _) | (TaskSupport::Optional, false) => return None,
            (TaskSupport::Required, false) => {
                return Some(Err(ErrorData::missing_required_client_capability(
                    ClientCapabilities::builder().enable_tasks().build(),
                )));
            }
            (_, true) => {}
        }
        // The same route and allow-list checks as a forwarded call.
        if let Err(e) = self.target(req, Target::Tool(&request.name)) {
            return Some(Err(e));
        }
        // Boxed: the job store's future is large, and inline it would make
        // every `tools/call` future that large (see `Req::run`).
        Some(Box::pin(self.start_task(req, request)).await)
    }

    async fn start_task(
        &self,
        req: &Req,
        request: &CallToolRequestParams,
    ) -> Result<CallToolResponse, ErrorData> {
        let jobs = self.task_jobs()?;
        let id = format!("{TASK_PREFIX}{}", uuid::Uuid::new_v4());
        let mut params = JsonObject::new();
        params.insert("tool".into(), Value::String(request.name.to_string()));
        if let Some(arguments) = &request.arguments {
            params.insert("arguments".into(), Value::Object(arguments.clone()));
        }
        params.insert("start".into(), Value::Bool(true));
        let job = jobs
            .add(&self.task_caller(req), &id, &params)
            .await
            .map_err(|e| task_error(&id, e))?;
        tracing::debug!(task = %id, tool = %request.name, "tool call served as a task");
        let task = view(&job, jobs.settings().retention).task;
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }

    /// Names a task a backend made (`<backend>:<its id>`), so `tasks/*`
    /// for it find their way back, and remembers whose it is.
    pub(super) fn name_backend_task(
        &self,
        req: &Req,
        exposed: &str,
        response: &mut CallToolResponse,
    ) {
        if let CallToolResponse::Task(created) = response
            && let Some((backend, _)) = self.gateway.snapshot().route_tool(exposed)
        {
            backend.task_made_for(&created.task.task_id, req.client_id(), self.id);
            created.task.task_id = format!("{}:{}", backend.name(), created.task.task_id);
        }
    }

    /// The backend a `<backend>:<id>` task id names, for a client allowed
    /// to use it, and the backend's own id.
    fn backend_task<'a>(
        &self,
        req: &Req,
        id: &'a str,
    ) -> Option<Result<(Arc<Backend>, &'a str), ErrorData>> {
        let (name, own) = id.split_once(':')?;
        let backend = self.gateway.snapshot().backends.get(name).cloned();
        Some(match backend {
            Some(b)
                if req.sees_backend(name)
                    && b.relays_tasks()
                    && b.task_belongs_to(own, req.client_id()) =>
            {
                Ok((b, own))
            }
            _ => Err(ErrorData::invalid_params(
                format!("unknown task `{id}`"),
                None,
            )),
        })
    }

    /// Sends a `tasks/*` request to the backend that made the task.
    async fn to_backend(
        &self,
        req: &Req,
        context: &RequestContext<RoleServer>,
        backend: Arc<Backend>,
        request: ClientRequest,
    ) -> Result<(Arc<Backend>, ServerResult), ErrorData> {
        let (backend, result) = self.forward(backend, request, context, req).await;
        result
            .map(|r| (backend, r))
            .map_err(super::pipeline::wire::call)
    }

    /// `tasks/get`: the task's state, with its result or error once it ended.
    pub(super) async fn get_task_for(
        &self,
        req: &Req,
        context: &RequestContext<RoleServer>,
        id: &str,
    ) -> Result<GetTaskResult, ErrorData> {
        if let Some(routed) = self.backend_task(req, id) {
            let (backend, own) = routed?;
            let request =
                ClientRequest::GetTaskRequest(GetTaskRequest::new(GetTaskParams::new(own)));
            return match self.to_backend(req, context, backend, request).await? {
                (backend, ServerResult::GetTaskResult(mut r)) => {
                    r.task.task.task_id = id.to_string();
                    crate::backend::prefix_task_payload(
                        &backend.config.prefix,
                        &mut r.task.payload,
                    );
                    Ok(r)
                }
                (backend, _) => Err(super::pipeline::wire::unexpected(&backend)),
            };
        }
        let jobs = self.task_jobs()?;
        let job = jobs
            .status(&self.task_caller(req), id)
            .await
            .map_err(|e| task_error(id, e))?;
        Ok(GetTaskResult::new(view(&job, jobs.settings().retention)))
    }

    /// `tasks/update`: a backend's task gets the answers; for a job it is
    /// acknowledged for a known task (a job never asks the client for input,
    /// so no response is outstanding and all are ignored).
    pub(super) async fn update_task_for(
        &self,
        req: &Req,
        context: &RequestContext<RoleServer>,
        params: UpdateTaskParams,
    ) -> Result<(), ErrorData> {
        if let Some(routed) = self.backend_task(req, &params.task_id) {
            let (backend, own) = routed?;
            let request = ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(
                UpdateTaskParams::new(own, params.input_responses.clone()),
            ));
            return self
                .to_backend(req, context, backend, request)
                .await
                .map(|_| ());
        }
        self.get_task_for(req, context, &params.task_id)
            .await
            .map(|_| ())
    }

    /// `tasks/cancel`: stops the job (or asks the backend that made the
    /// task). A task that already ended keeps its end (cancellation is
    /// cooperative and may lose the race).
    pub(super) async fn cancel_task_for(
        &self,
        req: &Req,
        context: &RequestContext<RoleServer>,
        id: &str,
    ) -> Result<(), ErrorData> {
        if let Some(routed) = self.backend_task(req, id) {
            let (backend, own) = routed?;
            let request = ClientRequest::CancelTaskRequest(CancelTaskRequest::new(
                CancelTaskParams::new(own),
            ));
            return self
                .to_backend(req, context, backend, request)
                .await
                .map(|_| ());
        }
        let jobs = self.task_jobs()?;
        match jobs.stop_job(&self.task_caller(req), id).await {
            Ok(_) | Err(JobError::Conflict(_)) => Ok(()),
            Err(e) => Err(task_error(id, e)),
        }
    }

    fn task_jobs(&self) -> Result<Arc<Jobs>, ErrorData> {
        self.reloader.jobs().ok_or_else(|| {
            ErrorData::internal_error(
                "tasks are run by the job queue, which is not running: add `[jobs]` to the config and restart the gateway",
                None,
            )
        })
    }

    /// Whose job namespace the task lives in: the authenticated client's.
    fn task_caller(&self, req: &Req) -> Caller {
        Caller::new(req.client_id().map(String::from), Some(self.id))
    }
}

/// A refused task request as a JSON-RPC error.
fn task_error(id: &str, e: JobError) -> ErrorData {
    match e {
        JobError::NotFound { .. } => {
            ErrorData::invalid_params(format!("unknown task `{id}`"), None)
        }
        JobError::BadRequest(m) => ErrorData::invalid_params(m, None),
        JobError::Forbidden(m) | JobError::Conflict(m) | JobError::Limit(m) => {
            ErrorData::invalid_request(m, None)
        }
        e @ (JobError::NotReady | JobError::Store(_)) => {
            ErrorData::internal_error(e.to_string(), None)
        }
    }
}

fn timestamp(micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or_default());
    humantime::format_rfc3339_millis(t).to_string()
}

/// A job as the task it serves.
fn view(job: &Job, retention: Duration) -> DetailedTask {
    let updated = [job.finished_at, job.started_at, job.queued_at]
        .into_iter()
        .flatten()
        .fold(job.created_at, i64::max);
    let mut task = Task::new(
        job.id.clone(),
        TaskStatus::Working,
        timestamp(job.created_at),
        timestamp(updated),
    )
    .with_poll_interval_ms(POLL_INTERVAL_MS);
    // A task is kept `retention` past its end: its lifetime is known once it ends.
    if let Some(end) = job.finished_at {
        let lived = u64::try_from((end - job.created_at) / 1000).unwrap_or_default();
        task = task.with_ttl_ms(lived.saturating_add(retention.as_millis() as u64));
    }
    let message = match job.state {
        State::Pending => Some("added, not started".to_string()),
        State::Queued => Some("waiting for a free worker".to_string()),
        State::Running => job.progress.as_ref().and_then(|p| p.message.clone()),
        State::Failed | State::Interrupted => job.error.clone(),
        State::Completed | State::Stopped => None,
    };
    if let Some(m) = message {
        task = task.with_status_message(m);
    }
    let payload = match job.state {
        State::Pending | State::Queued | State::Running => TaskPayload::Working,
        State::Stopped => TaskPayload::Cancelled,
        State::Completed => TaskPayload::Completed {
            result: tool_result(job.result.as_deref()),
        },
        // A tool that answered `isError` completed; the task failed only when
        // no result came (a timeout, the backend down, a JSON-RPC error).
        State::Failed if job.result.is_some() => TaskPayload::Completed {
            result: tool_result(job.result.as_deref()),
        },
        State::Failed | State::Interrupted => TaskPayload::Failed {
            error: failure(job),
        },
    };
    DetailedTask::new(task, payload)
}

/// The stored `CallToolResult`; a result cut at `max_result_bytes` becomes a
/// text result that says so.
fn tool_result(stored: Option<&str>) -> JsonObject {
    let parsed: Option<JsonObject> = stored.and_then(|s| serde_json::from_str(s).ok());
    match parsed {
        Some(r) if r.get("truncated") != Some(&Value::Bool(true)) => r,
        other => {
            let (note, text) = match &other {
                Some(cut) => (
                    cut.get("note").and_then(Value::as_str).unwrap_or_default(),
                    cut.get("text").and_then(Value::as_str).unwrap_or_default(),
                ),
                None => ("the result was not stored", stored.unwrap_or_default()),
            };
            let v = json!({"content": [
                {"type": "text", "text": note},
                {"type": "text", "text": text},
            ]});
            v.as_object().cloned().unwrap_or_default()
        }
    }
}

/// The JSON-RPC error of a task that ended without a result.
fn failure(job: &Job) -> JsonObject {
    let message = match (job.state, &job.error) {
        (_, Some(e)) => e.clone(),
        (State::Interrupted, None) => {
            "the gateway instance running the task stopped before it ended".to_string()
        }
        _ => "the task failed".to_string(),
    };
    let v = json!({"code": ErrorCode::INTERNAL_ERROR.0, "message": message});
    v.as_object().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: State) -> Job {
        Job {
            ns: String::new(),
            id: "task-1".into(),
            tool: "fx__echo".into(),
            arguments: None,
            timeout_ms: None,
            state,
            created_at: 1_000_000,
            queued_at: Some(1_000_000),
            started_at: Some(2_000_000),
            finished_at: None,
            progress: None,
            result: None,
            error: None,
            worker: None,
            attempts: 1,
            origin_instance: None,
            origin_session: None,
        }
    }

    fn wire(task: DetailedTask) -> Value {
        serde_json::to_value(task).unwrap()
    }

    #[test]
    fn job_states_map_to_task_states() {
        let retention = Duration::from_secs(60);
        let running = wire(view(&job(State::Running), retention));
        assert_eq!(running["status"], "working");
        assert_eq!(running["ttlMs"], Value::Null);
        assert_eq!(running["lastUpdatedAt"], timestamp(2_000_000));

        let mut done = job(State::Completed);
        done.finished_at = Some(4_000_000);
        done.result = Some(r#"{"content":[{"type":"text","text":"hi"}]}"#.into());
        let done = wire(view(&done, retention));
        assert_eq!(done["status"], "completed");
        assert_eq!(done["result"]["content"][0]["text"], "hi");
        assert_eq!(done["ttlMs"], 3_000 + 60_000);

        let mut tool_error = job(State::Failed);
        tool_error.result = Some(r#"{"content":[],"isError":true}"#.into());
        tool_error.error = Some("the tool answered an error".into());
        assert_eq!(wire(view(&tool_error, retention))["status"], "completed");

        let mut timed_out = job(State::Failed);
        timed_out.error = Some("timed out after 2s".into());
        let timed_out = wire(view(&timed_out, retention));
        assert_eq!(timed_out["status"], "failed");
        assert_eq!(timed_out["error"]["message"], "timed out after 2s");
        assert_eq!(timed_out["error"]["code"], -32603);

        assert_eq!(
            wire(view(&job(State::Stopped), retention))["status"],
            "cancelled"
        );
        assert_eq!(
            wire(view(&job(State::Interrupted), retention))["status"],
            "failed"
        );
    }

    #[test]
    fn a_cut_result_is_still_a_tool_result() {
        let cut = crate::jobs::model::capped_result("x".repeat(100), 10);
        let r = tool_result(Some(&cut));
        assert_eq!(r["content"][1]["text"], "x".repeat(10));
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("100 bytes")
        );
    }
}
