//! Interop with MCP software nobody on this project wrote: the reference
//! `server-everything` mounted as a backend, and the official Python SDK and
//! inspector CLI as clients of the gateway.
//!
//! The third-party programs live in the git-ignored `.test-deps/` that
//! `scripts/install-test-deps.sh` fills. When they are missing each test prints
//! a SKIPPED line and passes, unless `MANIFOLD_REQUIRE_INTEROP` is set (as in
//! CI), in which case it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::child::{json_stdout, run_bounded};
use common::*;
use rmcp::model::*;
use serde_json::{Value, json};

fn test_deps(rel: &str) -> PathBuf {
    repo().join(".test-deps").join(rel)
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The installed file at `.test-deps/<rel>`, or `None` after reporting it as skipped.
fn require_dep(what: &str, rel: &str, needs_node: bool) -> Option<PathBuf> {
    let path = test_deps(rel);
    let present = path.exists() && (!needs_node || node_available());
    require_or_skip(&format!("{what} ({})", path.display()), present).then_some(path)
}

const EVERYTHING_ENTRY: &str = "node_modules/@modelcontextprotocol/server-everything/dist/index.js";
const INSPECTOR_CLI: &str = "node_modules/@modelcontextprotocol/inspector/cli/build/cli.js";
const VENV_PYTHON: &str = "venv/bin/python";

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_over_stdio_through_the_gateway() {
    let Some(entry) = require_dep(
        "@modelcontextprotocol/server-everything",
        EVERYTHING_ENTRY,
        true,
    ) else {
        return;
    };
    let config = format!(
        "[backends.everything]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        entry.display().to_string()
    );
    let (gw, _cfg) = gateway(&config);
    let client = client(&gw.url).await;

    let instructions = client
        .peer_info()
        .and_then(|i| i.instructions.clone())
        .unwrap_or_default();
    assert!(
        instructions.contains("## everything") && instructions.contains("Everything Server"),
        "gateway instructions lack the backend's:\n{instructions}"
    );

    // The gateway declares no roots, sampling or elicitation capability to its
    // backends, so server-everything registers none of the tools that need them
    // (get-roots-list, trigger-sampling-request, trigger-elicitation-request, ...).
    let tools = sorted(
        client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect(),
    );
    let expected: Vec<String> = [
        "echo",
        "get-annotated-message",
        "get-env",
        "get-resource-links",
        "get-resource-reference",
        // Registered because the gateway tells backends it relays roots,
        // sampling and elicitation to clients.
        "get-roots-list",
        "get-structured-content",
        "get-sum",
        "get-tiny-image",
        "gzip-file-as-resource",
        "simulate-research-query",
        "toggle-simulated-logging",
        "toggle-subscriber-updates",
        "trigger-elicitation-request",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        // Registered because the gateway tells backends it relays URL-mode
        // elicitation (2025-11-25) to clients that declared it.
        "trigger-url-elicitation",
    ]
    .iter()
    .map(|n| format!("everything__{n}"))
    .collect();
    // The gateway's own tools (bare names, no separator) are listed too.
    assert!(tools.contains(&"gateway_status".to_string()), "{tools:?}");
    let tools: Vec<String> = tools.into_iter().filter(|t| t.contains("__")).collect();
    assert_eq!(tools, expected);

    let echo = client
        .call_tool(
            CallToolRequestParams::new("everything__echo")
                .with_arguments(args(json!({"message": "through manifold"}))),
        )
        .await
        .unwrap();
    assert_ne!(echo.is_error, Some(true));
    assert_eq!(first_text(&echo), "Echo: through manifold");

    // Resource links in a tool result come back with the exposed URI.
    let links = client
        .call_tool(
            CallToolRequestParams::new("everything__get-resource-links")
                .with_arguments(args(json!({"count": 2}))),
        )
        .await
        .unwrap();
    let link_uris: Vec<&str> = links
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::ResourceLink(r) => Some(r.uri.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        link_uris,
        vec![
            "everything+demo://resource/dynamic/blob/1",
            "everything+demo://resource/dynamic/text/2"
        ]
    );

    let prompts = sorted(
        client
            .list_all_prompts()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect(),
    );
    assert_eq!(
        prompts,
        vec![
            "everything__args-prompt",
            "everything__completable-prompt",
            "everything__resource-prompt",
            "everything__simple-prompt"
        ]
    );
    let simple = client
        .get_prompt(GetPromptRequestParams::new("everything__simple-prompt"))
        .await
        .unwrap();
    let text = serde_json::to_string(&simple.messages).unwrap();
    assert!(
        text.contains("This is a simple prompt without arguments."),
        "{text}"
    );
    let with_args = client
        .get_prompt(
            GetPromptRequestParams::new("everything__args-prompt")
                .with_arguments(args(json!({"city": "Lisbon"}))),
        )
        .await
        .unwrap();
    let text = serde_json::to_string(&with_args.messages).unwrap();
    assert!(text.contains("What's weather in Lisbon?"), "{text}");
    let done = client
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("everything__completable-prompt"),
            ArgumentInfo::new("department", "Ma"),
        ))
        .await
        .unwrap();
    assert_eq!(done.completion.values, vec!["Marketing"]);

    let resources: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    let docs = [
        "architecture.md",
        "extension.md",
        "features.md",
        "how-it-works.md",
        "instructions.md",
        "startup.md",
        "structure.md",
    ];
    assert_eq!(
        sorted(resources),
        docs.iter()
            .map(|d| format!("everything+demo://resource/static/document/{d}"))
            .collect::<Vec<_>>()
    );
    let uri = "everything+demo://resource/static/document/features.md";
    let read = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap();
    let (got_uri, body) = only_text(&read);
    assert_eq!(got_uri, uri);
    assert!(body.starts_with("# Everything Server"), "{body}");

    let templates: Vec<String> = client
        .list_all_resource_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.uri_template.clone())
        .collect();
    assert_eq!(
        sorted(templates),
        vec![
            "everything+demo://resource/dynamic/blob/{resourceId}",
            "everything+demo://resource/dynamic/text/{resourceId}"
        ]
    );
    let uri = "everything+demo://resource/dynamic/text/3";
    let read = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap();
    let (got_uri, body) = only_text(&read);
    assert_eq!(got_uri, uri);
    assert!(
        body.starts_with("Resource 3: This is a plaintext resource"),
        "{body}"
    );
    client.cancel().await.unwrap();
}

#[test]
fn python_sdk_client_drives_the_gateway() {
    let Some(python) = require_dep("Python venv with the `mcp` SDK", VENV_PYTHON, false) else {
        return;
    };
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/interop/python_client.py"))
        .arg(&gw.url);
    let run = run_bounded(cmd);
    let out = json_stdout("python_client.py", &run);
    let legacy = &out["legacy"];
    // Every failure shows the whole summary and the script's stderr.
    let ctx = format!("{out:#}\nstderr:\n{}", run.stderr);

    assert_eq!(legacy["initialize"]["server_name"], "manifold", "{ctx}");
    for capability in ["has_tools", "has_prompts", "has_resources"] {
        assert_eq!(legacy["initialize"][capability], true, "{ctx}");
    }
    let tools: Vec<&str> = legacy["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {ctx}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"fx__echo"), "{ctx}");
    assert!(
        tools
            .iter()
            .all(|t| t.starts_with("fx__") || !t.contains("__")),
        "{ctx}"
    );
    assert_eq!(
        legacy["echo"],
        json!({"is_error": false, "text": "from python"}),
        "{ctx}"
    );
    let unknown = &legacy["unknown_tool"];
    assert_eq!(unknown["raised"], true, "{ctx}");
    assert_eq!(unknown["code"], -32602, "{ctx}");
    assert!(
        unknown["message"]
            .as_str()
            .is_some_and(|m| m.contains("fx__no_such_tool")),
        "{ctx}"
    );
    assert_eq!(legacy["resources"], json!(["fx+fixture://info"]), "{ctx}");
    assert_eq!(
        legacy["read"],
        json!([{"uri": "fx+fixture://info", "text": "fixture fixture"}]),
        "{ctx}"
    );
    assert_eq!(
        legacy["templates"],
        json!(["fx+fixture://items/{id}"]),
        "{ctx}"
    );
    assert_eq!(
        legacy["prompt"],
        json!([{"role": "user", "text": "Hello, Grace!"}]),
        "{ctx}"
    );
    assert!(legacy.get("session_error").is_none(), "{ctx}");

    // The SDK's default `Client(url)` probes `server/discover` first: the
    // gateway answers it, so the SDK speaks 2026-07-28 (docs/protocol.md).
    let auto = &out["auto"];
    assert!(auto.get("session_error").is_none(), "{ctx}");
    assert_eq!(auto["protocol_version"], "2026-07-28", "{ctx}");
    assert_eq!(
        auto["echo"],
        json!({"is_error": false, "text": "auto mode"}),
        "{ctx}"
    );
}

/// Runs the inspector CLI against `url` with `extra` arguments and returns its JSON output.
fn inspector(cli: &Path, url: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(cli)
        .args(["--cli", url, "--transport", "http"])
        .args(extra);
    json_stdout(&format!("inspector {extra:?}"), &run_bounded(cmd))
}

#[test]
fn inspector_cli_lists_and_calls_tools() {
    let Some(cli) = require_dep("@modelcontextprotocol/inspector", INSPECTOR_CLI, true) else {
        return;
    };
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));

    let listed = inspector(&cli, &gw.url, &["--method", "tools/list"]);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {listed:#}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"fx__echo"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("fx__") || !n.contains("__")),
        "{names:?}"
    );

    let called = inspector(
        &cli,
        &gw.url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "fx__echo",
            "--tool-arg",
            "message=hi",
        ],
    );
    assert_eq!(called["content"], json!([{"type": "text", "text": "hi"}]));
    assert_ne!(called["isError"], true, "{called:#}");

    let prompt = inspector(
        &cli,
        &gw.url,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "fx__greet",
            "--prompt-args",
            "name=Ada",
        ],
    );
    assert_eq!(
        prompt["messages"][0]["content"]["text"], "Hello, Ada!",
        "{prompt:#}"
    );
}
