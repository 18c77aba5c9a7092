//! Listed items reach clients with every field their backend sent (issue
//! 12): a 2025-11-25 tool's `execution`, vendor fields, on tools (across
//! pages), prompts, resources and templates, whatever transport mounts the
//! backend (stdio, streamable HTTP answering in SSE or JSON, legacy SSE),
//! and whichever way the client comes in (an HTTP session, a stateless
//! 2026-07-28 request, `manifold stdio`). The backend is
//! tests/listed/raw_server.py, which writes raw JSON.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::cluster::Raw;
use common::http::ready_backends;
use common::*;
use serde_json::{Value, json};

const PRIVATE_KEY: &str = "io.manifold/listed-fields";

fn raw_server(mode: &[&str]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/listed/raw_server.py"))
        .args(mode);
    spawn_listening(cmd)
}

fn config(http_sse: &Proc, http_json: &Proc, legacy: &Proc) -> String {
    let script = repo().join("tests/listed/raw_server.py");
    format!(
        "[backends.st]\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{script:?}, \"stdio\"]\n\n{}{}{}",
        url_backend("hs", "http", &http_sse.url, ""),
        url_backend("hj", "http", &http_json.url, ""),
        url_backend("ls", "sse", &legacy.url, ""),
    )
}

fn by_name<'a>(items: &'a Value, key: &str, name: &str) -> &'a Value {
    items
        .as_array()
        .and_then(|a| a.iter().find(|i| i[key] == name))
        .unwrap_or_else(|| panic!("no item {name} in {items}"))
}

/// Checks a `tools/list` result's items from every backend.
fn check_tools(result: &Value) {
    let tools = &result["tools"];
    assert!(
        !tools.to_string().contains(PRIVATE_KEY),
        "the private key never reaches a client: {tools}"
    );
    for prefix in ["st", "hs", "hj", "ls"] {
        let slow = by_name(tools, "name", &format!("{prefix}__slow"));
        assert_eq!(
            slow["execution"],
            json!({"taskSupport": "optional"}),
            "{slow}"
        );
        assert_eq!(slow["x-vendor"], json!({"tier": 2}), "{slow}");
        assert_eq!(slow["description"], "runs long");
        assert!(slow.get("_meta").is_none(), "{slow}");
        // The second page of the backend's list.
        let plain = by_name(tools, "name", &format!("{prefix}__plain"));
        assert_eq!(plain["x-page"], 2, "{plain}");
        let bare = by_name(tools, "name", &format!("{prefix}__bare"));
        assert_eq!(
            bare.as_object().map(|o| o.len()),
            Some(2),
            "an item without extras is unchanged: {bare}"
        );
    }
}

#[tokio::test]
async fn extra_fields_of_listed_items_reach_every_kind_of_client() {
    let http_sse = raw_server(&["http"]);
    let http_json = raw_server(&["http", "--json"]);
    let legacy = raw_server(&["sse"]);
    let (gw, cfg) = gateway(&config(&http_sse, &http_json, &legacy));
    let ready = ready_backends(&gw.url);
    for name in ["st", "hs", "hj", "ls"] {
        assert_eq!(ready[name]["state"], "up", "{ready}");
    }

    // A session client (2025-06-18).
    let mut raw = Raw::new(None);
    raw.initialize(&gw.url).await;
    let list = |method: &str| json!({"jsonrpc": "2.0", "id": 10, "method": method});
    let (status, tools) = raw.post(&gw.url, list("tools/list")).await;
    assert_eq!(status, 200);
    check_tools(&tools.expect("tools/list answer")["result"]);
    let (_, prompts) = raw.post(&gw.url, list("prompts/list")).await;
    let prompts = &prompts.expect("prompts/list answer")["result"]["prompts"];
    assert_eq!(by_name(prompts, "name", "hj__greet")["x-vendor"], "prompt");
    let (_, resources) = raw.post(&gw.url, list("resources/list")).await;
    let resources = &resources.expect("resources/list answer")["result"]["resources"];
    assert_eq!(
        by_name(resources, "uri", "st+mem://a")["x-vendor"],
        "resource"
    );
    let (_, templates) = raw.post(&gw.url, list("resources/templates/list")).await;
    let templates = &templates.expect("templates answer")["result"]["resourceTemplates"];
    assert_eq!(
        by_name(templates, "uriTemplate", "ls+mem://{x}")["x-vendor"],
        "template"
    );
    // A call still goes through to the backend.
    let (_, called) = raw.call(&gw.url, "hs__slow", json!({})).await;
    assert_eq!(
        called.expect("call answer")["result"]["content"][0]["text"],
        "called slow"
    );

    // A stateless 2026-07-28 request.
    let modern = reqwest::Client::new()
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .send()
        .await
        .expect("2026-07-28 tools/list");
    assert_eq!(modern.status(), 200);
    let text = modern.text().await.expect("body");
    let answer: Value = serde_json::from_str(&text)
        .ok()
        .or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
        })
        .unwrap_or_else(|| panic!("2026-07-28 answer: {text}"));
    check_tools(&answer["result"]);

    // `manifold stdio`.
    let mut child = Command::new(bin("manifold"))
        .arg("stdio")
        .arg("--config")
        .arg(&cfg.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("manifold stdio");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut send = |v: Value| writeln!(stdin, "{v}").expect("write");
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "stdio-raw", "version": "1"}}}),
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    // The stdio front's backends connect in the background: wait for them.
    let mut answer = Value::Null;
    for attempt in 2..200 {
        send(json!({"jsonrpc": "2.0", "id": attempt, "method": "tools/list"}));
        answer = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).expect("read") > 0,
                "stdio ended"
            );
            let v: Value = serde_json::from_str(&line).expect("json line");
            if v["id"] == attempt {
                break v;
            }
        };
        let listed = answer["result"]["tools"].to_string();
        if ["st", "hs", "hj", "ls"]
            .iter()
            .all(|p| listed.contains(&format!("\"{p}__bare\"")))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    check_tools(&answer["result"]);
    let _ = child.kill();
    let _ = child.wait();
}
