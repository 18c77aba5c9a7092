//! Issue 8, coordinator and core findings: what a backend sends reaches only
//! the sessions allowed to see it, per-session connections are started once
//! and capped, unsubscribe checks the allow-list, and a reload's live
//! settings reach running backends. Real gateway, real fixture processes,
//! real MCP clients over HTTP.
#![allow(deprecated)] // logging and roots are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::http::*;
use common::recorder::{self as support, Rc, call, connect_with_token, ok};
use common::*;
use rmcp::model::*;
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

const FULL: &str = "full-token-0123456789";
const LIMITED: &str = "limited-token-0123456789";

/// `fx` only the full client may use; `other` both may use.
fn two_clients_config(extra_fx: &str) -> String {
    format!(
        "[[auth.tokens]]\nclient_id = \"full\"\ntoken = \"{FULL}\"\n\n\
         [[auth.tokens]]\nclient_id = \"limited\"\ntoken = \"{LIMITED}\"\nbackends = [\"other\", \"@*\"]\n\n{}{}",
        stdio_backend("fx", extra_fx),
        stdio_backend("other", "")
    )
}

async fn stats(client: &Rc, backend: &str) -> Value {
    let (text, _) = ok(client, &format!("{backend}__stats"), json!({})).await;
    serde_json::from_str(&text).expect("stats JSON")
}

fn messages(logs: &[LoggingMessageNotificationParam]) -> Vec<String> {
    logs.iter()
        .map(|l| l.data.as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_reach_only_the_caller_or_the_sessions_allowed_to_see_the_backend() {
    let (gw, _cfg) = gateway(&two_clients_config(""));
    let (full, full_rec) = connect_with_token(&gw.url, "full", FULL).await;
    let (limited, limited_rec) = connect_with_token(&gw.url, "limited", LIMITED).await;
    for c in [&full, &limited] {
        c.set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
            .await
            .expect("setLevel");
    }

    // Outside any call: only sessions that may see `fx`.
    ok(
        &full,
        "fx__log",
        json!({"message": "fx-outside", "later_ms": 50}),
    )
    .await;
    full_rec.wait_for("fx/fixture", 1).await;
    // A later message from `other`, which both see: once the limited client has
    // it, it would also have the earlier one, had that been sent to it.
    ok(
        &limited,
        "other__log",
        json!({"message": "other-outside", "later_ms": 50}),
    )
    .await;
    limited_rec.wait_for("other/fixture", 1).await;
    assert!(
        limited_rec.logs("fx/fixture").is_empty(),
        "a client without access to fx got its log"
    );

    // Caused by a call: the caller only, even though both may see `other`.
    // The message comes just before the call's answer, so each round races
    // the answer ending the call (rmcp handles the message on a task of its
    // own): it must still be taken as that call's.
    const ROUNDS: usize = 30;
    for i in 0..ROUNDS {
        ok(
            &full,
            "other__log",
            json!({"message": format!("during-full-call-{i}")}),
        )
        .await;
    }
    let got = full_rec.wait_for("other/fixture", 1 + ROUNDS).await;
    assert!(messages(&got).contains(&"during-full-call-0".to_string()));
    ok(
        &limited,
        "other__log",
        json!({"message": "sentinel", "later_ms": 50}),
    )
    .await;
    let got = limited_rec.wait_for("other/fixture", 2).await;
    assert!(
        !messages(&got)
            .iter()
            .any(|m| m.starts_with("during-full-call")),
        "another client's call log leaked: {got:?}"
    );
    let _ = (full.cancel().await, limited.cancel().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_level_reaches_only_backends_the_client_may_use() {
    let (gw, _cfg) = gateway(&two_clients_config(""));
    let (full, _) = connect_with_token(&gw.url, "full", FULL).await;
    let (limited, _) = connect_with_token(&gw.url, "limited", LIMITED).await;
    limited
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .expect("setLevel");
    wait_until("other's level set to debug", 15, async || {
        stats(&full, "other").await["log_level"] == "debug"
    })
    .await;
    assert_eq!(
        stats(&full, "fx").await["log_level"],
        Value::Null,
        "fx's level was turned up by a client that may not use it"
    );
    let _ = (full.cancel().await, limited.cancel().await);
}

/// A client that answers `roots/list` with one root and counts the asks.
#[derive(Clone)]
struct RootsClient {
    root: String,
    asked: Arc<AtomicUsize>,
}

impl ClientHandler for RootsClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_roots().build(),
            Implementation::new("roots-client", "1"),
        )
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(ListRootsResult::new(vec![Root::new(self.root.clone())]))
    }
}

async fn roots_client(
    url: &str,
    token: &str,
    root: &str,
) -> (RunningService<RoleClient, RootsClient>, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let handler = RootsClient {
        root: root.into(),
        asked: asked.clone(),
    };
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    let client = handler
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects");
    (client, asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn roots_outside_a_call_are_asked_only_of_allowed_clients_and_rate_limited() {
    let (gw, _cfg) = gateway(&two_clients_config(""));
    let (full, full_asked) = roots_client(&gw.url, FULL, "file:///full").await;
    let (limited, limited_asked) = roots_client(&gw.url, LIMITED, "file:///limited").await;
    let (checker, checker_logs) = connect_with_token(&gw.url, "checker", FULL).await;
    // Three asks in a row, outside any call (no call is in flight meanwhile).
    full.call_tool(
        CallToolRequestParams::new("fx__roots_later")
            .with_arguments(args(json!({"later_ms": 10, "count": 3}))),
    )
    .await
    .expect("roots_later");
    checker_logs.wait_for("fx/fixture", 1).await;
    let s = stats(&checker, "fx").await;
    assert_eq!(s["roots_answers"], 3, "{s}");
    let last = s["last_roots"].clone();
    assert_eq!(
        last,
        json!(["file:///full"]),
        "roots of a client without access reached the backend"
    );
    assert_eq!(
        limited_asked.load(Ordering::SeqCst),
        0,
        "a client without access to fx was asked for its roots"
    );
    // Three asks within a second: the client was asked once.
    assert_eq!(
        full_asked.load(Ordering::SeqCst),
        1,
        "roots asks outside a call are not rate-limited"
    );
    let _ = (
        full.cancel().await,
        limited.cancel().await,
        checker.cancel().await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsubscribe_checks_the_allow_list_and_starts_no_process() {
    let (gw, _cfg) = gateway(&two_clients_config("isolation = \"per_session\""));
    let (limited, _) = connect_with_token(&gw.url, "limited", LIMITED).await;
    let err = limited
        .unsubscribe(UnsubscribeRequestParams::new("fx+fixture://info"))
        .await
        .expect_err("unsubscribe of a forbidden backend's resource must fail");
    assert!(err.to_string().contains("not allowed"), "{err}");
    let status: Value =
        serde_json::from_str(&http_get_auth(&gw.url, "/status", FULL).1).expect("status JSON");
    assert_eq!(
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| is_child_fixture(e.path(), gw.child.id()))
            .count(),
        2,
        "unsubscribe started a per-session process (status: {status})"
    );
    let _ = limited.cancel().await;
}

/// Whether /proc/PID is a fixture process whose parent is the gateway.
fn is_child_fixture(proc_dir: std::path::PathBuf, gateway_pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let ppid: u32 = rest
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    ppid == gateway_pid && stat.contains("(manifold-fixtur")
}
#[tokio::test(flavor = "multi_thread")]
async fn per_session_backend_starts_once_under_racing_calls_and_is_capped() {
    let config = stdio_backend("solo", "isolation = \"per_session\"\nmax_sessions = 1");
    let (gw, _cfg) = gateway(&config);
    let (a, _) = support::connect(&gw.url, "a").await;
    // Two first calls at once: one process, the same one for both.
    let (s1, s2) = tokio::join!(stats(&a, "solo"), stats(&a, "solo"));
    assert_eq!(
        s1["pid"], s2["pid"],
        "two racing first calls started two processes"
    );
    assert_eq!(stats(&a, "solo").await["pid"], s1["pid"]);
    // A second session past max_sessions gets a clear error, not a process.
    let (b, _) = support::connect(&gw.url, "b").await;
    let r = call(&b, "solo__stats", json!({})).await;
    let text = first_text(&r);
    assert_eq!(r.is_error, Some(true), "{text}");
    assert!(text.contains("max_sessions"), "{text}");
    // When the first session ends, the slot frees up.
    a.cancel().await.expect("close a");
    wait_until("a slot for b", 15, async || {
        call(&b, "solo__stats", json!({})).await.is_error != Some(true)
    })
    .await;
    let _ = b.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_of_timeout_and_down_backends_reaches_the_running_backend() {
    let (gw, cfg) = gateway(&stdio_backend("fx", "timeout = \"300ms\""));
    let (c, _) = support::connect(&gw.url, "c").await;
    let pid = stats(&c, "fx").await["pid"].clone();
    let r = call(&c, "fx__sleep", json!({"ms": 800})).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "the 300ms timeout should cut an 800ms call"
    );
    std::fs::write(
        &cfg.path,
        format!(
            "[server]\ndown_backends = \"error\"\nrestart_min_backoff = \"20s\"\nrestart_max_backoff = \"20s\"\n\n{}",
            stdio_backend("fx", "timeout = \"5s\"")
        ),
    )
    .expect("rewrite config");
    wait_until("the new timeout", 15, async || {
        call(&c, "fx__sleep", json!({"ms": 800})).await.is_error != Some(true)
    })
    .await;
    assert_eq!(
        stats(&c, "fx").await["pid"],
        pid,
        "a timeout change must not restart the backend"
    );
    // down_backends = "error" and the slow restart now apply to the kept
    // backend: after a crash its tools stay listed and answer an error.
    let _ = c.call_tool(CallToolRequestParams::new("fx__crash")).await;
    wait_until("fx down", 15, async || {
        let status: Value =
            serde_json::from_str(&http_get(&gw.url, "/status").1).unwrap_or_default();
        status["backends"]["fx"]["state"] == "down"
    })
    .await;
    let tools = c.list_all_tools().await.expect("tools/list");
    assert!(
        tools.iter().any(|t| t.name == "fx__echo"),
        "tools of a down backend were hidden despite down_backends = \"error\""
    );
    let r = call(&c, "fx__echo", json!({"message": "x"})).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "fx restarted despite restart_min_backoff = 20s: {}",
        first_text(&r)
    );
    let _ = c.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_list_changes_is_coalesced_into_a_few_notifications() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (c, _) = support::connect(&gw.url, "c").await;
    ok(&c, "fx__announce", json!({"count": 5000})).await;
    let mut coalesced = 0;
    wait_until("5000 announcements counted", 15, async || {
        let status: Value =
            serde_json::from_str(&http_get(&gw.url, "/status").1).unwrap_or_default();
        let n = &status["notifications"]["tools_list_changed"];
        coalesced = n["coalesced"].as_u64().unwrap_or(0);
        n["received"].as_u64() == Some(5000)
    })
    .await;
    wait_until("the last window published", 15, async || {
        let status: Value =
            serde_json::from_str(&http_get(&gw.url, "/status").1).unwrap_or_default();
        let n = &status["notifications"]["tools_list_changed"];
        coalesced = n["coalesced"].as_u64().unwrap_or(0);
        coalesced >= 4900
    })
    .await;
    assert!(coalesced <= 4999, "{coalesced}");
    let _ = c.cancel().await;
}
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_of_the_health_check_reaches_the_running_backend() {
    let slow = "[server]\nhealth_interval = \"60s\"\n\n";
    let (gw, cfg) = gateway(&format!("{slow}{}", stdio_backend("fx", "")));
    let readyz =
        || -> Value { serde_json::from_str(&http_get(&gw.url, "/readyz").1).unwrap_or_default() };
    let pid = readyz()["backends"]["fx"]["pid"].as_u64().expect("pid");
    let generation = |s: &Value| s["generation"].as_u64().unwrap_or(0);
    let before: Value = serde_json::from_str(&http_get(&gw.url, "/status").1).expect("status");
    std::fs::write(
        &cfg.path,
        format!(
            "[server]\nhealth_interval = \"200ms\"\nhealth_timeout = \"300ms\"\n\n{}",
            stdio_backend("fx", "")
        ),
    )
    .expect("rewrite config");
    wait_until("the reload", 15, async || {
        let s: Value = serde_json::from_str(&http_get(&gw.url, "/status").1).unwrap_or_default();
        generation(&s) > generation(&before)
    })
    .await;
    assert_eq!(
        readyz()["backends"]["fx"]["pid"].as_u64(),
        Some(pid),
        "the backend was restarted by the reload"
    );
    // A frozen backend is found by the new 200ms pings, not after the old 60s.
    signal(pid, "STOP");
    wait_until("fx found down by the health check", 15, async || {
        readyz()["backends"]["fx"]["state"] == "down"
    })
    .await;
    signal(pid, "CONT");
}

/// A client that accepts sampling requests and never answers them.
#[derive(Clone)]
struct SilentSampler;

impl ClientHandler for SilentSampler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_sampling().build(),
            Implementation::new("silent", "1"),
        )
    }

    async fn create_message(
        &self,
        _: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_of_relay_timeout_reaches_the_running_backend() {
    let (gw, cfg) = gateway(&format!(
        "[server]\nrelay_timeout = \"60s\"\n\n{}",
        stdio_backend("fx", "")
    ));
    let client = SilentSampler
        .serve(StreamableHttpClientTransport::from_uri(gw.url.clone()))
        .await
        .expect("client connects");
    std::fs::write(
        &cfg.path,
        format!(
            "[server]\nrelay_timeout = \"300ms\"\n\n{}",
            stdio_backend("fx", "")
        ),
    )
    .expect("rewrite config");
    wait_until("the reload", 15, async || {
        let s: Value = serde_json::from_str(&http_get(&gw.url, "/status").1).unwrap_or_default();
        s["last_reload"]["ok"] == true
    })
    .await;
    let call = client.call_tool(CallToolRequestParams::new("fx__sample"));
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the relayed sampling request must time out after the new 300ms, not the old 60s")
        .expect("tools/call");
    assert!(
        first_text(&r).contains("did not answer"),
        "{}",
        first_text(&r)
    );
    let _ = client.cancel().await;
}
