//! The job queue: the `queue` tool over MCP, the same over
//! `POST /api/v1/execute`, and waiting for a job to reach a state.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::bin;
use super::http::base;
use super::recorder::{Rc, call};

/// A stdio fixture backend `fx` that also has the `append` tool.
pub fn fixture_backend(extra: &str) -> String {
    let fixture = bin("manifold-fixture");
    format!(
        "[backends.fx]\ntransport = \"stdio\"\ncommand = {fixture:?}\nargs = [\"--append-tool\"]\n{extra}\n"
    )
}

/// `[jobs]` on SQLite in `dir`, plus `extra` keys; messaging and bus off.
pub fn sqlite_jobs(extra: &str) -> String {
    format!("[messaging]\nenabled = false\n\n[jobs]\npath = \"jobs.db\"\n{extra}\n")
}

/// Calls `queue`; returns (is_error, structured content or the error text).
pub async fn queue(client: &Rc, args: Value) -> (bool, Value) {
    let r = call(client, "queue", args).await;
    let failed = r.is_error == Some(true);
    (failed, r.structured_content.unwrap_or_default())
}

/// A `queue` call that must succeed.
pub async fn queue_ok(client: &Rc, args: Value) -> Value {
    let (failed, v) = queue(client, args.clone()).await;
    assert!(!failed, "queue {args} failed: {v}");
    v
}

/// A `queue` call that must fail; returns (kind, message).
pub async fn queue_err(client: &Rc, args: Value) -> (String, String) {
    let (failed, v) = queue(client, args.clone()).await;
    assert!(failed, "queue {args} should have failed: {v}");
    (
        v["error"]["kind"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// `POST /api/v1/execute` with a JSON body (or raw text); (status, JSON body).
pub async fn execute_raw(url: &str, token: Option<&str>, body: String) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/execute", base(url)))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("execute request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub async fn execute(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    execute_raw(url, token, body.to_string()).await
}

/// `queue` over HTTP.
pub async fn http_queue(url: &str, token: Option<&str>, params: Value) -> (u16, Value) {
    execute(url, token, json!({"command": "queue", "params": params})).await
}

/// Polls `get_status` over HTTP until `done(job)` holds (within `within`).
pub async fn wait_job(
    url: &str,
    token: Option<&str>,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, v) =
            http_queue(url, token, json!({"action": "get_status", "job_id": id})).await;
        if status == 200 && done(&v["job"]) {
            return v["job"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never got there; last answer {status}: {v:#}"
        );
        // Paces the polls; the deadline above is what bounds the wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the job is in `state`.
pub async fn wait_state(url: &str, token: Option<&str>, id: &str, state: &str) -> Value {
    wait_job(url, token, id, Duration::from_secs(30), |j| {
        j["state"] == state
    })
    .await
}
