//! A real client over HTTP sees every backend's tools, prompts, resources and
//! templates under its prefix, and calls reach the right backend process,
//! whichever transport mounts it.

mod common;

/// Switches off the messaging and bus built-ins (their tools are tested in
/// tests/messaging.rs and tests/bus.rs).
const NO_MESSAGING: &str = "\n[messaging]\nenabled = false\n\n[bus]\nenabled = false\n";

use common::*;
use rmcp::model::*;
use serde_json::json;

fn three_transports(http: &Proc, sse: &Proc) -> String {
    format!(
        "{}{}{}",
        stdio_backend(
            "local",
            "args = [\"--name\", \"local\", \"--extra-tools\", \"7\", \"--page-size\", \"3\"]"
        ),
        url_backend("remote", "http", &http.url, ""),
        url_backend("old", "sse", &sse.url, "prefix = \"legacy\""),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregates_stdio_http_and_sse_backends_under_prefixes() {
    let http = fixture("http", &["--name", "remote"]);
    let sse = fixture("sse", &["--name", "old"]);
    // Without the messaging and bus sets, so the count below is the backends' own.
    let (gw, _cfg) = gateway(&format!("{}{NO_MESSAGING}", three_transports(&http, &sse)));
    let client = client(&gw.url).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("manifold")
    );
    let instructions = info.instructions.clone().unwrap_or_default();
    for block in [
        "## local",
        "Fixture server local.",
        "## remote",
        "Fixture server remote.",
        "## old",
    ] {
        assert!(
            instructions.contains(block),
            "instructions lack {block:?}:\n{instructions}"
        );
    }

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for expected in [
        "local__echo",
        "remote__echo",
        "legacy__echo",
        "local__tool_6",
        "remote__add",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "missing {expected} in {names:?}"
        );
    }
    // 20 fixture tools each, local's 7 extra ones (served in pages of 3), and
    // the gateway's own `gateway_status`.
    assert_eq!(names.len(), 20 * 3 + 7 + 1, "{names:?}");
    assert_eq!(names[0], "gateway_status");

    for (tool, who) in [
        ("local__echo", "local"),
        ("remote__echo", "remote"),
        ("legacy__echo", "old"),
    ] {
        let r = client
            .call_tool(
                CallToolRequestParams::new(tool)
                    .with_arguments(args(json!({"message": format!("hi {who}")}))),
            )
            .await
            .unwrap();
        assert_eq!(first_text(&r), format!("hi {who}"));
        assert_ne!(r.is_error, Some(true));
    }
    let sum = client
        .call_tool(
            CallToolRequestParams::new("remote__add")
                .with_arguments(args(json!({"a": 2, "b": 40}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&sum), "42");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_resources_templates_and_completions_are_prefixed_and_routed() {
    let http = fixture("http", &["--name", "remote"]);
    let sse = fixture("sse", &["--name", "old"]);
    let (gw, _cfg) = gateway(&three_transports(&http, &sse));
    let client = client(&gw.url).await;

    // Lists follow backend-name order: local, old (prefix legacy), remote.
    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        prompts,
        vec!["local__greet", "legacy__greet", "remote__greet"]
    );
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("remote__greet")
                .with_arguments(args(json!({"name": "Ada"}))),
        )
        .await
        .unwrap();
    let text = serde_json::to_string(&prompt.messages).unwrap();
    assert!(text.contains("Hello, Ada!"), "{text}");

    let resources: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(
        resources,
        vec![
            "local+fixture://info",
            "legacy+fixture://info",
            "remote+fixture://info"
        ]
    );
    let templates: Vec<String> = client
        .list_all_resource_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.uri_template)
        .collect();
    assert_eq!(
        templates,
        vec![
            "local+fixture://items/{id}",
            "legacy+fixture://items/{id}",
            "remote+fixture://items/{id}"
        ]
    );

    // Reading rewrites the URI back for the backend and forward in the result.
    for (uri, text) in [
        ("remote+fixture://info", "fixture remote"),
        ("legacy+fixture://items/7", "item 7"),
    ] {
        let read = client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .unwrap();
        match &read.contents[0] {
            ResourceContents::TextResourceContents {
                uri: got,
                text: body,
                ..
            } => {
                assert_eq!(got, uri);
                assert_eq!(body, text);
            }
            other => panic!("unexpected contents {other:?}"),
        }
    }

    // Resource links inside tool results carry the exposed URI.
    let link = client
        .call_tool(CallToolRequestParams::new("local__resource_link"))
        .await
        .unwrap();
    match &link.content[0] {
        ContentBlock::ResourceLink(r) => assert_eq!(r.uri, "local+fixture://info"),
        other => panic!("expected a resource link, got {other:?}"),
    }

    // Completions route by their prompt or template reference.
    let done = client
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("local__greet"),
            ArgumentInfo::new("name", "al"),
        ))
        .await
        .unwrap();
    assert_eq!(done.completion.values, vec!["alice", "albert"]);
    let done = client
        .complete(CompleteRequestParams::new(
            Reference::for_resource("remote+fixture://items/{id}"),
            ArgumentInfo::new("id", "4"),
        ))
        .await
        .unwrap();
    assert_eq!(done.completion.values, vec!["41"]);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_empty_prefix_shape_the_exposed_names() {
    let config = format!(
        "{}{}",
        stdio_backend(
            "solo",
            "prefix = \"\"\ntools = { include = [\"ec*\", \"add\"] }\nprompts = { exclude = [\"*\"] }"
        ),
        stdio_backend(
            "other",
            "tools = { include = [\"a*\", \"e*\", \"f*\", \"r*\", \"s*\"], exclude = [\"elicit\", \"sample\", \"st*\", \"roots\"] }"
        ),
    );
    let (gw, _cfg) = gateway(&format!("{config}{NO_MESSAGING}"));
    let client = client(&gw.url).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "add",
            "echo",
            "gateway_status",
            "other__add",
            "other__add_tool",
            "other__announce",
            "other__echo",
            "other__fail",
            "other__flood",
            "other__resource_link",
            "other__roots_later",
            "other__rpc_error",
            "other__sleep"
        ]
    );
    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, vec!["other__greet"]);
    let r = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"message": "bare"}))),
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "bare");
    // A filtered-out tool is not callable either.
    let err = client
        .call_tool(CallToolRequestParams::new("other__hang"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown tool `other__hang`"),
        "{err}"
    );
    // Bare resources keep their own URI.
    let read = client
        .read_resource(ReadResourceRequestParams::new("fixture://info"))
        .await
        .unwrap();
    assert!(
        matches!(&read.contents[0], ResourceContents::TextResourceContents { uri, .. } if uri == "fixture://info")
    );
    client.cancel().await.unwrap();
}
