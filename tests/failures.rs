//! Bad input and failing backends: every case gets a clear error, never a
//! hang, and one broken backend never affects the others.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rmcp::model::*;
use rmcp::service::ServiceError;
use serde_json::json;

fn rpc_code(e: &ServiceError) -> i32 {
    match e {
        ServiceError::McpError(e) => e.code.0,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_are_invalid_params_naming_them() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let client = client(&gw.url).await;
    let err = client
        .call_tool(CallToolRequestParams::new("fx__nope"))
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), -32602);
    assert!(err.to_string().contains("unknown tool `fx__nope`"), "{err}");
    let err = client
        .call_tool(CallToolRequestParams::new("nobody__echo"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown tool `nobody__echo`"),
        "{err}"
    );
    let err = client
        .get_prompt(GetPromptRequestParams::new("fx__nope"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown prompt `fx__nope`"),
        "{err}"
    );
    let err = client
        .read_resource(ReadResourceRequestParams::new("zz+fixture://info"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown resource `zz+fixture://info`"),
        "{err}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_tool_errors_and_jsonrpc_errors_pass_through_unchanged() {
    let http = fixture("http", &[]);
    let config = format!(
        "{}{}",
        stdio_backend("fx", ""),
        url_backend("web", "http", &http.url, "")
    );
    let (gw, _cfg) = gateway(&config);
    let client = client(&gw.url).await;
    for prefix in ["fx", "web"] {
        let r = client
            .call_tool(CallToolRequestParams::new(format!("{prefix}__fail")))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(first_text(&r), "fixture failure");
        let err = client
            .call_tool(CallToolRequestParams::new(format!("{prefix}__rpc_error")))
            .await
            .unwrap_err();
        assert_eq!(rpc_code(&err), -32042, "{err}");
        assert!(err.to_string().contains("fixture rpc error"), "{err}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_never_answers_times_out_with_a_tool_error() {
    let config = format!(
        "{}{}",
        stdio_backend("slow", "timeout = \"1s\""),
        stdio_backend("ok", "")
    );
    let (gw, _cfg) = gateway(&config);
    let client = client(&gw.url).await;
    let started = Instant::now();
    let r = client
        .call_tool(CallToolRequestParams::new("slow__hang"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(first_text(&r), "backend `slow` did not answer within 1s");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The same backend still serves other calls, and so do the others.
    let r = client
        .call_tool(
            CallToolRequestParams::new("slow__echo")
                .with_arguments(args(json!({"message": "still here"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "still here");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_keeps_a_call_alive_past_its_timeout_and_a_silent_call_is_cancelled_at_the_backend()
 {
    let http = fixture("http", &["--meta-tool"]);
    let config = format!(
        "{}{}",
        stdio_backend("fx", "timeout = \"1s\"\nargs = [\"--meta-tool\"]"),
        url_backend("web", "http", &http.url, "timeout = \"1s\"")
    );
    let (gw, _cfg) = gateway(&config);
    let client = client(&gw.url).await;
    // A call to a stdio or streamable-HTTP backend is sent by the gateway
    // itself (decisions 0022, 0023): its id and progress token are numbers
    // from 2^32 up, never rmcp's.
    for tool in ["fx__meta", "web__meta"] {
        let meta = client
            .call_tool(CallToolRequestParams::new(tool))
            .await
            .unwrap();
        let meta: serde_json::Value = serde_json::from_str(&first_text(&meta)).unwrap();
        assert!(
            meta["progressToken"].as_i64().is_some_and(|t| t >= 1 << 32),
            "{tool}: {meta}"
        );
    }
    for prefix in ["fx", "web"] {
        // Six steps 400 ms apart: 2.4 s in all, never 1 s without progress.
        let started = Instant::now();
        let r = client
            .call_tool(
                CallToolRequestParams::new(format!("{prefix}__progress"))
                    .with_arguments(args(json!({"steps": 6, "delay_ms": 400}))),
            )
            .await
            .unwrap();
        assert_eq!(first_text(&r), "6 steps done", "{prefix}: {r:?}");
        assert!(started.elapsed() >= Duration::from_secs(2), "{prefix}");
        // Silent for 1 s: timed out, and the backend is told to stop.
        let r = client
            .call_tool(CallToolRequestParams::new(format!("{prefix}__wait_cancel")))
            .await
            .unwrap();
        assert_eq!(
            first_text(&r),
            format!("backend `{prefix}` did not answer within 1s")
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = client
                .call_tool(CallToolRequestParams::new(format!("{prefix}__stats")))
                .await
                .unwrap();
            let stats: serde_json::Value = serde_json::from_str(&first_text(&stats)).unwrap();
            if stats["cancelled"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{prefix}: {stats}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    client.cancel().await.unwrap();
}

/// A streamable-HTTP backend that ends a call's stream before answering
/// (SEP-1699) is asked for the rest with `Last-Event-ID`, and one that
/// forgets the session (404) gets a new one, the call sent again on it and
/// run once: both on the calls the gateway POSTs itself (decision 0023).
/// The backend is `tests/backends/resuming_http.py` (Python's standard
/// library).
#[tokio::test(flavor = "multi_thread")]
async fn an_http_backend_that_ends_a_call_stream_early_or_forgets_the_session_still_answers() {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(repo().join("tests/backends/resuming_http.py"));
    let backend = spawn_listening(cmd);
    let (gw, _cfg) = gateway(&url_backend("rs", "http", &backend.url, ""));
    let client = client(&gw.url).await;
    let call = async |tool: &str, arguments: serde_json::Value| {
        let r = client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
            .await
            .unwrap();
        first_text(&r)
    };
    assert_eq!(call("rs__closes_stream", json!({})).await, "resumed");
    assert_eq!(call("rs__forget_session", json!({})).await, "forgotten");
    assert_eq!(call("rs__echo", json!({"message": "after"})).await, "after");
    assert_eq!(call("rs__closes_stream", json!({})).await, "resumed");
    let (code, calls) = common::http::get_json(&backend.url, "/calls", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        calls,
        json!({"closes_stream": 2, "forget_session": 1, "echo": 1}),
        "each call ran once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_exits_mid_call_fails_that_call_and_spares_the_others() {
    // A long restart delay keeps the crashed backend down while we look.
    let config = format!(
        "[server]\nrestart_min_backoff = \"30s\"\nrestart_max_backoff = \"30s\"\n\n{}{}",
        stdio_backend("doomed", ""),
        stdio_backend("fine", "")
    );
    let (gw, _cfg) = gateway(&config);
    let client = client(&gw.url).await;
    let r = client
        .call_tool(CallToolRequestParams::new("doomed__crash"))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(
        first_text(&r).starts_with("backend `doomed`"),
        "{}",
        first_text(&r)
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("fine__echo")
                .with_arguments(args(json!({"message": "unaffected"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "unaffected");
    // The dead backend is reported down and its tools leave the list.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(&gw.url, "/readyz");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["backends"]["doomed"]["state"] == "down" {
            assert_eq!(v["backends"]["fine"]["state"], "up");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "doomed never reported down: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("doomed__")),
        "{names:?}"
    );
    assert!(names.contains(&"fine__echo".to_string()));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_whose_command_is_missing_is_down_with_the_reason_and_the_rest_serve() {
    let config = format!(
        "[backends.ghost]\ntransport = \"stdio\"\ncommand = \"manifold-no-such-command\"\n\n{}",
        stdio_backend("real", "")
    );
    let (mut gw, _cfg) = gateway(&config);
    let (status, body) = http_get(&gw.url, "/readyz");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["backends"]["ghost"]["state"], "down");
    let reason = v["backends"]["ghost"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed to start `manifold-no-such-command`"),
        "{reason}"
    );
    let client = client(&gw.url).await;
    let r = client
        .call_tool(
            CallToolRequestParams::new("real__echo").with_arguments(args(json!({"message": "ok"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "ok");
    client.cancel().await.unwrap();
    let logs = gw.stderr_lines().join("\n");
    assert!(
        logs.contains("backend down") && logs.contains("manifold-no-such-command"),
        "{logs}"
    );
    // The log goes to a pipe here, as to a file or a journal: plain text.
    assert!(
        !logs.contains('\u{1b}'),
        "terminal escape codes in a log that is not a terminal:\n{logs}"
    );
    assert!(logs.contains("backend=ghost"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_slow_to_start_delays_nobody() {
    // `sleep` never answers `initialize`: it stays connecting for the whole timeout.
    let config = format!(
        "[server]\nconnect_timeout = \"20s\"\n\n[backends.stuck]\ntransport = \"stdio\"\ncommand = \"sleep\"\nargs = [\"60\"]\n\n{}",
        stdio_backend("quick", "")
    );
    let cfg = write_config(&config);
    let started = Instant::now();
    let gw = gateway_unready(&cfg.path);
    let client = client(&gw.url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        if names.contains(&"quick__echo".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "quick never listed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let r = client
        .call_tool(
            CallToolRequestParams::new("quick__echo")
                .with_arguments(args(json!({"message": "fast"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "fast");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let (status, body) = http_get(&gw.url, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"connecting\""), "{body}");
    client.cancel().await.unwrap();
}

/// Raw HTTP against the MCP endpoint, for what a typed client cannot send.
async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

const JSON: (&str, &str) = ("content-type", "application/json");
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn http_edge_cases_follow_the_spec() {
    let (gw, _cfg) = gateway(&format!(
        "[server]\nmax_request_bytes = 2048\n\n{}",
        stdio_backend("fx", "")
    ));
    let url = gw.url.clone();

    let (status, body) = post(&url, &[JSON, ACCEPT], "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"],
        -32700
    );

    let (status, body) = post(&url, &[JSON, ACCEPT], r#"{"hello":"world"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"],
        -32600
    );

    // `server/discover` (2026-07-28) needs its per-request `_meta`.
    let discover = r#"{"jsonrpc":"2.0","id":"d1","method":"server/discover","params":{}}"#;
    let (status, body) = post(&url, &[JSON, ACCEPT], discover).await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("_meta"),
        "{v}"
    );
    assert_eq!(v["id"], "d1");

    let (status, _) = post(
        &url,
        &[JSON, ACCEPT, ("mcp-session-id", "no-such-session")],
        LIST,
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = post(&url, &[JSON, ("accept", "application/json")], LIST).await;
    assert_eq!(status, 406);

    let (status, _) = post(&url, &[("content-type", "text/plain"), ACCEPT], LIST).await;
    assert_eq!(status, 415);

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    let (status, _) = post(&url, &[JSON, ACCEPT], big).await;
    assert_eq!(status, 413);

    assert_eq!(http_get(&url, "/healthz").0, 200);
    assert_eq!(http_get(&url, "/nowhere").0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_preferring_the_2026_lifecycle_get_it() {
    use rmcp::ClientServiceExt;
    use rmcp::service::ClientLifecycleMode;
    use rmcp::transport::StreamableHttpClientTransport;
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let transport = StreamableHttpClientTransport::from_uri(gw.url.clone());
    let mode = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::LATEST],
        legacy_version: None,
    };
    let client = ().serve_with_lifecycle(transport, mode).await.expect("auto client connects");
    assert_eq!(
        client.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28),
        "the gateway answers server/discover (docs/protocol.md)"
    );
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "fx__echo"));
    client.cancel().await.unwrap();
}
