//! The one test support module: boots the real `manifold` binary on port 0
//! with real backend processes (our `manifold-fixture`), and connects real MCP
//! clients over HTTP. Every test binary says `mod common;`.
//!
//! - here: processes, config files, the gateway, MCP clients;
//! - [`wait`]: waiting for an event with a deadline (never a bare sleep);
//! - [`http`]: raw HTTP requests (a chosen method, `Host` or token);
//! - [`recorder`]: a client that records its log notifications, and tool-call helpers;
//! - [`redis`]: the real Redis for messaging and bus tests;
//! - [`jobs`]: the `queue` tool and `POST /api/v1/execute`;
//! - [`postgres`]: a database of its own on the real PostgreSQL;
//! - [`audit`]: a local receiver for audit destinations and the audit counters;
//! - [`cluster`]: gateway instances sharing sessions in Redis, and HAProxy in front;
//! - [`child`]: a third-party program run to completion in bounded time, and its JSON output.
#![allow(dead_code, deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

pub mod audit;
pub mod child;
pub mod cluster;
pub mod http;
pub mod jobs;
pub mod postgres;
pub mod recorder;
pub mod redis;
pub mod wait;

pub use http::{base, http_get};
#[allow(unused_imports)] // each test binary uses some of them
pub use wait::{eventually, wait_blocking, wait_for, wait_until};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};

pub const MANIFOLD: &str = env!("CARGO_BIN_EXE_manifold");
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_manifold-fixture");

/// The binary `name` (`manifold` or `manifold-fixture`): from
/// `MANIFOLD_TEST_BIN_DIR` when set (a private copy, for machines where
/// several worktrees share one target directory), else Cargo's.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("MANIFOLD_TEST_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    PathBuf::from(match name {
        "manifold" => MANIFOLD,
        _ => FIXTURE,
    })
}

/// A child process killed (whole process group) when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
    stderr_rx: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Lines the process wrote to stderr so far.
    pub fn stderr_lines(&mut self) -> Vec<String> {
        self.stderr_rx
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id() as i32, 15);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unsafe_kill(pid: i32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe_kill(self.child.id() as i32, 15);
            std::thread::sleep(Duration::from_millis(50));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `cmd` and waits for its `listening URL` line on stdout.
pub fn spawn_listening(mut cmd: Command) -> Proc {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("MANIFOLD_TEST_VERBOSE").is_some() {
                eprintln!("[child] {line}");
            }
            let _ = etx.send(line);
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let lines: Vec<String> = erx.try_iter().collect();
            panic!(
                "process did not announce its address; stderr:\n{}",
                lines.join("\n")
            );
        }
    };
    Proc {
        child,
        url,
        stderr_rx: Some(erx),
    }
}

/// A fixture backend served over `transport` ("http" or "sse").
pub fn fixture(transport: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(["--transport", transport]).args(extra);
    spawn_listening(cmd)
}

/// A config file in a fresh temp dir; the dir lives as long as the value.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn write_config(text: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    ConfigFile { dir, path }
}

/// Starts `manifold serve` on a free loopback port with this config text.
pub fn gateway(config: &str) -> (Proc, ConfigFile) {
    let file = write_config(config);
    (gateway_at(&file.path), file)
}

/// `manifold serve` with this config file, once `/readyz` says ready.
pub fn gateway_at(path: &Path) -> Proc {
    let gw = gateway_unready(path);
    wait_blocking("the gateway to be ready", 60, || {
        http_get(&gw.url, "/readyz").0 == 200
    });
    gw
}

/// Starts the gateway and returns as soon as it accepts connections, before
/// its backends have finished connecting.
pub fn gateway_unready(path: &Path) -> Proc {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,rmcp=warn".into());
    gateway_logging(path, &filter)
}

/// Starts the gateway with this log filter (`RUST_LOG`), before it is ready.
pub fn gateway_logging(path: &Path, filter: &str) -> Proc {
    let mut cmd = Command::new(bin("manifold"));
    cmd.arg("serve")
        .arg("--config")
        .arg(path)
        .args(["--listen", "127.0.0.1:0"]);
    cmd.env("RUST_LOG", filter);
    spawn_listening(cmd)
}

/// A `[backends.NAME]` table for a fixture over stdio.
pub fn stdio_backend(name: &str, extra: &str) -> String {
    format!("[backends.{name}]\ntransport = \"stdio\"\ncommand = {FIXTURE:?}\n{extra}\n")
}

pub fn url_backend(name: &str, transport: &str, url: &str, extra: &str) -> String {
    format!("[backends.{name}]\ntransport = \"{transport}\"\nurl = \"{url}\"\n{extra}\n")
}

pub type Client = RunningService<RoleClient, ()>;

/// An rmcp client session that sends `Authorization: Bearer {token}`.
pub async fn authed_client(url: &str, token: &str) -> Client {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects with its token")
}

/// `http://host:port{path}` for a gateway's MCP URL.
pub fn root(url: &str, path: &str) -> String {
    format!("{}{path}", base(url))
}

/// Sends `kill -{sig}` to `pid`.
pub fn signal(pid: u64, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Whether `pid` runs; a zombie has exited (only its parent has not collected it).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// An rmcp streamable-HTTP client session against `url`.
pub async fn client(url: &str) -> Client {
    ().serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("client connects")
}

pub fn args(v: serde_json::Value) -> rmcp::model::JsonObject {
    v.as_object().cloned().expect("object")
}

/// The text of the first content block.
pub fn first_text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// Whether an external dependency may be skipped (outside CI) or must be present.
pub fn require_or_skip(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("MANIFOLD_REQUIRE_INTEROP").is_some() {
        panic!(
            "{what} is required (MANIFOLD_REQUIRE_INTEROP is set) but missing: run scripts/install-test-deps.sh"
        );
    }
    eprintln!(
        "SKIPPED: {what} is not installed; run scripts/install-test-deps.sh (CI makes this required)"
    );
    false
}

/// The repo root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `v`, sorted.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The URI and text of a resource read that returned exactly one text content.
pub fn only_text(read: &rmcp::model::ReadResourceResult) -> (&str, &str) {
    match &read.contents[..] {
        [rmcp::model::ResourceContents::TextResourceContents { uri, text, .. }] => (uri, text),
        other => panic!("expected one text content, got {other:?}"),
    }
}
