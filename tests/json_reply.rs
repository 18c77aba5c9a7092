//! Issue 11 (decision 0013): a POSTed request whose first message is its
//! answer gets plain JSON; one that streams first (progress) keeps its SSE
//! stream, whole and in order, and so does one silent past the 15 s
//! keep-alive (decision 0019). A call the direct path makes itself (decision
//! 0020) still finishes, and is audited, when its client goes away, and a
//! session used only for such calls stays alive past its idle timeout. Raw
//! HTTP against the real gateway binary with the fixture over stdio.

mod common;

use common::http::get_json;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn post(url: &str, session: Option<&str>, body: Value) -> reqwest::RequestBuilder {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    req
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Opens a session with raw `initialize` + `initialized`; its id.
async fn open(url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "json-reply-test", "version": "1"}}});
    let r = post(url, None, init).send().await.expect("initialize");
    assert_eq!(r.status(), 200);
    assert!(
        content_type(&r).starts_with("application/json"),
        "initialize is answered as JSON: {r:?}"
    );
    let id = r
        .headers()
        .get("mcp-session-id")
        .expect("the session id header stays on a JSON answer")
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(body["id"], 0);
    assert_eq!(body["result"]["serverInfo"]["name"], "manifold");
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(url, Some(&id), done)
        .send()
        .await
        .expect("initialized");
    assert!(r.status().is_success());
    id
}

#[tokio::test]
async fn a_call_answered_at_once_is_plain_json_with_a_length() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let session = open(&gw.url).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "fx__echo", "arguments": {"message": "hi"}}});
    let r = post(&gw.url, Some(&session), call)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/json"), "{r:?}");
    let length: usize = r
        .headers()
        .get("content-length")
        .expect("a JSON answer has a length")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = r.text().await.unwrap();
    assert_eq!(text.len(), length);
    let body: Value = serde_json::from_str(&text).expect("one JSON-RPC message");
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["content"][0]["text"], "hi");

    // A JSON-RPC error is an answer too.
    let unknown = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "fx__nope", "arguments": {}}});
    let r = post(&gw.url, Some(&session), unknown).send().await.unwrap();
    assert!(content_type(&r).starts_with("application/json"), "{r:?}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 8);
    assert_eq!(body["error"]["code"], -32602);
}

#[tokio::test]
async fn a_call_that_sends_progress_first_stays_an_sse_stream() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let session = open(&gw.url).await;
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "fx__progress", "arguments": {"steps": 3, "delay_ms": 5},
                   "_meta": {"progressToken": "p-1"}}});
    let r = post(&gw.url, Some(&session), call)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("text/event-stream"), "{r:?}");
    let text = r.text().await.unwrap();
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).expect("each event is JSON"))
        .collect();
    let progress: Vec<f64> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            assert_eq!(m["params"]["progressToken"], "p-1");
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(
        progress,
        vec![1.0, 2.0, 3.0],
        "every step, in order: {text}"
    );
    let last = messages.last().expect("messages");
    assert_eq!(last["id"], 9, "the answer comes last: {text}");
    assert_eq!(last["result"]["content"][0]["text"], "3 steps done");
}

#[tokio::test]
async fn a_call_silent_past_the_keep_alive_becomes_an_sse_stream_with_keep_alive_comments() {
    // The answer comes after 17 s; the keep-alive is 15 s. A client (or a
    // proxy between) that saw no byte for that long could give up, so the
    // answer becomes a stream that carries a keep-alive comment first.
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let session = open(&gw.url).await;
    let call = json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call",
        "params": {"name": "fx__sleep", "arguments": {"ms": 17_000}}});
    let started = std::time::Instant::now();
    let r = post(&gw.url, Some(&session), call)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("text/event-stream"), "{r:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(17),
        "the stream starts before the answer"
    );
    let text = r.text().await.unwrap();
    let comment = text.find("\n:").or(text.starts_with(':').then_some(0));
    let answer = text.find("\"id\":11").expect("the answer is in the stream");
    assert!(
        comment.is_some_and(|c| c < answer),
        "a keep-alive comment comes before the answer: {text}"
    );
    let last: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(last["id"], 11);
    assert!(last["result"].is_object(), "{text}");
}

#[tokio::test]
async fn a_call_whose_client_goes_away_still_finishes_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"sqlite\"\npath = {:?}\nbatch_interval = \"10ms\"\n\n{}",
        db.display().to_string(),
        stdio_backend("fx", "")
    ));
    let session = open(&gw.url).await;
    let call = json!({"jsonrpc": "2.0", "id": 21, "method": "tools/call",
        "params": {"name": "fx__sleep", "arguments": {"ms": 1_000}}});
    // The client gives up (and closes its connection) long before the answer.
    let gave_up = post(&gw.url, Some(&session), call)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    let body = eventually("the abandoned call's audit entry", 15, async || {
        let (_, b) = get_json(&gw.url, "/api/v1/logs?tool=fx__sleep", None).await;
        (b["count"].as_u64() == Some(1)).then_some(b)
    })
    .await;
    let entry = &body["entries"][0];
    assert_eq!(entry["status"], "success", "{body:#}");
}

#[tokio::test]
async fn a_session_used_only_for_calls_outlives_its_idle_timeout() {
    let (gw, _cfg) = gateway(&format!(
        "[server]\nsession_idle_timeout = \"2s\"\n\n{}",
        stdio_backend("fx", "")
    ));
    let session = open(&gw.url).await;
    let echo = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "fx__echo", "arguments": {"message": "still here"}}})
    };
    // Calls for twice the idle timeout: the session stays, though rmcp's own
    // session worker sees only some of them.
    let started = Instant::now();
    let mut id = 100;
    while started.elapsed() < Duration::from_secs(4) {
        id += 1;
        let r = post(&gw.url, Some(&session), echo(id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "call {id} after {:?}", started.elapsed());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["result"]["content"][0]["text"], "still here", "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Left idle, it ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = post(&gw.url, Some(&session), echo(id + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an idle session ends: {r:?}");
}
