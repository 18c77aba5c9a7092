//! Several gateway instances sharing sessions through Redis, behind HAProxy:
//! session ids name their instance, a session moves to another instance
//! when its own is gone (restored from Redis, bound to its client), the old
//! holder lets go, and a draining instance hands its traffic over without a
//! failed call.

#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod common;
mod eras_support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::cluster::{Instance, Raw, echoed, haproxy, haproxy_present, wait_until};
use common::recorder;
use common::redis::{redis_cleanup, redis_or_skip, unique_prefix};
use common::{args, first_text, require_or_skip, stdio_backend};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const BUS: &str = "manifold/bus";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_another_instance_and_the_old_one_lets_go() {
    if !redis_or_skip("a_session_moves_to_another_instance_and_the_old_one_lets_go") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("moves");
    let g1 = Instance::new(dir.path(), "g1", &prefix, "");
    let g2 = Instance::new(dir.path(), "g2", &prefix, "");
    assert_eq!(g1.readyz()["instance_id"], "g1");

    let mut raw = Raw::new(None);
    raw.initialize(&g1.url()).await;
    let session = raw.session.clone().expect("a session id");
    assert!(
        session.starts_with("g1."),
        "the id names its instance: {session}"
    );
    let (status, answer) = raw
        .call(&g1.url(), "shared__echo", json!({"message": "on g1"}))
        .await;
    assert_eq!((status, echoed(&answer).as_str()), (200, "on g1"));
    assert_eq!(g1.sessions(), 1);

    // The same session, sent to the other instance: restored from Redis.
    let (status, answer) = raw
        .call(&g2.url(), "shared__echo", json!({"message": "on g2"}))
        .await;
    assert_eq!(
        (status, echoed(&answer).as_str()),
        (200, "on g2"),
        "{answer:?}"
    );
    // A per-session backend starts afresh for the moved session.
    let (status, answer) = raw
        .call(&g2.url(), "mine__echo", json!({"message": "mine"}))
        .await;
    assert_eq!(
        (status, echoed(&answer).as_str()),
        (200, "mine"),
        "{answer:?}"
    );
    assert_eq!(g2.sessions(), 1);
    assert_eq!(g2.moves("restored"), 1);
    // The old holder hears of the move and closes its copy.
    wait_until(
        "g1 dropped the moved session",
        Duration::from_secs(10),
        || g1.sessions() == 0,
    );
    assert_eq!(g1.moves("released"), 1);

    // A session nobody knows is still 404.
    raw.session = Some("g1.00000000-0000-0000-0000-000000000000".into());
    let (status, _) = raw
        .call(&g2.url(), "shared__echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 404);
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_token_cannot_restore_a_session() {
    if !redis_or_skip("another_clients_token_cannot_restore_a_session") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("owner");
    let auth = "[auth]\n[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token-0123456789\"\n\
                [[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token-0123456789\"\n";
    let g1 = Instance::new(dir.path(), "g1", &prefix, auth);
    let g2 = Instance::new(dir.path(), "g2", &prefix, auth);

    let mut alice = Raw::new(Some("alice-token-0123456789"));
    alice.initialize(&g1.url()).await;
    let mut bob = Raw::new(Some("bob-token-0123456789"));
    bob.session = alice.session.clone();
    let (status, _) = bob
        .call(&g2.url(), "shared__echo", json!({"message": "steal"}))
        .await;
    assert_eq!(status, 404, "bob cannot take alice's session over");
    assert_eq!(g2.sessions(), 0);
    let (status, answer) = alice
        .call(&g2.url(), "shared__echo", json!({"message": "mine"}))
        .await;
    assert_eq!((status, echoed(&answer).as_str()), (200, "mine"));
    redis_cleanup(&prefix).await;
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn connect(url: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects through the load balancer")
}

/// Clients calling through the load balancer until `stop`; counts each one's calls.
struct Load {
    calls: Vec<Arc<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

async fn load(url: &str, clients: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut calls = Vec::new();
    let mut tasks = Vec::new();
    for n in 0..clients {
        let client = connect(url).await;
        let count = Arc::new(AtomicUsize::new(0));
        calls.push(count.clone());
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Alternate the shared backend and the session's own one.
                let tool = if i.is_multiple_of(2) {
                    "shared__echo"
                } else {
                    "mine__echo"
                };
                let message = format!("{n}-{i}");
                let call = client.call_tool(
                    CallToolRequestParams::new(tool)
                        .with_arguments(args(json!({"message": message}))),
                );
                match tokio::time::timeout(Duration::from_secs(30), call).await {
                    Ok(Ok(r)) if first_text(&r) == message => {}
                    Ok(Ok(r)) => errors.push(format!("{tool}: wrong answer {:?}", first_text(&r))),
                    Ok(Err(e)) => errors.push(format!("{tool}: {e}")),
                    Err(_) => errors.push(format!("{tool}: no answer in 30 s")),
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            let _ = client.cancel().await;
            errors
        }));
    }
    Load { calls, stop, tasks }
}

impl Load {
    /// Waits until every client completed `more` further calls.
    async fn progress(&self, more: usize) {
        common::cluster::progress(&self.calls, more, Duration::from_secs(90)).await;
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.tasks {
            errors.extend(t.await.unwrap());
        }
        (
            self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            errors,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_haproxy_fails_no_call() {
    if !redis_or_skip("a_rolling_restart_behind_haproxy_fails_no_call")
        || !require_or_skip("haproxy", haproxy_present())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("rolling");
    let mut instances: Vec<Instance> = ["g1", "g2", "g3"]
        .iter()
        .map(|id| Instance::new(dir.path(), id, &prefix, ""))
        .collect();
    let (_lb, port) = haproxy(dir.path(), &instances.iter().collect::<Vec<_>>());
    let url = format!("http://127.0.0.1:{port}/mcp");
    let load = load(&url, 6).await;
    load.progress(10).await;
    for instance in &mut instances {
        let status = instance.terminate();
        assert!(
            status.success(),
            "{} exits cleanly on SIGTERM: {status}",
            instance.id
        );
        load.progress(5).await;
        instance.start();
        load.progress(5).await;
    }
    let (calls, errors) = load.finish().await;
    eprintln!("rolling restart: {calls} calls, {} failed", errors.len());
    let restored: u64 = instances.iter().map(|i| i.moves("restored")).sum();
    assert!(restored > 0, "sessions moved during the restarts");
    assert!(
        errors.is_empty(),
        "{} of {calls} calls failed: {errors:?}",
        errors.len()
    );
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_killed_instance_behind_haproxy() {
    if !redis_or_skip("sessions_survive_a_killed_instance_behind_haproxy")
        || !require_or_skip("haproxy", haproxy_present())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("killed");
    let mut instances: Vec<Instance> = ["g1", "g2", "g3"]
        .iter()
        .map(|id| Instance::new(dir.path(), id, &prefix, ""))
        .collect();
    let (_lb, port) = haproxy(dir.path(), &instances.iter().collect::<Vec<_>>());
    let url = format!("http://127.0.0.1:{port}/mcp");
    let clients = 6;
    let load = load(&url, clients).await;
    load.progress(10).await;
    let victim = instances
        .iter()
        .position(|i| i.sessions() > 0)
        .expect("some instance holds sessions");
    let held = instances[victim].sessions();
    instances[victim].kill();
    // Every client goes on: its session is restored on another instance
    // (not re-initialized: the client keeps its session id).
    load.progress(10).await;
    let restored: u64 = instances
        .iter()
        .filter(|i| i.proc.is_some())
        .map(|i| i.moves("restored"))
        .sum();
    // Each session of the killed instance was restored (not re-initialized),
    // once, or twice when HAProxy's retry picked one instance before its
    // health check took the dead one out of the hash ring.
    assert!(
        (held..=2 * held).contains(&restored),
        "{restored} restores for {held} sessions of the killed instance"
    );
    instances[victim].start();
    load.progress(10).await;
    let (calls, errors) = load.finish().await;
    eprintln!(
        "killed {}: {calls} calls, {} failed: {errors:?}",
        instances[victim].id,
        errors.len()
    );
    // Only a call in flight on the killed instance may fail: one per client at most.
    assert!(
        errors.len() <= clients,
        "{} of {calls} calls failed (at most {clients} were in flight at the kill): {errors:?}",
        errors.len()
    );
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readiness_first_and_lets_calls_in_flight_finish() {
    let config = format!(
        "[server]\ninstance_id = \"d1\"\ndrain_timeout = \"20s\"\n\n{}",
        stdio_backend("shared", "")
    );
    let (mut gw, _file) = common::gateway(&config);
    let url = gw.url.clone();
    let mut raw = Raw::new(None);
    raw.initialize(&url).await;
    assert!(raw.session.as_deref().is_some_and(|s| s.starts_with("d1.")));
    // A call that is still running when the signal arrives.
    let slow = tokio::spawn({
        let url = url.clone();
        let mut raw = Raw {
            http: reqwest::Client::new(),
            token: None,
            session: raw.session.clone(),
            next_id: 100,
        };
        async move { raw.call(&url, "shared__sleep", json!({"ms": 1500})).await }
    });
    wait_until(
        "the slow call is in flight",
        Duration::from_secs(10),
        || {
            let (_, body) = common::http_get(&url, "/readyz");
            serde_json::from_str::<Value>(&body).is_ok_and(|v| v["in_flight"] == 1)
        },
    );
    // SIGTERM: readiness goes 503 at once, new work is refused with 503 + Retry-After…
    let pid = gw.pid() as i32;
    Command::new("kill")
        .arg("-15")
        .arg(pid.to_string())
        .status()
        .unwrap();
    wait_until("readiness reports draining", Duration::from_secs(5), || {
        let (status, body) = common::http_get(&url, "/readyz");
        status == 503 && body.contains("\"draining\":true")
    });
    let late = Raw::new(None);
    let resp = late
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "late", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{body}"
    );
    // …and the call in flight still completes before the process exits.
    let (status, answer) = slow.await.unwrap();
    assert_eq!(
        (status, echoed(&answer).as_str()),
        (200, "slept 1500 ms"),
        "{answer:?}"
    );
    let exit = gw.terminate();
    assert!(exit.success(), "exits cleanly after the drain: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_global_in_status_bus_and_audit() {
    if !redis_or_skip("session_ids_are_global_in_status_bus_and_audit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("global");
    let messaging = common::redis::redis_config(&format!("{prefix}-msg"), "");
    let audit =
        |id: &str| format!("[audit]\npath = \"audit-{id}.db\"\nbatch_interval = \"10ms\"\n");
    let g1 = Instance::new(
        dir.path(),
        "g1",
        &prefix,
        &format!("{messaging}{}", audit("g1")),
    );
    let g2 = Instance::new(
        dir.path(),
        "g2",
        &prefix,
        &format!("{messaging}{}", audit("g2")),
    );
    // Every answer names the instance that gave it.
    let health = reqwest::get(common::root(&g2.url(), "/healthz"))
        .await
        .unwrap();
    assert_eq!(health.headers()["x-manifold-instance"], "g2");
    // x is g1's first session and z is g2's: each instance's own session
    // counter gives them the same number, their global ids differ.
    let (x, x_logs) = recorder::connect(&g1.url(), "x").await;
    let (z, z_logs) = recorder::connect(&g2.url(), "z").await;
    let (y, _) = recorder::connect(&g2.url(), "y").await;
    let id_of = async |c: &recorder::Rc| {
        let r = recorder::call(c, "gateway_status", json!({})).await;
        r.structured_content.unwrap()["caller"]["session"]
            .as_str()
            .expect("the caller's session id is a string")
            .to_string()
    };
    let (x_id, z_id) = (id_of(&x).await, id_of(&z).await);
    assert!(
        x_id.starts_with("g1.") && z_id.starts_with("g2."),
        "{x_id} {z_id}"
    );
    recorder::ok(&x, "subscribe_to_messages", json!({})).await;
    recorder::ok(&z, "subscribe_to_messages", json!({})).await;

    // y, on g2, sends to x's session, which g1 holds: x gets it, z does not.
    recorder::ok(
        &y,
        "send_client_message",
        json!({"content": "for x only", "session_id": x_id}),
    )
    .await;
    recorder::ok(
        &y,
        "send_client_message",
        json!({"content": "for everyone"}),
    )
    .await;
    let from_clients = |r: &common::recorder::Recorder| -> Vec<Value> {
        r.logs(BUS)
            .into_iter()
            .map(|m| m.data)
            .filter(|d| d["sender"]["kind"] == "client")
            .collect()
    };
    let got = common::eventually("x has both messages", 10, async || {
        let got = from_clients(&x_logs);
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!(got[0]["message"], "for x only");
    assert_eq!(got[0]["session_id"], x_id.as_str());
    let sender = got[0]["sender"]["session_id"].as_str().unwrap();
    assert!(sender.starts_with("g2."), "y's id names g2: {sender}");
    // z got the broadcast, which y sent after the message for x only.
    common::eventually("z has the broadcast", 10, async || {
        (!from_clients(&z_logs).is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        from_clients(&z_logs).len(),
        1,
        "{:?}",
        from_clients(&z_logs)
    );
    // A number is this instance's own session; one g2 does not have is refused.
    let err = recorder::tool_error(
        &y,
        "send_client_message",
        json!({"content": "to nobody", "session_id": 99}),
    )
    .await;
    assert!(err.contains("no session 99 on this instance"), "{err}");

    // The audit entry of x's call carries x's global id.
    recorder::ok(&x, "shared__echo", json!({"message": "audited"})).await;
    let path = "/api/v1/logs?tool=shared__echo";
    let entry = common::eventually("the audit entry of x's call", 15, async || {
        let (_, b) = common::http::get_json(&g1.url(), path, None).await;
        (b["count"].as_u64() == Some(1)).then(|| b["entries"][0].clone())
    })
    .await;
    assert_eq!(entry["extra_data"]["session_id"], x_id.as_str());
    for c in [x, y, z] {
        let _ = c.cancel().await;
    }
    redis_cleanup(&prefix).await;
    redis_cleanup(&format!("{prefix}-msg")).await;
}

/// A 2026-07-28 client is served by any instance, so its listen stream hears
/// of a list change raised on another instance (here: a stdio backend's own
/// process on g2 grows its tool list; g1's process of that backend does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_hears_list_changes_raised_on_another_instance() {
    use rmcp::model::{ProtocolVersion, ServerNotification, SubscriptionFilter};
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    if !redis_or_skip("a_listen_stream_hears_list_changes_raised_on_another_instance") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("lists");
    let g1 = Instance::new(dir.path(), "g1", &prefix, "");
    let g2 = Instance::new(dir.path(), "g2", &prefix, "");
    let listener = eras_support::EraClient::new("listener", Default::default())
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(g1.url()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("a 2026-07-28 client connects to g1");
    let filter = SubscriptionFilter::builder().tools_list_changed().build();
    let mut sub = listener.peer().listen(filter).await.expect("listen on g1");
    assert_eq!(sub.acknowledged().tools_list_changed, Some(true));

    let mut raw = Raw::new(None);
    raw.initialize(&g2.url()).await;
    let (status, _) = raw
        .call(&g2.url(), "shared__add_tool", json!({"name": "fresh"}))
        .await;
    assert_eq!(status, 200);
    let changed = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a notification on g1 within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open");
    assert!(
        matches!(changed, ServerNotification::ToolListChangedNotification(_)),
        "{changed:?}"
    );
    let _ = listener.cancel().await;
    redis_cleanup(&prefix).await;
}
