//! Benchmarks of the coordinator (issue: every backend message reaches exactly
//! the right sessions). It starts a release gateway mounting our fixture
//! backend, then measures:
//!
//! 1. memory per idle session: the gateway's RSS before and after opening N
//!    idle sessions (each with its GET stream open);
//! 2. fan-out of one list change to those N sessions: from the moment the
//!    backend announces the change to the moment the last session receives
//!    `notifications/tools/list_changed` (this includes the 25 ms coalescing
//!    window), and the spread between the first and last delivery;
//! 3. progress relay cost: the time of a call that sends K progress
//!    notifications minus that of a call that sends none, per notification,
//!    through the gateway and directly against the fixture over HTTP.
//!
//! ```text
//! cargo build --release --bins --example coordinator_bench
//! target/release/examples/coordinator_bench --sessions 1000 --progress 2000
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};

#[derive(Parser)]
struct Args {
    /// Idle sessions to open.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Progress notifications per measured call.
    #[arg(long, default_value_t = 2000)]
    progress: u64,
    /// Measure only the memory per idle session (skip the list change and progress).
    #[arg(long)]
    memory_only: bool,
    /// Print one JSON object per figure (for scripts/bench.sh) instead of text.
    #[arg(long)]
    json: bool,
    /// Directory holding the `manifold` and `manifold-fixture` binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: String,
}

/// Records when this session was told the tool list changed.
#[derive(Clone, Default)]
struct Listener {
    told_at: Arc<Mutex<Option<Instant>>>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.told_at
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_listening(mut cmd: Command) -> anyhow::Result<(Killed, String)> {
    use std::io::BufRead;
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().context("spawn")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening ")
        .context("no ready line")?
        .to_string();
    Ok((Killed(child), url))
}

fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

async fn session<H: ClientHandler>(
    http: &reqwest::Client,
    url: &str,
    handler: H,
) -> anyhow::Result<RunningService<RoleClient, H>> {
    let cfg = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    Ok(handler
        .serve(StreamableHttpClientTransport::with_client(
            http.clone(),
            cfg,
        ))
        .await?)
}

async fn timed_call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    steps: u64,
) -> anyhow::Result<Duration> {
    let args = serde_json::json!({"steps": steps, "delay_ms": 0});
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let started = Instant::now();
    let r = client.call_tool(params).await?;
    if r.is_error == Some(true) {
        bail!("{tool} failed: {r:?}");
    }
    Ok(started.elapsed())
}

/// Median of `n` timed calls.
async fn median_call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    steps: u64,
    n: usize,
) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..n {
        times.push(timed_call(client, tool, steps).await?);
    }
    times.sort();
    Ok(times[n / 2])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fixture_bin = format!("{}/manifold-fixture", args.bin_dir);
    let (_fx_http, fx_url) = spawn_listening({
        let mut c = Command::new(&fixture_bin);
        c.args(["--transport", "http"]);
        c
    })?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            // Room for every session's GET stream, and for the probe's session.
            "[server]\nconnect_timeout = \"30s\"\nmax_connections = {conns}\n\n[limits]\nmax_sessions = {sessions}\n\n[backends.fx]\ntransport = \"stdio\"\ncommand = {fixture_bin:?}\n\n[backends.web]\ntransport = \"http\"\nurl = \"{fx_url}\"\n",
            conns = args.sessions + 1024,
            sessions = args.sessions + 16,
        ),
    )?;
    let (gw, url) = spawn_listening({
        let mut c = Command::new(format!("{}/manifold", args.bin_dir));
        c.arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn");
        c
    })?;
    let pid = gw.0.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let probe = session(&http, &url, ()).await?;
    // Wait for both backends.
    for _ in 0..200 {
        let tools = probe.list_all_tools().await?;
        if tools.iter().any(|t| t.name == "fx__echo") && tools.iter().any(|t| t.name == "web__echo")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Memory per idle session.
    let before = rss_kib(pid);
    let mut sessions = Vec::with_capacity(args.sessions);
    let mut listeners = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let l = Listener::default();
        sessions.push(session(&http, &url, l.clone()).await?);
        listeners.push(l);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per_session = (after.saturating_sub(before)) as f64 * 1024.0 / args.sessions as f64;
    if args.json {
        let row = serde_json::json!({
            "label": "idle-sessions", "sessions": args.sessions, "rss_before_kb": before,
            "rss_after_kb": after, "kb_per_session": per_session / 1000.0, "load1": load1(),
        });
        println!("{row}");
    } else {
        println!(
            "idle sessions: {}  gateway RSS {} KiB -> {} KiB  => {:.1} KB per idle session",
            args.sessions,
            before,
            after,
            per_session / 1000.0
        );
    }
    if args.memory_only {
        return Ok(());
    }

    // 2. Fan-out of one list change.
    let started = Instant::now();
    timed_call(&probe, "fx__add_tool", 0).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let told = listeners
            .iter()
            .filter(|l| l.told_at.lock().unwrap().is_some())
            .count();
        if told == args.sessions {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {told} of {} sessions were told", args.sessions);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let times: Vec<Instant> = listeners
        .iter()
        .filter_map(|l| *l.told_at.lock().unwrap())
        .collect();
    let first = times.iter().min().copied().unwrap_or(started);
    let last = times.iter().max().copied().unwrap_or(started);
    let (last_ms, spread_ms) = (
        (last - started).as_secs_f64() * 1e3,
        (last - first).as_secs_f64() * 1e3,
    );
    if args.json {
        let row = serde_json::json!({
            "label": "list-change", "sessions": args.sessions, "last_ms": last_ms,
            "spread_ms": spread_ms, "load1": load1(),
        });
        println!("{row}");
    } else {
        println!(
            "list change to {} sessions: last delivery {last_ms:.1} ms after the change (incl. 25 ms coalescing window); first→last spread {spread_ms:.1} ms",
            args.sessions,
        );
    }
    drop(sessions);
    if args.progress == 0 {
        return Ok(());
    }

    // 3. Progress relay cost per notification.
    let direct = session(&http, &fx_url, ()).await?;
    let k = args.progress;
    for (label, client, tool) in [
        (
            "through manifold (fixture over http)",
            &probe,
            "web__progress",
        ),
        (
            "through manifold (fixture over stdio)",
            &probe,
            "fx__progress",
        ),
        ("direct to the fixture", &direct, "progress"),
    ] {
        median_call(client, tool, k, 1).await?; // warm up
        let base = median_call(client, tool, 0, 5).await?;
        let with = median_call(client, tool, k, 5).await?;
        let per = with.saturating_sub(base).as_secs_f64() * 1e6 / k as f64;
        println!(
            "progress {label}: {k} notifications in {:.1} ms (vs {:.2} ms without) => {per:.1} µs per notification",
            with.as_secs_f64() * 1e3,
            base.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
