//! Several gateway instances sharing sessions through Redis, behind HAProxy:
//! session ids name their instance, a session moves to another instance
//! when its own is gone (restored from Redis, bound to its client), the old
//! holder lets go, and a draining instance hands its traffic over without a
//! failed call.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::redis::{REDIS_URL, redis_cleanup, redis_or_skip, unique_prefix};
use common::{MANIFOLD, Proc, args, first_text, require_or_skip, spawn_listening, stdio_backend};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// A port nobody listens on right now (the instance binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One gateway instance on a fixed port, so it can be restarted in place.
struct Instance {
    id: String,
    port: u16,
    config: std::path::PathBuf,
    proc: Option<Proc>,
}

impl Instance {
    fn new(dir: &std::path::Path, id: &str, prefix: &str, extra: &str) -> Self {
        let port = free_port();
        let config = dir.join(format!("{id}.toml"));
        let text = format!(
            "[server]\ninstance_id = \"{id}\"\ndrain_timeout = \"10s\"\n\n\
             [sessions]\nstore = \"redis\"\nredis_url = \"{REDIS_URL}\"\nkey_prefix = \"{prefix}\"\n\n\
             {extra}\n{}\n{}",
            stdio_backend("shared", ""),
            stdio_backend("mine", "isolation = \"per_session\""),
        );
        std::fs::write(&config, text).unwrap();
        let mut instance = Self {
            id: id.to_string(),
            port,
            config,
            proc: None,
        };
        instance.start();
        instance
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn start(&mut self) {
        let mut cmd = Command::new(MANIFOLD);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("RUST_LOG", "info,rmcp=warn");
        let proc = spawn_listening(cmd);
        wait_until("the instance is ready", Duration::from_secs(60), || {
            common::http_get(&proc.url, "/readyz").0 == 200
        });
        self.proc = Some(proc);
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut p = self.proc.take().expect("running");
        p.terminate()
    }

    fn readyz(&self) -> Value {
        let (_, body) = common::http_get(&self.url(), "/readyz");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// `manifold_session_moves_total{event}` of this instance.
    fn moves(&self, event: &str) -> u64 {
        let (_, body) = common::http_get(&self.url(), "/metrics");
        let key = format!("manifold_session_moves_total{{event=\"{event}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn sessions(&self) -> u64 {
        self.readyz()["sessions"].as_u64().unwrap_or(u64::MAX)
    }
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw streamable-HTTP client, to see session ids and status codes.
struct Raw {
    http: reqwest::Client,
    token: Option<String>,
    session: Option<String>,
    next_id: u64,
}

impl Raw {
    fn new(token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            token: token.map(str::to_string),
            session: None,
            next_id: 1,
        }
    }

    async fn post(&mut self, url: &str, body: Value) -> (u16, Option<Value>) {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.json(&body).send().await.expect("request sent");
        let status = resp.status().as_u16();
        if let Some(id) = resp.headers().get("mcp-session-id") {
            self.session = Some(id.to_str().unwrap().to_string());
        }
        let text = resp.text().await.unwrap_or_default();
        // The answer is one JSON body or an SSE stream whose last data line is it.
        let value = serde_json::from_str(&text).ok().or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v.get("id").is_some())
        });
        (status, value)
    }

    async fn initialize(&mut self, url: &str) {
        let (status, _) = self
            .post(
                url,
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "scale-out-test", "version": "1"}}}),
            )
            .await;
        assert_eq!(status, 200, "initialize");
        let (status, _) = self
            .post(
                url,
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(status, 202, "initialized");
    }

    async fn call(&mut self, url: &str, tool: &str, arguments: Value) -> (u16, Option<Value>) {
        self.next_id += 1;
        let id = self.next_id;
        self.post(
            url,
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}}),
        )
        .await
    }
}

fn echoed(answer: &Option<Value>) -> String {
    answer
        .as_ref()
        .and_then(|v| v["result"]["content"][0]["text"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_another_instance_and_the_old_one_lets_go() {
    if !redis_or_skip("a_session_moves_to_another_instance_and_the_old_one_lets_go") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("moves");
    let g1 = Instance::new(dir.path(), "g1", &prefix, "");
    let g2 = Instance::new(dir.path(), "g2", &prefix, "");
    assert_eq!(g1.readyz()["instance_id"], "g1");

    let mut raw = Raw::new(None);
    raw.initialize(&g1.url()).await;
    let session = raw.session.clone().expect("a session id");
    assert!(
        session.starts_with("g1."),
        "the id names its instance: {session}"
    );
    let (status, answer) = raw
        .call(&g1.url(), "shared__echo", json!({"message": "on g1"}))
        .await;
    assert_eq!((status, echoed(&answer).as_str()), (200, "on g1"));
    assert_eq!(g1.sessions(), 1);

    // The same session, sent to the other instance: restored from Redis.
    let (status, answer) = raw
        .call(&g2.url(), "shared__echo", json!({"message": "on g2"}))
        .await;
    assert_eq!(
        (status, echoed(&answer).as_str()),
        (200, "on g2"),
        "{answer:?}"
    );
    // A per-session backend starts afresh for the moved session.
    let (status, answer) = raw
        .call(&g2.url(), "mine__echo", json!({"message": "mine"}))
        .await;
    assert_eq!(
        (status, echoed(&answer).as_str()),
        (200, "mine"),
        "{answer:?}"
    );
    assert_eq!(g2.sessions(), 1);
    assert_eq!(g2.moves("restored"), 1);
    // The old holder hears of the move and closes its copy.
    wait_until(
        "g1 dropped the moved session",
        Duration::from_secs(10),
        || g1.sessions() == 0,
    );
    assert_eq!(g1.moves("released"), 1);

    // A session nobody knows is still 404.
    raw.session = Some("g1.00000000-0000-0000-0000-000000000000".into());
    let (status, _) = raw
        .call(&g2.url(), "shared__echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 404);
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_token_cannot_restore_a_session() {
    if !redis_or_skip("another_clients_token_cannot_restore_a_session") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("owner");
    let auth = "[auth]\n[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"alice-token-0123456789\"\n\
                [[auth.tokens]]\nclient_id = \"bob\"\ntoken = \"bob-token-0123456789\"\n";
    let g1 = Instance::new(dir.path(), "g1", &prefix, auth);
    let g2 = Instance::new(dir.path(), "g2", &prefix, auth);

    let mut alice = Raw::new(Some("alice-token-0123456789"));
    alice.initialize(&g1.url()).await;
    let mut bob = Raw::new(Some("bob-token-0123456789"));
    bob.session = alice.session.clone();
    let (status, _) = bob
        .call(&g2.url(), "shared__echo", json!({"message": "steal"}))
        .await;
    assert_eq!(status, 404, "bob cannot take alice's session over");
    assert_eq!(g2.sessions(), 0);
    let (status, answer) = alice
        .call(&g2.url(), "shared__echo", json!({"message": "mine"}))
        .await;
    assert_eq!((status, echoed(&answer).as_str()), (200, "mine"));
    redis_cleanup(&prefix).await;
}

/// HAProxy in front of `instances`, routing on the session id's prefix.
fn haproxy(dir: &std::path::Path, instances: &[&Instance]) -> (Proc, u16) {
    let port = free_port();
    let mut servers = String::new();
    let mut rules = String::new();
    for i in instances {
        rules += &format!(
            "    use-server {0} if {{ req.hdr(mcp-session-id) -m beg {0}. }}\n",
            i.id
        );
        servers += &format!("    server {} 127.0.0.1:{} check\n", i.id, i.port);
    }
    let config = format!(
        "global\n    maxconn 2000\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    timeout tunnel 1h\n\
         \x20   option redispatch\n    retries 3\n    retry-on conn-failure empty-response 503\n    option http-buffer-request\n\
         frontend mcp\n    bind 127.0.0.1:{port}\n    default_backend gateways\n\
         backend gateways\n    balance hdr(mcp-session-id)\n    hash-type consistent\n    option httpchk\n\
         \x20   http-check send meth GET uri /readyz hdr Host 127.0.0.1\n    http-check expect status 200\n\
         \x20   default-server inter 200ms fall 1 rise 2\n{rules}{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new("sh");
    // HAProxy prints nothing when it is up; announce the address for the harness.
    cmd.arg("-c").arg(format!(
        "echo listening http://127.0.0.1:{port}/mcp; exec haproxy -db -f {}",
        path.display()
    ));
    let proc = spawn_listening(cmd);
    wait_until(
        "haproxy accepts connections",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    (proc, port)
}

fn haproxy_present() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn connect(url: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects through the load balancer")
}

/// Clients calling through the load balancer until `stop`; counts each one's calls.
struct Load {
    calls: Vec<Arc<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

async fn load(url: &str, clients: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut calls = Vec::new();
    let mut tasks = Vec::new();
    for n in 0..clients {
        let client = connect(url).await;
        let count = Arc::new(AtomicUsize::new(0));
        calls.push(count.clone());
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Alternate the shared backend and the session's own one.
                let tool = if i.is_multiple_of(2) {
                    "shared__echo"
                } else {
                    "mine__echo"
                };
                let message = format!("{n}-{i}");
                let call = client.call_tool(
                    CallToolRequestParams::new(tool)
                        .with_arguments(args(json!({"message": message}))),
                );
                match tokio::time::timeout(Duration::from_secs(30), call).await {
                    Ok(Ok(r)) if first_text(&r) == message => {}
                    Ok(Ok(r)) => errors.push(format!("{tool}: wrong answer {:?}", first_text(&r))),
                    Ok(Err(e)) => errors.push(format!("{tool}: {e}")),
                    Err(_) => errors.push(format!("{tool}: no answer in 30 s")),
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            let _ = client.cancel().await;
            errors
        }));
    }
    Load { calls, stop, tasks }
}

impl Load {
    /// Waits until every client completed `more` further calls.
    async fn progress(&self, more: usize) {
        let targets: Vec<usize> = self
            .calls
            .iter()
            .map(|c| c.load(Ordering::Relaxed) + more)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        while self
            .calls
            .iter()
            .zip(&targets)
            .any(|(c, t)| c.load(Ordering::Relaxed) < *t)
        {
            assert!(
                Instant::now() < deadline,
                "some client stopped making progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.tasks {
            errors.extend(t.await.unwrap());
        }
        (
            self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            errors,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_haproxy_fails_no_call() {
    if !redis_or_skip("a_rolling_restart_behind_haproxy_fails_no_call")
        || !require_or_skip("haproxy", haproxy_present())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("rolling");
    let mut instances: Vec<Instance> = ["g1", "g2", "g3"]
        .iter()
        .map(|id| Instance::new(dir.path(), id, &prefix, ""))
        .collect();
    let (_lb, port) = haproxy(dir.path(), &instances.iter().collect::<Vec<_>>());
    let url = format!("http://127.0.0.1:{port}/mcp");
    let load = load(&url, 6).await;
    load.progress(10).await;
    for instance in &mut instances {
        let status = instance.terminate();
        assert!(
            status.success(),
            "{} exits cleanly on SIGTERM: {status}",
            instance.id
        );
        load.progress(5).await;
        instance.start();
        load.progress(5).await;
    }
    let (calls, errors) = load.finish().await;
    eprintln!("rolling restart: {calls} calls, {} failed", errors.len());
    let restored: u64 = instances.iter().map(|i| i.moves("restored")).sum();
    assert!(restored > 0, "sessions moved during the restarts");
    assert!(
        errors.is_empty(),
        "{} of {calls} calls failed: {errors:?}",
        errors.len()
    );
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_killed_instance_behind_haproxy() {
    if !redis_or_skip("sessions_survive_a_killed_instance_behind_haproxy")
        || !require_or_skip("haproxy", haproxy_present())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("killed");
    let mut instances: Vec<Instance> = ["g1", "g2", "g3"]
        .iter()
        .map(|id| Instance::new(dir.path(), id, &prefix, ""))
        .collect();
    let (_lb, port) = haproxy(dir.path(), &instances.iter().collect::<Vec<_>>());
    let url = format!("http://127.0.0.1:{port}/mcp");
    let clients = 6;
    let load = load(&url, clients).await;
    load.progress(10).await;
    let victim = instances
        .iter()
        .position(|i| i.sessions() > 0)
        .expect("some instance holds sessions");
    let held = instances[victim].sessions();
    instances[victim].kill();
    // Every client goes on: its session is restored on another instance
    // (not re-initialized: the client keeps its session id).
    load.progress(10).await;
    let restored: u64 = instances
        .iter()
        .filter(|i| i.proc.is_some())
        .map(|i| i.moves("restored"))
        .sum();
    // Each session of the killed instance was restored (not re-initialized),
    // once, or twice when HAProxy's retry picked one instance before its
    // health check took the dead one out of the hash ring.
    assert!(
        (held..=2 * held).contains(&restored),
        "{restored} restores for {held} sessions of the killed instance"
    );
    instances[victim].start();
    load.progress(10).await;
    let (calls, errors) = load.finish().await;
    eprintln!(
        "killed {}: {calls} calls, {} failed: {errors:?}",
        instances[victim].id,
        errors.len()
    );
    // Only a call in flight on the killed instance may fail: one per client at most.
    assert!(
        errors.len() <= clients,
        "{} of {calls} calls failed (at most {clients} were in flight at the kill): {errors:?}",
        errors.len()
    );
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readiness_first_and_lets_calls_in_flight_finish() {
    let config = format!(
        "[server]\ninstance_id = \"d1\"\ndrain_timeout = \"20s\"\n\n{}",
        stdio_backend("shared", "")
    );
    let (mut gw, _file) = common::gateway(&config);
    let url = gw.url.clone();
    let mut raw = Raw::new(None);
    raw.initialize(&url).await;
    assert!(raw.session.as_deref().is_some_and(|s| s.starts_with("d1.")));
    // A call that is still running when the signal arrives.
    let slow = tokio::spawn({
        let url = url.clone();
        let mut raw = Raw {
            http: reqwest::Client::new(),
            token: None,
            session: raw.session.clone(),
            next_id: 100,
        };
        async move { raw.call(&url, "shared__sleep", json!({"ms": 1500})).await }
    });
    wait_until(
        "the slow call is in flight",
        Duration::from_secs(10),
        || {
            let (_, body) = common::http_get(&url, "/readyz");
            serde_json::from_str::<Value>(&body).is_ok_and(|v| v["in_flight"] == 1)
        },
    );
    // SIGTERM: readiness goes 503 at once, new work is refused with 503 + Retry-After…
    let pid = gw.pid() as i32;
    Command::new("kill")
        .arg("-15")
        .arg(pid.to_string())
        .status()
        .unwrap();
    wait_until("readiness reports draining", Duration::from_secs(5), || {
        let (status, body) = common::http_get(&url, "/readyz");
        status == 503 && body.contains("\"draining\":true")
    });
    let late = Raw::new(None);
    let resp = late
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "late", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{body}"
    );
    // …and the call in flight still completes before the process exits.
    let (status, answer) = slow.await.unwrap();
    assert_eq!(
        (status, echoed(&answer).as_str()),
        (200, "slept 1500 ms"),
        "{answer:?}"
    );
    let exit = gw.terminate();
    assert!(exit.success(), "exits cleanly after the drain: {exit}");
}
