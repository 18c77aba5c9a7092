//! `@jobs`: the job queue as a built-in tool set with one tool, `queue`
//! (bare name). The queue itself is [`crate::jobs`]; this set adds MCP: the
//! input schema, the caller's identity from `_meta`, tool results, and the
//! notification a session gets when a job it started ends.

#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::sync::{Arc, Weak};

use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::{Caller, ServeFn, serve_fn};
use crate::gateway::Gateway;
use crate::jobs::actions::{ACTIONS, DEFAULT_JOB_ID, dispatch};
use crate::jobs::{self, Job, JobError, JobListener, Jobs};

/// The tool's name.
pub const QUEUE: &str = "queue";
/// The `logger` of the notification sent when a job ends.
pub const LOGGER: &str = "manifold/jobs";

/// Serves `@jobs` over the queue `jobs`.
pub fn serve(jobs: Arc<Jobs>) -> ServeFn {
    serve_fn(move || JobsServer { jobs: jobs.clone() })
}

/// Tells the session that added a job, if it is still connected to this
/// instance, that the job ended.
pub struct Notifier {
    pub gateway: Weak<Gateway>,
}

impl JobListener for Notifier {
    fn finished(&self, job: &Job, instance: &str) {
        if job.origin_instance.as_deref() != Some(instance) {
            return;
        }
        let (Some(gateway), Some(id)) = (
            self.gateway.upgrade(),
            job.origin_session.and_then(|s| u64::try_from(s).ok()),
        ) else {
            return;
        };
        let Some(session) = gateway.hub.session(id) else {
            return;
        };
        let data = json!({
            "type": "job_finished",
            "job": job.summary_json(),
            "hint": format!("call queue with action get_status and job_id \"{}\" for its result", job.id),
        });
        let level = if job.state == jobs::State::Completed {
            LoggingLevel::Notice
        } else {
            LoggingLevel::Warning
        };
        let param = LoggingMessageNotificationParam::new(level, data).with_logger(LOGGER);
        let n =
            ServerNotification::LoggingMessageNotification(LoggingMessageNotification::new(param));
        if !session.enqueue(n) {
            tracing::debug!(
                session = id,
                "job notification dropped: the session's queue is full"
            );
        }
    }
}

struct JobsServer {
    jobs: Arc<Jobs>,
}

/// The `queue` tool's description and input schema.
pub fn tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "action": {
                "type": "string",
                "enum": ACTIONS,
                "description": "add_job, start_job, stop_job, get_status, list_jobs, delete_job or health"
            },
            "job_id": {
                "type": "string",
                "default": DEFAULT_JOB_ID,
                "description": "The job's id (in your own namespace when the gateway uses auth)"
            },
            "params": {
                "type": "object",
                "description": "add_job: {\"tool\": \"<exposed tool name>\", \"arguments\": {...}, \"timeout\": \"90s\", \"start\": true}; list_jobs: {\"state\": \"running\", \"limit\": 20}",
                "properties": {
                    "tool": {"type": "string"},
                    "arguments": {"type": "object"},
                    "timeout": {"type": "string"},
                    "start": {"type": "boolean"},
                    "state": {"type": "string"},
                    "limit": {"type": "integer"}
                }
            },
            "force": {
                "type": "boolean",
                "description": "delete_job of a running job: stop it, then delete it"
            }
        },
        "required": ["action"]
    });
    Tool::new(
        QUEUE,
        "Run any tool of this gateway as a background job: add it (optionally starting it at once), \
         watch its state and progress, stop it, collect its result later, delete it. Jobs survive \
         a gateway restart.",
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )
}

/// A queue reply as a tool result: text for the model, the JSON as structured content.
pub fn to_result(outcome: Result<Value, JobError>) -> CallToolResult {
    match outcome {
        Ok(v) => {
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            r.structured_content = Some(v);
            r
        }
        Err(e) => {
            let mut r = CallToolResult::error(vec![ContentBlock::text(e.to_string())]);
            r.structured_content =
                Some(json!({"error": {"kind": e.kind(), "message": e.to_string()}}));
            r
        }
    }
}

impl ServerHandler for JobsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("manifold-jobs", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![tool()]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != QUEUE {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let who = Caller::of(&ctx);
        let caller = jobs::Caller::new(who.auth, who.session);
        let args = request.arguments.unwrap_or_default();
        Ok(to_result(dispatch(&self.jobs, &caller, &args).await).into())
    }
}

/// Mounts `@jobs` when `[jobs]` enables it. A reload keeps the running queue
/// (its store, runner and jobs in flight) and applies the settings that may
/// change live; a new store or switching the set on needs a restart.
pub(super) fn mount(
    config: &crate::config::Config,
    gateway: &Weak<Gateway>,
    previous: Option<&super::BuiltinSets>,
    sets: &mut super::BuiltinSets,
    backends: &mut Vec<crate::config::BackendConfig>,
) {
    let wanted = &config.jobs;
    let running = match previous {
        Some(previous) => match previous.jobs.clone() {
            Some((old, jobs)) => {
                if !old.same_store(wanted) {
                    tracing::warn!(
                        "[jobs] enabled, store, path and url cannot change while running; restart to apply them"
                    );
                }
                jobs.update(crate::config::JobsConfig {
                    enabled: old.enabled,
                    store: old.store.clone(),
                    ..wanted.clone()
                });
                Some((old, jobs))
            }
            None => {
                if wanted.enabled {
                    tracing::warn!(
                        "[jobs] was added while running; restart to mount the job queue"
                    );
                }
                return;
            }
        },
        None if wanted.enabled => {
            let listener = Arc::new(Notifier {
                gateway: gateway.clone(),
            });
            Some((wanted.clone(), Jobs::start(wanted.clone(), listener)))
        }
        None => None,
    };
    if let Some((settings, jobs)) = running {
        sets.sets.insert("jobs".into(), serve(jobs.clone()));
        // A job's own timeout bounds it; the call to `queue` itself is quick
        // except for `stop_job`, which waits for the stop to be stored.
        backends.push(super::builtin_backend("jobs", config));
        sets.jobs = Some((settings, jobs));
    }
}
