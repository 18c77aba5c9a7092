//! The console at `/ui`: its page is public and holds no data; its data
//! routes and push stream need a token and show a client only what
//! `/status` shows it; and, in a real browser (Debian's Chromium driven by
//! playwright-core), the page logs in, follows a backend that is killed and
//! comes back, runs a tool, starts and stops a job, shows the audit entry,
//! and reloads an edited config file.

mod common;
mod console_support;

use std::time::Duration;

use common::*;
use console_support::*;
use serde_json::json;

const ASSETS: &[(&str, &str)] = &[
    ("/ui", "text/html"),
    ("/ui/", "text/html"),
    ("/ui/console.js", "text/javascript"),
    ("/ui/panels.js", "text/javascript"),
    ("/ui/charts.js", "text/javascript"),
    ("/ui/console.css", "text/css"),
    ("/ui/favicon.svg", "image/svg+xml"),
];

#[tokio::test(flavor = "multi_thread")]
async fn console_page_is_public_but_its_data_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _file) = gateway(&config(FIXTURE, dir.path(), ""));
    let url = gw.url.trim_end_matches("/mcp").to_string();

    for (path, kind) in ASSETS {
        let r = request("GET", &format!("{url}{path}"), None, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").starts_with(kind),
            "{path}: {}",
            r.header("content-type")
        );
        let csp = r.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), "nosniff");
        assert_eq!(r.header("referrer-policy"), "no-referrer");
        // Static files only: no backend, client or token of this gateway.
        for secret in ["payroll", "root-ops", ADMIN_TOKEN, FIXTURE] {
            assert!(!r.body.contains(secret), "{path} leaks {secret}");
        }
    }
    let page = request("GET", &format!("{url}/ui"), None, None).await;
    assert!(page.body.contains(r#"id="login-form""#));
    assert!(
        !page.body.contains("<script>"),
        "no inline script: the CSP forbids it"
    );
    assert_eq!(
        request("GET", &format!("{url}/ui/nope.js"), None, None)
            .await
            .status,
        404
    );
    assert_eq!(
        request("POST", &format!("{url}/ui"), None, None)
            .await
            .status,
        405
    );

    // The data routes: no token and a wrong token read nothing.
    for path in ["/ui/api/session", "/ui/api/tools", "/ui/api/events"] {
        for token in [None, Some("wrong-token")] {
            let r = request("GET", &format!("{url}{path}"), token, None).await;
            assert_eq!(r.status, 401, "{path} with {token:?}");
            assert!(r.header("www-authenticate").starts_with("Bearer"));
            assert!(
                !r.body.contains("fx") && !r.body.contains("payroll"),
                "{}",
                r.body
            );
        }
        // A token in the query string is not a credential.
        let r = request(
            "GET",
            &format!("{url}{path}?token={ADMIN_TOKEN}"),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{path}?token=");
    }
    assert_eq!(
        request(
            "POST",
            &format!("{url}/ui/api/session"),
            Some(ADMIN_TOKEN),
            None
        )
        .await
        .status,
        405
    );

    let admin = request(
        "GET",
        &format!("{url}/ui/api/session"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.header("cache-control"), "no-store");
    let admin = admin.json();
    assert_eq!(admin["client"], "root-ops");
    assert_eq!(admin["admin"], true);
    assert_eq!(
        admin["features"],
        json!({"jobs": true, "audit": true, "bus": true, "reload": true})
    );
    let user = request(
        "GET",
        &format!("{url}/ui/api/session"),
        Some(USER_TOKEN),
        None,
    )
    .await
    .json();
    assert_eq!(user["client"], "dev");
    assert_eq!(user["admin"], false);
    assert_eq!(user["features"]["reload"], false);
    assert_eq!(
        user["features"]["jobs"], false,
        "dev's allow-list does not name @jobs"
    );

    // Tools: the allow-list applies.
    let names = |r: Reply| -> Vec<String> {
        r.json()["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = names(
        request(
            "GET",
            &format!("{url}/ui/api/tools"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await,
    );
    assert!(
        all.contains(&"fx__echo".into())
            && all.contains(&"payroll__echo".into())
            && all.contains(&"queue".into())
    );
    let mine = names(
        request(
            "GET",
            &format!("{url}/ui/api/tools"),
            Some(USER_TOKEN),
            None,
        )
        .await,
    );
    assert!(mine.contains(&"fx__echo".into()) && mine.contains(&"gateway_status".into()));
    assert!(
        !mine
            .iter()
            .any(|n| n.starts_with("payroll__") || n == "queue"),
        "{mine:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn push_stream_carries_latency_rates_and_only_what_the_caller_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _file) = gateway(&config(FIXTURE, dir.path(), ""));
    let url = gw.url.trim_end_matches("/mcp").to_string();
    let execute = format!("{url}/api/v1/execute");
    for i in 0..5 {
        let r = request(
            "POST",
            &execute,
            Some(USER_TOKEN),
            Some(json!({"command": "fx__sleep", "params": {"ms": 20 + i}})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The admin's state: every backend, with per-backend rates and history.
    let state = first_event(&url, ADMIN_TOKEN, "state", Duration::from_secs(15), |s| {
        s["status"]["backends"]["fx"]["p50_ms"].is_number()
    })
    .await;
    let fx = &state["status"]["backends"]["fx"];
    let p50 = fx["p50_ms"].as_f64().unwrap();
    assert!((14.0..80.0).contains(&p50), "p50 of 20-24 ms sleeps: {p50}");
    assert!(fx["p99_ms"].as_f64().unwrap() >= p50);
    assert!(fx["calls_per_s"].as_f64().unwrap() > 0.0, "{fx}");
    assert!(fx["pid"].as_u64().unwrap() > 1);
    assert_eq!(fx["restarts"], 0);
    assert!(state["status"]["backends"]["payroll"].is_object());
    assert!(
        state["status"].get("last_reload").is_some(),
        "an admin sees the reload report"
    );
    let h = &state["history"]["fx"];
    assert_eq!(h["step_s"], 5);
    assert_eq!(h["calls_per_s"].as_array().unwrap().len(), 60);
    let recent: f64 = h["calls_per_s"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .sum();
    assert!(recent > 0.0, "the history shows the calls: {h}");
    assert!(
        state["jobs"].is_array(),
        "the admin may use the queue: {}",
        state["jobs"]
    );

    // The user's: only its backends, no reload report, no jobs.
    let state = first_event(&url, USER_TOKEN, "state", Duration::from_secs(15), |_| true).await;
    let backends = state["status"]["backends"].as_object().unwrap();
    assert!(backends.contains_key("fx") && backends.contains_key("@gateway"));
    assert!(
        !backends.contains_key("payroll") && !backends.contains_key("@jobs"),
        "{backends:?}"
    );
    assert!(state["history"].get("payroll").is_none());
    assert!(state["status"].get("last_reload").is_none());
    assert!(state["jobs"].is_null());

    // The audit entry of a call reaches the stream live: the user's own.
    let url2 = url.clone();
    let follower = tokio::spawn(async move {
        first_event(&url2, USER_TOKEN, "audit", Duration::from_secs(15), |e| {
            e["tool_name"] == "fx__echo"
        })
        .await
    });
    let admin_follower = {
        let url = url.clone();
        tokio::spawn(async move {
            first_event(&url, ADMIN_TOKEN, "audit", Duration::from_secs(15), |e| {
                e["tool_name"] == "payroll__echo"
            })
            .await
        })
    };
    // Calls repeat until the followers (which subscribe when their stream opens) see one.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(follower.is_finished() && admin_follower.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no audit event reached the streams"
        );
        request(
            "POST",
            &execute,
            Some(ADMIN_TOKEN),
            Some(json!({"command": "payroll__echo", "params": {"message": "for root-ops"}})),
        )
        .await;
        request(
            "POST",
            &execute,
            Some(USER_TOKEN),
            Some(json!({"command": "fx__echo", "params": {"message": "for dev"}})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = follower.await.unwrap();
    assert_eq!(entry["extra_data"]["client_id"], "dev");
    let entry = admin_follower.await.unwrap();
    assert_eq!(entry["extra_data"]["client_id"], "root-ops");
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_real_browser() {
    let repo = repo();
    let browser = match console_support::browser(&repo) {
        Ok(b) => b,
        Err(missing) => {
            require_browser_or_skip(&missing);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    // The gateway reads its config through a symlink, and the test edits the
    // target: the file watcher (which watches the link's directory) does not
    // see the edit, so the console's reload button is what applies it.
    let real = dir.path().join("real");
    let linked = dir.path().join("gw");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&linked).unwrap();
    let target = real.join("gateway.toml");
    std::fs::write(&target, config(FIXTURE, dir.path(), "")).unwrap();
    std::os::unix::fs::symlink(&target, linked.join("gateway.toml")).unwrap();
    let gw = gateway_at(&linked.join("gateway.toml"));
    let url = gw.url.trim_end_matches("/mcp").to_string();
    let added = config(FIXTURE, dir.path(), &stdio_backend("extra", ""));
    let broken = format!("{added}\n[backends.broken]\ntransport = \"stdio\"\nunknown_key = 1\n");
    let artifacts =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let out = tokio::process::Command::new(&browser.node)
        .arg(repo.join("tests/console/console.mjs"))
        .env("MANIFOLD_URL", &url)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("USER_TOKEN", USER_TOKEN)
        .env("CONFIG_FILE", &target)
        .env("CONFIG_ADDED", added)
        .env("CONFIG_BROKEN", broken)
        .env("ARTIFACTS", &artifacts)
        .env("TEST_DEPS", &browser.deps)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), out)
        .await
        .expect("the browser test finished within 240 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");
}
