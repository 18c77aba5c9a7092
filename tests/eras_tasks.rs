//! Tool calls served as tasks (issue 12, item 4): the tasks extension
//! (`io.modelcontextprotocol/tasks`) backed by the job queue, with rmcp's
//! client over HTTP in 2026-07-28 mode and in initialize mode, against a
//! running gateway with real fixture backends.

mod common;
mod eras_support;

use std::time::{Duration, Instant};

use common::jobs::{fixture_backend, sqlite_jobs};
use common::*;
use eras_support::{EraClient, Seen};
use rmcp::model::*;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

type Era = RunningService<rmcp::RoleClient, EraClient>;

fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

fn with_tasks() -> ClientCapabilities {
    ClientCapabilities::builder().enable_tasks().build()
}

async fn connect(url: &str, caps: ClientCapabilities, mode: ClientLifecycleMode) -> Era {
    connect_as(url, None, caps, mode).await
}

async fn connect_as(
    url: &str,
    token: Option<&str>,
    caps: ClientCapabilities,
    mode: ClientLifecycleMode,
) -> Era {
    connect_handler(url, token, EraClient::new("tasks", caps), mode).await
}

/// Connects with this handler (kept by the caller to see what reached it).
async fn connect_handler(
    url: &str,
    token: Option<&str>,
    handler: EraClient,
    mode: ClientLifecycleMode,
) -> Era {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    handler
        .serve_with_lifecycle(StreamableHttpClientTransport::from_config(config), mode)
        .await
        .expect("client connects")
}

/// A gateway with `fx` (tasks as given) and `plain` (never tasks), jobs on SQLite.
fn config(tasks: &str) -> String {
    format!(
        "{}{}{}",
        fixture_backend(&format!("tasks = \"{tasks}\"\ntimeout = \"2s\"")),
        stdio_backend("plain", ""),
        sqlite_jobs(""),
    )
}

async fn call_once(client: &Era, tool: &str, arguments: Value) -> CallToolResponse {
    client
        .call_tool_once(
            CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn task_of(response: CallToolResponse) -> Task {
    match response {
        CallToolResponse::Task(t) => t.task,
        other => panic!("expected a task, got {other:?}"),
    }
}

/// Polls `tasks/get` until the task ends (20 s at most).
async fn until_ended(client: &Era, id: &str) -> GetTaskResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = client
            .get_task(GetTaskParams::new(id))
            .await
            .expect("tasks/get");
        if got.task.status().is_terminal() {
            return got;
        }
        assert!(Instant::now() < deadline, "task {id} still {:?}", got.task);
        // Paces the polls; the deadline above bounds the wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn result_text(got: &GetTaskResult) -> String {
    match &got.task.payload {
        TaskPayload::Completed { result } => result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        other => panic!("expected a completed task, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_from_a_client_that_declares_tasks_becomes_a_task_of_the_job_queue() {
    let (gw, _cfg) = gateway(&config("optional"));
    let client = connect(&gw.url, with_tasks(), modern()).await;
    let info = client.peer().peer_info().expect("discovered");
    assert!(
        info.capabilities.supports_tasks(),
        "the gateway offers tasks: {:?}",
        info.capabilities
    );

    let created = task_of(call_once(&client, "fx__sleep", json!({"ms": 300})).await);
    assert!(created.task_id.starts_with("task-"), "{created:?}");
    assert_eq!(created.status, TaskStatus::Working);
    assert!(created.poll_interval_ms.is_some());
    // Durable before it is answered: the first poll already resolves.
    let first = client
        .get_task(GetTaskParams::new(&created.task_id))
        .await
        .expect("tasks/get right after the call");
    assert_eq!(first.task.task.task_id, created.task_id);
    let done = until_ended(&client, &created.task_id).await;
    assert_eq!(done.task.status(), TaskStatus::Completed);
    assert_eq!(result_text(&done), "slept 300 ms");
    assert!(done.task.task.ttl_ms.is_some(), "kept for the retention");

    // A tool error is a completed task whose result says so.
    let failed = task_of(call_once(&client, "fx__fail", json!({})).await);
    let failed = until_ended(&client, &failed.task_id).await;
    assert_eq!(failed.task.status(), TaskStatus::Completed);
    let TaskPayload::Completed { result } = &failed.task.payload else {
        unreachable!()
    };
    assert_eq!(result["isError"], true, "{result:?}");

    // No result at all (the backend's timeout) is a failed task with the reason.
    let hung = task_of(call_once(&client, "fx__hang", json!({})).await);
    let hung = until_ended(&client, &hung.task_id).await;
    assert_eq!(hung.task.status(), TaskStatus::Failed);
    let TaskPayload::Failed { error } = &hung.task.payload else {
        unreachable!()
    };
    assert!(error["code"].is_i64(), "{error:?}");
    assert!(
        error["message"].as_str().unwrap_or_default().contains("2s"),
        "{error:?}"
    );

    // A backend without `tasks` answers inline, as does `fx` for a client
    // that did not declare the extension.
    match call_once(&client, "plain__echo", json!({"message": "inline"})).await {
        CallToolResponse::Complete(r) => assert_eq!(first_text(&r), "inline"),
        other => panic!("plain__echo: {other:?}"),
    }
    let without = connect(&gw.url, ClientCapabilities::default(), modern()).await;
    match call_once(&without, "fx__echo", json!({"message": "as before"})).await {
        CallToolResponse::Complete(r) => assert_eq!(first_text(&r), "as before"),
        other => panic!("fx__echo without the extension: {other:?}"),
    }
    // Without the extension, tasks/* are refused as the spec says.
    let refused = without
        .get_task(GetTaskParams::new(&created.task_id))
        .await
        .expect_err("tasks/get needs the extension");
    assert_eq!(error_code(&refused), -32021, "{refused}");

    // Unknown ids are a clear error, for every task method.
    let unknown = client
        .get_task(GetTaskParams::new("task-nope"))
        .await
        .expect_err("unknown task");
    assert!(unknown.to_string().contains("unknown task"), "{unknown}");
    let unknown = client
        .cancel_task(CancelTaskParams::new("task-nope"))
        .await
        .expect_err("unknown task");
    assert!(unknown.to_string().contains("unknown task"), "{unknown}");
}

fn error_code(e: &ServiceError) -> i32 {
    match e {
        ServiceError::McpError(e) => e.code.0,
        other => panic!("not a JSON-RPC error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_is_cancelled_and_a_required_backend_refuses_clients_without_the_extension() {
    let (gw, _cfg) = gateway(&config("required"));
    let client = connect(&gw.url, with_tasks(), modern()).await;
    let long = task_of(call_once(&client, "fx__sleep", json!({"ms": 1500})).await);
    client
        .cancel_task(CancelTaskParams::new(&long.task_id))
        .await
        .expect("tasks/cancel is acknowledged");
    let ended = until_ended(&client, &long.task_id).await;
    assert_eq!(ended.task.status(), TaskStatus::Cancelled, "{ended:?}");
    // Cancelling what already ended is acknowledged and changes nothing.
    client
        .cancel_task(CancelTaskParams::new(&long.task_id))
        .await
        .expect("a second tasks/cancel is acknowledged");
    // tasks/update has nothing to answer (a job never asks), but is acknowledged.
    client
        .update_task(UpdateTaskParams::new(&long.task_id, InputResponses::new()))
        .await
        .expect("tasks/update is acknowledged");

    let without = connect(&gw.url, ClientCapabilities::default(), modern()).await;
    let refused = without
        .call_tool_once(
            CallToolRequestParams::new("fx__echo").with_arguments(args(json!({"message": "x"}))),
        )
        .await
        .expect_err("a required task needs the extension");
    assert_eq!(error_code(&refused), -32021, "{refused}");
    if let ServiceError::McpError(e) = &refused {
        assert_eq!(
            e.data.as_ref().unwrap()["requiredCapabilities"]["extensions"],
            json!({"io.modelcontextprotocol/tasks": {}})
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_belong_to_their_client_in_either_era() {
    let auth = "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token-1234\"\n\n\
                [[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token-12345\"\n\n";
    let (gw, _cfg) = gateway(&format!("{auth}{}", config("optional")));
    let alice = connect_as(&gw.url, Some("alice-token-1234"), with_tasks(), modern()).await;
    // Bob's client is of the initialize era and declares the extension there.
    let bob = connect_as(
        &gw.url,
        Some("bob-token-12345"),
        with_tasks(),
        ClientLifecycleMode::Initialize,
    )
    .await;
    assert_ne!(
        bob.peer().peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    let mine = task_of(call_once(&alice, "fx__echo", json!({"message": "alice's"})).await);
    let theirs = task_of(call_once(&bob, "fx__echo", json!({"message": "bob's"})).await);
    assert_eq!(
        result_text(&until_ended(&alice, &mine.task_id).await),
        "alice's"
    );
    assert_eq!(
        result_text(&until_ended(&bob, &theirs.task_id).await),
        "bob's"
    );
    // Neither can see or stop the other's task.
    for (client, id) in [(&bob, &mine.task_id), (&alice, &theirs.task_id)] {
        let e = client
            .get_task(GetTaskParams::new(id.as_str()))
            .await
            .expect_err("another client's task");
        assert!(e.to_string().contains("unknown task"), "{e}");
        let e = client
            .cancel_task(CancelTaskParams::new(id.as_str()))
            .await
            .expect_err("another client's task");
        assert!(e.to_string().contains("unknown task"), "{e}");
    }
}

#[test]
fn tasks_without_the_job_queue_are_a_config_error_with_its_place() {
    let stderr = check_refuses(&fixture_backend("tasks = \"optional\""));
    assert!(stderr.contains("[jobs]"), "{stderr}");
    assert!(stderr.contains(":5:"), "the line of `tasks`: {stderr}");
}

/// A backend connected at 2026-07-28 that advertises the extension makes
/// tasks of its own; the gateway names them `<backend>:<id>` and routes
/// `tasks/*` back to it, for clients of both eras that declared it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backends_own_tasks_are_relayed_under_its_name() {
    let (gw, _cfg) = gateway(&stdio_backend(
        "fx",
        "args = [\"--eras\"]\nlifecycle = \"discover\"",
    ));
    let modern_client = connect(&gw.url, with_tasks(), modern()).await;
    assert!(
        modern_client
            .peer()
            .peer_info()
            .unwrap()
            .capabilities
            .supports_tasks(),
        "offered because the backend offers it"
    );
    let legacy_client = connect(&gw.url, with_tasks(), ClientLifecycleMode::Initialize).await;
    for client in [&modern_client, &legacy_client] {
        let created = task_of(
            call_once(
                client,
                "fx__task_sleep",
                json!({"ms": 200, "message": "bye"}),
            )
            .await,
        );
        assert!(
            created.task_id.starts_with("fx:fx-task-"),
            "named after its backend: {created:?}"
        );
        let done = until_ended(client, &created.task_id).await;
        assert_eq!(done.task.task.task_id, created.task_id);
        assert_eq!(result_text(&done), "bye");

        let long = task_of(call_once(client, "fx__task_sleep", json!({"ms": 10_000})).await);
        client
            .cancel_task(CancelTaskParams::new(&long.task_id))
            .await
            .expect("tasks/cancel reaches the backend");
        let ended = until_ended(client, &long.task_id).await;
        assert_eq!(ended.task.status(), TaskStatus::Cancelled);
        client
            .update_task(UpdateTaskParams::new(&long.task_id, InputResponses::new()))
            .await
            .expect("tasks/update reaches the backend");
    }
    // A client that did not declare the extension gets the answer inline.
    let plain = connect(&gw.url, ClientCapabilities::default(), modern()).await;
    match call_once(
        &plain,
        "fx__task_sleep",
        json!({"ms": 50, "message": "inline"}),
    )
    .await
    {
        CallToolResponse::Complete(r) => assert_eq!(first_text(&r), "inline"),
        other => panic!("without the extension: {other:?}"),
    }
    // An id naming no mounted backend, or one the backend does not know.
    for id in ["nobody:fx-task-1", "fx:no-such-task"] {
        let e = modern_client
            .get_task(GetTaskParams::new(id))
            .await
            .expect_err("unknown");
        let text = e.to_string();
        assert!(
            text.contains("unknown task") || text.contains("no task"),
            "{id}: {text}"
        );
    }
}

/// An initialize-era backend with a connection per client session has that
/// client's own capabilities: its tasks are relayed the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_per_session_backends_own_tasks_are_relayed_too() {
    let (gw, _cfg) = gateway(&stdio_backend(
        "fx",
        "args = [\"--eras\"]\nisolation = \"per_session\"",
    ));
    let client = connect(&gw.url, with_tasks(), ClientLifecycleMode::Initialize).await;
    let created = task_of(
        call_once(
            &client,
            "fx__task_sleep",
            json!({"ms": 100, "message": "mine"}),
        )
        .await,
    );
    assert!(created.task_id.starts_with("fx:"), "{created:?}");
    assert_eq!(
        result_text(&until_ended(&client, &created.task_id).await),
        "mine"
    );
    // Another session has its own process, which does not know this task.
    let other = connect(&gw.url, with_tasks(), ClientLifecycleMode::Initialize).await;
    let e = other
        .get_task(GetTaskParams::new(&created.task_id))
        .await
        .expect_err("another session's process");
    assert!(e.to_string().contains("no task"), "{e}");
}

#[test]
fn tasks_on_a_per_session_backend_are_a_config_error() {
    let stderr = check_refuses(&format!(
        "{}{}",
        fixture_backend("isolation = \"per_session\"\ntasks = \"optional\""),
        sqlite_jobs("")
    ));
    assert!(stderr.contains("per_session"), "{stderr}");
    assert!(stderr.contains(":6:"), "the line of `tasks`: {stderr}");
}

/// `manifold check` on `config`, which must fail: what it printed on stderr.
fn check_refuses(config: &str) -> String {
    let file = write_config(config);
    let out = std::process::Command::new(MANIFOLD)
        .arg("check")
        .arg(&file.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    stderr
}

/// A shared backend connected with `initialize` learns the gateway's
/// capabilities once, tasks extension included, so it may answer any call
/// with a task. A client that declared the extension gets the task (its
/// own: another client cannot use it); for one that did not, the call waits
/// for the task to end and answers inline, its questions asked as ordinary
/// requests; a task that outlives the backend's timeout is cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_initialize_era_backends_tasks_reach_declaring_clients_and_others_wait() {
    let auth = "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token-1234\"\n\n\
                [[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token-12345\"\n\n";
    let (gw, _cfg) = gateway(&format!(
        "{auth}{}",
        stdio_backend("fx", "args = [\"--eras\"]\ntimeout = \"2s\"")
    ));
    let initialize = || ClientLifecycleMode::Initialize;
    let alice_handler = EraClient::new("alice", with_tasks());
    let alice = connect_handler(
        &gw.url,
        Some("alice-token-1234"),
        alice_handler.clone(),
        initialize(),
    )
    .await;
    let created = task_of(
        call_once(
            &alice,
            "fx__task_sleep",
            json!({"ms": 200, "message": "bye"}),
        )
        .await,
    );
    assert!(created.task_id.starts_with("fx:fx-task-"), "{created:?}");
    assert_eq!(
        result_text(&until_ended(&alice, &created.task_id).await),
        "bye"
    );

    // Bob's client declares nothing: his calls wait for the backend's tasks.
    let bob_handler = EraClient::full("bob", false, false);
    let bob = connect_handler(
        &gw.url,
        Some("bob-token-12345"),
        bob_handler.clone(),
        initialize(),
    )
    .await;
    // Nor can Bob's other client, which takes tasks, use Alice's.
    let bob_tasks_handler = EraClient::new("bob-tasks", with_tasks());
    let bob_tasks = connect_handler(
        &gw.url,
        Some("bob-token-12345"),
        bob_tasks_handler.clone(),
        initialize(),
    )
    .await;
    let e = bob_tasks
        .get_task(GetTaskParams::new(created.task_id.as_str()))
        .await
        .expect_err("alice's task");
    assert!(e.to_string().contains("unknown task"), "{e}");
    // The backend's notifications/tasks reach Alice's session, under the gateway's name.
    alice_handler
        .wait_for(
            "the task's status notification",
            |s| matches!(s, Seen::Task(id, TaskStatus::Completed) if *id == created.task_id),
        )
        .await;

    let call = |arguments: Value| {
        CallToolRequestParams::new("fx__task_sleep").with_arguments(args(arguments))
    };
    let inline = bob
        .call_tool(call(json!({"ms": 200, "message": "inline"})))
        .await
        .expect("an inline answer");
    assert_eq!(first_text(&inline), "inline");
    let task = inline
        .meta
        .as_ref()
        .and_then(|m| m.0.get("fixture/task"))
        .and_then(Value::as_str)
        .expect("the answer came from a task")
        .to_string();

    // The task's question reaches Bob's client as a sampling request.
    let asked = bob
        .call_tool(call(json!({"ms": 50, "message": "asked", "ask": true})))
        .await
        .expect("an answered task");
    assert_eq!(first_text(&asked), "asked (answer from bob)", "{asked:?}");

    // Longer than the backend's 2 s timeout: the call fails, the task is cancelled.
    let started = Instant::now();
    let timed = bob
        .call_tool(call(json!({"ms": 30_000})))
        .await
        .expect("a tool error");
    assert_eq!(timed.is_error, Some(true), "{timed:?}");
    assert!(
        first_text(&timed).contains("did not answer within 2s"),
        "{timed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let n: u64 = task
        .trim_start_matches("fx-task-")
        .parse()
        .expect("task number");
    // The fixture numbers tasks in order: the asking one, then this one.
    let timed_out = format!("fx:fx-task-{}", n + 2);
    let ended = until_ended(&alice, &timed_out).await;
    assert_eq!(ended.task.status(), TaskStatus::Cancelled, "{ended:?}");
    // Status notifications went to the session each task was handed to, and no other.
    for handler in [&bob_tasks_handler, &bob_handler] {
        assert!(
            !handler.seen().iter().any(|s| matches!(s, Seen::Task(..))),
            "{:?}",
            handler.seen()
        );
    }
}
