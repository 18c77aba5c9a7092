//! Benchmarks of the messaging built-ins through a real release gateway over
//! HTTP, with real rmcp clients:
//!
//! 1. `send_message_and_wait` round trip: client A sends to B and waits; B
//!    is pushed the message (`notifications/message`) and replies at once
//!    with `send_message`; A's wait wakes. Sequential, so each sample is one
//!    full round trip (send, push, reply, wake).
//! 2. sustained `send_message` throughput: `--workers` closed-loop workers
//!    (one MCP session each) send to a recipient without a live session.
//!
//! ```text
//! cargo build --release --bins --example messaging_bench
//! target/release/examples/messaging_bench --store memory
//! target/release/examples/messaging_bench --store redis   # needs Redis at 127.0.0.1:6379
//! ```

#![allow(deprecated)] // logging notifications are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// `memory` or `redis`.
    #[arg(long, default_value = "memory")]
    store: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Measured round trips (after 50 warm-up ones).
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Concurrent senders for the throughput run.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Length of the throughput run, in seconds (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Print one JSON object with every figure (for scripts/bench.sh) instead of text.
    #[arg(long)]
    json: bool,
    /// Directory holding the `manifold` binary.
    #[arg(long, default_value = "target/release")]
    bin_dir: String,
}

/// B's side: replies "pong" to every pushed message, from a task of its own.
#[derive(Clone)]
struct Replier;

impl ClientHandler for Replier {
    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        ctx: NotificationContext<RoleClient>,
    ) {
        if p.logger.as_deref() != Some("manifold/messaging") {
            return;
        }
        let Some(from) = p.data["from"].as_str().map(String::from) else {
            return;
        };
        let peer = ctx.peer.clone();
        tokio::spawn(async move {
            let args = json!({"sender_id": "bob", "recipient_id": from, "message": "pong"});
            let _ = peer
                .call_tool(
                    CallToolRequestParams::new("send_message")
                        .with_arguments(args.as_object().cloned().unwrap_or_default()),
                )
                .await;
        });
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(args: &Args, prefix: &str) -> anyhow::Result<(Killed, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    let store = match args.store.as_str() {
        "memory" => String::new(),
        "redis" => format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n",
            args.redis_url
        ),
        other => bail!("unknown store {other}"),
    };
    std::fs::write(&path, format!("[messaging]\nrate_limit = 0\n{store}"))?;
    let mut child = Command::new(format!("{}/manifold", args.bin_dir))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start manifold (build it with `cargo build --release --bins`)")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening ")
        .context("no listening line")?
        .to_string();
    Ok((Killed(child), url, dir))
}

async fn call(
    client: &RunningService<RoleClient, impl ClientHandler>,
    tool: &str,
    args: Value,
) -> anyhow::Result<CallToolResult> {
    let r = client
        .call_tool(
            CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    if r.is_error == Some(true) {
        bail!("{tool} failed: {:?}", r.content);
    }
    Ok(r)
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("manifold-bench:{}", std::process::id());
    let (_gw, url, _dir) = start_gateway(&args, &prefix)?;
    // One keep-alive HTTP client for every session, as loadgen uses: the figure is the
    // gateway's cost per message, not a TCP handshake per call.
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let transport = |u: &str| {
        StreamableHttpClientTransport::with_client(
            http.clone(),
            StreamableHttpClientTransportConfig::with_uri(u.to_string()),
        )
    };
    let alice = ().serve(transport(&url)).await?;
    let bob = Replier.serve(transport(&url)).await?;
    call(&bob, "checkin_client", json!({"client_id": "bob"})).await?;

    // 1. Round trips.
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    let wait =
        json!({"sender_id": "alice", "recipient_id": "bob", "message": "ping", "timeout": 10});
    for i in 0..(50 + args.round_trips) {
        let t = Instant::now();
        let r = call(&alice, "send_message_and_wait", wait.clone()).await?;
        let status = r.structured_content.as_ref().map(|s| s["status"].clone());
        if status != Some(json!("replied")) {
            bail!("round trip {i} did not get a reply: {:?}", r.content);
        }
        if i >= 50 {
            h.record(t.elapsed().as_micros() as u64)?;
        }
    }
    if !args.json {
        println!(
            "store={} round_trip n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms",
            args.store,
            h.len(),
            ms(&h, 0.5),
            ms(&h, 0.9),
            ms(&h, 0.99)
        );
    }
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());

    // 2. Throughput.
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let end = warm + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let client = ().serve(transport(&url)).await?;
        let (sent, errors) = (sent.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let a = json!({"sender_id": format!("w{w}"), "recipient_id": "sink", "message": "hello from the benchmark"});
            while start.elapsed() < end {
                let ok = call(&client, "send_message", a.clone()).await.is_ok();
                if start.elapsed() > warm && start.elapsed() < end {
                    if ok {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = client.cancel().await;
        }));
    }
    for w in workers {
        w.await?;
    }
    let n = sent.load(Ordering::Relaxed);
    if args.json {
        let row = json!({
            "label": "messaging",
            "store": args.store,
            "workers": args.workers,
            "seconds": args.seconds,
            "sent": n,
            "errors": errors.load(Ordering::Relaxed),
            "sends_per_s": n as f64 / args.seconds as f64,
            "round_trips": h.len(),
            "round_trip_p50_ms": ms(&h, 0.5),
            "round_trip_p99_ms": ms(&h, 0.99),
            "load1": load1,
        });
        println!("{row}");
    } else {
        println!(
            "store={} send_message workers={} seconds={} sent={} errors={} rate={:.0}/s",
            args.store,
            args.workers,
            args.seconds,
            n,
            errors.load(Ordering::Relaxed),
            n as f64 / args.seconds as f64
        );
    }

    // Leave nothing behind in a shared Redis.
    if args.store == "redis"
        && let Ok(client) = redis::Client::open(args.redis_url.as_str())
        && let Ok(mut con) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut con)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut con).await;
        }
    }
    let _ = alice.cancel().await;
    let _ = bob.cancel().await;
    Ok(())
}
