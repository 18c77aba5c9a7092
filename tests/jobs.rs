//! The job queue on SQLite, the way users reach it: the `queue` tool over
//! MCP with real clients, `POST /api/v1/execute` over plain HTTP, real
//! fixture backends, gateway restarts and a gateway killed mid-job.
#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod common;

use std::time::Duration;

use common::http::base;
use common::jobs::*;
use common::recorder::*;
use common::{ConfigFile, gateway, gateway_at, write_config};
use serde_json::{Value, json};

fn config(extra_jobs: &str) -> String {
    format!("{}{}", fixture_backend(""), sqlite_jobs(extra_jobs))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_added_started_watched_listed_and_deleted_through_the_tool() {
    let (gw, cfg) = gateway(&config(""));
    let (client, recorder) = connect(&gw.url, "ide").await;
    let tools = client.list_all_tools().await.unwrap();
    let queue_tool = tools
        .iter()
        .find(|t| t.name == "queue")
        .expect("queue is listed");
    let schema = serde_json::to_value(&queue_tool.input_schema).unwrap();
    assert_eq!(schema["required"], json!(["action"]));
    assert_eq!(schema["properties"]["job_id"]["default"], "default_job");

    let added = queue_ok(
        &client,
        json!({"action": "add_job", "job_id": "j1", "params": {"tool": "fx__echo", "arguments": {"message": "hello job"}}}),
    )
    .await;
    assert_eq!(added["message"], "Job j1 added successfully");
    assert_eq!(added["job"]["state"], "pending");
    let started = queue_ok(&client, json!({"action": "start_job", "job_id": "j1"})).await;
    assert_eq!(started["message"], "Job j1 started successfully");
    let job = wait_state(&gw.url, None, "j1", "completed").await;
    assert_eq!(job["result"]["content"][0]["text"], "hello job", "{job:#}");
    for t in ["created_at", "queued_at", "started_at", "finished_at"] {
        assert!(job[t].is_string(), "{t} missing: {job:#}");
    }
    // The session that started it is told it ended.
    let notes = recorder.wait_for("manifold/jobs", 1).await;
    assert_eq!(notes[0].data["type"], "job_finished");
    assert_eq!(notes[0].data["job"]["id"], "j1");
    assert_eq!(notes[0].data["job"]["state"], "completed");

    // A failing tool fails the job, with the tool's error.
    queue_ok(
        &client,
        json!({"action": "add_job", "job_id": "j2", "params": {"tool": "fx__fail", "start": true}}),
    )
    .await;
    let failed = wait_state(&gw.url, None, "j2", "failed").await;
    assert_eq!(failed["error"], "fixture failure");
    assert_eq!(failed["result"]["isError"], true);

    let listed = queue_ok(&client, json!({"action": "list_jobs"})).await;
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["j2", "j1"], "newest first");
    let only = queue_ok(
        &client,
        json!({"action": "list_jobs", "params": {"state": "completed"}}),
    )
    .await;
    assert_eq!(only["jobs"].as_array().unwrap().len(), 1);
    let one = queue_ok(&client, json!({"action": "list_jobs", "limit": 1})).await;
    assert_eq!(one["jobs"][0]["id"], "j2");

    let health = queue_ok(&client, json!({"action": "health"})).await;
    assert_eq!(health["store"]["ok"], true, "{health:#}");
    assert_eq!(health["store"]["kind"], "sqlite");
    assert_eq!(health["jobs"]["completed"], 1);
    assert_eq!(health["jobs"]["failed"], 1);
    assert_eq!(health["slots"]["max"], 4);
    assert!(health["instance"].as_str().is_some_and(|i| !i.is_empty()));

    let deleted = queue_ok(&client, json!({"action": "delete_job", "job_id": "j1"})).await;
    assert_eq!(deleted["message"], "Job j1 deleted successfully");
    let (kind, message) = queue_err(&client, json!({"action": "get_status", "job_id": "j1"})).await;
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("not_found", "Job j1 not found")
    );
    // job_id defaults to "default_job".
    let d = queue_ok(
        &client,
        json!({"action": "add_job", "params": {"tool": "fx__echo", "arguments": {"message": "d"}}}),
    )
    .await;
    assert_eq!(d["job"]["id"], "default_job");
    assert!(
        cfg.dir.path().join("jobs.db").exists(),
        "the store is beside the config"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_execute_api_answers_the_queue_and_calls_any_tool_once() {
    let (gw, _cfg) = gateway(&config(""));
    let url = &gw.url;
    let (s, v) = execute(
        url,
        None,
        json!({"command": "fx__echo", "params": {"message": "hi"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["content"][0]["text"], "hi");

    let (s, v) = http_queue(url, None, json!({"action": "add_job", "job_id": "h1", "params": {"tool": "fx__add", "arguments": {"a": 2, "b": 3}, "start": true}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Job h1 added successfully");
    let job = wait_state(url, None, "h1", "completed").await;
    assert_eq!(job["result"]["content"][0]["text"], "5");
    let (s, v) = http_queue(url, None, json!({"action": "list_jobs"})).await;
    assert_eq!((s, v["jobs"][0]["id"].as_str()), (200, Some("h1")));
    let (s, v) = http_queue(url, None, json!({"action": "start_job", "job_id": "h1"})).await;
    assert_eq!(s, 200, "a finished job may run again: {v}");
    wait_state(url, None, "h1", "completed").await;

    // Errors: JSON with a status that fits, never a 500.
    let cases = [
        (
            json!({"command": "nope__tool", "params": {}}),
            404,
            "not_found",
        ),
        (
            json!({"command": "fx__echo", "params": [1]}),
            400,
            "bad_request",
        ),
        (
            json!({"command": "fx__echo", "params": {}}),
            400,
            "bad_request",
        ),
        (json!({"params": {}}), 400, "bad_request"),
        (
            json!({"command": "queue", "params": {"action": "get_status", "job_id": "missing"}}),
            404,
            "not_found",
        ),
        (
            json!({"command": "queue", "params": {"action": "add_job", "job_id": "h1", "params": {"tool": "fx__echo"}}}),
            409,
            "conflict",
        ),
        (
            json!({"command": "queue", "params": {"action": "stop_job", "job_id": "h1"}}),
            409,
            "conflict",
        ),
        (
            json!({"command": "queue", "params": {"action": "explode"}}),
            400,
            "bad_request",
        ),
    ];
    for (body, status, kind) in cases {
        let (s, v) = execute(url, None, body.clone()).await;
        assert_eq!(
            (s, v["error"]["kind"].as_str()),
            (status, Some(kind)),
            "{body} → {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (s, v) = execute_raw(url, None, "{not json".into()).await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_job_shows_growing_progress_and_a_stop_cancels_it_at_the_backend() {
    let (gw, _cfg) = gateway(&config(""));
    let (client, _) = connect(&gw.url, "ide").await;
    queue_ok(
        &client,
        json!({"action": "add_job", "job_id": "long", "params": {"tool": "fx__progress", "arguments": {"steps": 200, "delay_ms": 50}, "start": true}}),
    )
    .await;
    let first = wait_job(&gw.url, None, "long", Duration::from_secs(20), |j| {
        j["progress"]["progress"].as_f64().is_some_and(|p| p >= 2.0)
    })
    .await;
    let p1 = first["progress"]["progress"].as_f64().unwrap();
    assert_eq!(first["progress"]["total"], 200.0);
    let later = wait_job(&gw.url, None, "long", Duration::from_secs(20), |j| {
        j["progress"]["progress"]
            .as_f64()
            .is_some_and(|p| p > p1 + 2.0)
    })
    .await;
    assert_eq!(later["state"], "running");
    let stopped = queue_ok(&client, json!({"action": "stop_job", "job_id": "long"})).await;
    assert_eq!(stopped["message"], "Job long stopped successfully");
    assert_eq!(stopped["job"]["state"], "stopped");
    assert!(stopped["job"]["progress"]["progress"].as_f64().unwrap() > p1);

    // The backend sees the cancellation: `wait_cancel` ends only then.
    queue_ok(
        &client,
        json!({"action": "add_job", "job_id": "waiter", "params": {"tool": "fx__wait_cancel", "start": true}}),
    )
    .await;
    wait_state(&gw.url, None, "waiter", "running").await;
    let (s, v) = http_queue(
        &gw.url,
        None,
        json!({"action": "stop_job", "job_id": "waiter"}),
    )
    .await;
    assert_eq!(
        (s, v["job"]["state"].as_str()),
        (200, Some("stopped")),
        "{v}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = execute(&gw.url, None, json!({"command": "fx__stats"})).await;
        let stats: Value =
            serde_json::from_str(stats["content"][0]["text"].as_str().unwrap()).unwrap();
        if stats["cancelled"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backend never saw the cancel: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A running job is deleted only with force.
    queue_ok(&client, json!({"action": "add_job", "job_id": "hang", "params": {"tool": "fx__hang", "start": true}})).await;
    wait_state(&gw.url, None, "hang", "running").await;
    let (kind, message) =
        queue_err(&client, json!({"action": "delete_job", "job_id": "hang"})).await;
    assert_eq!(kind, "conflict");
    assert!(message.contains("force: true"), "{message}");
    queue_ok(
        &client,
        json!({"action": "delete_job", "job_id": "hang", "force": true}),
    )
    .await;
    let (kind, _) = queue_err(&client, json!({"action": "get_status", "job_id": "hang"})).await;
    assert_eq!(kind, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (gw, _cfg) = gateway(&config(""));
    let (client, _) = connect(&gw.url, "ide").await;
    let cases = [
        (json!({"action": "explode"}), "unknown action `explode`"),
        (json!({}), "`action` is required"),
        (json!({"action": 3}), "`action` must be a string"),
        (
            json!({"action": "add_job", "params": {}}),
            "`params.tool` is required",
        ),
        (
            json!({"action": "add_job", "params": {"tool": "nope__x"}}),
            "unknown tool `nope__x`",
        ),
        (
            json!({"action": "add_job", "params": {"tool": "queue"}}),
            "cannot run the `queue` tool",
        ),
        (
            json!({"action": "add_job", "params": "fx__echo"}),
            "`params` must be an object",
        ),
        (
            json!({"action": "add_job", "params": {"tool": "fx__echo", "arguments": [1]}}),
            "`params.arguments` must be an object",
        ),
        (
            json!({"action": "add_job", "params": {"tool": "fx__echo", "timeout": "soon"}}),
            "`params.timeout` \"soon\" is not a duration",
        ),
        (
            json!({"action": "add_job", "params": {"tool": "fx__echo", "start": "yes"}}),
            "`params.start` must be true or false",
        ),
        (
            json!({"action": "add_job", "job_id": 7, "params": {"tool": "fx__echo"}}),
            "`job_id` must be a string",
        ),
        (
            json!({"action": "add_job", "job_id": "", "params": {"tool": "fx__echo"}}),
            "`job_id` must not be empty",
        ),
        (
            json!({"action": "delete_job", "job_id": "x", "force": "yes"}),
            "`force` must be true or false",
        ),
        (
            json!({"action": "get_status", "job_id": "ghost"}),
            "Job ghost not found",
        ),
        (
            json!({"action": "start_job", "job_id": "ghost"}),
            "Job ghost not found",
        ),
        (
            json!({"action": "stop_job", "job_id": "ghost"}),
            "Job ghost not found",
        ),
        (
            json!({"action": "delete_job", "job_id": "ghost"}),
            "Job ghost not found",
        ),
        (
            json!({"action": "list_jobs", "state": "done"}),
            "unknown state \"done\"",
        ),
        (
            json!({"action": "list_jobs", "limit": 0}),
            "`limit` must be an integer",
        ),
    ];
    for (args, expected) in cases {
        let (_, message) = queue_err(&client, args.clone()).await;
        assert!(message.contains(expected), "{args}: {message}");
    }
    let listed = queue_ok(&client, json!({"action": "list_jobs"})).await;
    assert_eq!(listed["jobs"], json!([]), "nothing was stored");
    let health = queue_ok(&client, json!({"action": "health"})).await;
    assert!(
        health["jobs"].as_object().unwrap().values().all(|n| n == 0),
        "{health:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auth_each_client_has_its_own_jobs_and_its_allow_list_applies() {
    let auth = "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token-1234\"\n\n\
                [[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token-12345\"\ntools = [\"queue\", \"fx__add\"]\n";
    let (gw, _cfg) = gateway(&format!("{auth}\n{}", config("")));
    let (alice, _) = connect_with_token(&gw.url, "alice-ide", "alice-token-1234").await;
    let (bob, _) = connect_with_token(&gw.url, "bob-ide", "bob-token-12345").await;
    queue_ok(&alice, json!({"action": "add_job", "job_id": "job1", "params": {"tool": "fx__echo", "arguments": {"message": "alice's"}, "start": true}})).await;
    queue_ok(&bob, json!({"action": "add_job", "job_id": "job1", "params": {"tool": "fx__add", "arguments": {"a": 1, "b": 1}, "start": true}})).await;
    let a = wait_state(&gw.url, Some("alice-token-1234"), "job1", "completed").await;
    let b = wait_state(&gw.url, Some("bob-token-12345"), "job1", "completed").await;
    assert_eq!(a["result"]["content"][0]["text"], "alice's");
    assert_eq!(b["result"]["content"][0]["text"], "2");

    // Bob's allow-list does not include fx__echo: no job may run it for him.
    let (kind, message) = queue_err(&bob, json!({"action": "add_job", "job_id": "sneaky", "params": {"tool": "fx__echo", "arguments": {"message": "x"}}})).await;
    assert_eq!(kind, "forbidden");
    assert!(
        message.contains("client `bob` is not allowed to use tool `fx__echo`"),
        "{message}"
    );
    let (s, v) = execute(
        &gw.url,
        Some("bob-token-12345"),
        json!({"command": "fx__echo", "params": {"message": "x"}}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (s, _) = http_queue(
        &gw.url,
        Some("bob-token-12345"),
        json!({"action": "add_job", "job_id": "sneaky", "params": {"tool": "fx__echo"}}),
    )
    .await;
    assert_eq!(s, 403);

    // Nobody sees, stops or deletes another client's jobs.
    queue_ok(&alice, json!({"action": "add_job", "job_id": "private", "params": {"tool": "fx__echo", "arguments": {"message": "p"}}})).await;
    for action in ["get_status", "start_job", "stop_job", "delete_job"] {
        let (kind, _) = queue_err(&bob, json!({"action": action, "job_id": "private"})).await;
        assert_eq!(kind, "not_found", "{action}");
    }
    let bobs = queue_ok(&bob, json!({"action": "list_jobs"})).await;
    assert_eq!(bobs["jobs"].as_array().unwrap().len(), 1);
    let still = queue_ok(&alice, json!({"action": "get_status", "job_id": "private"})).await;
    assert_eq!(still["job"]["state"], "pending");
    // Without a token, the API is closed.
    let (s, _) = http_queue(&gw.url, None, json!({"action": "health"})).await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_sqlite_keeps_every_job_and_result() {
    let cfg = write_config(&config(""));
    let mut gw = gateway_at(&cfg.path);
    http_queue(&gw.url, None, json!({"action": "add_job", "job_id": "done", "params": {"tool": "fx__echo", "arguments": {"message": "kept"}, "start": true}})).await;
    wait_state(&gw.url, None, "done", "completed").await;
    http_queue(&gw.url, None, json!({"action": "add_job", "job_id": "later", "params": {"tool": "fx__echo", "arguments": {"message": "after restart"}}})).await;
    assert!(gw.terminate().success());

    let gw = gateway_at(&cfg.path);
    let (s, v) = http_queue(
        &gw.url,
        None,
        json!({"action": "get_status", "job_id": "done"}),
    )
    .await;
    assert_eq!(
        (s, v["job"]["state"].as_str()),
        (200, Some("completed")),
        "{v}"
    );
    assert_eq!(v["job"]["result"]["content"][0]["text"], "kept");
    let (_, v) = http_queue(
        &gw.url,
        None,
        json!({"action": "get_status", "job_id": "later"}),
    )
    .await;
    assert_eq!(v["job"]["state"], "pending");
    http_queue(
        &gw.url,
        None,
        json!({"action": "start_job", "job_id": "later"}),
    )
    .await;
    let job = wait_state(&gw.url, None, "later", "completed").await;
    assert_eq!(job["result"]["content"][0]["text"], "after restart");
}

/// Starts a job that blocks, waits until it runs, and kills the gateway with SIGKILL.
async fn kill_mid_job(cfg: &ConfigFile, tool_args: Value) {
    let mut gw = gateway_at(&cfg.path);
    http_queue(
        &gw.url,
        None,
        json!({"action": "add_job", "job_id": "victim", "params": tool_args}),
    )
    .await;
    wait_state(&gw.url, None, "victim", "running").await;
    gw.child.kill().expect("SIGKILL");
    gw.child.wait().expect("reaped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_job_leaves_it_interrupted_or_runs_it_again_with_requeue() {
    let cfg = write_config(&config(""));
    kill_mid_job(&cfg, json!({"tool": "fx__hang", "start": true})).await;
    let gw = gateway_at(&cfg.path);
    let job = wait_state(&gw.url, None, "victim", "interrupted").await;
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished"),
        "{job:#}"
    );
    drop(gw);

    let cfg = write_config(&config("on_interrupt = \"requeue\""));
    let out = cfg.dir.path().join("side-effect.txt");
    let args = json!({"tool": "fx__append", "arguments": {"path": out, "line": "ran", "ms": 2000}, "start": true});
    kill_mid_job(&cfg, args).await;
    let gw = gateway_at(&cfg.path);
    let job = wait_state(&gw.url, None, "victim", "completed").await;
    assert_eq!(job["attempts"], 2, "{job:#}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().any(|l| l == "ran"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_the_live_settings() {
    let cfg = write_config(&config("max_concurrent = 2"));
    let gw = gateway_at(&cfg.path);
    let (_, h) = http_queue(&gw.url, None, json!({"action": "health"})).await;
    assert_eq!(h["slots"]["max"], 2);
    std::fs::write(&cfg.path, config("max_concurrent = 7\ntimeout = \"5m\"")).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/admin/reload", base(&gw.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, h) = http_queue(&gw.url, None, json!({"action": "health"})).await;
    assert_eq!(h["slots"]["max"], 7, "{h:#}");
    // The queue kept its jobs and still runs them.
    http_queue(&gw.url, None, json!({"action": "add_job", "job_id": "r", "params": {"tool": "fx__echo", "arguments": {"message": "r"}, "start": true}})).await;
    wait_state(&gw.url, None, "r", "completed").await;
}
