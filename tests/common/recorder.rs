//! A client that records the log notifications it is pushed (and wakes
//! waiters on each), and tool-call helpers that say what failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::*;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;

use super::{args, first_text};

/// Records every `notifications/message` it receives.
#[derive(Clone)]
pub struct Recorder {
    pub name: String,
    pub logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
    /// Woken on every notification, so tests wait without sleeping.
    pub wake: Arc<tokio::sync::Notify>,
}

impl Recorder {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            logs: Arc::default(),
            wake: Arc::default(),
        }
    }
    pub fn logs(&self, logger: &str) -> Vec<LoggingMessageNotificationParam> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.logger.as_deref() == Some(logger))
            .cloned()
            .collect()
    }
    /// Waits until `n` notifications from `logger` arrived (10 s at most).
    pub async fn wait_for(&self, logger: &str, n: usize) -> Vec<LoggingMessageNotificationParam> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.wake.notified();
            let logs = self.logs(logger);
            if logs.len() >= n {
                return logs;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: timed out waiting for {n} `{logger}` notifications; got {logs:#?}",
                self.name
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(self.name.clone(), "1"),
        )
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(p);
        self.wake.notify_waiters();
    }
}

pub type Rc = RunningService<RoleClient, Recorder>;

pub async fn connect(url: &str, name: &str) -> (Rc, Recorder) {
    let recorder = Recorder::new(name);
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("client connects");
    (client, recorder)
}

/// A client that sends `Authorization: Bearer {token}`.
pub async fn connect_with_token(url: &str, name: &str, token: &str) -> (Rc, Recorder) {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let recorder = Recorder::new(name);
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects with its token");
    (client, recorder)
}

pub async fn call(client: &Rc, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// A call that must succeed; returns its text and structured content.
pub async fn ok(client: &Rc, tool: &str, arguments: Value) -> (String, Value) {
    let r = call(client, tool, arguments).await;
    let text = first_text(&r);
    assert_ne!(r.is_error, Some(true), "{tool} failed: {text}");
    (text, r.structured_content.unwrap_or_default())
}

/// A call that must fail as a tool error; returns the error text.
pub async fn tool_error(client: &Rc, tool: &str, arguments: Value) -> String {
    let r = call(client, tool, arguments).await;
    let text = first_text(&r);
    assert_eq!(r.is_error, Some(true), "{tool} should have failed: {text}");
    text
}
