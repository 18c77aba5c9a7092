//! Server-to-client requests for 2026-07-28 clients (issue 12, item 2; ADR
//! 0015): a backend of the initialize era asks for sampling, elicitation or
//! roots during a 2026-07-28 client's call; the gateway parks the call,
//! answers `InputRequired` with a sealed `requestState`, and resumes the call
//! with the client's answers. The real gateway binary with the fixture
//! backend, driven by rmcp's client in discover mode and by raw HTTP where a
//! test needs to send what a well-behaved client never would.
#![allow(deprecated)] // sampling is deprecated by SEP-2577 but is still the wire protocol

mod common;
mod eras_support;

use common::*;
use eras_support::{EraClient, Seen};
use rmcp::model::*;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

type Era = RunningService<rmcp::RoleClient, EraClient>;

async fn modern_client(url: &str, handler: EraClient) -> Era {
    handler
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url.to_string()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("client connects")
}

/// An initialize-era client with `handler`.
async fn legacy_client(url: &str, handler: EraClient) -> Era {
    handler
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url.to_string()),
            ClientLifecycleMode::Initialize,
        )
        .await
        .expect("client connects")
}

/// A raw 2026-07-28 `tools/call`: `extra` is merged into its params (for
/// `inputResponses` and `requestState`); `token` is the bearer token. Its reply.
async fn call(url: &str, token: Option<&str>, tool: &str, arguments: Value, extra: Value) -> Value {
    let text = post(url, token, tool, arguments, extra).await;
    // A JSON body, or an SSE stream whose last `data:` line with an id holds the reply.
    let reply = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| d.contains("\"id\""))
        .unwrap_or(text.as_str());
    serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The same request; the whole response body.
async fn post(
    url: &str,
    token: Option<&str>,
    tool: &str,
    arguments: Value,
    extra: Value,
) -> String {
    let mut params = json!({
        "name": tool, "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}, "elicitation": {}, "roots": {}}
        }
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        params[k] = v;
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request
        .send()
        .await
        .expect("POST")
        .text()
        .await
        .expect("body")
}

/// The one question of an `InputRequired` reply, and its `requestState`.
fn asked(reply: &Value) -> (String, Value, String) {
    let result = &reply["result"];
    assert_eq!(result["resultType"], "input_required", "{reply}");
    let requests = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{reply}");
    let (key, request) = requests.iter().next().expect("one");
    let state = result["requestState"].as_str().expect("requestState");
    (key.clone(), request.clone(), state.to_string())
}

fn sampling_answer(text: &str) -> Value {
    json!({"role": "assistant", "content": {"type": "text", "text": text}, "model": "test-model"})
}

fn error_of(reply: &Value) -> (i64, String) {
    let e = &reply["error"];
    (
        e["code"].as_i64().unwrap_or_default(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_2026_client_answers_sampling_elicitation_and_roots_through_input_required() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let client = modern_client(&gw.url, EraClient::full("modern", false, false)).await;
    let call = |tool: &str| {
        client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(json!({}))))
    };
    let sampled = call("fx__sample").await.expect("sample");
    assert_eq!(first_text(&sampled), "answer from modern", "{sampled:?}");
    let elicited = call("fx__elicit").await.expect("elicit");
    assert!(
        first_text(&elicited).contains("\"name\":\"modern\""),
        "{elicited:?}"
    );
    let roots = call("fx__roots").await.expect("roots");
    assert_eq!(first_text(&roots), "file:///home/modern", "{roots:?}");
    // rmcp's client answered each question with its handler, never on a stream of ours.
    let seen = client.service().seen();
    assert!(
        matches!(
            seen.as_slice(),
            [
                Seen::Sampled { .. },
                Seen::Elicited { mode: "form" },
                Seen::Roots
            ]
        ),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_raw_round_trip_asks_once_and_the_answer_reaches_the_backend() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let first = call(
        &gw.url,
        None,
        "fx__sample",
        json!({"prompt": "capital?"}),
        json!({}),
    )
    .await;
    let (key, request, state) = asked(&first);
    assert_eq!(request["method"], "sampling/createMessage", "{first}");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"], "capital?",
        "{first}"
    );

    let answer =
        json!({"inputResponses": {key.clone(): sampling_answer("Paris")}, "requestState": state});
    let done = call(
        &gw.url,
        None,
        "fx__sample",
        json!({"prompt": "capital?"}),
        answer.clone(),
    )
    .await;
    assert_eq!(done["result"]["content"][0]["text"], "Paris", "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");

    // The round was answered: the same state again finds no call.
    let again = call(
        &gw.url,
        None,
        "fx__sample",
        json!({"prompt": "capital?"}),
        answer,
    )
    .await;
    let (code, message) = error_of(&again);
    assert_eq!(code, -32602, "{again}");
    assert!(message.contains("no call is waiting"), "{message}");
}

#[tokio::test]
async fn a_forged_foreign_or_mismatched_request_state_is_refused_and_the_call_still_waits() {
    let config = format!(
        "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token\"\n\n\
         [[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token\"\n\n{}",
        stdio_backend("fx", "")
    );
    let (gw, _cfg) = gateway(&config);
    let alice = Some("alice-token");
    let first = call(&gw.url, alice, "fx__sample", json!({}), json!({})).await;
    let (key, _, state) = asked(&first);
    let with =
        |state: &str, answers: Value| json!({"inputResponses": answers, "requestState": state});
    let answers = json!({key.clone(): sampling_answer("for alice")});

    let mut forged = state.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    let cases = [
        (
            alice,
            json!({}),
            with(&forged, answers.clone()),
            "not issued by this gateway",
        ),
        (
            Some("bob-token"),
            json!({}),
            with(&state, answers.clone()),
            "another client",
        ),
        (
            alice,
            json!({"prompt": "other"}),
            with(&state, answers.clone()),
            "different request",
        ),
        (alice, json!({}), with(&state, json!({})), "no answer for"),
        (
            alice,
            json!({}),
            with(&state, json!({key.clone(): {"role": 5}})),
            "not a valid answer",
        ),
        (
            alice,
            json!({}),
            json!({"inputResponses": answers.clone()}),
            "without requestState",
        ),
    ];
    for (token, arguments, extra, expected) in cases {
        let reply = call(&gw.url, token, "fx__sample", arguments, extra).await;
        let (code, message) = error_of(&reply);
        assert_eq!(code, -32602, "{expected}: {reply}");
        assert!(message.contains(expected), "{expected}: {message}");
    }
    // None of them consumed the round: the real client's answer still completes the call.
    let done = call(
        &gw.url,
        alice,
        "fx__sample",
        json!({}),
        with(&state, answers),
    )
    .await;
    assert_eq!(done["result"]["content"][0]["text"], "for alice", "{done}");
}

#[tokio::test]
async fn an_unanswered_call_expires_and_the_backend_is_told_why() {
    let config = format!(
        "[server]\nrelay_timeout = \"1s\"\n\n{}",
        stdio_backend("fx", "")
    );
    let (gw, _cfg) = gateway(&config);
    let first = call(&gw.url, None, "fx__sample", json!({}), json!({})).await;
    let (key, _, state) = asked(&first);
    // The backend's sampling request gets the reason once the call expires.
    let failure = eventually("the backend to hear the call expired", 15, async || {
        let stats = call(&gw.url, None, "fx__stats", json!({}), json!({})).await;
        let text = stats["result"]["content"][0]["text"].as_str()?.to_string();
        let stats: Value = serde_json::from_str(&text).ok()?;
        stats["last_failure"].as_str().map(String::from)
    })
    .await;
    assert!(failure.contains("did not answer within 1s"), "{failure}");
    let status = common::http::status(&gw.url);
    assert_eq!(status["parked"]["expired"], 1, "{status}");
    assert_eq!(status["parked"]["waiting"], 0, "{status}");

    let late = json!({"inputResponses": {key: sampling_answer("too late")}, "requestState": state});
    let reply = call(&gw.url, None, "fx__sample", json!({}), late).await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, -32602, "{reply}");
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn a_client_without_the_capability_gets_the_reason_not_a_question() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let client = modern_client(
        &gw.url,
        EraClient::new("bare", ClientCapabilities::default()),
    )
    .await;
    let sampled = client
        .call_tool(CallToolRequestParams::new("fx__sample").with_arguments(args(json!({}))))
        .await
        .expect("tools/call");
    assert!(
        first_text(&sampled).contains("client `bare` does not support sampling"),
        "{sampled:?}"
    );
    assert!(client.service().seen().is_empty());
}

#[tokio::test]
async fn each_question_is_a_round_of_its_own_until_the_result() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let arguments = json!({"rounds": 2});
    let first = call(&gw.url, None, "fx__sample", arguments.clone(), json!({})).await;
    let (key1, _, state1) = asked(&first);
    let answer = |key: &str, state: &str, text: &str| json!({"inputResponses": {key: sampling_answer(text)}, "requestState": state});
    let second = call(
        &gw.url,
        None,
        "fx__sample",
        arguments.clone(),
        answer(&key1, &state1, "one"),
    )
    .await;
    let (key2, _, state2) = asked(&second);
    assert_ne!(key1, key2, "each round has its own keys");
    // The first round's state is spent.
    let stale = call(
        &gw.url,
        None,
        "fx__sample",
        arguments.clone(),
        answer(&key1, &state1, "x"),
    )
    .await;
    assert_eq!(error_of(&stale).0, -32602, "{stale}");
    let done = call(
        &gw.url,
        None,
        "fx__sample",
        arguments,
        answer(&key2, &state2, "two"),
    )
    .await;
    assert_eq!(done["result"]["content"][0]["text"], "one|two", "{done}");
}

#[tokio::test]
async fn progress_of_a_call_reaches_the_request_waiting_on_it_with_its_own_token() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let token = json!({"_meta": {
        "progressToken": "mine",
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    }});
    let body = post(
        &gw.url,
        None,
        "fx__progress",
        json!({"steps": 3, "delay_ms": 1}),
        token,
    )
    .await;
    let progress: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    let values: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["params"]["progress"].as_f64())
        .collect();
    assert_eq!(values, vec![1.0, 2.0, 3.0], "{body}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine"),
        "{body}"
    );
    assert!(body.contains("3 steps done"), "{body}");
}

/// Item 3: a backend that speaks only 2026-07-28 refuses `initialize`; the
/// gateway mounts it with `server/discover`, and its `InputRequired` rounds
/// reach an initialize-era client as ordinary requests and a 2026-07-28
/// client as they are.
#[tokio::test]
async fn a_backend_that_speaks_only_2026_is_mounted_and_both_eras_answer_its_rounds() {
    let http = fixture("http", &["--modern-only", "--eras"]);
    let config = format!(
        "{}{}",
        stdio_backend("fx", "args = [\"--modern-only\", \"--eras\"]"),
        url_backend("web", "http", &http.url, "")
    );
    let (gw, _cfg) = gateway(&config);
    let legacy = legacy_client(&gw.url, EraClient::full("legacy", false, false)).await;
    let modern = modern_client(&gw.url, EraClient::full("modern", false, false)).await;
    for backend in ["fx", "web"] {
        let ask = || {
            CallToolRequestParams::new(format!("{backend}__ask")).with_arguments(args(json!({})))
        };
        let old = legacy.peer().call_tool(ask()).await.expect("legacy ask");
        assert_eq!(
            first_text(&old),
            "asked: answer from legacy",
            "{backend}: {old:?}"
        );
        let new = modern.call_tool(ask()).await.expect("modern ask");
        assert_eq!(
            first_text(&new),
            "asked: answer from modern",
            "{backend}: {new:?}"
        );
    }
    let count = |c: &EraClient| {
        c.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Sampled { .. }))
            .count()
    };
    assert_eq!(count(legacy.service()), 2);
    assert_eq!(count(modern.service()), 2);

    // A client that cannot sample is told why instead of being asked.
    let bare = legacy_client(
        &gw.url,
        EraClient::new("bare", ClientCapabilities::default()),
    )
    .await;
    let refused = bare
        .peer()
        .call_tool(CallToolRequestParams::new("fx__ask").with_arguments(args(json!({}))))
        .await
        .expect("tools/call");
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(
        first_text(&refused)
            .contains("asked the client for sampling, which client `bare` does not support"),
        "{refused:?}"
    );
}

/// A third-party backend (the reference `server-everything`, TypeScript SDK)
/// asks a 2026-07-28 client for sampling through the gateway. Skipped when
/// `.test-deps` is not installed (required in CI).
#[tokio::test]
async fn server_everythings_sampling_reaches_a_2026_client_through_input_required() {
    let entry = repo()
        .join(".test-deps")
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require_or_skip("server-everything and node", entry.exists() && node) {
        return;
    }
    let config = format!(
        "[backends.everything]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        entry.display().to_string()
    );
    let (gw, _cfg) = gateway(&config);
    let client = modern_client(&gw.url, EraClient::full("modern", false, false)).await;
    let sampled = client
        .call_tool(
            CallToolRequestParams::new("everything__trigger-sampling-request")
                .with_arguments(args(json!({"prompt": "hello"}))),
        )
        .await
        .expect("tools/call");
    let text = first_text(&sampled);
    assert!(text.contains("answer from modern"), "{sampled:?}");
    assert!(
        matches!(client.service().seen().as_slice(), [Seen::Sampled { .. }]),
        "{:?}",
        client.service().seen()
    );
}

#[tokio::test]
async fn a_per_session_backend_tells_a_2026_client_why_it_cannot_be_asked() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", "isolation = \"per_session\""));
    let client = modern_client(&gw.url, EraClient::full("modern", false, false)).await;
    let sampled = client
        .call_tool(CallToolRequestParams::new("fx__sample").with_arguments(args(json!({}))))
        .await
        .expect("tools/call");
    let text = first_text(&sampled);
    assert!(
        text.contains("client `modern` speaks MCP 2026-07-28") && text.contains("per_session"),
        "{sampled:?}"
    );
    assert!(client.service().seen().is_empty());
}

/// The fixture's `stats`, as JSON.
async fn stats(url: &str) -> Value {
    let reply = call(url, None, "fx__stats", json!({}), json!({})).await;
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("{}");
    serde_json::from_str(text).expect("stats JSON")
}

#[tokio::test]
async fn a_2026_client_that_goes_away_cancels_its_call_at_the_backend() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let url = gw.url.clone();
    let pending =
        tokio::spawn(
            async move { post(&url, None, "fx__wait_cancel", json!({}), json!({})).await },
        );
    wait_until("the call to reach the backend", 10, async || {
        stats(&gw.url).await["running"] == 1
    })
    .await;
    // The client drops its connection mid-call.
    pending.abort();
    wait_until("the backend to see the cancellation", 10, async || {
        stats(&gw.url).await["cancelled"] == 1
    })
    .await;
}

#[tokio::test]
async fn a_2026_backends_list_changes_are_followed_on_its_listen_stream() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", "args = [\"--modern-only\"]"));
    let legacy = legacy_client(
        &gw.url,
        EraClient::new("legacy", ClientCapabilities::default()),
    )
    .await;
    legacy
        .peer()
        .call_tool(
            CallToolRequestParams::new("fx__add_tool")
                .with_arguments(args(json!({"name": "fresh"}))),
        )
        .await
        .expect("add_tool");
    legacy
        .service()
        .wait_for("the list change", |s| matches!(s, Seen::ToolsChanged))
        .await;
    let tools = legacy.peer().list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "fx__fresh"), "{tools:?}");
}

/// `lifecycle = "discover"`: a backend that speaks both eras is connected at
/// 2026-07-28; one that refuses `server/discover` is connected again with
/// `initialize`, and works as before.
#[tokio::test]
async fn lifecycle_discover_connects_at_2026_and_falls_back_to_initialize() {
    let config = format!(
        "{}{}",
        stdio_backend("both", "lifecycle = \"discover\""),
        stdio_backend(
            "old",
            "args = [\"--legacy-only\"]\nlifecycle = \"discover\""
        ),
    );
    let (gw, _cfg) = gateway(&config);
    let legacy = legacy_client(&gw.url, EraClient::full("legacy", false, false)).await;
    for tool in ["both__echo", "old__echo"] {
        let r = legacy
            .peer()
            .call_tool(
                CallToolRequestParams::new(tool).with_arguments(args(json!({"message": tool}))),
            )
            .await
            .expect("tools/call");
        assert_eq!(first_text(&r), tool);
    }
    let status = common::http::status(&gw.url);
    assert_eq!(
        status["backends"]["both"]["protocol_version"], "2026-07-28",
        "{status:#}"
    );
    assert_eq!(
        status["backends"]["old"]["protocol_version"], "2025-11-25",
        "{status:#}"
    );
    assert_eq!(status["backends"]["both"]["state"], "up", "{status:#}");
    assert_eq!(status["backends"]["old"]["state"], "up", "{status:#}");
}
