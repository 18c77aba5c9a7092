//! Sampling and elicitation requests from `@modelcontextprotocol/server-everything`
//! (software nobody here wrote) reach exactly the client whose call caused
//! them, with two clients whose requests overlap, in the three cases the
//! wire allows: streamable HTTP on a shared connection (exact), stdio on a
//! shared connection (exact, or a clear error, never the other client), and
//! stdio with per-session isolation (exact).
#![allow(deprecated)] // sampling is deprecated by SEP-2577 but is the ≤2025-11-25 wire protocol

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::*;
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::json;

const EVERYTHING: &str =
    ".test-deps/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

fn everything() -> Option<PathBuf> {
    let path = repo().join(EVERYTHING);
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require_or_skip(
        &format!("server-everything ({})", path.display()),
        path.exists() && node,
    )
    .then_some(path)
}

/// A client that answers sampling and elicitation with its own name and counts the requests.
#[derive(Clone)]
struct Named {
    name: String,
    asked: Arc<Mutex<usize>>,
}

impl ClientHandler for Named {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(caps, Implementation::new(self.name.clone(), "1"))
    }

    async fn create_message(
        &self,
        _: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        *self.asked.lock().unwrap() += 1;
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("answer from {}", self.name)),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        _: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        *self.asked.lock().unwrap() += 1;
        Ok(ElicitResult::new(ElicitationAction::Decline))
    }
}

async fn named(url: &str, name: &str) -> (RunningService<RoleClient, Named>, Arc<Mutex<usize>>) {
    let asked = Arc::new(Mutex::new(0));
    let handler = Named {
        name: name.into(),
        asked: asked.clone(),
    };
    (
        handler
            .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
            .await
            .unwrap(),
        asked,
    )
}

async fn sample(c: &RunningService<RoleClient, Named>) -> String {
    let r = c
        .call_tool(
            CallToolRequestParams::new("everything__trigger-sampling-request")
                .with_arguments(args(json!({"prompt": "who are you?"}))),
        )
        .await
        .unwrap();
    serde_json::to_string(&r.content).unwrap()
}

/// server-everything over streamable HTTP on a free loopback port.
struct Served(Child);
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_everything_http(entry: &Path) -> (Served, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("node")
        .arg(entry)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Served(child), format!("http://127.0.0.1:{port}/mcp"))
}

fn stdio_everything(entry: &Path, extra: &str) -> String {
    format!(
        "[backends.everything]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n{extra}\n",
        entry.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_over_streamable_http_sampling_and_elicitation_reach_exactly_the_caller() {
    let Some(entry) = everything() else { return };
    let (_server, url) = serve_everything_http(&entry);
    let (gw, _cfg) = gateway(&url_backend("everything", "http", &url, ""));
    let (a, asked_a) = named(&gw.url, "A").await;
    let (b, asked_b) = named(&gw.url, "B").await;
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(sample(&a), sample(&b));
        assert!(
            ra.contains("answer from A") && !ra.contains("answer from B"),
            "{ra}"
        );
        assert!(
            rb.contains("answer from B") && !rb.contains("answer from A"),
            "{rb}"
        );
    }
    let (ea, eb) = tokio::join!(
        a.call_tool(CallToolRequestParams::new(
            "everything__trigger-elicitation-request"
        )),
        b.call_tool(CallToolRequestParams::new(
            "everything__trigger-elicitation-request"
        ))
    );
    ea.unwrap();
    eb.unwrap();
    assert_eq!(*asked_a.lock().unwrap(), 4);
    assert_eq!(*asked_b.lock().unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_over_shared_stdio_is_exact_for_one_session_and_never_asks_the_other() {
    let Some(entry) = everything() else { return };
    let (gw, _cfg) = gateway(&stdio_everything(&entry, ""));
    let (a, asked_a) = named(&gw.url, "A").await;
    let (b, asked_b) = named(&gw.url, "B").await;
    assert!(sample(&a).await.contains("answer from A"));
    assert!(sample(&b).await.contains("answer from B"));
    // Overlapping: A's question and B's question are in flight on one stdio
    // connection. Each answer is the asker's own, or a clear refusal.
    let (ra, rb) = tokio::join!(sample(&a), sample(&b));
    for (r, me, other) in [(&ra, "A", "B"), (&rb, "B", "A")] {
        assert!(
            !r.contains(&format!("answer from {other}")),
            "{me} got {other}'s answer: {r}"
        );
        assert!(
            r.contains(&format!("answer from {me}"))
                || r.contains("isolation = \\\"per_session\\\""),
            "{me}: {r}"
        );
    }
    assert!(*asked_a.lock().unwrap() <= 2 && *asked_b.lock().unwrap() <= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_over_per_session_stdio_is_exact_with_overlapping_requests() {
    let Some(entry) = everything() else { return };
    let (gw, _cfg) = gateway(&stdio_everything(&entry, "isolation = \"per_session\""));
    let (a, asked_a) = named(&gw.url, "A").await;
    let (b, asked_b) = named(&gw.url, "B").await;
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(sample(&a), sample(&b));
        assert!(
            ra.contains("answer from A") && !ra.contains("answer from B"),
            "{ra}"
        );
        assert!(
            rb.contains("answer from B") && !rb.contains("answer from A"),
            "{rb}"
        );
    }
    assert_eq!(*asked_a.lock().unwrap(), 3);
    assert_eq!(*asked_b.lock().unwrap(), 3);
}
