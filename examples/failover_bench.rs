//! Failover figures for several gateway instances behind a load balancer
//! (docs/performance.md, "Scale-out"), driven by `scripts/bench-scale.sh`.
//!
//! 1. Redis operations per `initialize` and per `tools/call` (from Redis's own
//!    `INFO commandstats`, so every client of that Redis counts: run it on a
//!    Redis nobody else uses).
//! 2. `--sessions` sessions through the load balancer calling in a loop; the
//!    restores counted by the instances' metrics over `--steady` (aim 0).
//! 3. SIGKILL of `--kill-pid` (the instance named `--victim`); for each session
//!    that instance minted: the time from the kill to its first successful
//!    call, and whether it was restored (same session id), re-initialized (404,
//!    then a new session) or failed (no success within 30 s).
//!
//! ```text
//! cargo run --release --example failover_bench -- --url http://127.0.0.1:9000/mcp \
//!     --tool shared__echo --victim g1 --kill-pid 1234 \
//!     --metrics http://127.0.0.1:9101,http://127.0.0.1:9102,http://127.0.0.1:9103
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// The load balancer's MCP endpoint.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "shared__echo")]
    tool: String,
    /// Sessions calling through the load balancer.
    #[arg(long, default_value_t = 30)]
    sessions: usize,
    /// How long the sessions call before the kill (restores counted meanwhile).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    steady: Duration,
    /// The instance id whose sessions are followed, and its pid.
    #[arg(long)]
    victim: String,
    #[arg(long)]
    kill_pid: i32,
    /// Every instance's base URL, for its metrics.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// initialize / tools/call rounds for the Redis operation counts.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
}

/// A bare streamable-HTTP session: one POST per request.
struct Session {
    http: reqwest::Client,
    url: String,
    id: Option<String>,
    next: u64,
    /// Answers from the instance whose id starts the session id, and from others.
    at_owner: u64,
    elsewhere: u64,
}

impl Session {
    fn new(http: &reqwest::Client, url: &str) -> Self {
        Self {
            http: http.clone(),
            url: url.to_string(),
            id: None,
            next: 1,
            at_owner: 0,
            elsewhere: 0,
        }
    }

    async fn post(&mut self, body: Value) -> anyhow::Result<(u16, Option<Value>)> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .timeout(Duration::from_secs(30))
            .json(&body);
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        if let Some(id) = resp.headers().get("mcp-session-id") {
            self.id = Some(id.to_str()?.to_string());
        }
        let answered_by = resp
            .headers()
            .get("x-manifold-instance")
            .and_then(|v| v.to_str().ok());
        if let (Some(by), Some(id)) = (answered_by, &self.id) {
            if id.starts_with(&format!("{by}.")) {
                self.at_owner += 1;
            } else {
                self.elsewhere += 1;
            }
        }
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).ok().or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v.get("id").is_some())
        });
        Ok((status, value))
    }

    async fn initialize(&mut self) -> anyhow::Result<()> {
        self.id = None;
        let (status, _) = self
            .post(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "failover-bench", "version": "1"}}}),
            )
            .await?;
        if status != 200 {
            bail!("initialize answered {status}");
        }
        self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(())
    }

    /// 200 with a result, or the status (404: the session is unknown).
    async fn call(&mut self, tool: &str) -> anyhow::Result<u16> {
        self.next += 1;
        let (status, value) = self
            .post(
                json!({"jsonrpc": "2.0", "id": self.next, "method": "tools/call",
                         "params": {"name": tool, "arguments": {"message": "hi"}}}),
            )
            .await?;
        match value {
            Some(v) if status == 200 && v.get("result").is_some() => Ok(200),
            _ if status == 200 => Ok(500),
            _ => Ok(status),
        }
    }
}

/// Commands Redis has run, from `INFO commandstats` on one connection kept
/// for all readings (a new connection would add its own handshake commands).
async fn redis_calls(con: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await?;
    // Lines like `cmdstat_hset:calls=12,usec=…`; the INFO call itself is excluded.
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

async fn restores(http: &reqwest::Client, bases: &[String]) -> u64 {
    let mut total = 0;
    for base in bases {
        let Ok(resp) = http.get(format!("{base}/metrics")).send().await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("manifold_session_moves_total{event=\"restored\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[derive(Default, Debug)]
struct Outcome {
    restored: Vec<Duration>,
    reinitialized: Vec<Duration>,
    failed: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();

    // 1. Redis operations per initialize and per call.
    let mut probe = Session::new(&http, &args.url);
    let mut redis = redis::Client::open(args.redis.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("connect to Redis")?;
    let before = redis_calls(&mut redis).await.context("redis INFO")?;
    for _ in 0..args.rounds {
        probe.initialize().await?;
    }
    let after_init = redis_calls(&mut redis).await?;
    for _ in 0..args.rounds {
        if probe.call(&args.tool).await? != 200 {
            bail!("a call failed while counting Redis operations");
        }
    }
    let after_calls = redis_calls(&mut redis).await?;
    let per_init = after_init.saturating_sub(before) as f64 / args.rounds as f64;
    let per_call = after_calls.saturating_sub(after_init) as f64 / args.rounds as f64;

    // 2. Steady state: sessions calling through the load balancer.
    let mut sessions = Vec::new();
    for _ in 0..args.sessions {
        let mut s = Session::new(&http, &args.url);
        s.initialize().await?;
        // Count the steady state's calls only.
        (s.at_owner, s.elsewhere) = (0, 0);
        sessions.push(Arc::new(Mutex::new(s)));
    }
    let followed: Vec<usize> = {
        let mut v = Vec::new();
        for (i, s) in sessions.iter().enumerate() {
            let id = s.lock().await.id.clone().unwrap_or_default();
            if id.starts_with(&format!("{}.", args.victim)) {
                v.push(i);
            }
        }
        v
    };
    let restores_before = restores(&http, &args.metrics).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for s in &sessions {
        let (s, tool, stop) = (s.clone(), args.tool.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = s.lock().await.call(&tool).await;
            }
        }));
    }
    tokio::time::sleep(args.steady).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loops {
        let _ = l.await;
    }
    let steady_restores = restores(&http, &args.metrics).await - restores_before;
    let (mut at_owner, mut elsewhere) = (0, 0);
    for s in &sessions {
        let s = s.lock().await;
        at_owner += s.at_owner;
        elsewhere += s.elsewhere;
    }

    // 3. Kill the victim; time each of its sessions to its first successful call.
    let killed_at = Instant::now();
    // SAFETY: sending a signal to a pid has no memory-safety preconditions.
    if unsafe { libc::kill(args.kill_pid, libc::SIGKILL) } != 0 {
        bail!("cannot kill pid {}", args.kill_pid);
    }
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let mut waits = Vec::new();
    for &i in &followed {
        let (s, tool, outcome) = (sessions[i].clone(), args.tool.clone(), outcome.clone());
        waits.push(tokio::spawn(async move {
            let mut s = s.lock().await;
            let original = s.id.clone();
            let deadline = killed_at + Duration::from_secs(30);
            while Instant::now() < deadline {
                match s.call(&tool).await {
                    Ok(200) => {
                        let took = killed_at.elapsed();
                        let mut o = outcome.lock().await;
                        if s.id == original {
                            o.restored.push(took);
                        } else {
                            o.reinitialized.push(took);
                        }
                        return;
                    }
                    Ok(404) => {
                        let _ = s.initialize().await;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            outcome.lock().await.failed += 1;
        }));
    }
    for w in waits {
        let _ = w.await;
    }
    let o = outcome.lock().await;
    let mut all: Vec<Duration> = o.restored.iter().chain(&o.reinitialized).copied().collect();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        json!({
            "redis_ops_per_initialize": per_init,
            "redis_ops_per_call": per_call,
            "sessions": args.sessions,
            "steady_seconds": args.steady.as_secs_f64(),
            "steady_state_restores": steady_restores,
            "steady_state_requests": at_owner + elsewhere,
            "steady_state_share_at_owner": at_owner as f64 / (at_owner + elsewhere).max(1) as f64,
            "victim_sessions": followed.len(),
            "restored": o.restored.len(),
            "reinitialized": o.reinitialized.len(),
            "failed": o.failed,
            "first_success_ms_p50": pct(0.5),
            "first_success_ms_p99": pct(0.99),
            "first_success_ms_max": all.last().map(|d| d.as_secs_f64() * 1000.0),
        })
    );
    Ok(())
}
