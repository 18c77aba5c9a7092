//! Hot reload while clients are connected and calls are running: unchanged
//! backends keep their process and never fail a call, sessions are told once,
//! and a broken file changes nothing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::http::*;
use common::*;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Changes(Arc<Mutex<usize>>);

impl ClientHandler for Changes {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        *self.0.lock().unwrap() += 1;
    }
}

async fn connect(url: &str) -> (RunningService<RoleClient, Changes>, Changes) {
    let changes = Changes::default();
    let client = changes
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .unwrap();
    (client, changes)
}
async fn tool_names<H: ClientHandler>(c: &RunningService<RoleClient, H>) -> Vec<String> {
    c.list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_removes_changes_and_renames_backends_under_load() {
    let v1 = format!(
        "{}{}{}{}",
        stdio_backend("keep", ""),
        stdio_backend("gone", ""),
        stdio_backend("change", "args = [\"--name\", \"v1\"]"),
        stdio_backend("old_name", ""),
    );
    let cfg = write_config(&v1);
    let gw = gateway_at(&cfg.path);
    let (a, a_changes) = connect(&gw.url).await;
    let (_b, b_changes) = connect(&gw.url).await;
    let keep_pid = status(&gw.url)["backends"]["keep"]["pid"].as_u64().unwrap();
    let change_pid = status(&gw.url)["backends"]["change"]["pid"]
        .as_u64()
        .unwrap();

    // A steady load on the unchanged backend for the whole test.
    let a = Arc::new(a);
    let (calls, failures, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = {
        let (a, calls, failures, stop) = (a.clone(), calls.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = a
                    .call_tool(
                        CallToolRequestParams::new("keep__echo")
                            .with_arguments(args(json!({"message": "x"}))),
                    )
                    .await;
                calls.fetch_add(1, Ordering::Relaxed);
                if !matches!(&r, Ok(r) if first_text(r) == "x") {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    wait_for("calls under way", 20, || calls.load(Ordering::Relaxed) >= 5).await;

    let v2 = format!(
        "{}{}{}{}",
        stdio_backend("keep", ""),
        stdio_backend("change", "args = [\"--name\", \"v2\"]"),
        stdio_backend("new_name", ""),
        stdio_backend("fresh", ""),
    );
    std::fs::write(&cfg.path, &v2).unwrap();
    wait_until("the new tools", 20, async || {
        let names = tool_names(&a).await;
        names.contains(&"fresh__echo".to_string())
            && names.contains(&"new_name__echo".to_string())
            && !names
                .iter()
                .any(|n| n.starts_with("gone__") || n.starts_with("old_name__"))
    })
    .await;
    let s = status(&gw.url);
    assert_eq!(s["last_reload"]["ok"], true, "{s:#}");
    assert_eq!(
        s["last_reload"]["report"]["added"],
        json!(["fresh", "new_name"]),
        "{s:#}"
    );
    assert_eq!(
        s["last_reload"]["report"]["removed"],
        json!(["gone", "old_name"]),
        "{s:#}"
    );
    assert_eq!(
        s["last_reload"]["report"]["changed"],
        json!(["change"]),
        "{s:#}"
    );
    assert_eq!(
        s["backends"]["keep"]["pid"].as_u64(),
        Some(keep_pid),
        "the unchanged backend was restarted"
    );
    assert_ne!(
        s["backends"]["change"]["pid"].as_u64(),
        Some(change_pid),
        "the changed backend kept its process"
    );
    let stats = first_text(
        &a.call_tool(CallToolRequestParams::new("change__stats"))
            .await
            .unwrap(),
    );
    assert!(stats.contains("pid"), "{stats}");
    wait_until("both sessions to be told", 20, async || {
        *a_changes.0.lock().unwrap() >= 1 && *b_changes.0.lock().unwrap() >= 1
    })
    .await;

    // A broken file changes nothing, and says why.
    std::fs::write(
        &cfg.path,
        format!("{v2}\n[backends.broken\ntransport = 1\n"),
    )
    .unwrap();
    wait_until("the failed reload to be recorded", 20, async || {
        status(&gw.url)["last_reload"]["ok"] == false
    })
    .await;
    let s = status(&gw.url);
    let error = s["last_reload"]["errors"][0].as_str().unwrap().to_string();
    assert!(
        error.contains("gateway.toml:") && error.contains(":"),
        "{error}"
    );
    assert!(tool_names(&a).await.contains(&"fresh__echo".to_string()));

    // A setting that cannot change live is refused by name; the rest applies.
    std::fs::write(
        &cfg.path,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n\n{v2}{}",
            stdio_backend("later", "")
        ),
    )
    .unwrap();
    wait_until("the partial reload", 20, async || {
        tool_names(&a).await.contains(&"later__echo".to_string())
    })
    .await;
    let s = status(&gw.url);
    assert_eq!(
        s["last_reload"]["report"]["refused"],
        json!(["server.listen"]),
        "{s:#}"
    );

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(calls.load(Ordering::Relaxed) > 20, "the load did not run");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls to the unchanged backend failed during reloads"
    );
    assert_eq!(
        status(&gw.url)["backends"]["keep"]["pid"].as_u64(),
        Some(keep_pid)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_the_admin_route_reload_the_file() {
    let cfg = write_config(&stdio_backend("fx", ""));
    let gw = gateway_at(&cfg.path);
    let generation = status(&gw.url)["generation"].as_u64().unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    wait_until("the SIGHUP reload", 20, async || {
        status(&gw.url)["last_reload"]["trigger"] == "SIGHUP"
    })
    .await;
    let s = status(&gw.url);
    assert_eq!(s["generation"].as_u64(), Some(generation + 1));
    assert_eq!(
        s["last_reload"]["report"]["unchanged"],
        json!(["@gateway", "@messaging", "@bus", "fx"])
    );

    let (code, body) = http_post(&gw.url, "/admin/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ok"], true);
    assert_eq!(status(&gw.url)["last_reload"]["trigger"], "admin");
}
