//! Several gateway instances on loopback, sharing sessions through Redis,
//! and HAProxy in front of them: for the scale-out tests.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::redis::REDIS_URL;
use super::{MANIFOLD, Proc, spawn_listening, stdio_backend};

/// A port nobody listens on right now (the instance binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One gateway instance on a fixed port, so it can be restarted in place.
pub struct Instance {
    pub id: String,
    pub port: u16,
    pub config: std::path::PathBuf,
    pub proc: Option<Proc>,
}

impl Instance {
    /// An instance with a shared stdio backend `shared` and a per-session
    /// one `mine`; `extra` is more config (sections before the backends).
    pub fn new(dir: &std::path::Path, id: &str, prefix: &str, extra: &str) -> Self {
        let backends = format!(
            "{}\n{}",
            stdio_backend("shared", ""),
            stdio_backend("mine", "isolation = \"per_session\"")
        );
        Self::with_backends(dir, id, prefix, extra, &backends)
    }

    /// An instance with sessions in Redis under `prefix`, `extra` config and `backends`.
    pub fn with_backends(
        dir: &std::path::Path,
        id: &str,
        prefix: &str,
        extra: &str,
        backends: &str,
    ) -> Self {
        let port = free_port();
        let config = dir.join(format!("{id}.toml"));
        let text = format!(
            "[server]\ninstance_id = \"{id}\"\ndrain_timeout = \"10s\"\n\n\
             [sessions]\nstore = \"redis\"\nredis_url = \"{REDIS_URL}\"\nkey_prefix = \"{prefix}\"\n\n\
             {extra}\n{backends}",
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(MANIFOLD);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("RUST_LOG", "info,rmcp=warn");
        let proc = spawn_listening(cmd);
        wait_until("the instance is ready", Duration::from_secs(60), || {
            super::http_get(&proc.url, "/readyz").0 == 200
        });
        self.proc = Some(proc);
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut p = self.proc.take().expect("running");
        p.terminate()
    }

    pub fn readyz(&self) -> Value {
        let (_, body) = super::http_get(&self.url(), "/readyz");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// `manifold_session_moves_total{event}` of this instance.
    pub fn moves(&self, event: &str) -> u64 {
        let (_, body) = super::http_get(&self.url(), "/metrics");
        let key = format!("manifold_session_moves_total{{event=\"{event}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn sessions(&self) -> u64 {
        self.readyz()["sessions"].as_u64().unwrap_or(u64::MAX)
    }
}

pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw streamable-HTTP client, to see session ids and status codes.
pub struct Raw {
    pub http: reqwest::Client,
    pub token: Option<String>,
    pub session: Option<String>,
    pub next_id: u64,
}

impl Raw {
    pub fn new(token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            token: token.map(str::to_string),
            session: None,
            next_id: 1,
        }
    }

    pub async fn post(&mut self, url: &str, body: Value) -> (u16, Option<Value>) {
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

    pub async fn initialize(&mut self, url: &str) {
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

    pub async fn call(&mut self, url: &str, tool: &str, arguments: Value) -> (u16, Option<Value>) {
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

pub fn echoed(answer: &Option<Value>) -> String {
    answer
        .as_ref()
        .and_then(|v| v["result"]["content"][0]["text"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// HAProxy in front of `instances`, routing on the session id's prefix.
pub fn haproxy(dir: &std::path::Path, instances: &[&Instance]) -> (Proc, u16) {
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

pub fn haproxy_present() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits until each of `counts` (one per client) has grown by `more`; fails
/// after `limit` when one stopped making progress.
pub async fn progress(
    counts: &[std::sync::Arc<std::sync::atomic::AtomicUsize>],
    more: usize,
    limit: Duration,
) {
    use std::sync::atomic::Ordering;
    let targets: Vec<usize> = counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed) + more)
        .collect();
    let deadline = Instant::now() + limit;
    while counts
        .iter()
        .zip(&targets)
        .any(|(c, t)| c.load(Ordering::Relaxed) < *t)
    {
        assert!(
            Instant::now() < deadline,
            "a client stopped making progress"
        );
        // Paces the polls; the deadline above bounds the wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
