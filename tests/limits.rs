//! `[limits]`, per-backend `max_concurrent`, and `/metrics`: each limit's
//! error as a client sees it, against the real gateway binary.

mod common;

use std::time::{Duration, Instant};

use common::http::in_flight;
use common::*;
use rmcp::model::*;
use rmcp::service::ServiceError;
use serde_json::{Value, json};
const PING: &str = r#"{"jsonrpc":"2.0","id":"p1","method":"ping"}"#;

/// A raw JSON-RPC POST: (status, headers, body as JSON or Null).
async fn post(
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn sleep_call(ms: u64) -> CallToolRequestParams {
    CallToolRequestParams::new("fx__sleep").with_arguments(args(json!({"ms": ms})))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_refuses_with_429_retry_after_and_a_jsonrpc_error() {
    let (gw, _cfg) = gateway(&format!(
        "[limits]\nrate_limit_per_second = 0.2\nrate_limit_burst = 2\n\n{}",
        stdio_backend("fx", "")
    ));
    // Two requests pass the limiter (rmcp then refuses them: no session).
    for _ in 0..2 {
        let (status, _, _) = post(&gw.url, None, PING).await;
        assert_ne!(status, 429);
    }
    let (status, headers, body) = post(&gw.url, None, PING).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(body["id"], "p1");
    assert_eq!(body["error"]["code"], -32004);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeded its rate limit of 0.2 requests per second"),
        "{message}"
    );
    // Notifications are the other half of admitted requests: never limited.
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_ne!(post(&gw.url, None, note).await.0, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_concurrency_is_per_token_and_global_concurrency_is_shared() {
    let (gw, _cfg) = gateway(&format!(
        r#"[[auth.tokens]]
client_id = "a"
token = "token-aaaaaaaa"

[[auth.tokens]]
client_id = "b"
token = "token-bbbbbbbb"

[[auth.tokens]]
client_id = "c"
token = "token-cccccccc"

[limits]
max_concurrent_per_client = 1
max_concurrent_requests = 2

{}"#,
        stdio_backend("fx", "")
    ));
    let a = authed_client(&gw.url, "token-aaaaaaaa").await;
    let b = authed_client(&gw.url, "token-bbbbbbbb").await;
    let slow_a = tokio::spawn({
        let peer = a.peer().clone();
        async move { peer.call_tool(sleep_call(1500)).await }
    });
    wait_for("a's call to take its slot", 10, || in_flight(&gw.url) == 1).await;
    // a is at its own limit; b is not.
    let (status, headers, body) = post(&gw.url, Some("token-aaaaaaaa"), PING).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["error"]["code"], -32003);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client `a` is at its limit of 1 concurrent requests"),
        "{body}"
    );
    let slow_b = tokio::spawn({
        let peer = b.peer().clone();
        async move { peer.call_tool(sleep_call(1500)).await }
    });
    wait_for("b's call to take its slot", 10, || in_flight(&gw.url) == 2).await;
    let (status, _, body) = post(&gw.url, Some("token-bbbbbbbb"), PING).await;
    assert_eq!(status, 429, "b is at its own limit now: {body}");
    // Two requests in flight: the gateway is full, even for c, which has none.
    let (status, _, body) = post(&gw.url, Some("token-cccccccc"), PING).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], -32003);
    assert_eq!(first_text(&slow_a.await.unwrap().unwrap()), "slept 1500 ms");
    assert_eq!(first_text(&slow_b.await.unwrap().unwrap()), "slept 1500 ms");
    // Slots come back when the answers are sent.
    let r = a.call_tool(sleep_call(1)).await.unwrap();
    assert_eq!(first_text(&r), "slept 1 ms");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_concurrency_cap_answers_503() {
    let (gw, _cfg) = gateway(&format!(
        "[limits]\nmax_concurrent_requests = 1\n\n{}",
        stdio_backend("fx", "")
    ));
    let client = client(&gw.url).await;
    let slow = tokio::spawn({
        let peer = client.peer().clone();
        async move { peer.call_tool(sleep_call(1500)).await }
    });
    wait_for("the call to take the slot", 10, || in_flight(&gw.url) == 1).await;
    let (status, headers, body) = post(&gw.url, None, PING).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["id"], "p1");
    assert_eq!(body["error"]["code"], -32003);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the gateway is at its limit of 1 concurrent requests"),
        "{body}"
    );
    assert_eq!(first_text(&slow.await.unwrap().unwrap()), "slept 1500 ms");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_timeout_ends_a_call_with_a_jsonrpc_error() {
    let (gw, _cfg) = gateway(&format!(
        "[limits]\nrequest_timeout = \"1s\"\n\n{}",
        stdio_backend("fx", "")
    ));
    let client = client(&gw.url).await;
    let started = Instant::now();
    let err = client.call_tool(sleep_call(5000)).await.unwrap_err();
    let took = started.elapsed();
    let ServiceError::McpError(e) = &err else {
        panic!("expected a JSON-RPC error, got {err}");
    };
    assert_eq!(e.code.0, -32001);
    assert_eq!(
        e.message,
        "request timed out after 1s (limits.request_timeout)"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // The backend and the session are fine afterwards.
    let r = client.call_tool(sleep_call(10)).await.unwrap();
    assert_eq!(first_text(&r), "slept 10 ms");
    client.cancel().await.unwrap();
}

/// What the gateway logs while it serves a call carries the request's span:
/// its id, method, tool, backend and session (decision 0021: the handler runs
/// inside the HTTP request's span without entering it again).
#[tokio::test(flavor = "multi_thread")]
async fn what_a_call_logs_names_its_request_method_tool_backend_and_session() {
    let file = write_config(&stdio_backend("fx", "timeout = \"1s\""));
    let mut gw = gateway_logging(&file.path, "info,rmcp=warn,manifold=debug");
    wait_blocking("the gateway to be ready", 60, || {
        http_get(&gw.url, "/readyz").0 == 200
    });
    let client = client(&gw.url).await;
    // Two calls: the backend's timeout makes each a tool error, logged by
    // the handler as `call failed`.
    for _ in 0..2 {
        let r = client.call_tool(sleep_call(3000)).await.unwrap();
        assert_eq!(r.is_error, Some(true), "{r:?}");
    }
    client.cancel().await.unwrap();
    let mut lines = Vec::new();
    wait_blocking("both failures to be logged", 10, || {
        lines.extend(gw.stderr_lines());
        lines.iter().filter(|l| l.contains("call failed")).count() >= 2
    });
    for failed in lines.iter().filter(|l| l.contains("call failed")) {
        for field in [
            "request{request_id=",
            "route=\"mcp\"",
            "method=\"tools/call\"",
            "tool=\"fx__sleep\"",
            "backend=fx",
            " session=",
        ] {
            assert!(failed.contains(field), "no `{field}` in: {failed}");
        }
    }
    // The response is logged in the same span.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("http response") && l.contains("tool=\"fx__sleep\"")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backends_max_concurrent_queues_calls_and_says_when_it_stays_busy() {
    let (gw, _cfg) = gateway(&format!(
        "{}{}",
        stdio_backend("fx", "max_concurrent = 1\ntimeout = \"2s\""),
        stdio_backend("free", "")
    ));
    let client = client(&gw.url).await;
    // Two short calls share the one slot: the second waits, then runs.
    let (r1, r2) = tokio::join!(
        client.peer().call_tool(sleep_call(300)),
        client.peer().call_tool(sleep_call(300))
    );
    assert_eq!(first_text(&r1.unwrap()), "slept 300 ms");
    assert_eq!(first_text(&r2.unwrap()), "slept 300 ms");
    // Two calls that each hold the slot for the whole timeout (2s): a third
    // queued after them waits its own timeout for a slot, then is refused.
    let hog = |peer: rmcp::Peer<rmcp::RoleClient>| {
        tokio::spawn(async move { peer.call_tool(CallToolRequestParams::new("fx__hang")).await })
    };
    // Spaced so the second hog is still waiting (its wait ends at 2.4 s)
    // when the first releases the slot at 2 s, and the probe (waiting until
    // 2.8 s) finds it taken again until 4 s: no two deadlines coincide.
    // These two sleeps are the schedule under test, not a wait for an event.
    let first = hog(client.peer().clone());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = hog(client.peer().clone());
    let hogs = [first, second];
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = client
        .call_tool(
            CallToolRequestParams::new("fx__echo").with_arguments(args(json!({"message": "m"}))),
        )
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        first_text(&r),
        "backend `fx` is busy: all 1 call slots (max_concurrent) stayed taken for 2s"
    );
    // Other backends are not affected.
    let r = client
        .call_tool(
            CallToolRequestParams::new("free__echo").with_arguments(args(json!({"message": "ok"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "ok");
    for h in hogs {
        let _ = h.await;
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_requests_sessions_backends_and_notifications() {
    let (gw, _cfg) = gateway(&format!(
        "[limits]\nrate_limit_per_second = 1000\n\n{}",
        stdio_backend("fx", "")
    ));
    let client = client(&gw.url).await;
    for _ in 0..3 {
        client
            .call_tool(
                CallToolRequestParams::new("fx__echo")
                    .with_arguments(args(json!({"message": "m"}))),
            )
            .await
            .unwrap();
    }
    let r = client
        .call_tool(CallToolRequestParams::new("fx__fail"))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let _ = client
        .call_tool(CallToolRequestParams::new("fx__nope"))
        .await;
    client.list_all_tools().await.unwrap();
    let (status, body) = http_get(&gw.url, "/metrics");
    assert_eq!(status, 200);
    for expected in [
        r#"manifold_requests_total{method="tools/call",backend="fx",outcome="ok"} 3"#,
        r#"manifold_requests_total{method="tools/call",backend="fx",outcome="tool_error"} 1"#,
        r#"manifold_requests_total{method="tools/call",backend="",outcome="error"} 1"#,
        r#"manifold_requests_total{method="tools/list",backend="",outcome="ok"} 1"#,
        r#"manifold_requests_total{method="initialize",backend="",outcome="ok"} 1"#,
        r#"manifold_request_duration_seconds_count{method="tools/call",backend="fx"} 4"#,
        r#"manifold_request_duration_seconds_bucket{le="0.001",method="tools/call",backend="fx"}"#,
        "manifold_sessions 1",
        r#"manifold_backend_up{backend="fx"} 1"#,
        r#"manifold_backend_up{backend="@gateway"} 1"#,
        r#"manifold_notifications_total{kind="progress",fate="forwarded"} 0"#,
        r#"manifold_http_requests_total{route="mcp",status="200"}"#,
        "# TYPE manifold_config_reloads counter",
        "# TYPE manifold_backend_restarts counter",
        "# EOF",
    ] {
        assert!(body.contains(expected), "missing {expected}\n{body}");
    }
    client.cancel().await.unwrap();
}
