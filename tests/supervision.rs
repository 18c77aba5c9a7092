//! Backend supervision: a backend that dies or stops answering is marked
//! down, restarted with backoff, and comes back by itself; the others never
//! notice.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use rmcp::model::*;
use serde_json::json;
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_backend_fails_fast_comes_back_and_spares_the_others() {
    let config = format!(
        "[server]\nrestart_min_backoff = \"200ms\"\n\n{}{}",
        stdio_backend("victim", ""),
        stdio_backend("bystander", "")
    );
    let (gw, _cfg) = gateway(&config);
    let client = Arc::new(client(&gw.url).await);
    let old_pid = ready_backends(&gw.url)["victim"]["pid"].as_u64().unwrap();

    // A steady load on the bystander while the victim dies and comes back.
    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, failures, calls, stop) = (
            client.clone(),
            failures.clone(),
            calls.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .call_tool(
                        CallToolRequestParams::new("bystander__echo")
                            .with_arguments(args(json!({"message": "x"}))),
                    )
                    .await;
                calls.fetch_add(1, Ordering::Relaxed);
                if !matches!(r, Ok(ref r) if r.is_error != Some(true)) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    signal(old_pid, "KILL");
    // Calls to it fail fast with a clear error while it is down...
    let started = Instant::now();
    let r = client
        .call_tool(
            CallToolRequestParams::new("victim__echo")
                .with_arguments(args(json!({"message": "x"}))),
        )
        .await;
    match r {
        Ok(r) => assert!(r.is_error == Some(true) || first_text(&r) == "x", "{r:?}"),
        Err(e) => assert!(e.to_string().contains("unknown tool `victim__echo`"), "{e}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    // ...and it comes back by itself, in a new process, with its tools.
    wait_for("the victim to restart", 15, || {
        let b = ready_backends(&gw.url);
        b["victim"]["state"] == "up" && b["victim"]["pid"].as_u64() != Some(old_pid)
    })
    .await;
    assert!(
        ready_backends(&gw.url)["victim"]["restarts"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("victim__echo")
                .with_arguments(args(json!({"message": "back"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "back");
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(calls.load(Ordering::Relaxed) > 10, "the load did not run");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls to the bystander failed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_stops_answering_pings_is_restarted() {
    let config = format!(
        "[server]\nhealth_interval = \"300ms\"\nhealth_timeout = \"300ms\"\nrestart_min_backoff = \"100ms\"\n\n{}",
        stdio_backend("frozen", "")
    );
    let (gw, _cfg) = gateway(&config);
    let old_pid = ready_backends(&gw.url)["frozen"]["pid"].as_u64().unwrap();
    signal(old_pid, "STOP");
    wait_for("the frozen backend to be marked down", 10, || {
        ready_backends(&gw.url)["frozen"]["state"] == "down"
    })
    .await;
    let reason = ready_backends(&gw.url)["frozen"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("health check failed"), "{reason}");
    wait_for("a new process", 15, || {
        let b = ready_backends(&gw.url);
        b["frozen"]["state"] == "up" && b["frozen"]["pid"].as_u64() != Some(old_pid)
    })
    .await;
    let gone = !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
            .is_ok_and(|s| s.contains(") Z"));
    assert!(gone, "the frozen process was left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn down_backends_can_stay_listed_and_answer_a_clear_error() {
    let config = format!(
        "[server]\ndown_backends = \"error\"\nrestart_min_backoff = \"60s\"\nrestart_max_backoff = \"60s\"\n\n{}",
        stdio_backend("flaky", "")
    );
    let (gw, _cfg) = gateway(&config);
    let client = client(&gw.url).await;
    let pid = ready_backends(&gw.url)["flaky"]["pid"].as_u64().unwrap();
    signal(pid, "KILL");
    wait_for("flaky to be down", 10, || {
        ready_backends(&gw.url)["flaky"]["state"] == "down"
    })
    .await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"flaky__echo".to_string()), "{names:?}");
    let r = client
        .call_tool(
            CallToolRequestParams::new("flaky__echo").with_arguments(args(json!({"message": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(
        first_text(&r)
            .starts_with("backend `flaky` is unavailable: connection closed by the backend"),
        "{}",
        first_text(&r)
    );
}
