//! The tasks extension (`--eras`): `task_sleep` answers with a task when the
//! request declares the extension, and `tasks/get`, `tasks/update` and
//! `tasks/cancel` serve it from memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::ErrorData;
use rmcp::model::*;
use serde_json::json;

use super::server::schema;

struct Entry {
    task: Task,
    ends: Instant,
    message: String,
    cancelled: bool,
}

static TASKS: std::sync::LazyLock<Mutex<HashMap<String, Entry>>> =
    std::sync::LazyLock::new(Mutex::default);
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn tasks() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    TASKS.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn tool() -> Tool {
    Tool::new(
        "task_sleep",
        "Sleeps `ms` ms; as a task (its id `fx-task-N`) when the request declares the tasks extension, else inline. Returns `message`",
        schema(
            json!({"type": "object", "properties": {"ms": {"type": "integer"}, "message": {"type": "string"}}}),
        ),
    )
}

/// `task_sleep`: a task if the caller can take one.
pub async fn sleep(args: &Option<JsonObject>, declared: bool) -> CallToolResponse {
    let ms = args
        .as_ref()
        .and_then(|a| a.get("ms"))
        .and_then(|v| v.as_u64())
        .unwrap_or(100);
    let message = args
        .as_ref()
        .and_then(|a| a.get("message"))
        .and_then(|v| v.as_str())
        .unwrap_or("done")
        .to_string();
    if !declared {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return CallToolResult::success(vec![ContentBlock::text(message)]).into();
    }
    let id = format!(
        "fx-task-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let now = "2026-07-28T00:00:00Z";
    let task = Task::new(id.clone(), TaskStatus::Working, now, now).with_poll_interval_ms(50);
    tasks().insert(
        id,
        Entry {
            task: task.clone(),
            ends: Instant::now() + Duration::from_millis(ms),
            message,
            cancelled: false,
        },
    );
    CallToolResponse::Task(CreateTaskResult::new(task))
}

fn unknown(id: &str) -> ErrorData {
    ErrorData::invalid_params(format!("no task {id}"), None)
}

pub fn get(id: &str) -> Result<GetTaskResult, ErrorData> {
    let tasks = tasks();
    let entry = tasks.get(id).ok_or_else(|| unknown(id))?;
    let payload = if entry.cancelled {
        TaskPayload::Cancelled
    } else if Instant::now() >= entry.ends {
        let result = CallToolResult::success(vec![ContentBlock::text(entry.message.clone())]);
        TaskPayload::Completed {
            result: serde_json::to_value(result)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default(),
        }
    } else {
        TaskPayload::Working
    };
    Ok(GetTaskResult::new(DetailedTask::new(
        entry.task.clone(),
        payload,
    )))
}

pub fn cancel(id: &str) -> Result<(), ErrorData> {
    let mut tasks = tasks();
    let entry = tasks.get_mut(id).ok_or_else(|| unknown(id))?;
    if Instant::now() < entry.ends {
        entry.cancelled = true;
    }
    Ok(())
}

pub fn update(id: &str) -> Result<(), ErrorData> {
    tasks().get(id).map(|_| ()).ok_or_else(|| unknown(id))
}
