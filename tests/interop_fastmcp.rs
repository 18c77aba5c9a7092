//! Interop with fastmcp (PyPI `fastmcp`), a third-party Python MCP framework, both ways:
//! its `Client` drives the gateway over streamable HTTP in each of its connect modes
//! (`tests/interop/fastmcp_client.py`), and a fastmcp server mounted as a stdio backend is
//! driven through the gateway by rmcp's client (`tests/interop/fastmcp_server.py`).
//!
//! fastmcp lives in its own venv, `.test-deps/venv-fastmcp`, which
//! `scripts/install-test-deps.sh` fills (it pins its own `mcp` SDK, which must not move the
//! one `tests/interop.rs` uses). When it is missing each test prints a SKIPPED line and
//! passes, unless `MANIFOLD_REQUIRE_INTEROP` is set (as in CI), in which case it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::child::{json_stdout, run_bounded};
use common::*;
use rmcp::model::*;
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

const FASTMCP_PYTHON: &str = ".test-deps/venv-fastmcp/bin/python";

/// The fastmcp venv's Python, or `None` after reporting it as skipped.
fn fastmcp_python() -> Option<PathBuf> {
    let path = repo().join(FASTMCP_PYTHON);
    require_or_skip(
        &format!("Python venv with fastmcp ({})", path.display()),
        path.exists(),
    )
    .then_some(path)
}

/// Runs `fastmcp_client.py` in `mode` against a gateway mounting the fixture as `fx`, and
/// checks everything that does not depend on the mode. Returns the mode's summary.
fn fastmcp_client_in_mode(python: &PathBuf, mode: &str) -> Value {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/interop/fastmcp_client.py"))
        .arg(&gw.url)
        .arg(mode);
    let run = run_bounded(cmd);
    let out = json_stdout(&format!("fastmcp_client.py {mode}"), &run);
    let got = out[mode].clone();
    // Every failure shows the whole summary and the script's stderr.
    let ctx = format!("{out:#}\nstderr:\n{}", run.stderr);

    assert!(got.get("session_error").is_none(), "{ctx}");
    let tools: Vec<&str> = got["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {ctx}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in ["fx__echo", "fx__progress", "fx__sample", "fx__elicit"] {
        assert!(tools.contains(&tool), "{tool} missing: {ctx}");
    }
    // Backend tools are prefixed; the gateway's own (gateway_status) have no separator.
    assert!(
        tools
            .iter()
            .all(|t| t.starts_with("fx__") || !t.contains("__")),
        "{ctx}"
    );
    assert_eq!(
        got["echo"],
        json!({"is_error": false, "text": format!("fastmcp {mode}")}),
        "{ctx}"
    );
    assert_eq!(
        got["fail"],
        json!({"is_error": true, "text": "fixture failure"}),
        "{ctx}"
    );

    // The backend's progress reached the handler fastmcp registered for the call.
    assert_eq!(
        got["progress"]["result"],
        json!({"is_error": false, "text": "3 steps done"}),
        "{ctx}"
    );
    assert_eq!(
        got["progress"]["notifications"],
        json!([
            {"progress": 1.0, "total": 3.0},
            {"progress": 2.0, "total": 3.0},
            {"progress": 3.0, "total": 3.0}
        ]),
        "{ctx}"
    );

    // The backend's sampling, elicitation and roots requests reached fastmcp's handlers,
    // and their answers reached the backend.
    assert_eq!(
        got["sample"],
        json!({"is_error": false, "text": "sampled: ping"}),
        "{ctx}"
    );
    assert_eq!(got["asked"]["sampling"], json!(["ping"]), "{ctx}");
    assert_eq!(got["elicit"]["is_error"], false, "{ctx}");
    let elicited: Value = got["elicit"]["text"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| panic!("elicit did not return JSON: {ctx}"));
    assert_eq!(
        elicited,
        json!({"action": "accept", "content": {"name": "fastmcp"}}),
        "{ctx}"
    );
    assert_eq!(
        got["asked"]["elicitation"],
        json!(["Who are you?"]),
        "{ctx}"
    );
    assert_eq!(
        got["roots"],
        json!({"is_error": false, "text": "file:///tmp/fastmcp-interop-root"}),
        "{ctx}"
    );

    assert_eq!(got["resources"], json!(["fx+fixture://info"]), "{ctx}");
    assert_eq!(
        got["read"],
        json!([{"uri": "fx+fixture://info", "text": "fixture fixture"}]),
        "{ctx}"
    );
    assert_eq!(
        got["prompt"],
        json!([{"role": "user", "text": "Hello, Ada!"}]),
        "{ctx}"
    );
    got
}

#[test]
fn fastmcp_client_in_legacy_mode_drives_the_gateway() {
    let Some(python) = fastmcp_python() else {
        return;
    };
    let got = fastmcp_client_in_mode(&python, "legacy");
    assert_eq!(got["connect"]["protocol_version"], "2025-11-25", "{got:#}");
    assert_eq!(got["connect"]["server_name"], "manifold", "{got:#}");
    assert_eq!(got["connect"]["has_tools"], true, "{got:#}");
}

/// fastmcp's default: it probes `server/discover`, which the gateway answers, so it speaks
/// 2026-07-28 and the backend's questions come back to it as `InputRequired`.
#[test]
fn fastmcp_client_in_auto_mode_speaks_2026_07_28_to_the_gateway() {
    let Some(python) = fastmcp_python() else {
        return;
    };
    let got = fastmcp_client_in_mode(&python, "auto");
    assert_eq!(got["connect"]["protocol_version"], "2026-07-28", "{got:#}");
    assert_eq!(got["connect"]["server_name"], "manifold", "{got:#}");
    assert_eq!(got["connect"]["has_tools"], true, "{got:#}");
}

/// `mode="2026-07-28"` adopts the version without any probe, so the first request the
/// gateway sees is a stateless `tools/list`. fastmcp then knows neither the server's name nor
/// its capabilities (it made up a `DiscoverResult`), so only the version is checked here.
#[test]
fn fastmcp_client_pinned_to_2026_07_28_drives_the_gateway() {
    let Some(python) = fastmcp_python() else {
        return;
    };
    let got = fastmcp_client_in_mode(&python, "2026-07-28");
    assert_eq!(got["connect"]["protocol_version"], "2026-07-28", "{got:#}");
}

// --- a fastmcp server behind the gateway ----------------------------------------------------

/// An rmcp client that records the progress notifications it gets.
#[derive(Clone, Default)]
struct ProgressRecorder(Arc<Mutex<Vec<ProgressNotificationParam>>>);

impl ProgressRecorder {
    fn seen(&self) -> Vec<ProgressNotificationParam> {
        self.0.lock().unwrap().clone()
    }
}

impl ClientHandler for ProgressRecorder {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.0.lock().unwrap().push(p);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fastmcp_server_over_stdio_through_the_gateway() {
    let Some(python) = fastmcp_python() else {
        return;
    };
    let script = repo().join("tests/interop/fastmcp_server.py");
    let config = format!(
        "[backends.py]\ntransport = \"stdio\"\ncommand = {:?}\nargs = [{:?}]\n",
        python.display().to_string(),
        script.display().to_string()
    );
    let (gw, _cfg) = gateway(&config);
    let recorder = ProgressRecorder::default();
    let client: RunningService<RoleClient, ProgressRecorder> = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(gw.url.clone()))
        .await
        .expect("client connects");

    let instructions = client
        .peer_info()
        .and_then(|i| i.instructions.clone())
        .unwrap_or_default();
    assert!(
        instructions.contains("## py")
            && instructions.contains("A fastmcp server mounted behind Manifold."),
        "gateway instructions lack the backend's:\n{instructions}"
    );

    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .filter(|n| n.contains("__"))
        .collect();
    assert_eq!(sorted(tools), ["py__add", "py__count_to", "py__shout"]);

    let call = |name: &str, arguments: Value| {
        CallToolRequestParams::new(name.to_string()).with_arguments(args(arguments))
    };
    let shout = client
        .call_tool(call("py__shout", json!({"text": "through manifold"})))
        .await
        .unwrap();
    assert_ne!(shout.is_error, Some(true), "{shout:?}");
    assert_eq!(first_text(&shout), "THROUGH MANIFOLD!");
    let sum = client
        .call_tool(call("py__add", json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(first_text(&sum), "42");
    assert_eq!(sum.structured_content, Some(json!({"result": 42})));
    // fastmcp validates arguments against the schema it derived from the type hints.
    let bad = client
        .call_tool(call("py__add", json!({"a": "two", "b": 40})))
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true), "{bad:?}");

    // Progress: the notifications carry this request's token and fastmcp's messages.
    let request =
        ClientRequest::CallToolRequest(CallToolRequest::new(call("py__count_to", json!({"n": 3}))));
    let handle = client
        .peer()
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let answer = handle.await_response().await.unwrap();
    let ServerResult::CallToolResult(counted) = answer else {
        panic!("count_to answered {answer:?}");
    };
    assert_eq!(first_text(&counted), "counted to 3");
    wait_for("three progress notifications", 10, || {
        recorder.seen().len() >= 3
    })
    .await;
    let progress = recorder.seen();
    // rmcp's client runs each notification's handler on a task of its own,
    // so the recorder may see them in any order; the order on the wire is
    // asserted with a raw client in tests/json_reply.rs.
    let mut steps: Vec<(f64, Option<f64>, Option<String>)> = progress
        .iter()
        .map(|p| (p.progress, p.total, p.message.clone()))
        .collect();
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        steps,
        (1..=3)
            .map(|i| (i as f64, Some(3.0), Some(format!("step {i}"))))
            .collect::<Vec<_>>()
    );
    assert!(
        progress.iter().all(|p| p.progress_token == token),
        "foreign token in {progress:?}"
    );

    let resources: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(resources, ["py+memo://greeting"]);
    let read = client
        .read_resource(ReadResourceRequestParams::new("py+memo://greeting"))
        .await
        .unwrap();
    assert_eq!(
        only_text(&read),
        ("py+memo://greeting", "hello from fastmcp")
    );
    let templates: Vec<String> = client
        .list_all_resource_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.uri_template.clone())
        .collect();
    assert_eq!(templates, ["py+memo://notes/{name}"]);
    let read = client
        .read_resource(ReadResourceRequestParams::new("py+memo://notes/rust"))
        .await
        .unwrap();
    assert_eq!(
        only_text(&read),
        ("py+memo://notes/rust", "note about rust")
    );

    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, ["py__haiku"]);
    let haiku = client
        .get_prompt(
            GetPromptRequestParams::new("py__haiku").with_arguments(args(json!({"topic": "Rust"}))),
        )
        .await
        .unwrap();
    let messages = serde_json::to_value(&haiku.messages).unwrap();
    assert_eq!(messages[0]["role"], "user", "{messages:#}");
    assert_eq!(
        messages[0]["content"]["text"], "Write a haiku about Rust.",
        "{messages:#}"
    );
    client.cancel().await.unwrap();
}
