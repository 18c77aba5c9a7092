//! Helpers for the protocol-era tests: an rmcp client handler that declares
//! exactly the capabilities a test gives it, answers sampling and
//! elicitation with its own name, and records what the gateway pushes, with
//! waits that end on the event (or fail after a deadline).
#![allow(dead_code, deprecated)] // sampling and logging are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use serde_json::json;

/// Something the gateway sent this client.
#[derive(Clone, Debug)]
pub enum Seen {
    /// A sampling request; whether it offered tools.
    Sampled {
        tools: bool,
    },
    /// An elicitation request: `url` for URL mode, else `form`.
    Elicited {
        mode: &'static str,
    },
    Roots,
    /// A notification rmcp has no type for (`notifications/elicitation/complete`).
    Custom(CustomNotification),
    ToolsChanged,
    Log(LoggingMessageNotificationParam),
    Updated(String),
    /// `notifications/tasks`: the task's id and status.
    Task(String, TaskStatus),
}

#[derive(Clone)]
pub struct EraClient {
    pub name: String,
    pub capabilities: ClientCapabilities,
    seen: Arc<Mutex<Vec<Seen>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl EraClient {
    pub fn new(name: &str, capabilities: ClientCapabilities) -> Self {
        Self {
            name: name.into(),
            capabilities,
            seen: Arc::default(),
            wake: Arc::default(),
        }
    }

    /// Sampling (with tools when `tools`), form and URL elicitation, roots.
    pub fn full(name: &str, tools: bool, url: bool) -> Self {
        let mut caps = ClientCapabilities::builder()
            .enable_roots()
            .enable_sampling()
            .build();
        if tools && let Some(s) = caps.sampling.as_mut() {
            s.tools = Some(JsonObject::default());
        }
        let mut elicitation =
            ElicitationCapability::new().with_form(FormElicitationCapability::new());
        if url {
            elicitation = elicitation.with_url(UrlElicitationCapability::new());
        }
        caps.elicitation = Some(elicitation);
        Self::new(name, caps)
    }

    fn push(&self, s: Seen) {
        self.seen.lock().unwrap().push(s);
        self.wake.notify_waiters();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until `pred` holds for something seen; returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.wake.notified();
            if let Some(s) = self.seen().into_iter().find(|s| pred(s)) {
                return s;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: timed out waiting for {what}; saw {:#?}",
                self.name,
                self.seen()
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

impl ClientHandler for EraClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.capabilities.clone(),
            Implementation::new(self.name.clone(), "1"),
        )
    }

    async fn on_task_status(
        &self,
        params: TaskStatusNotificationParams,
        _: NotificationContext<RoleClient>,
    ) {
        self.push(Seen::Task(
            params.task.task.task_id.clone(),
            params.task.task.status,
        ));
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.push(Seen::Sampled {
            tools: params.tools.is_some(),
        });
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("answer from {}", self.name)),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let mode = match params {
            ElicitRequestParams::UrlElicitationParams { .. } => "url",
            _ => "form",
        };
        self.push(Seen::Elicited { mode });
        let answer = ElicitResult::new(ElicitationAction::Accept);
        Ok(if mode == "form" {
            answer.with_content(json!({"name": self.name}))
        } else {
            answer
        })
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.push(Seen::Roots);
        Ok(ListRootsResult::new(vec![Root::new(format!(
            "file:///home/{}",
            self.name
        ))]))
    }

    async fn on_custom_notification(
        &self,
        n: CustomNotification,
        _: NotificationContext<RoleClient>,
    ) {
        self.push(Seen::Custom(n));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.push(Seen::ToolsChanged);
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.push(Seen::Log(p));
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.push(Seen::Updated(p.uri));
    }
}
