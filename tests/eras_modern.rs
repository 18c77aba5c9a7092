//! 2026-07-28 clients served natively (issue 12, item 1): rmcp's client in
//! discover-only and auto mode over HTTP and over `manifold stdio`, next to
//! an initialize-based client on the same endpoint, with real fixture
//! backends.
#![allow(deprecated)] // logging is deprecated by SEP-2577 but is still the wire protocol

mod common;
mod eras_support;

use std::time::Duration;

use common::*;
use eras_support::{EraClient, Seen};
use rmcp::model::*;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

type Era = RunningService<rmcp::RoleClient, EraClient>;

fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

async fn connect_with(url: &str, handler: EraClient, mode: ClientLifecycleMode) -> Era {
    handler
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url.to_string()),
            mode,
        )
        .await
        .expect("client connects")
}

/// Waits (10 s at most) for the next notification of a listen stream.
async fn next(sub: &mut rmcp::service::Subscription) -> ServerNotification {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a notification within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

#[tokio::test]
async fn a_discover_only_client_is_served_with_cache_hints_and_its_own_log_level() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let client = connect_with(&gw.url, EraClient::full("modern", true, true), modern()).await;
    let info = client.peer().peer_info().expect("discovered");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    assert!(info.capabilities.tools.is_some(), "{info:?}");
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(
        instructions.contains("Fixture server fixture."),
        "{instructions}"
    );

    let tools = client.peer().list_tools(None).await.expect("tools/list");
    assert!(tools.tools.iter().any(|t| t.name == "fx__echo"));
    assert_eq!(tools.ttl_ms, Some(0), "lists change without warning");
    assert_eq!(
        tools.cache_scope,
        Some(CacheScope::Public),
        "no auth: one view for all"
    );

    let echo = client
        .call_tool(
            CallToolRequestParams::new("fx__echo")
                .with_arguments(args(json!({"message": "new era"}))),
        )
        .await
        .expect("tools/call");
    assert_eq!(first_text(&echo), "new era");

    // Its log level rides on the request; the log its call caused comes back on that call.
    let mut meta = RequestMetaObject::new();
    meta.set_log_level(LoggingLevel::Debug);
    let mut params = CallToolRequestParams::new("fx__log")
        .with_arguments(args(json!({"level": "debug", "message": "fine detail"})));
    params.meta = Some(meta);
    let logged = client.call_tool(params).await.expect("tools/call");
    assert_eq!(first_text(&logged), "logged");
    let Seen::Log(log) = client
        .service()
        .wait_for(
            "the debug log",
            |s| matches!(s, Seen::Log(l) if l.data == json!("fine detail")),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(log.logger.as_deref(), Some("fx/fixture"));

    // A backend's sampling request during a 2026 call comes back as InputRequired,
    // which rmcp's client answers with its handler and retries.
    let sampled = client
        .call_tool(CallToolRequestParams::new("fx__sample").with_arguments(args(json!({}))))
        .await
        .expect("tools/call");
    assert_eq!(first_text(&sampled), "answer from modern", "{sampled:?}");
}

#[tokio::test]
async fn a_listen_stream_gets_list_changes_and_the_updates_it_subscribed() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let listener = connect_with(
        &gw.url,
        EraClient::new("listener", ClientCapabilities::default()),
        modern(),
    )
    .await;
    let filter = SubscriptionFilter::builder()
        .tools_list_changed()
        .resource_subscription("fx+fixture://info")
        .resource_subscription("nobody+x://y")
        .build();
    let mut sub = listener.peer().listen(filter).await.expect("listen");
    let acked = sub.acknowledged().clone();
    assert_eq!(acked.tools_list_changed, Some(true));
    assert_eq!(
        acked.resource_subscriptions,
        Some(vec!["fx+fixture://info".to_string()]),
        "only URIs a backend can subscribe to are accepted"
    );

    // An initialize-based client on the same endpoint changes things.
    let legacy = connect_with(
        &gw.url,
        EraClient::new("legacy", ClientCapabilities::default()),
        ClientLifecycleMode::Initialize,
    )
    .await;
    assert_eq!(
        legacy
            .peer()
            .peer_info()
            .map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2025_11_25)
    );
    legacy
        .peer()
        .call_tool(
            CallToolRequestParams::new("fx__add_tool")
                .with_arguments(args(json!({"name": "fresh"}))),
        )
        .await
        .expect("add_tool");
    let changed = next(&mut sub).await;
    assert!(
        matches!(changed, ServerNotification::ToolListChangedNotification(_)),
        "{changed:?}"
    );
    legacy
        .service()
        .wait_for("the legacy session's list change", |s| {
            matches!(s, Seen::ToolsChanged)
        })
        .await;
    legacy
        .peer()
        .call_tool(
            CallToolRequestParams::new("fx__touch")
                .with_arguments(args(json!({"uri": "fixture://info"}))),
        )
        .await
        .expect("touch");
    let updated = next(&mut sub).await;
    let ServerNotification::ResourceUpdatedNotification(updated) = updated else {
        panic!("expected resources/updated, got {updated:?}");
    };
    assert_eq!(updated.params.uri, "fx+fixture://info");
    // The legacy session did not subscribe, so it gets no update.
    assert!(
        legacy
            .service()
            .seen()
            .iter()
            .all(|s| !matches!(s, Seen::Updated(_))),
        "{:?}",
        legacy.service().seen()
    );
}

#[tokio::test]
async fn an_auto_mode_client_speaks_2026_over_http_and_over_stdio() {
    let auto = || ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let config = stdio_backend("fx", "");
    let (gw, cfg) = gateway(&config);
    let http = connect_with(
        &gw.url,
        EraClient::new("auto", ClientCapabilities::default()),
        auto(),
    )
    .await;
    assert_eq!(
        http.peer().peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    let echo = http
        .call_tool(
            CallToolRequestParams::new("fx__echo")
                .with_arguments(args(json!({"message": "over http"}))),
        )
        .await
        .expect("tools/call");
    assert_eq!(first_text(&echo), "over http");

    let mut cmd = tokio::process::Command::new(MANIFOLD);
    cmd.arg("stdio").arg("--config").arg(&cfg.path);
    let child = rmcp::transport::TokioChildProcess::new(cmd).expect("manifold stdio");
    let stdio = EraClient::new("auto-stdio", ClientCapabilities::default())
        .serve_with_lifecycle(child, auto())
        .await
        .expect("stdio client connects");
    assert_eq!(
        stdio.peer().peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    let tools = stdio.peer().list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "fx__echo"), "{tools:?}");
    let echo = stdio
        .call_tool(
            CallToolRequestParams::new("fx__echo")
                .with_arguments(args(json!({"message": "over stdio"}))),
        )
        .await
        .expect("tools/call");
    assert_eq!(first_text(&echo), "over stdio");
    let _ = stdio.cancel().await;
}

/// A 2026-07-28 `tools/call` of `fx__region` over raw HTTP with these headers:
/// (HTTP status, the JSON-RPC reply).
async fn region_call(
    url: &str,
    name_header: &str,
    region_header: &str,
) -> (u16, serde_json::Value) {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "fx__region", "arguments": {"region": "eu"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    });
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name_header)
        .header("mcp-param-region", region_header)
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    // A JSON body, or an SSE stream whose `data:` line holds the reply.
    let reply = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| !d.is_empty())
        .unwrap_or(text.as_str());
    (
        status,
        serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[tokio::test]
async fn standard_headers_are_checked_against_the_body_and_the_tool_schema() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", "args = [\"--eras\"]"));
    let (status, ok) = region_call(&gw.url, "fx__region", "eu").await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["result"]["content"][0]["text"], "eu", "{ok}");

    let (status, wrong_name) = region_call(&gw.url, "fx__echo", "eu").await;
    assert_eq!(status, 400, "{wrong_name}");
    assert_eq!(wrong_name["error"]["code"], -32020, "{wrong_name}");

    // Only the gateway's copy of the backend's schema says `region` travels as a header.
    let (status, wrong_param) = region_call(&gw.url, "fx__region", "us").await;
    assert_eq!(status, 400, "{wrong_param}");
    assert_eq!(wrong_param["error"]["code"], -32020, "{wrong_param}");
    let message = wrong_param["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Region"), "{message}");
}

#[tokio::test]
async fn clients_of_both_eras_calling_one_shared_backend_at_once_get_only_their_own_relays() {
    // Streamable HTTP: the backend's stream says which call each request belongs to.
    let backend = fixture("http", &[]);
    let (gw, _cfg) = gateway(&url_backend("fx", "http", &backend.url, ""));
    let legacy = connect_with(
        &gw.url,
        EraClient::full("legacy", false, false),
        ClientLifecycleMode::Initialize,
    )
    .await;
    let modern_client =
        connect_with(&gw.url, EraClient::full("modern", false, false), modern()).await;
    let sample =
        || CallToolRequestParams::new("fx__sample").with_arguments(args(json!({"delay_ms": 200})));
    let (old, new) = tokio::join!(
        legacy.peer().call_tool(sample()),
        modern_client.call_tool(sample())
    );
    let old = old.expect("legacy call");
    let new = new.expect("modern call");
    assert_eq!(first_text(&old), "answer from legacy", "{old:?}");
    assert_eq!(first_text(&new), "answer from modern", "{new:?}");
    let sampled = |c: &EraClient| {
        c.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Sampled { .. }))
            .count()
    };
    // Each answered its own question once: on its stream, or through InputRequired.
    assert_eq!(sampled(legacy.service()), 1);
    assert_eq!(sampled(modern_client.service()), 1);
}

#[tokio::test]
async fn a_listen_stream_is_acknowledged_and_fed_only_within_the_allow_list() {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = format!(
        "[[auth.tokens]]\nclient_id = \"narrow\"\ntoken = \"narrow-token\"\nbackends = [\"fx\"]\n\n\
         [[auth.tokens]]\nclient_id = \"wide\"\ntoken = \"wide-token\"\n\n{}{}",
        stdio_backend("fx", ""),
        stdio_backend("hidden", "")
    );
    let (gw, _cfg) = gateway(&config);
    let transport = |token: &str| {
        StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(gw.url.clone())
                .auth_header(token.to_string()),
        )
    };
    let narrow = EraClient::new("narrow", ClientCapabilities::default())
        .serve_with_lifecycle(transport("narrow-token"), modern())
        .await
        .expect("narrow connects");
    let filter = SubscriptionFilter::builder()
        .resource_subscription("fx+fixture://info")
        .resource_subscription("hidden+fixture://info")
        .build();
    let mut sub = narrow.peer().listen(filter).await.expect("listen");
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec!["fx+fixture://info".to_string()]),
        "a backend outside the allow-list is not acknowledged"
    );
    let wide = EraClient::new("wide", ClientCapabilities::default())
        .serve_with_lifecycle(transport("wide-token"), ClientLifecycleMode::Initialize)
        .await
        .expect("wide connects");
    for backend in ["hidden", "fx"] {
        wide.peer()
            .call_tool(
                CallToolRequestParams::new(format!("{backend}__touch"))
                    .with_arguments(args(json!({"uri": "fixture://info"}))),
            )
            .await
            .expect("touch");
    }
    // The hidden backend's update was not delivered; the next is fx's.
    let ServerNotification::ResourceUpdatedNotification(updated) = next(&mut sub).await else {
        panic!("expected resources/updated");
    };
    assert_eq!(updated.params.uri, "fx+fixture://info");
}

/// A 2026-07-28 request (its `_meta` says so) for a method that version
/// removed gets 404 and -32601; an initialize-era client still uses them.
#[tokio::test]
async fn removed_methods_are_not_found_for_2026_requests_only() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    for method in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
    ] {
        let body = json!({
            "jsonrpc": "2.0", "id": "r1", "method": method,
            "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            }}
        });
        let response = reqwest::Client::new()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 404, "{method}");
        let reply: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(reply["error"]["code"], -32601, "{method}: {reply}");
        assert_eq!(reply["id"], "r1", "{method}: {reply}");
    }
    // The initialize-era client on the same endpoint is unaffected.
    let legacy = client(&gw.url).await;
    legacy
        .peer()
        .send_request(ClientRequest::PingRequest(Default::default()))
        .await
        .expect("ping in a session");
}

/// A backend that speaks only 2026-07-28 has no `resources/subscribe`: the
/// gateway asks for the URIs sessions subscribed to on its listen stream
/// (opened again as they change), and the updates reach both eras' clients.
#[tokio::test]
async fn resource_updates_of_a_2026_only_backend_reach_subscribers_of_both_eras() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", "args = [\"--modern-only\"]"));
    let listener = connect_with(
        &gw.url,
        EraClient::new("listener", ClientCapabilities::default()),
        modern(),
    )
    .await;
    let filter = SubscriptionFilter::builder()
        .resource_subscription("fx+fixture://info")
        .build();
    let mut sub = listener.peer().listen(filter).await.expect("listen");
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec!["fx+fixture://info".to_string()]),
    );
    let legacy = connect_with(
        &gw.url,
        EraClient::new("legacy", ClientCapabilities::default()),
        ClientLifecycleMode::Initialize,
    )
    .await;
    legacy
        .peer()
        .subscribe(SubscribeRequestParams::new("fx+fixture://info"))
        .await
        .expect("resources/subscribe");
    // The backend's listen stream is opened again with the URI: touch until
    // an update arrives (the first touch may land before it is open).
    let touch = async || {
        legacy
            .peer()
            .call_tool(
                CallToolRequestParams::new("fx__touch")
                    .with_arguments(args(json!({"uri": "fixture://info"}))),
            )
            .await
            .expect("touch");
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let updated = loop {
        touch().await;
        match tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            Ok(n) => break n.expect("healthy").expect("open"),
            Err(_) => assert!(
                std::time::Instant::now() < deadline,
                "no resources/updated within 10 s"
            ),
        }
    };
    let ServerNotification::ResourceUpdatedNotification(updated) = updated else {
        panic!("expected resources/updated, got {updated:?}");
    };
    assert_eq!(updated.params.uri, "fx+fixture://info");
    legacy
        .service()
        .wait_for(
            "the legacy subscriber's update",
            |s| matches!(s, Seen::Updated(uri) if uri == "fx+fixture://info"),
        )
        .await;
}
