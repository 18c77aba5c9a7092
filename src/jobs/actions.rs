//! The `queue` tool: its actions, their checks and their replies. The same
//! JSON answers the MCP tool (`@jobs`) and `POST /api/v1/execute`.
//!
//! Bad input is refused before anything is stored, so a refused request
//! changes nothing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::JsonObject;
use serde_json::{Value, json};

use super::invoke::{Caller, InvokeError};
use super::model::{Job, NewJob, State, now_micros};
use super::{JobError, Jobs};

/// The actions, in the order the schema lists them.
pub const ACTIONS: [&str; 7] = [
    "add_job",
    "start_job",
    "stop_job",
    "get_status",
    "list_jobs",
    "delete_job",
    "health",
];
/// The `job_id` used when a request names none.
pub const DEFAULT_JOB_ID: &str = "default_job";
/// The backend name of the set that serves `queue`: a job may not run it.
pub const JOBS_BACKEND: &str = "@jobs";
const MAX_ID_CHARS: usize = 128;
const DEFAULT_LIST_LIMIT: i64 = 100;
const MAX_LIST_LIMIT: i64 = 1000;
/// How long `stop_job` waits for a running job's end to be stored.
const STOP_WAIT: Duration = Duration::from_secs(10);

fn bad(msg: impl Into<String>) -> JobError {
    JobError::BadRequest(msg.into())
}

fn opt_str<'a>(args: &'a JsonObject, key: &str, field: &str) -> Result<Option<&'a str>, JobError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("`{field}` must be a string"))),
    }
}

fn opt_bool(args: &JsonObject, key: &str, field: &str) -> Result<bool, JobError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("`{field}` must be true or false"))),
    }
}

fn job_id(args: &JsonObject) -> Result<String, JobError> {
    let id = opt_str(args, "job_id", "job_id")?.unwrap_or(DEFAULT_JOB_ID);
    if id.trim().is_empty() {
        return Err(bad("`job_id` must not be empty"));
    }
    if id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Err(bad(format!(
            "`job_id` must be at most {MAX_ID_CHARS} characters, without control characters"
        )));
    }
    Ok(id.to_string())
}

/// Runs one `queue` request: `args` is the tool's whole argument object.
pub async fn dispatch(jobs: &Jobs, caller: &Caller, args: &JsonObject) -> Result<Value, JobError> {
    let action = match args.get("action") {
        Some(Value::String(a)) => a.as_str(),
        None | Some(Value::Null) => {
            return Err(bad(format!(
                "`action` is required: one of {}",
                ACTIONS.join(", ")
            )));
        }
        Some(_) => return Err(bad("`action` must be a string")),
    };
    let params = match args.get("params") {
        None | Some(Value::Null) => JsonObject::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(bad("`params` must be an object")),
    };
    let force = opt_bool(args, "force", "force")?;
    let reply = |message: String, job: &Job| json!({"message": message, "job": job.to_json()});
    match action {
        "add_job" => {
            let id = job_id(args)?;
            let job = jobs.add(caller, &id, &params).await?;
            Ok(reply(format!("Job {id} added successfully"), &job))
        }
        "start_job" => {
            let id = job_id(args)?;
            let job = jobs.start_job(caller, &id).await?;
            Ok(reply(format!("Job {id} started successfully"), &job))
        }
        "stop_job" => {
            let id = job_id(args)?;
            let job = jobs.stop_job(caller, &id).await?;
            let message = if job.state == State::Running {
                format!("Job {id} stop requested; it is still running")
            } else {
                format!("Job {id} stopped successfully")
            };
            Ok(reply(message, &job))
        }
        "get_status" => {
            let id = job_id(args)?;
            let job = jobs.status(caller, &id).await?;
            Ok(reply(format!("Job {id} is {}", job.state.as_str()), &job))
        }
        "list_jobs" => list_jobs(jobs, caller, args, &params).await,
        "delete_job" => {
            let id = job_id(args)?;
            jobs.delete_job(caller, &id, force).await?;
            Ok(json!({"message": format!("Job {id} deleted successfully")}))
        }
        "health" => {
            let health = jobs.health().await;
            let ok = health["store"]["ok"] == Value::Bool(true);
            let mut v = json!({"message": if ok { "Job queue is healthy" } else { "Job store is unavailable" }});
            if let (Some(out), Value::Object(h)) = (v.as_object_mut(), health) {
                out.extend(h);
            }
            Ok(v)
        }
        other => Err(bad(format!(
            "unknown action `{other}` (expected one of {})",
            ACTIONS.join(", ")
        ))),
    }
}

/// `list_jobs`: the caller's jobs, optionally only those in one state, up to `limit`.
async fn list_jobs(
    jobs: &Jobs,
    caller: &Caller,
    args: &JsonObject,
    params: &JsonObject,
) -> Result<Value, JobError> {
    // Filters may be given at the top level or inside `params`.
    let pick = |k: &str| {
        args.get(k)
            .filter(|v| !v.is_null())
            .or_else(|| params.get(k))
    };
    let state = match pick("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(State::parse(s).ok_or_else(|| {
            let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
            bad(format!(
                "unknown state \"{s}\" (expected one of {})",
                names.join(", ")
            ))
        })?),
        Some(_) => return Err(bad("`state` must be a string")),
    };
    let limit = match pick("limit") {
        None | Some(Value::Null) => DEFAULT_LIST_LIMIT,
        Some(v) => match v.as_i64() {
            Some(n @ 1..=MAX_LIST_LIMIT) => n,
            _ => {
                return Err(bad(format!(
                    "`limit` must be an integer from 1 to {MAX_LIST_LIMIT}"
                )));
            }
        },
    };
    let list = jobs
        .store()
        .await?
        .list(&caller.namespace, state, limit)
        .await?;
    let summaries: Vec<Value> = list.iter().map(Job::summary_json).collect();
    Ok(json!({"message": format!("{} job(s)", summaries.len()), "jobs": summaries}))
}

/// A `timeout` given as a duration string ("90s", "5m") or a number of seconds.
fn timeout(params: &JsonObject) -> Result<Option<Duration>, JobError> {
    let d = match params.get("timeout") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => humantime::parse_duration(s.trim()).map_err(|e| {
            bad(format!(
                "`params.timeout` \"{s}\" is not a duration: {e} (write e.g. \"90s\", \"5m\")"
            ))
        })?,
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| bad("`params.timeout` must be a positive number of seconds"))?,
        Some(_) => {
            return Err(bad(
                "`params.timeout` must be a duration string such as \"90s\"",
            ));
        }
    };
    if d.is_zero() {
        return Err(bad("`params.timeout` must be more than zero"));
    }
    Ok(Some(d))
}

impl Jobs {
    /// `add_job`: stores a job for `caller` (queued at once with `start: true`).
    pub async fn add(
        &self,
        caller: &Caller,
        id: &str,
        params: &JsonObject,
    ) -> Result<Job, JobError> {
        let tool = match opt_str(params, "tool", "params.tool")? {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                return Err(bad(
                    "`params.tool` is required: the exposed name of the tool the job runs",
                ));
            }
        };
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(_) => return Err(bad("`params.arguments` must be an object")),
        };
        let timeout = timeout(params)?;
        let start = opt_bool(params, "start", "params.start")?;
        let backend = self
            .invoker()?
            .resolve(caller, &tool)
            .map_err(|e| match e {
                InvokeError::UnknownTool { tool } => bad(format!(
                    "unknown tool `{tool}`: `params.tool` must name a tool this gateway exposes"
                )),
                InvokeError::Forbidden(m) => JobError::Forbidden(m),
                other => bad(other.to_string()),
            })?;
        if backend == JOBS_BACKEND {
            return Err(bad("a job cannot run the `queue` tool itself"));
        }
        let store = self.store().await?;
        let limit = self.settings().max_unfinished_per_client;
        let unfinished = store.unfinished(&caller.namespace).await?;
        if unfinished >= limit as i64 {
            return Err(JobError::Limit(format!(
                "{} has {unfinished} jobs that are not finished, the limit ([jobs] max_unfinished_per_client = {limit}); wait for some to end or delete them",
                if caller.namespace.is_empty() {
                    "this gateway".to_string()
                } else {
                    format!("client `{}`", caller.namespace)
                }
            )));
        }
        let new = NewJob {
            ns: caller.namespace.clone(),
            id: id.to_string(),
            tool,
            arguments,
            timeout_ms: timeout.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            state: if start { State::Queued } else { State::Pending },
            now: now_micros(),
            origin_instance: self.instance.clone(),
            origin_session: caller.session.and_then(|s| i64::try_from(s).ok()),
        };
        let job = store.insert(&new).await?;
        if start {
            self.runner.wake.notify_one();
        }
        Ok(job)
    }

    async fn find(&self, caller: &Caller, id: &str) -> Result<Job, JobError> {
        self.store()
            .await?
            .get(&caller.namespace, id)
            .await?
            .ok_or_else(|| JobError::NotFound { id: id.to_string() })
    }

    async fn start_job(&self, caller: &Caller, id: &str) -> Result<Job, JobError> {
        let store = self.store().await?;
        match store.enqueue(&caller.namespace, id, now_micros()).await? {
            Some(job) => {
                self.runner.wake.notify_one();
                Ok(job)
            }
            None => {
                let job = self.find(caller, id).await?;
                Err(JobError::Conflict(format!(
                    "Job {id} is already {}",
                    job.state.as_str()
                )))
            }
        }
    }

    /// `get_status`: the job, with the freshest progress when this instance runs it.
    pub async fn status(&self, caller: &Caller, id: &str) -> Result<Job, JobError> {
        let mut job = self.find(caller, id).await?;
        if job.state == State::Running
            && let Some(r) = self.runner.get(&caller.namespace, id)
            && let Some(p) = r.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
        {
            job.progress = Some(p);
        }
        Ok(job)
    }

    /// `stop_job`: stops a waiting or running job; waits a little for a
    /// running one's end to be stored.
    pub async fn stop_job(&self, caller: &Caller, id: &str) -> Result<Job, JobError> {
        let store = self.store().await?;
        let job = self.find(caller, id).await?;
        if job.state.is_finished() {
            return Err(JobError::Conflict(format!(
                "Job {id} is not running (it is {})",
                job.state.as_str()
            )));
        }
        if let Some(stopped) = store
            .stop_waiting(&caller.namespace, id, now_micros())
            .await?
        {
            self.finished(&stopped);
            return Ok(stopped);
        }
        // Running (or claimed just now): cancel it here, or ask its instance.
        match self.runner.get(&caller.namespace, id) {
            Some(r) => {
                r.stop.store(true, Ordering::SeqCst);
                r.cancel.cancel();
            }
            None => {
                store.request_stop(&caller.namespace, id).await?;
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        loop {
            let job = self.find(caller, id).await?;
            if job.state != State::Running || tokio::time::Instant::now() >= deadline {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn delete_job(&self, caller: &Caller, id: &str, force: bool) -> Result<(), JobError> {
        let store = self.store().await?;
        for _ in 0..3 {
            if store.delete(&caller.namespace, id).await? {
                return Ok(());
            }
            let job = self.find(caller, id).await?;
            if job.state != State::Running {
                continue; // it changed under us: try again
            }
            if !force {
                return Err(JobError::Conflict(format!(
                    "Job {id} is running; stop it first, or pass force: true"
                )));
            }
            let stopped = self.stop_job(caller, id).await?;
            if stopped.state == State::Running {
                return Err(JobError::Conflict(format!(
                    "Job {id} did not stop in time; it was not deleted"
                )));
            }
        }
        Err(JobError::Conflict(format!(
            "Job {id} kept changing state; try again"
        )))
    }
}
