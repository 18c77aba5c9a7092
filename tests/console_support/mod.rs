//! Helpers for the console tests: the gateway config they run, plain HTTP
//! requests with headers, reading the push stream, and finding the browser.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN_TOKEN: &str = "console-admin-token-7d1f";
pub const USER_TOKEN: &str = "console-user-token-93ab";

/// A gateway config with two fixture backends (`fx`, and `payroll` that the
/// user may not see), an admin and a user token, jobs and the audit log in
/// `dir`, and `extra` appended.
pub fn config(fixture: &str, dir: &Path, extra: &str) -> String {
    format!(
        r#"[server]
restart_min_backoff = "3s"

[[auth.tokens]]
client_id = "root-ops"
token = "{ADMIN_TOKEN}"
admin = true

[[auth.tokens]]
client_id = "dev"
token = "{USER_TOKEN}"
backends = ["fx", "@gateway"]

[jobs]
path = {jobs:?}

[audit]
local = "sqlite"
path = {audit:?}
batch_interval = "10ms"

[backends.fx]
transport = "stdio"
command = {fixture:?}

[backends.payroll]
transport = "stdio"
command = {fixture:?}
{extra}
"#,
        jobs = dir.join("jobs.db"),
        audit = dir.join("audit.db"),
    )
}

/// A response: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn request(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.expect("request");
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.text().await.expect("body"),
    }
}

/// Opens the push stream and returns the first event named `name` whose
/// data satisfies `pred`, or panics after `within`.
pub async fn first_event(
    url: &str,
    token: &str,
    name: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let res = reqwest::Client::new()
        .get(format!("{url}/ui/api/events"))
        .bearer_auth(token)
        .send()
        .await
        .expect("open the stream");
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut res = res;
    let deadline = Instant::now() + within;
    let mut buffer = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{name}` event matched within {within:?}"))
            .expect("read the stream")
            .expect("the stream ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if event == name {
                let value: Value = serde_json::from_str(&data).expect("event data is JSON");
                if pred(&value) {
                    return value;
                }
            }
        }
    }
}

/// The browser test's programs, or why they are missing.
pub struct Browser {
    pub node: PathBuf,
    pub deps: PathBuf,
}

pub fn browser(repo: &Path) -> Result<Browser, String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("/usr/bin/chromium (Debian package `chromium`)".into());
    }
    let deps = repo.join(".test-deps");
    if !deps
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Err("playwright-core in .test-deps/node_modules".into());
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    if node.is_none() {
        return Err("node".into());
    }
    Ok(Browser {
        node: "node".into(),
        deps,
    })
}

/// Whether the browser test may be skipped here (outside CI) or must run.
pub fn require_browser_or_skip(missing: &str) -> bool {
    if std::env::var_os("MANIFOLD_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
        panic!(
            "the console browser test needs {missing}, and MANIFOLD_REQUIRE_BROWSER=1: run scripts/install-test-deps.sh"
        );
    }
    eprintln!(
        "SKIPPED: the console browser test needs {missing}; run scripts/install-test-deps.sh (CI sets MANIFOLD_REQUIRE_BROWSER=1)"
    );
    false
}
