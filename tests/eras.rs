//! Protocol eras through one gateway (issue 12): what 2025-11-25 added is
//! relayed exactly, and clients of the stateless 2026-07-28 protocol are
//! served natively next to initialize-based ones. Real rmcp clients over
//! HTTP against the `manifold` binary with `manifold-fixture` backends.

mod common;
mod eras_support;

use common::*;
use eras_support::{EraClient, Seen};
use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

type Era = RunningService<rmcp::RoleClient, EraClient>;

async fn connect(url: &str, handler: EraClient) -> Era {
    handler
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("client connects")
}

async fn call(client: &Era, tool: &str, arguments: serde_json::Value) -> CallToolResult {
    client
        .peer()
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .expect("tools/call answers")
}

fn status(url: &str) -> serde_json::Value {
    serde_json::from_str(&http_get(url, "/status").1).expect("status json")
}

#[tokio::test]
async fn sampling_tools_and_url_elicitation_reach_only_clients_that_declared_them() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", "args = [\"--eras\"]"));
    let full = EraClient::full("full", true, true);
    let plain = EraClient::full("plain", false, false);
    let a = connect(&gw.url, full.clone()).await;
    let b = connect(&gw.url, plain.clone()).await;

    let answered = call(&a, "fx__sample_tools", json!({})).await;
    assert_eq!(first_text(&answered), "answer from full", "{answered:?}");
    full.wait_for("a sampling request with tools", |s| {
        matches!(s, Seen::Sampled { tools: true })
    })
    .await;
    let refused = call(&b, "fx__sample_tools", json!({})).await;
    assert!(
        first_text(&refused).contains("client `plain` does not support sampling.tools"),
        "{refused:?}"
    );

    let accepted = call(&a, "fx__elicit_url", json!({"id": "login-a"})).await;
    assert!(first_text(&accepted).contains("accept"), "{accepted:?}");
    let refused = call(&b, "fx__elicit_url", json!({"id": "login-b"})).await;
    assert!(
        first_text(&refused).contains("client `plain` does not support elicitation.url"),
        "{refused:?}"
    );
    // The backend announces completion after the call; it reaches the session that was asked.
    let Seen::Custom(done) = full
        .wait_for("elicitation/complete", |s| matches!(s, Seen::Custom(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(done.method, "notifications/elicitation/complete");
    assert_eq!(done.params, Some(json!({"elicitationId": "login-a"})));
    // A form elicitation still reaches the client without URL mode.
    let form = call(&b, "fx__elicit", json!({})).await;
    assert!(first_text(&form).contains("plain"), "{form:?}");
    assert!(
        plain
            .seen()
            .iter()
            .all(|s| !matches!(s, Seen::Custom(_) | Seen::Sampled { .. })),
        "plain saw {:?}",
        plain.seen()
    );
    let counts = &status(&gw.url)["notifications"]["elicitation"];
    // Relayed: a's URL elicitation, b's form one, and a's completion notice.
    assert_eq!(counts["forwarded"], 3, "{counts}");
}

#[tokio::test]
async fn app_ui_references_are_prefixed_and_server_info_shows_the_backend() {
    let (gw, _cfg) = gateway(&stdio_backend(
        "app",
        "args = [\"--eras\", \"--name\", \"app\"]",
    ));
    let client = connect(
        &gw.url,
        EraClient::new("viewer", ClientCapabilities::default()),
    )
    .await;
    let info = client.peer().peer_info().expect("initialized");
    let about = info.server_info.clone().expect("server info");
    assert_eq!(about.name, "manifold");
    assert_eq!(about.title.as_deref(), Some("Fixture app"));
    assert_eq!(
        about.website_url.as_deref(),
        Some("https://app.example.invalid/")
    );
    assert_eq!(
        about.icons.as_ref().map(|i| i[0].src.clone()),
        Some("https://app.example.invalid/icon.png".to_string())
    );
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(
        instructions.contains(
            "## app — Fixture app (names prefixed `app__`, https://app.example.invalid/)"
        ),
        "{instructions}"
    );

    let tools = client.peer().list_all_tools().await.expect("tools");
    let app = tools
        .iter()
        .find(|t| t.name == "app__app")
        .expect("app tool");
    let meta = serde_json::to_value(&app.meta).expect("meta");
    let uri = meta["ui"]["resourceUri"]
        .as_str()
        .expect("ui uri")
        .to_string();
    assert_eq!(uri, "app+ui://app/view.html");
    let resources = client.peer().list_all_resources().await.expect("resources");
    assert!(resources.iter().any(|r| r.uri == uri), "{resources:?}");
    let read = client
        .peer()
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .expect("the app resource reads");
    let body = serde_json::to_value(&read.contents[0]).expect("json");
    assert_eq!(body["text"], "<html>app</html>");
    assert_eq!(body["uri"], uri);
}

#[tokio::test]
async fn server_info_of_several_backends_carries_each_icon_once() {
    let config = format!(
        "{}{}",
        stdio_backend("one", "args = [\"--eras\", \"--name\", \"one\"]"),
        stdio_backend("two", "args = [\"--eras\", \"--name\", \"two\"]"),
    );
    let (gw, _cfg) = gateway(&config);
    let client = connect(
        &gw.url,
        EraClient::new("viewer", ClientCapabilities::default()),
    )
    .await;
    let about = client
        .peer()
        .peer_info()
        .and_then(|i| i.server_info.clone())
        .expect("server info");
    assert_eq!(about.title.as_deref(), Some("Manifold MCP gateway"));
    assert_eq!(about.website_url, None);
    let icons: Vec<String> = about
        .icons
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.src)
        .collect();
    assert_eq!(
        icons,
        vec![
            "https://one.example.invalid/icon.png".to_string(),
            "https://two.example.invalid/icon.png".to_string()
        ]
    );
}
