//! Issue 8, the front's findings, against the real gateway binary over real
//! HTTP: sessions bound to the token that opened them for every method, the
//! admin marker, what status and instructions show a restricted client,
//! JSON-RPC error codes at the edge, the per-client concurrency default, and
//! bounded client data (initialize params, session count, status size).

mod common;

use std::time::{Duration, Instant};

use common::*;
use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// An admin token, and a client limited to `fx` and the gateway's own tools.
const ALICE: &str = "tok-alice-0123456789";
const BOB: &str = "tok-bob-0123456789";

fn auth_config(extra: &str) -> String {
    format!(
        r#"[[auth.tokens]]
client_id = "alice"
token = "{ALICE}"
admin = true

[[auth.tokens]]
client_id = "bob"
token = "{BOB}"
backends = ["fx", "@gateway"]

{extra}
{}{}"#,
        stdio_backend("fx", ""),
        stdio_backend("other", "args = [\"--name\", \"other-secret-sauce\"]"),
    )
}

/// One raw HTTP request to the gateway (`path` relative to its root).
async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("accept", "application/json, text/event-stream");
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// The JSON-RPC message of a response, whether sent as JSON or as SSE.
async fn message(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap_or_default();
    if let Ok(v) = serde_json::from_str(&text) {
        return v;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or(Value::Null)
}

fn init_body(name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": name, "version": "1"}}})
    .to_string()
}

/// Opens a session with a raw `initialize`: its id and the result.
async fn open(url: &str, token: Option<&str>, name: &str) -> (String, Value) {
    let r = send(
        reqwest::Method::POST,
        url,
        token,
        &[],
        Some(init_body(name)),
    )
    .await;
    assert_eq!(r.status(), 200, "initialize");
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let m = message(r).await;
    let r = send(
        reqwest::Method::POST,
        url,
        token,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        Some(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into()),
    )
    .await;
    assert_eq!(r.status(), 202, "notifications/initialized");
    (session, m["result"].clone())
}

/// A JSON-RPC request on `session`: the HTTP status and the message.
async fn rpc(url: &str, token: Option<&str>, session: &str, body: Value) -> (u16, Value) {
    let r = send(
        reqwest::Method::POST,
        url,
        token,
        &[
            ("mcp-session-id", session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        Some(body.to_string()),
    )
    .await;
    let status = r.status().as_u16();
    (status, message(r).await)
}
async fn status_of(url: &str, token: Option<&str>) -> Value {
    let r = send(
        reqwest::Method::GET,
        &root(url, "/status"),
        token,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn typed_client(url: &str, token: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects with its token")
}

#[tokio::test(flavor = "multi_thread")]
async fn another_clients_token_can_neither_stream_nor_delete_a_session() {
    let (gw, _cfg) = gateway(&auth_config(""));
    let (alice, _) = open(&gw.url, Some(ALICE), "alice-app").await;
    let headers = [
        ("mcp-session-id", alice.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    // Bob holds Alice's session id: he may not open her stream (her logs and
    // pushes) nor end her session.
    let r = send(reqwest::Method::GET, &gw.url, Some(BOB), &headers, None).await;
    assert_eq!(r.status(), 404, "GET with another client's session");
    let r = send(reqwest::Method::DELETE, &gw.url, Some(BOB), &headers, None).await;
    assert_eq!(r.status(), 404, "DELETE with another client's session");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _) = rpc(&gw.url, Some(BOB), &alice, list.clone()).await;
    assert_eq!(status, 404, "POST with another client's session");
    // Her session is untouched, and she may use every method on it.
    let (status, m) = rpc(&gw.url, Some(ALICE), &alice, list).await;
    assert_eq!(status, 200, "{m}");
    assert!(
        m["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{m}"
    );
    let r = send(reqwest::Method::GET, &gw.url, Some(ALICE), &headers, None).await;
    assert_eq!(r.status(), 200, "her own stream");
    drop(r);
    let r = send(
        reqwest::Method::DELETE,
        &gw.url,
        Some(ALICE),
        &headers,
        None,
    )
    .await;
    assert_eq!(r.status(), 204, "her own DELETE");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_need_a_token_marked_admin() {
    let (gw, _cfg) = gateway(&auth_config(""));
    let reload = root(&gw.url, "/admin/reload");
    let r = send(reqwest::Method::POST, &reload, Some(BOB), &[], None).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("client `bob` is not an admin"),
        "{body}"
    );
    let r = send(
        reqwest::Method::POST,
        &root(&gw.url, "/admin/other"),
        Some(BOB),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 403, "every /admin/ route");
    let r = send(reqwest::Method::POST, &reload, None, &[], None).await;
    assert_eq!(r.status(), 401);
    let r = send(reqwest::Method::POST, &reload, Some(ALICE), &[], None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], true, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_client_sees_only_its_backends_and_sessions() {
    let (gw, _cfg) = gateway(&auth_config(""));
    let (_alice, alice_init) = open(&gw.url, Some(ALICE), "alice-app").await;
    let (bob, bob_init) = open(&gw.url, Some(BOB), "bob-app").await;
    // Instructions: each backend's block only for clients that may use it.
    let text = bob_init["instructions"].as_str().unwrap();
    assert!(text.contains("## fx"), "{text}");
    assert!(
        !text.contains("other-secret-sauce") && !text.contains("## other"),
        "{text}"
    );
    let text = alice_init["instructions"].as_str().unwrap();
    assert!(
        text.contains("## fx") && text.contains("other-secret-sauce"),
        "{text}"
    );

    let names = |s: &Value| -> Vec<String> {
        let mut n: Vec<String> = s["backends"].as_object().unwrap().keys().cloned().collect();
        n.sort();
        n
    };
    let clients = |s: &Value| -> Vec<String> {
        let mut c: Vec<String> = s["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["client"].as_str().unwrap().to_string())
            .collect();
        c.sort();
        c
    };
    let s = status_of(&gw.url, Some(BOB)).await;
    assert_eq!(names(&s), ["@gateway", "fx"], "{s:#}");
    assert_eq!(clients(&s), ["bob"], "{s:#}");
    assert_eq!(s["session_count"], 1, "{s:#}");
    let s = status_of(&gw.url, Some(ALICE)).await;
    let all = names(&s);
    assert!(
        ["@gateway", "fx", "other"]
            .iter()
            .all(|n| all.iter().any(|a| a == n)),
        "{s:#}"
    );
    assert_eq!(clients(&s), ["alice", "bob"], "{s:#}");

    // The tool says the same as the route.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "gateway_status", "arguments": {}}});
    let (status, m) = rpc(&gw.url, Some(BOB), &bob, call).await;
    assert_eq!(status, 200, "{m}");
    let s = &m["result"]["structuredContent"];
    assert_eq!(names(s), ["@gateway", "fx"], "{m:#}");
    assert_eq!(clients(s), ["bob"], "{m:#}");
    assert!(s.get("last_reload").is_none(), "{m:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_params_headers_and_deletes_get_the_codes_clients_expect() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (session, _) = open(&gw.url, None, "raw").await;
    for (body, what) in [
        (
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": 5}}),
            "tools/call",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 7, "method": "logging/setLevel", "params": {"level": "loud"}}),
            "logging/setLevel",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {}}),
            "resources/read",
        ),
    ] {
        let (status, m) = rpc(&gw.url, None, &session, body).await;
        assert_eq!(status, 200, "{what}: {m}");
        assert_eq!(m["id"], 7, "{what}: {m}");
        assert_eq!(m["error"]["code"], -32602, "{what}: {m}");
        let text = m["error"]["message"].as_str().unwrap();
        assert!(text.contains(what), "{what}: {text}");
    }
    // Well-formed calls and unknown methods are unchanged.
    let echo = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "fx__echo", "arguments": {"message": "still fine"}}});
    let (_, m) = rpc(&gw.url, None, &session, echo).await;
    assert_eq!(m["result"]["content"][0]["text"], "still fine", "{m}");
    let unknown = json!({"jsonrpc": "2.0", "id": 9, "method": "no/such", "params": {}});
    let (_, m) = rpc(&gw.url, None, &session, unknown).await;
    assert_eq!(m["error"]["code"], -32601, "{m}");

    // An unsupported protocol version header: a JSON-RPC error, not plain text.
    let r = send(
        reqwest::Method::POST,
        &gw.url,
        None,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "1999-01-01"),
        ],
        Some(r#"{"jsonrpc":"2.0","id":10,"method":"tools/list"}"#.into()),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/json");
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["id"], 10, "{m}");
    assert_eq!(m["error"]["code"], -32600, "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MCP-Protocol-Version"),
        "{m}"
    );

    // Ending a session: 204, and the session is gone.
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = send(reqwest::Method::DELETE, &gw.url, None, &headers, None).await;
    assert_eq!(r.status(), 204);
    let (status, _) = rpc(
        &gw.url,
        None,
        &session,
        json!({"jsonrpc": "2.0", "id": 11, "method": "ping"}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_one_client_cannot_take_every_request_slot() {
    // Only the global cap is set: each client gets a quarter of it.
    let (gw, _cfg) = gateway(&format!(
        r#"[[auth.tokens]]
client_id = "alice"
token = "{ALICE}"

[[auth.tokens]]
client_id = "bob"
token = "{BOB}"

[limits]
max_concurrent_requests = 8

{}"#,
        stdio_backend("fx", "")
    ));
    let alice = typed_client(&gw.url, ALICE).await;
    let bob = typed_client(&gw.url, BOB).await;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let peer = alice.peer().clone();
        hogs.push(tokio::spawn(async move {
            peer.call_tool(
                CallToolRequestParams::new("fx__sleep").with_arguments(args(json!({"ms": 20000}))),
            )
            .await
        }));
    }
    // Alice's next request is refused once both of hers are in flight.
    let ping = r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let r = send(
            reqwest::Method::POST,
            &gw.url,
            Some(ALICE),
            &[],
            Some(ping.clone()),
        )
        .await;
        if r.status() == 429 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "alice was never refused");
        tokio::task::yield_now().await;
    };
    assert_eq!(body["error"]["code"], -32003, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(
            "client `alice` is at its limit of 2 concurrent requests (limits.max_concurrent_per_client)"
        ),
        "{body}"
    );
    // Bob is served meanwhile.
    let r = bob
        .call_tool(
            CallToolRequestParams::new("fx__echo")
                .with_arguments(args(json!({"message": "me too"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "me too");
    assert!(hogs.iter().all(|h| !h.is_finished()), "the hogs still run");
    for h in hogs {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_initialize_params_are_refused_with_32602() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let r = send(
        reqwest::Method::POST,
        &gw.url,
        None,
        &[],
        Some(init_body(&"n".repeat(20_000))),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers().contains_key("mcp-session-id"),
        "no session was created"
    );
    let m = message(r).await;
    assert_eq!(m["id"], 1, "{m}");
    assert_eq!(m["error"]["code"], -32602, "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16384 bytes"),
        "{m}"
    );
    let big_caps = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"experimental": {"x": {"blob": "c".repeat(20_000)}}},
        "clientInfo": {"name": "ok", "version": "1"}}});
    let r = send(
        reqwest::Method::POST,
        &gw.url,
        None,
        &[],
        Some(big_caps.to_string()),
    )
    .await;
    let m = message(r).await;
    assert_eq!(m["error"]["code"], -32602, "{m}");
    // A generous but sane client is served.
    let (_session, result) = open(&gw.url, None, &"n".repeat(4_000)).await;
    assert_eq!(result["serverInfo"]["name"], "manifold");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_max_sessions_a_new_initialize_gets_503() {
    let (gw, _cfg) = gateway(&format!(
        "[limits]\nmax_sessions = 2\n\n{}",
        stdio_backend("fx", "")
    ));
    let (first, _) = open(&gw.url, None, "one").await;
    let _second = open(&gw.url, None, "two").await;
    let r = send(
        reqwest::Method::POST,
        &gw.url,
        None,
        &[],
        Some(init_body("three")),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["id"], 1, "{m}");
    assert_eq!(m["error"]["code"], -32003, "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2 sessions (limits.max_sessions)"),
        "{m}"
    );
    // Existing sessions keep working; once one ends, a new one fits.
    let ping = json!({"jsonrpc": "2.0", "id": 3, "method": "ping"});
    let (status, _) = rpc(&gw.url, None, &first, ping).await;
    assert_eq!(status, 200);
    let headers = [
        ("mcp-session-id", first.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = send(reqwest::Method::DELETE, &gw.url, None, &headers, None).await;
    assert!(r.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(&gw.url, None).await["session_count"] != 1 {
        assert!(Instant::now() < deadline, "the deleted session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _third = open(&gw.url, None, "three").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_stays_small_however_many_sessions_there_are() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let name = "a-very-long-client-name-".repeat(300);
    for _ in 0..120 {
        open(&gw.url, None, &name).await;
    }
    let r = send(
        reqwest::Method::GET,
        &root(&gw.url, "/status"),
        None,
        &[],
        None,
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(text.len() < 64 * 1024, "/status is {} bytes", text.len());
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["session_count"], 120);
    assert_eq!(s["sessions_truncated"], true);
    let listed = s["sessions"].as_array().unwrap();
    assert!(
        listed.len() <= 100 && !listed.is_empty(),
        "{}",
        listed.len()
    );
    assert!(
        listed
            .iter()
            .all(|x| x["client"].as_str().unwrap().len() <= 100)
    );

    // The tool is bounded the same way.
    let client = client(&gw.url).await;
    let r = client
        .call_tool(CallToolRequestParams::new("gateway_status"))
        .await
        .unwrap();
    let text = first_text(&r);
    assert!(
        text.len() < 64 * 1024,
        "gateway_status is {} bytes",
        text.len()
    );
    client.cancel().await.unwrap();
}

/// rmcp routes an answer to the stream of the request with its id: a second
/// request reusing the id of one in flight would take its answer and leave
/// it waiting forever. The second is refused; the first gets its own answer;
/// the id is free again once answered. (Found by tests/fuzz_front.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn a_request_reusing_the_id_of_one_in_flight_is_refused_and_neither_hangs() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (session, _) = open(&gw.url, None, "dup").await;
    let slow = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "fx__sleep", "arguments": {"ms": 800}}});
    let first = tokio::spawn({
        let (url, session) = (gw.url.clone(), session.clone());
        async move { rpc(&url, None, &session, slow).await }
    });
    // Until the sleep is in flight.
    common::wait_until("the first call is in flight", 10, async || {
        common::http::in_flight(&gw.url) > 0
    })
    .await;
    let started = Instant::now();
    let (status, dup) = tokio::time::timeout(
        Duration::from_secs(10),
        rpc(
            &gw.url,
            None,
            &session,
            json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
        ),
    )
    .await
    .expect("the duplicate is answered");
    assert_eq!(status, 200);
    assert_eq!(dup["error"]["code"], -32600, "{dup}");
    assert!(
        dup["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already used"),
        "{dup}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "refused at once"
    );
    let (status, first) = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first call is answered")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(first["id"], 7);
    assert_eq!(
        first["result"]["content"][0]["text"], "slept 800 ms",
        "{first}"
    );
    // Answered: the id may be used again, at once.
    for _ in 0..3 {
        let (_, again) = rpc(
            &gw.url,
            None,
            &session,
            json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
        )
        .await;
        assert_eq!(again["id"], 7, "{again}");
        assert!(again.get("result").is_some(), "{again}");
    }
}
