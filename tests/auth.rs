//! Who may use the gateway: bearer tokens, per-client allow-lists, and
//! browser origin checks, against the real gateway binary over real HTTP.

mod common;

use std::process::Command;

use common::*;
use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

const FULL: &str = "tok-full-0123456789";
const LIMITED: &str = "tok-limited-0123456789";

fn auth_config() -> String {
    format!(
        r#"[[auth.tokens]]
client_id = "admin"
token = "{FULL}"

[[auth.tokens]]
client_id = "contractor"
token = "{LIMITED}"
backends = ["fx"]
tools = ["fx__echo", "fx__sle*"]

{}{}"#,
        stdio_backend("fx", ""),
        stdio_backend("other", "")
    )
}
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

async fn raw(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_token_gets_401_with_a_bearer_challenge() {
    let (gw, _cfg) = gateway(&auth_config());
    for headers in [
        vec![],
        vec![("authorization", "Bearer not-a-token")],
        vec![("authorization", "Basic dXNlcjpwdw==")],
    ] {
        let r = raw(reqwest::Method::POST, &gw.url, &headers, INIT).await;
        assert_eq!(r.status(), 401, "{headers:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"manifold\"",
            "{headers:?}"
        );
        assert!(r.headers().contains_key("x-request-id"));
    }
    // Operational routes: probes are open, status and metrics need a token.
    for (path, open) in [
        ("/healthz", true),
        ("/readyz", true),
        ("/status", false),
        ("/metrics", false),
    ] {
        let r = raw(reqwest::Method::GET, &root(&gw.url, path), &[], "").await;
        let expected = if open { 200 } else { 401 };
        assert_eq!(r.status(), expected, "{path}");
        let r = raw(
            reqwest::Method::GET,
            &root(&gw.url, path),
            &[("authorization", &format!("Bearer {FULL}"))],
            "",
        )
        .await;
        assert_eq!(r.status(), 200, "{path} with a token");
    }
    // A typed client with a wrong token cannot connect; with a right one it can.
    let config =
        StreamableHttpClientTransportConfig::with_uri(gw.url.clone()).auth_header("nope-nope-nope");
    assert!(
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .is_err()
    );
    let client = authed_client(&gw.url, FULL).await;
    assert!(!client.list_all_tools().await.unwrap().is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokens_allow_list_filters_lists_and_refuses_calls() {
    let (gw, _cfg) = gateway(&auth_config());
    let limited = authed_client(&gw.url, LIMITED).await;
    let mut names: Vec<String> = limited
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["fx__echo", "fx__sleep"]);
    let prompts = limited.list_all_prompts().await.unwrap();
    assert!(!prompts.is_empty());
    assert!(
        prompts.iter().all(|p| p.name.starts_with("fx__")),
        "{prompts:?}"
    );
    let resources = limited.list_all_resources().await.unwrap();
    assert!(
        resources.iter().all(|r| r.uri.starts_with("fx+")),
        "{resources:?}"
    );

    let r = limited
        .call_tool(
            CallToolRequestParams::new("fx__echo").with_arguments(args(json!({"message": "hi"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "hi");
    for name in ["other__echo", "fx__fail", "gateway_status"] {
        let err = limited
            .call_tool(CallToolRequestParams::new(name))
            .await
            .unwrap_err();
        let ServiceError::McpError(e) = &err else {
            panic!("expected a JSON-RPC error, got {err}");
        };
        assert_eq!(e.code.0, -32005, "{name}: {err}");
        assert!(
            e.message
                .contains("client `contractor` is not allowed to use tool"),
            "{name}: {}",
            e.message
        );
    }
    let err = limited
        .get_prompt(GetPromptRequestParams::new(
            prompts[0].name.replacen("fx__", "other__", 1),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");

    // The unrestricted client sees everything, and built-in sets learn its
    // authenticated id under `io.manifold/auth`.
    let admin = authed_client(&gw.url, FULL).await;
    let all = admin.list_all_tools().await.unwrap();
    assert!(all.iter().any(|t| t.name == "other__echo"));
    assert!(all.iter().any(|t| t.name == "gateway_status"));
    let status = admin
        .call_tool(CallToolRequestParams::new("gateway_status"))
        .await
        .unwrap();
    let caller = &status.structured_content.unwrap()["caller"];
    assert_eq!(caller["authenticated"], "admin");
    assert_eq!(caller["client"], "admin");
    limited.cancel().await.unwrap();
    admin.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_cannot_be_used_with_another_clients_token() {
    let (gw, _cfg) = gateway(&auth_config());
    let r = raw(
        reqwest::Method::POST,
        &gw.url,
        &[("authorization", &format!("Bearer {LIMITED}"))],
        INIT,
    )
    .await;
    assert_eq!(r.status(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let _ = r.text().await;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let r = raw(
        reqwest::Method::POST,
        &gw.url,
        &[
            ("authorization", &format!("Bearer {FULL}")),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        list,
    )
    .await;
    // Answered as an unknown session, without reaching it (any method).
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.contains("Session not found"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_never_appear_in_logs() {
    let file = write_config(&auth_config());
    let mut cmd = Command::new(MANIFOLD);
    cmd.arg("serve")
        .arg("--config")
        .arg(&file.path)
        .args(["--listen", "127.0.0.1:0"])
        // As verbose as it gets, rmcp and hyper included.
        .env("RUST_LOG", "trace");
    let mut gw = spawn_listening(cmd);
    while http_get(&gw.url, "/readyz").0 != 200 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let client = authed_client(&gw.url, LIMITED).await;
    let _ = client
        .call_tool(
            CallToolRequestParams::new("fx__echo").with_arguments(args(json!({"message": "x"}))),
        )
        .await
        .unwrap();
    let _ = client
        .call_tool(CallToolRequestParams::new("other__echo"))
        .await;
    client.cancel().await.unwrap();
    let wrong = "tok-wrong-guess-0123456789";
    let r = raw(
        reqwest::Method::POST,
        &gw.url,
        &[("authorization", &format!("Bearer {wrong}"))],
        INIT,
    )
    .await;
    assert_eq!(r.status(), 401);
    let mut lines = Vec::new();
    wait_blocking("the refusal to be logged", 10, || {
        lines.extend(gw.stderr_lines());
        lines.iter().any(|l| l.contains("unauthorized"))
    });
    let status = gw.terminate();
    assert!(status.success());
    lines.extend(gw.stderr_lines());
    assert!(
        lines.len() > 20,
        "expected verbose logs, got {}",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("unauthorized")),
        "the refusal is logged"
    );
    for secret in [FULL, LIMITED, wrong] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "token leaked into logs: {leaks:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_requests_from_foreign_origins_or_hosts_are_refused() {
    let (gw, _cfg) = gateway(&format!(
        "[server]\nallowed_origins = [\"https://app.example.com\"]\n\n{}",
        stdio_backend("fx", "")
    ));
    let status = root(&gw.url, "/status");
    for (origin, expected) in [
        ("http://evil.example.net", 403),
        ("https://app.example.com:8443", 403),
        ("null", 403),
        ("https://app.example.com", 200),
        ("http://localhost:6274", 200),
    ] {
        let r = raw(reqwest::Method::GET, &status, &[("origin", origin)], "").await;
        assert_eq!(r.status(), expected, "{origin}");
    }
    let r = raw(
        reqwest::Method::POST,
        &gw.url,
        &[("origin", "http://evil.example.net")],
        INIT,
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Origin is not allowed"));
    // A rebinding page reaches us under its own host name.
    let r = raw(
        reqwest::Method::GET,
        &status,
        &[("host", "evil.example.net")],
        "",
    )
    .await;
    assert_eq!(r.status(), 403);
    // Probes sit behind the same Host check (issue 8, finding 5): a foreign
    // host name gets nothing, not even the backends' states.
    let r = raw(
        reqwest::Method::GET,
        &root(&gw.url, "/healthz"),
        &[("host", "10.0.0.7:8123")],
        "",
    )
    .await;
    assert_eq!(r.status(), 403);
}

#[test]
fn check_names_clients_and_never_prints_tokens() {
    let file = write_config(&auth_config());
    let out = Command::new(MANIFOLD)
        .arg("check")
        .arg(&file.path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("auth: bearer tokens for admin, contractor"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(FULL) && !stdout.contains(LIMITED),
        "{stdout}"
    );
    // A rejected token is named by its client, not echoed.
    let file = write_config(
        "[[auth.tokens]]\nclient_id = \"x\"\ntoken = \"short 1\"\n\n[[auth.tokens]]\nclient_id = \"x\"\ntoken = \"long-enough-1\"\nbackends = [\"[\"]\n",
    );
    let out = Command::new(MANIFOLD)
        .arg("check")
        .arg(&file.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("gateway.toml:3:9: the token of client `x` must be at least 8 printable ASCII characters"), "{stderr}");
    assert!(
        stderr.contains("gateway.toml:6:13: client_id \"x\" is declared twice"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gateway.toml:8:13: invalid glob pattern"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("short 1") && !stderr.contains("long-enough-1"),
        "{stderr}"
    );
}
