//! A task a backend made for a client that cannot take one.
//!
//! A shared connection declares the tasks extension once, for every client
//! (an initialize-era backend learns capabilities per connection), so a
//! backend that supports it may answer any call with a task. A client that
//! declared the extension gets the task (named by the front); for one that
//! did not, and for jobs, the call waits here instead: `tasks/get` is polled
//! at the backend's interval until the task ends, and its result becomes
//! the call's. Questions the task asks (`input_required`) go to the client
//! as ordinary sampling, elicitation or roots requests, if it declared them,
//! and the answers back with `tasks/update`. So the client sees the call it
//! made, answered inline, as it would without the gateway.

#![allow(deprecated)] // sampling and roots are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::PeerRequestOptions;
use rmcp::{Peer, RoleClient, RoleServer};
use serde_json::Value;

use super::{Backend, CallError};

/// How many handed-out tasks a backend remembers the client of.
const OWNERS_KEPT: usize = 10_000;

/// Whom each handed-out task belongs to, oldest forgotten first.
#[derive(Default)]
pub(super) struct TaskOwners {
    owner: HashMap<String, Owner>,
    order: VecDeque<String>,
}

struct Owner {
    /// The client id (`None` for an unauthenticated gateway, where every
    /// client is the same).
    client: Option<String>,
    /// The session the task was handed to, which gets its status notifications.
    session: u64,
}

impl TaskOwners {
    pub(super) fn record(&mut self, task: &str, client: Option<&str>, session: u64) {
        let owner = Owner {
            client: client.map(str::to_string),
            session,
        };
        if self.owner.insert(task.to_string(), owner).is_none() {
            self.order.push_back(task.to_string());
        }
        while self.order.len() > OWNERS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.owner.remove(&old);
            }
        }
    }

    pub(super) fn allows(&self, task: &str, client: Option<&str>) -> bool {
        self.owner
            .get(task)
            .is_none_or(|owner| owner.client.as_deref() == client)
    }

    pub(super) fn session(&self, task: &str) -> Option<u64> {
        self.owner.get(task).map(|o| o.session)
    }
}

/// Poll interval bounds: a backend's own hint is kept within them.
const MIN_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_secs(5);
/// Used when the backend gives no interval.
const DEFAULT_POLL: Duration = Duration::from_millis(250);

/// What a waiting call needs to finish a task for its client.
pub(super) struct Waiting<'a> {
    pub peer: &'a Peer<RoleClient>,
    /// The calling client, to ask the task's questions (none for a job or
    /// a parked call).
    pub client: Option<&'a Peer<RoleServer>>,
    pub capabilities: Option<&'a ClientCapabilities>,
    pub relay_timeout: Duration,
}

impl Backend {
    /// Polls the task until it ends; its result as the call's.
    pub(super) async fn finish_task(
        &self,
        task: Task,
        waiting: Waiting<'_>,
    ) -> Result<ServerResult, CallError> {
        let failed = |message: String| CallError::Failed {
            backend: self.name().to_string(),
            message,
        };
        let interval = task
            .poll_interval_ms
            .map_or(DEFAULT_POLL, Duration::from_millis)
            .clamp(MIN_POLL, MAX_POLL);
        let id = task.task_id;
        // Keys of questions already answered (a task may list them until it moves on).
        let mut answered = std::collections::HashSet::new();
        loop {
            tokio::time::sleep(interval).await;
            let request =
                ClientRequest::GetTaskRequest(GetTaskRequest::new(GetTaskParams::new(&id)));
            let got = waiting
                .peer
                .send_request(request)
                .await
                .map_err(|e| self.map_error(e))?;
            let ServerResult::GetTaskResult(got) = got else {
                return Err(failed(format!(
                    "it answered tasks/get for its task `{id}` with something else"
                )));
            };
            match got.task.payload {
                TaskPayload::Working => {}
                TaskPayload::Completed { result } => {
                    return serde_json::from_value::<CallToolResult>(Value::Object(result))
                        .map(ServerResult::CallToolResult)
                        .map_err(|e| {
                            failed(format!("its task `{id}` ended with no tool result: {e}"))
                        });
                }
                TaskPayload::Failed { error } => {
                    return Err(
                        match serde_json::from_value::<ErrorData>(Value::Object(error)) {
                            Ok(e) => CallError::Rpc(e),
                            Err(_) => failed(format!("its task `{id}` failed")),
                        },
                    );
                }
                TaskPayload::Cancelled => {
                    return Err(failed(format!("it cancelled its task `{id}`")));
                }
                TaskPayload::InputRequired { input_requests } => {
                    let fresh: InputRequests = input_requests
                        .into_iter()
                        .filter(|(key, _)| !answered.contains(key))
                        .collect();
                    if fresh.is_empty() {
                        continue;
                    }
                    let responses = self.ask_for_task(&waiting, &fresh).await?;
                    answered.extend(responses.keys().cloned());
                    let update = ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(
                        UpdateTaskParams::new(&id, responses),
                    ));
                    waiting
                        .peer
                        .send_request(update)
                        .await
                        .map_err(|e| self.map_error(e))?;
                }
                _ => {}
            }
        }
    }

    /// Asks the client a task's questions, all at once.
    async fn ask_for_task(
        &self,
        waiting: &Waiting<'_>,
        asked: &InputRequests,
    ) -> Result<InputResponses, CallError> {
        let failed = |message: String| CallError::Failed {
            backend: self.name().to_string(),
            message,
        };
        let Some(client) = waiting.client else {
            return Err(failed(
                "its task asked for input, and this call has no client to ask".into(),
            ));
        };
        let none = ClientCapabilities::default();
        let capabilities = waiting.capabilities.unwrap_or(&none);
        super::needs::ask_client(
            client,
            capabilities,
            None,
            "its task",
            asked,
            waiting.relay_timeout,
        )
        .await
        .map_err(failed)
    }

    /// Asks the backend to cancel a task nobody waits for any more.
    pub(super) async fn cancel_task(&self, peer: &Peer<RoleClient>, id: &str) {
        let request =
            ClientRequest::CancelTaskRequest(CancelTaskRequest::new(CancelTaskParams::new(id)));
        let options = PeerRequestOptions::with_timeout(Duration::from_secs(5));
        let sent = async {
            peer.send_request_with_option(request, options)
                .await?
                .await_response()
                .await
        };
        if let Err(e) = sent.await {
            tracing::debug!(backend = %self.name(), task = %id, error = %e, "tasks/cancel failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_belongs_to_the_client_it_was_handed_to() {
        let mut owners = TaskOwners::default();
        owners.record("t1", Some("alice"), 7);
        assert_eq!(owners.session("t1"), Some(7));
        assert!(owners.allows("t1", Some("alice")));
        assert!(!owners.allows("t1", Some("bob")));
        assert!(!owners.allows("t1", None));
        assert!(owners.allows("never-seen", Some("bob")));
        for n in 0..OWNERS_KEPT {
            owners.record(&format!("x{n}"), None, 1);
        }
        assert!(owners.allows("t1", Some("bob")), "the oldest is forgotten");
        assert_eq!(owners.owner.len(), OWNERS_KEPT);
    }
}
