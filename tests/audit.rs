//! The audit log against the real gateway binary and real MCP clients: the
//! SQLite store on a real file, the HTTP destination against a local
//! receiver, a destination that is down, `query_logs`, `GET /api/v1/logs`
//! with and without admin, and the environment overriding the file.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::audit::*;
use common::http::get_json;
use common::*;
use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sqlx::Row;

fn fx() -> String {
    stdio_backend("fx", "args = [\"--meta-tool\"]")
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .expect("call")
}

#[tokio::test]
async fn calls_land_in_sqlite_with_their_fields_redacted_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"sqlite\"\npath = {:?}\nbatch_interval = \"10ms\"\nsummary_chars = 20\n\n{}",
        db.display().to_string(),
        fx()
    ));
    let client = client(&gw.url).await;
    let ok = call(&client, "fx__echo", json!({"message": "hello audit", "api_key": "sk-live-123", "nested": {"password": "hunter2"}})).await;
    assert_eq!(first_text(&ok), "hello audit");
    let failed = call(&client, "fx__fail", json!({})).await;
    assert_eq!(failed.is_error, Some(true));
    // The correlation id reaches the backend in `_meta` and keys the log entry.
    let meta: Value =
        serde_json::from_str(&first_text(&call(&client, "fx__meta", json!({})).await)).unwrap();
    let correlation = meta["io.manifold/correlation_id"]
        .as_str()
        .expect("correlation id in _meta")
        .to_string();

    let path = format!("/api/v1/logs?correlation_id={correlation}");
    let (status, body) = eventually("the fx__meta entry", 15, async || {
        let (s, b) = get_json(&gw.url, &path, None).await;
        (b["count"].as_u64() == Some(1)).then_some((s, b))
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["entries"][0]["tool_name"], "fx__meta");

    let (_, body) = eventually("the fx__echo entry", 15, async || {
        let (_, b) = get_json(&gw.url, "/api/v1/logs?tool=fx__echo", None).await;
        (b["count"].as_u64() == Some(1)).then_some(((), b))
    })
    .await;
    let e = &body["entries"][0];
    assert_eq!(e["log_type"], "tool_execution");
    assert_eq!(e["status"], "success");
    assert_eq!(e["level"], "info");
    assert_eq!(e["input_args"]["message"], "hello audit");
    assert_eq!(e["input_args"]["api_key"], "[redacted]");
    assert_eq!(e["input_args"]["nested"]["password"], "[redacted]");
    assert_eq!(e["output_summary"], "hello audit");
    assert!(e["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(!e["correlation_id"].as_str().unwrap().is_empty());
    assert!(e["process_id"].as_u64().unwrap() > 0);
    assert_eq!(e["function"], "call_tool");
    let x = &e["extra_data"];
    assert_eq!(x["backend"], "fx");
    assert_eq!(x["transport"], "http");
    // The session's global id: `<instance_id>.<uuid>`, as /readyz names the instance.
    let (_, ready) = get_json(&gw.url, "/readyz", None).await;
    let instance = ready["instance_id"]
        .as_str()
        .expect("instance_id in /readyz");
    let session = x["session_id"].as_str().expect("session_id is a string");
    let uuid = session
        .strip_prefix(&format!("{instance}."))
        .unwrap_or_else(|| panic!("{session} does not start with {instance}."));
    assert_eq!(uuid.len(), 36, "{session}");
    assert!(x["client_id"].as_str().is_some());
    assert!(x["request_bytes"].as_u64().unwrap() > 10);
    assert!(x["response_bytes"].as_u64().unwrap() > 10);
    assert!(!body.to_string().contains("sk-live-123") && !body.to_string().contains("hunter2"));

    // The same store through the `query_logs` tool: newest first, filtered by status.
    let r = call(&client, "query_logs", json!({"status": "error"})).await;
    let found = r.structured_content.expect("structured");
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["entries"][0]["tool_name"], "fx__fail");
    assert_eq!(found["entries"][0]["error_message"], "fixture failure");
    // Bad filters are clear errors, not panics.
    let (s, b) = get_json(&gw.url, "/api/v1/logs?since=yesterday", None).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = get_json(&gw.url, "/api/v1/logs?colour=red", None).await;
    assert_eq!(s, 400);

    // The rows are in the real file, read with a separate connection.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT tool_name, input_args FROM unified_logs WHERE log_type = 'tool_execution'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(rows.len() >= 3);
    let args: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get::<Option<String>, _>("input_args"))
        .collect();
    assert!(args.iter().all(|a| !a.contains("sk-live-123")));

    // Counters in /status, gateway_status and /metrics.
    let c = counters(&gw.url, "sqlite", None).await;
    assert!(
        count(&c, "written") >= 3 && count(&c, "batches") >= 1,
        "{c}"
    );
    let st = call(&client, "gateway_status", json!({}))
        .await
        .structured_content
        .unwrap();
    assert!(
        st["audit"]["destinations"]["sqlite"]["written"]
            .as_u64()
            .unwrap()
            >= 3
    );
    let (_, metrics) = http_get(&gw.url, "/metrics");
    assert!(
        metrics
            .contains("manifold_audit_entries_total{destination=\"sqlite\",outcome=\"written\"}"),
        "{metrics}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn http_destination_down_costs_calls_nothing_counts_drops_and_recovers() {
    let port = free_port();
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"none\"\nproduction = \"http\"\nqueue_size = 8\nbatch_size = 4\nbatch_interval = \"10ms\"\nretry_attempts = 2\nretry_delay = \"10ms\"\n[audit.http]\nurl = \"http://127.0.0.1:{port}/ingest\"\napi_key = \"convex-key-1\"\n\n{}",
        fx()
    ));
    let client = client(&gw.url).await;
    // Nothing listens on the port: every call still answers at once.
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let started = Instant::now();
        let r = call(&client, "fx__echo", json!({"message": format!("down {i}")})).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(first_text(&r), format!("down {i}"));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a call waited {slowest:?}"
    );
    let c = eventually("drops to be counted", 15, async || {
        let c = counters(&gw.url, "http", None).await;
        (count(&c, "dropped") > 0 && !c["failing_since"].is_null()).then_some(c)
    })
    .await;
    assert_eq!(count(&c, "written"), 0, "{c}");
    assert!(count(&c, "retried") > 0, "{c}");
    let (_, metrics) = http_get(&gw.url, "/metrics");
    assert!(
        metrics.contains("manifold_audit_destination_failing{destination=\"http\"} 1"),
        "{metrics}"
    );

    // The receiver comes up on that port: entries flow again.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port still free");
    let received = receiver(listener);
    let mut i = 0;
    let entries = eventually("entries at the receiver", 20, async || {
        i += 1;
        call(
            &client,
            "fx__echo",
            json!({"message": format!("up {i}"), "token": "t0p"}),
        )
        .await;
        // Entries queued while it was down may arrive first: wait for one
        // of the calls made now, which carry a secret argument.
        let e = received.entries();
        e.iter()
            .any(|x| x["inputArgs"]["token"].is_string())
            .then_some(e)
    })
    .await;
    let e = entries
        .iter()
        .find(|x| x["inputArgs"]["token"].is_string())
        .expect("an entry of a call made after the receiver came up");
    // camelCase for Convex-style endpoints, the bearer key, and still redacted.
    assert_eq!(e["logType"], "tool_execution");
    assert_eq!(e["toolName"], "fx__echo");
    assert!(e["correlationId"].as_str().is_some());
    assert_eq!(e["extraData"]["backend"], "fx");
    assert_eq!(e["inputArgs"]["token"], "[redacted]");
    assert_eq!(
        received.auth_headers()[0].as_deref(),
        Some("Bearer convex-key-1")
    );
    let c = eventually("the lane to recover", 15, async || {
        let c = counters(&gw.url, "http", None).await;
        (count(&c, "written") > 0 && c["failing_since"].is_null()).then_some(c)
    })
    .await;
    assert!(count(&c, "dropped") > 0);
    client.cancel().await.unwrap();
}

const ALICE: &str = "tok-alice-0123456789";
const ROOT: &str = "tok-root-0123456789";

async fn authed(url: &str, token: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("connects")
}

#[tokio::test]
async fn with_auth_a_client_sees_its_own_entries_and_an_admin_sees_all() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _cfg) = gateway(&format!(
        "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"{ALICE}\"\n\n[[auth.tokens]]\nclient_id = \"root\"\ntoken = \"{ROOT}\"\nadmin = true\n\n[audit]\npath = {:?}\nbatch_interval = \"10ms\"\n\n{}",
        dir.path().join("a.db").display().to_string(),
        fx()
    ));
    let alice = authed(&gw.url, ALICE).await;
    let root = authed(&gw.url, ROOT).await;
    call(&alice, "fx__echo", json!({"message": "from alice"})).await;
    call(&root, "fx__echo", json!({"message": "from root"})).await;
    // A refused token is an internal event, without the token.
    let r = reqwest::Client::new()
        .get(gw.url.replace("/mcp", "/status"))
        .bearer_auth("wrong-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (_, all) = eventually("both entries", 15, async || {
        let (s, b) = get_json(&gw.url, "/api/v1/logs?tool=fx__echo", Some(ROOT)).await;
        (b["count"].as_u64() == Some(2)).then_some((s, b))
    })
    .await;
    let clients: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["extra_data"]["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(clients, vec!["root", "alice"], "newest first");
    let (_, mine) = get_json(
        &gw.url,
        "/api/v1/logs?tool=fx__echo&client=root",
        Some(ALICE),
    )
    .await;
    assert_eq!(mine["count"], 1, "{mine}");
    assert_eq!(mine["entries"][0]["extra_data"]["client_id"], "alice");
    let own = call(&alice, "query_logs", json!({}))
        .await
        .structured_content
        .unwrap();
    assert!(
        own["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["extra_data"]["client_id"] == "alice"),
        "{own}"
    );

    let (_, refused) = eventually("the auth refusal event", 15, async || {
        let (s, b) = get_json(&gw.url, "/api/v1/logs?status=denied", Some(ROOT)).await;
        (b["count"].as_u64() >= Some(1)).then_some((s, b))
    })
    .await;
    let e = &refused["entries"][0];
    assert_eq!(e["log_type"], "internal");
    assert_eq!(e["function"], "auth_refused");
    assert!(!refused.to_string().contains("wrong-token-123"));
    // Backend up is an internal event too.
    let (_, up) = get_json(&gw.url, "/api/v1/logs?backend=fx", Some(ROOT)).await;
    assert!(
        up["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["function"] == "backend_up"),
        "{up}"
    );
    alice.cancel().await.unwrap();
    root.cancel().await.unwrap();
}

fn check(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let file = write_config(config);
    let mut cmd = Command::new(MANIFOLD);
    cmd.arg("check").arg(&file.path);
    for var in [
        "ENABLE_LOCAL_LOGGING",
        "ENABLE_PRODUCTION_LOGGING",
        "LOG_DESTINATION_TYPE",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPIC",
        "CONVEX_ENDPOINT_URL",
        "CONVEX_API_KEY",
        "LOG_RETRY_ATTEMPTS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_validates_audit_and_the_environment_overrides_the_file() {
    let (ok, out) = check(
        "[audit]\nproduction = \"kafka\"\n[audit.kafka]\nbootstrap_servers = [\"127.0.0.1:1\"]\n",
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:2"),
            ("KAFKA_TOPIC", "audit-x"),
            ("LOG_RETRY_ATTEMPTS", "5"),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("kafka 127.0.0.1:2 topic audit-x"), "{out}");
    assert!(out.contains("5 attempts"), "{out}");
    let (ok, out) = check("", &[("ENABLE_PRODUCTION_LOGGING", "true")]);
    assert!(!ok);
    assert!(
        out.contains("ENABLE_PRODUCTION_LOGGING") && out.contains("LOG_DESTINATION_TYPE"),
        "{out}"
    );
    let (ok, out) = check("[audit]\nproduction = \"elasticsearch\"\n", &[]);
    assert!(!ok);
    assert!(out.contains(":2:14:") && out.contains("hosts"), "{out}");
    let (ok, out) = check(
        "",
        &[
            ("LOG_DESTINATION_TYPE", "convex"),
            ("CONVEX_ENDPOINT_URL", "http://127.0.0.1:9/x"),
            ("CONVEX_API_KEY", "secret-key-9"),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("audit: no local store; http"), "{out}");
    assert!(!out.contains("secret-key-9"));
}

#[tokio::test]
async fn environment_variables_redirect_a_running_gateway() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = receiver(listener);
    // The file says production is off; the environment says HTTP.
    let file = write_config(&format!(
        "[audit]\nlocal = \"none\"\nproduction = \"none\"\nbatch_interval = \"10ms\"\n\n{}",
        fx()
    ));
    let mut cmd = Command::new(MANIFOLD);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file.path);
    cmd.env("LOG_DESTINATION_TYPE", "http")
        .env(
            "CONVEX_ENDPOINT_URL",
            format!("http://127.0.0.1:{port}/ingest"),
        )
        .env("CONVEX_API_KEY", "env-key-7");
    let gw = spawn_listening(cmd);
    eventually("the gateway to be ready", 30, async || {
        (http_get(&gw.url, "/readyz").0 == 200).then_some(())
    })
    .await;
    let client = client(&gw.url).await;
    call(&client, "fx__echo", json!({"message": "via env"})).await;
    let entries = eventually("the entry at the receiver", 15, async || {
        let e = received.entries();
        e.iter().any(|e| e["toolName"] == "fx__echo").then_some(e)
    })
    .await;
    assert!(!entries.is_empty());
    assert_eq!(
        received.auth_headers()[0].as_deref(),
        Some("Bearer env-key-7")
    );
    client.cancel().await.unwrap();
}

/// Not a test against Elasticsearch (none can be installed here; see docs/audit.md): only the
/// shape of what the destination sends, against a local receiver.
#[tokio::test]
async fn elasticsearch_request_shape_against_a_local_receiver() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = receiver(listener);
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"none\"\nproduction = \"elasticsearch\"\nbatch_interval = \"10ms\"\n[audit.elasticsearch]\nhosts = [\"http://127.0.0.1:{port}\"]\nindex_prefix = \"mcp-test\"\n\n{}",
        fx()
    ));
    let client = client(&gw.url).await;
    call(&client, "fx__echo", json!({"message": "to es"})).await;
    let raw = eventually("a bulk request", 15, async || {
        let r = received.raw();
        r.iter()
            .any(|(l, b)| l == "POST /_bulk" && b.contains("fx__echo"))
            .then_some(r)
    })
    .await;
    assert_eq!(
        raw[0].0, "PUT /_index_template/mcp-test",
        "the template comes first"
    );
    let template: Value = serde_json::from_str(&raw[0].1).unwrap();
    assert_eq!(template["index_patterns"][0], "mcp-test-*");
    let (_, bulk) = raw
        .iter()
        .find(|(l, b)| l == "POST /_bulk" && b.contains("fx__echo"))
        .unwrap();
    let lines: Vec<Value> = bulk
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let action = &lines[lines.len() - 2];
    let index = action["index"]["_index"].as_str().unwrap();
    let day = lines[lines.len() - 1]["timestamp"].as_str().unwrap()[..10].replace('-', ".");
    assert_eq!(index, format!("mcp-test-{day}"));
    client.cancel().await.unwrap();
}

/// `durable = true`: a call is answered only once its entry is written, so
/// the entry is there the moment the answer is, even with a batch interval
/// far longer than the test (without it, the entry would wait 60 s for its
/// batch to fill).
#[tokio::test]
async fn durable_entries_are_written_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"sqlite\"\npath = {:?}\ndurable = true\nbatch_interval = \"60s\"\n\n{}",
        db.display().to_string(),
        fx()
    ));
    let client = client(&gw.url).await;
    for i in 0..5 {
        let message = format!("durable {i}");
        let r = call(&client, "fx__echo", json!({ "message": message })).await;
        assert_eq!(first_text(&r), message);
        let (_, body) = get_json(&gw.url, "/api/v1/logs?tool=fx__echo", None).await;
        assert_eq!(
            body["count"],
            i + 1,
            "entry {i} is written before its answer: {body}"
        );
        assert_eq!(
            body["entries"][0]["input_args"]["message"],
            message.as_str()
        );
    }
    // The same for a call made by the job queue's `POST /api/v1/execute`.
    let (status, _) = common::jobs::execute(
        &gw.url,
        None,
        json!({"command": "fx__echo", "params": {"message": "executed"}}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = get_json(&gw.url, "/api/v1/logs?tool=fx__echo", None).await;
    assert_eq!(body["count"], 6, "{body}");
    client.cancel().await.unwrap();
}
