//! The tasks extension (`--eras`): `task_sleep` answers with a task when the
//! request declares the extension, and `tasks/get`, `tasks/update` and
//! `tasks/cancel` serve it from memory. With `ask`, the task first needs the
//! client to answer a sampling question (`input_required`, answered by
//! `tasks/update`). A finished task's result names the task in its `_meta`
//! (`fixture/task`), so a test can tell it from an inline answer.

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
    /// `Some(None)`: the question is asked and not answered yet.
    answer: Option<Option<String>>,
}

/// The key of the one question a task with `ask` asks.
const QUESTION: &str = "who";

static TASKS: std::sync::LazyLock<Mutex<HashMap<String, Entry>>> =
    std::sync::LazyLock::new(Mutex::default);
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn tasks() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    TASKS.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn tool() -> Tool {
    Tool::new(
        "task_sleep",
        "Sleeps `ms` ms; as a task (its id `fx-task-N`) when the request declares the tasks extension, else inline. Returns `message`; with `ask`, a task first asks the client (sampling) who it is and adds the answer",
        schema(
            json!({"type": "object", "properties": {"ms": {"type": "integer"}, "message": {"type": "string"}, "ask": {"type": "boolean"}}}),
        ),
    )
}

/// `task_sleep`: a task if the caller can take one. The task's end is also
/// announced with `notifications/tasks` on `peer`.
pub async fn sleep(
    args: &Option<JsonObject>,
    declared: bool,
    peer: rmcp::Peer<rmcp::RoleServer>,
) -> CallToolResponse {
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
    let ask = args
        .as_ref()
        .and_then(|a| a.get("ask"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let id = format!(
        "fx-task-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let now = "2026-07-28T00:00:00Z";
    let task = Task::new(id.clone(), TaskStatus::Working, now, now).with_poll_interval_ms(50);
    tasks().insert(
        id.clone(),
        Entry {
            task: task.clone(),
            ends: Instant::now() + Duration::from_millis(ms),
            message,
            cancelled: false,
            answer: ask.then_some(None),
        },
    );
    let announced = id;
    tokio::spawn(async move {
        // Once the task has ended (or is stuck on its question, which keeps it working).
        loop {
            tokio::time::sleep(Duration::from_millis(ms.max(10))).await;
            match get(&announced) {
                Ok(got) if got.task.status().is_terminal() => {
                    let note =
                        TaskStatusNotification::new(TaskStatusNotificationParams::new(got.task));
                    let _ = peer
                        .send_notification(ServerNotification::TaskStatusNotification(note))
                        .await;
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
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
    } else if let Some(None) = entry.answer {
        let question = CreateMessageRequest::new(CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text("who are you?")],
            20,
        ));
        TaskPayload::InputRequired {
            input_requests: [(QUESTION.to_string(), InputRequest::CreateMessage(question))].into(),
        }
    } else if Instant::now() >= entry.ends {
        let text = match &entry.answer {
            Some(Some(answer)) => format!("{} ({answer})", entry.message),
            _ => entry.message.clone(),
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        let mut meta = JsonObject::new();
        meta.insert("fixture/task".into(), json!(id));
        result.meta = Some(MetaObject(meta));
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

/// Takes the answer to the task's question, if it asked one.
pub fn update(id: &str, responses: &InputResponses) -> Result<(), ErrorData> {
    let mut tasks = tasks();
    let entry = tasks.get_mut(id).ok_or_else(|| unknown(id))?;
    if let (Some(None), Some(answer)) = (&entry.answer, responses.get(QUESTION)) {
        let text = answer["content"]["text"]
            .as_str()
            .or_else(|| answer["content"][0]["text"].as_str())
            .unwrap_or("no text");
        entry.answer = Some(Some(text.to_string()));
    }
    Ok(())
}
