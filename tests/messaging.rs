//! Client-to-client messaging through the real gateway, with real MCP
//! clients over HTTP: on the memory store, and on the real Redis (two
//! gateway processes sharing it; a gateway restart).
#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod common;

use std::time::{Duration, Instant};

use common::recorder::*;
use common::redis::*;
use common::*;
use rmcp::model::*;
use serde_json::json;

const MESSAGING_TOOLS: [&str; 6] = [
    "checkin_client",
    "send_message",
    "send_message_and_wait",
    "get_messages",
    "get_my_identity",
    "list_clients",
];

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
    for tool in MESSAGING_TOOLS {
        assert!(
            names.contains(&tool.to_string()),
            "{tool} missing: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_popped_as_markdown_with_sender_and_age() {
    let (gw, _cfg) = gateway("");
    let (alice, _) = connect(&gw.url, "alice-ide").await;
    let (bob, _) = connect(&gw.url, "bob-ide").await;
    for text in ["first", "second"] {
        ok(
            &alice,
            "send_message",
            json!({"sender_id": "alice", "recipient_id": "bob", "message": text}),
        )
        .await;
    }
    let (text, data) = ok(&bob, "get_messages", json!({"client_id": "bob"})).await;
    assert!(text.starts_with("# 2 messages for bob"), "{text}");
    // Bodies are fenced, so none can pass for a heading (issue 8, #12).
    assert!(
        text.contains("## From alice, just now\n\n```text\nfirst\n```"),
        "{text}"
    );
    assert!(
        text.find("first") < text.find("second"),
        "oldest first: {text}"
    );
    assert_eq!(data["messages"][1]["from"], "alice");
    let (text, _) = ok(&bob, "get_messages", json!({"client_id": "bob"})).await;
    assert_eq!(
        text, "No messages for bob.",
        "each message is returned once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_with_a_live_session_is_pushed_a_notice() {
    let (gw, _cfg) = gateway("");
    let (alice, ra) = connect(&gw.url, "alice-ide").await;
    let (bob, rb) = connect(&gw.url, "bob-ide").await;
    ok(
        &bob,
        "checkin_client",
        json!({"client_id": "bob", "name": "Bob"}),
    )
    .await;
    ok(
        &alice,
        "send_message",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "ping"}),
    )
    .await;
    let pushed = rb.wait_for("manifold/messaging", 1).await;
    assert_eq!(pushed[0].level, LoggingLevel::Notice);
    assert_eq!(pushed[0].data["from"], "alice");
    assert_eq!(pushed[0].data["message"], "ping");
    // The message is still queued: the push is only a heads-up.
    let (text, _) = ok(&bob, "get_messages", json!({"client_id": "bob"})).await;
    assert!(text.contains("ping"), "{text}");
    assert!(
        ra.logs("manifold/messaging").is_empty(),
        "the sender is not notified"
    );
}

/// Answers every message pushed to `me` with "pong: {message}".
fn auto_reply(client: Rc, recorder: Recorder, me: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut answered = 0;
        loop {
            let pushed = recorder.wait_for("manifold/messaging", answered + 1).await;
            for p in &pushed[answered..] {
                let from = p.data["from"].as_str().unwrap().to_string();
                let text = p.data["message"].as_str().unwrap().to_string();
                ok(
                    &client,
                    "send_message",
                    json!({"sender_id": me, "recipient_id": from, "message": format!("pong: {text}")}),
                )
                .await;
            }
            answered = pushed.len();
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn send_and_wait_returns_the_reply_as_soon_as_it_lands() {
    let (gw, _cfg) = gateway("");
    let (alice, _) = connect(&gw.url, "alice-ide").await;
    let (bob, rb) = connect(&gw.url, "bob-ide").await;
    ok(&bob, "checkin_client", json!({"client_id": "bob"})).await;
    let replier = auto_reply(bob, rb, "bob");
    let started = Instant::now();
    let (text, data) = ok(
        &alice,
        "send_message_and_wait",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "ping", "timeout": 30}),
    )
    .await;
    assert!(text.starts_with("Reply from bob after"), "{text}");
    // The reply's body is fenced like get_messages' bodies (issue 8, #12).
    assert!(text.ends_with("```text\npong: ping\n```"), "{text}");
    assert_eq!(data["status"], "replied");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke late: {:?}",
        started.elapsed()
    );
    // The reply was consumed by the wait.
    let (text, _) = ok(&alice, "get_messages", json!({"client_id": "alice"})).await;
    assert_eq!(text, "No messages for alice.");
    replier.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn send_and_wait_times_out_with_a_clear_result() {
    let (gw, _cfg) = gateway("");
    let (alice, _) = connect(&gw.url, "alice-ide").await;
    let started = Instant::now();
    let (text, data) = ok(
        &alice,
        "send_message_and_wait",
        json!({"sender_id": "alice", "recipient_id": "nobody", "message": "hello?", "timeout": 0.5}),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(text.starts_with("No reply from nobody within"), "{text}");
    assert_eq!(data["status"], "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_clear_tool_error_and_loses_nothing() {
    let (gw, _cfg) =
        gateway("[messaging]\nmax_message_bytes = 16\nrequire_checkin = true\nmax_wait = \"2m\"\n");
    let (alice, _) = connect(&gw.url, "alice-ide").await;
    let (bob, _) = connect(&gw.url, "bob-ide").await;
    ok(&bob, "checkin_client", json!({"client_id": "bob"})).await;
    ok(
        &alice,
        "send_message",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "keep me"}),
    )
    .await;
    let cases = [
        (
            "send_message",
            json!({"sender_id": "", "recipient_id": "bob", "message": "x"}),
            "`sender_id` is required",
        ),
        (
            "send_message",
            json!({"sender_id": "alice", "recipient_id": " ", "message": "x"}),
            "`recipient_id` is required",
        ),
        (
            "send_message",
            json!({"sender_id": "alice", "recipient_id": "bob", "message": "x".repeat(17)}),
            "17 bytes, over the limit of 16",
        ),
        (
            "send_message",
            json!({"sender_id": "alice", "recipient_id": "carol", "message": "x"}),
            "recipient \"carol\" has not checked in",
        ),
        (
            "send_message_and_wait",
            json!({"sender_id": "alice", "recipient_id": "bob", "message": "x", "timeout": 0}),
            "more than 0 and at most 120 seconds",
        ),
        (
            "send_message_and_wait",
            json!({"sender_id": "alice", "recipient_id": "bob", "message": "x", "timeout": 121}),
            "at most 120 seconds",
        ),
        (
            "get_messages",
            json!({"client_id": ""}),
            "`client_id` is required",
        ),
        (
            "get_messages",
            json!({"client_id": 7}),
            "`client_id` must be a string",
        ),
    ];
    for (tool, arguments, expected) in cases {
        let e = tool_error(&alice, tool, arguments).await;
        assert!(
            e.contains(expected),
            "{tool}: expected {expected:?} in {e:?}"
        );
    }
    let (text, _) = ok(&bob, "get_messages", json!({"client_id": "bob"})).await;
    assert!(
        text.starts_with("# 1 message for bob") && text.contains("keep me"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sender_is_rate_limited_with_a_clear_error() {
    let (gw, _cfg) = gateway("[messaging]\nrate_limit = 3\n");
    let (a, _) = connect(&gw.url, "a").await;
    let send =
        |from: &'static str| json!({"sender_id": from, "recipient_id": "bob", "message": "hi"});
    for _ in 0..3 {
        ok(&a, "send_message", send("alice")).await;
    }
    let e = tool_error(&a, "send_message", send("alice")).await;
    assert!(
        e.starts_with("rate limit: sender \"alice\" may send 3 messages per minute; try again in"),
        "{e}"
    );
    ok(&a, "send_message", send("carol")).await;
    let (text, _) = ok(&a, "get_messages", json!({"client_id": "bob"})).await;
    assert!(text.starts_with("# 4 messages for bob"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_expire_after_the_ttl() {
    let (gw, _cfg) = gateway("[messaging]\nmessage_ttl = \"1s\"\n");
    let (a, _) = connect(&gw.url, "a").await;
    ok(
        &a,
        "send_message",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "soon gone"}),
    )
    .await;
    // Time passing is what is tested: the message outlives its 1 s TTL.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (text, _) = ok(&a, "get_messages", json!({"client_id": "bob"})).await;
    assert_eq!(text, "No messages for bob.");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_clients_shows_checkins_last_seen_and_live_sessions() {
    let (gw, _cfg) = gateway("");
    let (alice, _) = connect(&gw.url, "alice-ide").await;
    let (bob, _) = connect(&gw.url, "bob-ide").await;
    ok(
        &alice,
        "checkin_client",
        json!({"client_id": "alice", "name": "Alice's IDE", "capabilities": ["rust", "review"]}),
    )
    .await;
    ok(
        &bob,
        "checkin_client",
        json!({"client_id": "bob", "name": "Bob"}),
    )
    .await;
    bob.cancel().await.unwrap();
    // The gateway notices the closed session.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (text, data) = ok(&alice, "list_clients", json!({})).await;
        let clients = data["clients"].as_array().unwrap().clone();
        assert_eq!(clients.len(), 2, "{text}");
        assert_eq!(clients[0]["client_id"], "alice");
        assert_eq!(clients[0]["name"], "Alice's IDE");
        assert_eq!(clients[0]["capabilities"], json!(["rust", "review"]));
        assert_eq!(clients[0]["live"], true);
        assert!(
            text.contains("| alice | Alice's IDE | just now | yes |"),
            "{text}"
        );
        if clients[1]["live"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob still live after closing: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_my_identity_explains_the_recipients_file() {
    let (gw, _cfg) = gateway("");
    let (a, _) = connect(&gw.url, "a").await;
    let (text, data) = ok(&a, "get_my_identity", json!({})).await;
    assert!(text.contains("no client id yet"), "{text}");
    assert!(
        text.contains("mcp_recipients.json")
            && text.contains("\"my_id\"")
            && text.contains("\"recipients\"")
            && text.contains("\"server_info\""),
        "{text}"
    );
    assert_eq!(data["authenticated"], false);
    ok(&a, "checkin_client", json!({"client_id": "alice"})).await;
    let (text, data) = ok(&a, "get_my_identity", json!({})).await;
    assert!(text.contains("last acted as `alice`"), "{text}");
    assert_eq!(data["client_id"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_claim_to_be_authenticated_through_meta() {
    // Only the front sets `io.manifold/auth`; one sent by a client is dropped,
    // so without auth the gateway keeps treating client ids as credentials.
    let (gw, _cfg) = gateway("");
    let (a, _) = connect(&gw.url, "a").await;
    let mut meta = RequestMetaObject::new();
    meta.0.0.insert("io.manifold/auth".into(), json!("mallory"));
    let mut params = CallToolRequestParams::new("send_message").with_arguments(args(
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "hi"}),
    ));
    params.meta = Some(meta);
    let r = a.call_tool(params).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", first_text(&r));
    let (_, data) = ok(&a, "get_my_identity", json!({})).await;
    assert_eq!(data["authenticated"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn messaging_can_be_switched_off() {
    let (gw, _cfg) = gateway("[messaging]\nenabled = false\n[bus]\nenabled = false\n");
    let (a, _) = connect(&gw.url, "a").await;
    let names: Vec<String> = a
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["gateway_status"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auth_a_client_may_only_act_as_its_own_id() {
    let (gw, _cfg) = gateway(
        "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token-123\"\n\n[[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token-4567\"\n",
    );
    let (alice, _) = connect_with_token(&gw.url, "alice-ide", "alice-token-123").await;
    let (bob, rb) = connect_with_token(&gw.url, "bob-ide", "bob-token-4567").await;
    let (text, data) = ok(&bob, "get_my_identity", json!({})).await;
    assert!(text.starts_with("You are `bob`"), "{text}");
    assert_eq!(data["authenticated"], true);
    let e = tool_error(
        &alice,
        "send_message",
        json!({"sender_id": "bob", "recipient_id": "alice", "message": "forged"}),
    )
    .await;
    assert_eq!(
        e,
        "`sender_id` is \"bob\", but this request is authenticated as \"alice\": you may only act as yourself"
    );
    let e = tool_error(&alice, "get_messages", json!({"client_id": "bob"})).await;
    assert!(e.contains("authenticated as \"alice\""), "{e}");
    // Bob is known by his token from his first call, so the push finds him.
    ok(
        &alice,
        "send_message",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "genuine"}),
    )
    .await;
    let pushed = rb.wait_for("manifold/messaging", 1).await;
    assert_eq!(pushed[0].data["from"], "alice");
    let (text, _) = ok(&bob, "get_messages", json!({"client_id": "bob"})).await;
    assert!(
        text.contains("genuine") && !text.contains("forged"),
        "{text}"
    );
}

// ---------------------------------------------------------------- Redis

#[tokio::test(flavor = "multi_thread")]
async fn redis_two_gateways_form_one_messaging_system() {
    if !redis_or_skip("redis_two_gateways_form_one_messaging_system") {
        return;
    }
    let prefix = unique_prefix("two-gateways");
    let config = redis_config(&prefix, "");
    let (gw_a, _ca) = gateway(&config);
    let (gw_b, _cb) = gateway(&config);
    let (alice, _) = connect(&gw_a.url, "alice-ide").await;
    let (bob, rb) = connect(&gw_b.url, "bob-ide").await;
    ok(&alice, "checkin_client", json!({"client_id": "alice"})).await;
    ok(&bob, "checkin_client", json!({"client_id": "bob"})).await;
    // Each gateway sees both check-ins, and that both are connected somewhere.
    let (_, data) = ok(&alice, "list_clients", json!({})).await;
    let live: Vec<bool> = data["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["live"].as_bool().unwrap())
        .collect();
    assert_eq!(live, [true, true], "{data}");

    let replier = auto_reply(bob, rb, "bob");
    let started = Instant::now();
    let (text, data) = ok(
        &alice,
        "send_message_and_wait",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "across", "timeout": 30}),
    )
    .await;
    assert_eq!(data["status"], "replied", "{text}");
    // The reply's body is fenced like get_messages' bodies (issue 8, #12).
    assert!(text.ends_with("```text\npong: across\n```"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke late: {:?}",
        started.elapsed()
    );
    replier.abort();
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_messages_survive_a_gateway_restart() {
    if !redis_or_skip("redis_messages_survive_a_gateway_restart") {
        return;
    }
    let prefix = unique_prefix("restart");
    let cfg = write_config(&redis_config(&prefix, ""));
    let mut first = gateway_at(&cfg.path);
    {
        let (alice, _) = connect(&first.url, "alice-ide").await;
        ok(
            &alice,
            "checkin_client",
            json!({"client_id": "alice", "name": "Alice"}),
        )
        .await;
        ok(
            &alice,
            "send_message",
            json!({"sender_id": "alice", "recipient_id": "bob", "message": "still here?"}),
        )
        .await;
    }
    first.terminate();
    let second = gateway_at(&cfg.path);
    let (bob, _) = connect(&second.url, "bob-ide").await;
    let (text, _) = ok(&bob, "get_messages", json!({"client_id": "bob"})).await;
    assert!(
        text.contains("## From alice") && text.contains("still here?"),
        "{text}"
    );
    let (_, data) = ok(&bob, "list_clients", json!({})).await;
    assert_eq!(data["clients"][0]["name"], "Alice");
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_expired_messages_are_cleaned_up() {
    if !redis_or_skip("redis_expired_messages_are_cleaned_up") {
        return;
    }
    let prefix = unique_prefix("ttl");
    let (gw, _cfg) = gateway(&redis_config(&prefix, "message_ttl = \"1s\""));
    let (a, _) = connect(&gw.url, "a").await;
    ok(
        &a,
        "send_message",
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "brief"}),
    )
    .await;
    assert!(
        redis_keys(&prefix)
            .await
            .contains(&format!("{prefix}:inbox:bob"))
    );
    // Redis drops the inbox with its last message; the sweeper forgets it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_keys(&prefix)
        .await
        .iter()
        .any(|k| k.ends_with(":inbox:bob") || k.ends_with(":inboxes"))
    {
        assert!(
            Instant::now() < deadline,
            "inbox not cleaned up: {:?}",
            redis_keys(&prefix).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (text, _) = ok(&a, "get_messages", json!({"client_id": "bob"})).await;
    assert_eq!(text, "No messages for bob.");
    redis_cleanup(&prefix).await;
}

/// A request re-sent to another instance after the first died before
/// answering (what HAProxy's `retry-on empty-response` does) is done once:
/// the message is queued once, and `get_messages` gives the re-sent request
/// the messages the first run took instead of an empty inbox.
#[tokio::test(flavor = "multi_thread")]
async fn redis_a_re_sent_request_is_done_once() {
    use common::cluster::Raw;
    if !redis_or_skip("redis_a_re_sent_request_is_done_once") {
        return;
    }
    let prefix = unique_prefix("once");
    let config = format!(
        "[sessions]\nstore = \"redis\"\nredis_url = \"{REDIS_URL}\"\nkey_prefix = \"{prefix}-s\"\n\n{}",
        redis_config(&prefix, "")
    );
    let (gw_a, _ca) = gateway(&config);
    let (gw_b, _cb) = gateway(&config);
    let mut alice = Raw::new(None);
    alice.initialize(&gw_a.url).await;
    let send = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "send_message",
        "arguments": {"sender_id": "alice", "recipient_id": "bob", "message": "only once"}}});
    let (_, first) = alice.post(&gw_a.url, send.clone()).await;
    let (_, again) = alice.post(&gw_b.url, send).await;
    let id = &first.unwrap()["result"]["structuredContent"]["message_id"];
    assert!(id.is_u64(), "{id}");
    assert_eq!(
        &again.unwrap()["result"]["structuredContent"]["message_id"],
        id
    );

    let mut bob = Raw::new(None);
    bob.initialize(&gw_b.url).await;
    let take = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "get_messages",
        "arguments": {"client_id": "bob"}}});
    let bodies = |answer: Option<serde_json::Value>| -> Vec<String> {
        answer.unwrap()["result"]["structuredContent"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, first) = bob.post(&gw_b.url, take.clone()).await;
    assert_eq!(bodies(first), ["only once"]);
    let (_, again) = bob.post(&gw_a.url, take).await;
    assert_eq!(
        bodies(again),
        ["only once"],
        "the re-sent request gets what the first took"
    );
    // A new request finds the inbox empty: the message was queued once and taken once.
    let (_, next) = bob
        .post(
            &gw_a.url,
            json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "get_messages",
                "arguments": {"client_id": "bob"}}}),
        )
        .await;
    assert_eq!(bodies(next), Vec::<String>::new());
    redis_cleanup(&prefix).await;
    redis_cleanup(&format!("{prefix}-s")).await;
}
