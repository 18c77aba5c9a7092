//! The priority message bus through the real gateway, with real MCP clients
//! over HTTP: history, subscriptions delivered as `notifications/message`
//! with the level following the priority, routing, the gateway's own
//! backend events (published through the `queue` tracing target), and two
//! gateways sharing Redis.
#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod common;

use std::time::{Duration, Instant};

use common::recorder::*;
use common::redis::*;
use common::*;
use rmcp::model::*;
use serde_json::{Value, json};

const BUS: &str = "manifold/bus";

async fn history(client: &Rc, arguments: Value) -> Vec<Value> {
    let (_, data) = ok(client, "get_queue_messages", arguments).await;
    data["messages"].as_array().cloned().unwrap_or_default()
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The contents of messages the test sent (not the gateway's own backend events).
fn sent(messages: &[Value]) -> Vec<String> {
    contents(messages)
        .into_iter()
        .filter(|m| !m.starts_with("backend "))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_are_listed_with_bare_names() {
    let (gw, _cfg) = gateway("");
    let (a, _) = connect(&gw.url, "a").await;
    let names: Vec<String> = a
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for tool in [
        "send_client_message",
        "get_queue_messages",
        "subscribe_to_messages",
        "unsubscribe_from_messages",
    ] {
        assert!(
            names.contains(&tool.to_string()),
            "{tool} missing: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribers_get_each_priority_at_its_log_level_with_metadata() {
    let (gw, _cfg) = gateway("");
    let (sender, _) = connect(&gw.url, "sender").await;
    let (sub, rs) = connect(&gw.url, "watcher").await;
    let (_idle, ri) = connect(&gw.url, "idle").await;
    ok(&sub, "subscribe_to_messages", json!({})).await;
    for p in ["low", "normal", "high", "urgent", "critical"] {
        ok(
            &sender,
            "send_client_message",
            json!({"content": format!("{p} news"), "priority": p, "metadata": {"build": 42}}),
        )
        .await;
    }
    let got = rs.wait_for(BUS, 5).await;
    let levels: Vec<LoggingLevel> = got.iter().map(|l| l.level).collect();
    assert_eq!(
        levels,
        [
            LoggingLevel::Debug,
            LoggingLevel::Info,
            LoggingLevel::Warning,
            LoggingLevel::Error,
            LoggingLevel::Critical
        ]
    );
    assert_eq!(got[2].data["message"], "high news");
    assert_eq!(got[2].data["priority"], "high");
    assert_eq!(got[2].data["level"], 30);
    assert_eq!(got[2].data["metadata"]["build"], 42);
    assert!(
        ri.logs(BUS).is_empty(),
        "a session that did not subscribe gets nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn priority_filter_and_unsubscribe_are_honoured() {
    let (gw, _cfg) = gateway("");
    let (a, ra) = connect(&gw.url, "a").await;
    ok(
        &a,
        "subscribe_to_messages",
        json!({"priority_filter": "urgent"}),
    )
    .await;
    for p in ["normal", "high", "urgent", "critical"] {
        ok(
            &a,
            "send_client_message",
            json!({"content": p, "priority": p}),
        )
        .await;
    }
    let got = ra.wait_for(BUS, 2).await;
    assert_eq!(
        got.iter()
            .map(|l| l.data["message"].clone())
            .collect::<Vec<_>>(),
        [json!("urgent"), json!("critical")]
    );
    ok(&a, "unsubscribe_from_messages", json!({})).await;
    ok(
        &a,
        "send_client_message",
        json!({"content": "after", "priority": "critical"}),
    )
    .await;
    // A marker through another subscriber shows the message was delivered by then.
    let (b, rb) = connect(&gw.url, "b").await;
    ok(&b, "subscribe_to_messages", json!({})).await;
    ok(&b, "send_client_message", json!({"content": "marker"})).await;
    rb.wait_for(BUS, 1).await;
    assert_eq!(ra.logs(BUS).len(), 2, "no delivery after unsubscribing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_for_one_client_reaches_only_its_subscriptions() {
    let (gw, _cfg) = gateway("");
    let (alice, ra) = connect(&gw.url, "alice-ide").await;
    let (bob, rb) = connect(&gw.url, "bob-ide").await;
    ok(&bob, "checkin_client", json!({"client_id": "bob"})).await;
    ok(&alice, "subscribe_to_messages", json!({})).await;
    ok(&bob, "subscribe_to_messages", json!({})).await;
    ok(
        &alice,
        "send_client_message",
        json!({"content": "for bob", "client_id": "bob"}),
    )
    .await;
    ok(&alice, "send_client_message", json!({"content": "for all"})).await;
    let got = rb.wait_for(BUS, 2).await;
    assert_eq!(got[0].data["message"], "for bob");
    let got = ra.wait_for(BUS, 1).await;
    assert_eq!(
        contents(&got.iter().map(|l| l.data.clone()).collect::<Vec<_>>()),
        ["for all"]
    );
    // History shows routed messages to their target only.
    assert_eq!(sent(&history(&alice, json!({})).await), ["for all"]);
    assert_eq!(
        sent(&history(&bob, json!({})).await),
        ["for bob", "for all"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_newest_last_filtered_and_keeps_the_last_n() {
    let (gw, _cfg) = gateway("[bus]\nhistory = 4\n");
    let (a, _) = connect(&gw.url, "a").await;
    let mut ids = Vec::new();
    for (i, p) in ["low", "high", "normal", "critical", "low", "urgent"]
        .iter()
        .enumerate()
    {
        let (_, data) = ok(
            &a,
            "send_client_message",
            json!({"content": format!("m{i}"), "priority": p}),
        )
        .await;
        ids.push(data["id"].as_u64().unwrap());
    }
    assert_eq!(
        contents(&history(&a, json!({})).await),
        ["m2", "m3", "m4", "m5"]
    );
    assert_eq!(
        contents(&history(&a, json!({"limit": 2})).await),
        ["m4", "m5"]
    );
    assert_eq!(
        contents(&history(&a, json!({"priority_filter": "urgent"})).await),
        ["m3", "m5"]
    );
    assert_eq!(
        contents(&history(&a, json!({"priority_filter": ["low", "normal"]})).await),
        ["m2", "m4"]
    );
    assert_eq!(
        contents(&history(&a, json!({"since": ids[3]})).await),
        ["m4", "m5"]
    );
    assert_eq!(
        contents(&history(&a, json!({"since": "2000-01-01T00:00:00Z"})).await).len(),
        4
    );
    for (arguments, expected) in [
        (
            json!({"priority_filter": "loud"}),
            "unknown priority \"loud\"",
        ),
        (json!({"limit": 0}), "`limit` must be a whole number"),
        (
            json!({"since": "yesterday"}),
            "`since` must be a message id or an RFC 3339 time",
        ),
    ] {
        let e = tool_error(&a, "get_queue_messages", arguments).await;
        assert!(e.contains(expected), "{e}");
    }
    let e = tool_error(
        &a,
        "send_client_message",
        json!({"content": "x", "priority": "meh"}),
    )
    .await;
    assert!(e.contains("unknown priority \"meh\""), "{e}");
    let e = tool_error(&a, "send_client_message", json!({"content": ""})).await;
    assert!(e.contains("`content` is required"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_publishes_backend_up_and_down() {
    let config = format!(
        "{}\n[backends.broken]\ntransport = \"stdio\"\ncommand = \"manifold-no-such-command\"\n",
        stdio_backend("fx", "")
    );
    let (gw, _cfg) = gateway(&config);
    let (a, _) = connect(&gw.url, "a").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = history(&a, json!({})).await;
        let up = messages
            .iter()
            .find(|m| m["message"] == "backend up" && m["metadata"]["backend"] == "fx");
        let down = messages
            .iter()
            .find(|m| m["message"] == "backend down" && m["metadata"]["backend"] == "broken");
        if let (Some(up), Some(down)) = (up, down) {
            assert_eq!(up["priority"], "normal");
            assert_eq!(down["priority"], "high");
            assert!(
                down["metadata"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("manifold-no-such-command"),
                "{down}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backend events not on the bus: {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_bus_messages_reach_subscribers_on_another_gateway() {
    if !redis_or_skip("redis_bus_messages_reach_subscribers_on_another_gateway") {
        return;
    }
    let prefix = unique_prefix("bus");
    let config = redis_config(&prefix, "");
    let (gw_a, _ca) = gateway(&config);
    let (gw_b, _cb) = gateway(&config);
    let (a, _) = connect(&gw_a.url, "a").await;
    let (b, rb) = connect(&gw_b.url, "b").await;
    ok(
        &b,
        "subscribe_to_messages",
        json!({"priority_filter": "high"}),
    )
    .await;
    ok(
        &a,
        "send_client_message",
        json!({"content": "deploy starts", "priority": "high", "metadata": {"env": "prod"}}),
    )
    .await;
    let got = rb.wait_for(BUS, 1).await;
    assert_eq!(got[0].level, LoggingLevel::Warning);
    assert_eq!(got[0].data["metadata"]["env"], "prod");
    // Both gateways read the same history (and their own backend events).
    let on_b = contents(&history(&b, json!({"priority_filter": "high"})).await);
    assert!(on_b.contains(&"deploy starts".to_string()), "{on_b:?}");
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_is_published_and_keeps_queues_and_subscriptions() {
    let cfg = write_config(&stdio_backend("fx", ""));
    let gw = gateway_at(&cfg.path);
    let (a, ra) = connect(&gw.url, "a").await;
    ok(&a, "subscribe_to_messages", json!({})).await;
    ok(
        &a,
        "send_message",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "before the reload"}),
    )
    .await;
    // Adding a backend reloads the file; messaging state is untouched.
    std::fs::write(
        &cfg.path,
        format!("{}{}", stdio_backend("fx", ""), stdio_backend("fy", "")),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = ra.logs(BUS);
        let reloaded = got.iter().any(|l| l.data["message"] == "config reloaded");
        let fy_up = got
            .iter()
            .any(|l| l.data["message"] == "backend up" && l.data["metadata"]["backend"] == "fy");
        if reloaded && fy_up {
            break;
        }
        assert!(Instant::now() < deadline, "reload not published: {got:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (text, _) = ok(&a, "get_messages", json!({"client_id": "bob"})).await;
    assert!(text.contains("before the reload"), "{text}");
}
