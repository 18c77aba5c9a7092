//! Calls the gateway makes on a client's behalf are audited like direct
//! ones: a job's tool call (with its `job_id`) and a tool called over
//! `POST /api/v1/execute`.

mod common;

use std::time::{Duration, Instant};

use common::{gateway, stdio_backend};
use serde_json::{Value, json};

async fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let base = url.trim_end_matches("/mcp");
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str, path: &str) -> Value {
    let base = url.trim_end_matches("/mcp");
    reqwest::get(format!("{base}{path}"))
        .await
        .expect("request sent")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Polls `probe` until it yields a value, for at most `secs` seconds.
async fn eventually<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_calls_and_execute_calls_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"sqlite\"\npath = {:?}\nbatch_interval = \"10ms\"\n\n\
         [jobs]\npath = {:?}\n\n{}",
        dir.path().join("audit.db").display().to_string(),
        dir.path().join("jobs.db").display().to_string(),
        stdio_backend("fx", "")
    ));

    // A tool called once over plain HTTP.
    let (status, body) = post(
        &gw.url,
        "/api/v1/execute",
        json!({"command": "fx__echo", "params": {"message": "direct"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The same tool as a job.
    let (status, body) = post(
        &gw.url,
        "/api/v1/execute",
        json!({"command": "queue", "params": {"action": "add_job", "job_id": "nightly",
               "params": {"tool": "fx__echo", "arguments": {"message": "from a job"}, "start": true}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually("the job to complete", 30, async || {
        let (_, s) = post(
            &gw.url,
            "/api/v1/execute",
            json!({"command": "queue", "params": {"action": "get_status", "job_id": "nightly"}}),
        )
        .await;
        (s.to_string().contains("\"completed\"")).then_some(())
    })
    .await;

    let entries = eventually("both entries", 30, async || {
        let logs = get(&gw.url, "/api/v1/logs?tool=fx__echo").await;
        let entries = logs["entries"].as_array().cloned().unwrap_or_default();
        (entries.len() == 2).then_some(entries)
    })
    .await;
    let by_message = |m: &str| {
        entries
            .iter()
            .find(|e| e["input_args"]["message"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("no entry for {m}: {entries:?}"))
    };
    let job = by_message("from a job");
    assert_eq!(job["status"], "success");
    assert_eq!(job["log_type"], "tool_execution");
    assert_eq!(job["extra_data"]["job_id"], "nightly");
    assert_eq!(job["extra_data"]["backend"], "fx");
    assert_eq!(job["output_summary"], "from a job");
    let direct = by_message("direct");
    assert_eq!(direct["status"], "success");
    assert_eq!(direct["extra_data"]["via"], "execute");
    assert!(direct["extra_data"].get("job_id").is_none(), "{direct}");
    assert_ne!(job["correlation_id"], direct["correlation_id"]);
}
