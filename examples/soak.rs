//! The soak: a gateway under steady MCP traffic while its config is reloaded
//! and its backends are killed, for minutes, and what it cost.
//!
//! It starts `manifold serve` with five stdio fixture backends:
//!
//! - `stable1`, `stable2`: never touched; every failed call to them counts;
//! - `victim`: its process is SIGKILLed (pid from `GET /status`) every
//!   `--kill-every` (10 s); its failures are attributed to the kills;
//! - `toggled`: every other reload flips its tool filter (the docs say a
//!   filter change starts a new connection and drains the old one);
//! - `flapper`: every other reload removes it or adds it back; calls to it
//!   while removed fail by design and are attributed.
//!
//! `--clients` MCP sessions call `{backend}__echo` round-robin over all five,
//! back to back. The config file is rewritten every `--reload-every` (5 s);
//! the gateway's file watcher picks it up. At the end it reports calls and
//! failures per backend, the gateway's RSS and open fds at start and end,
//! and the fixture processes still alive after the gateway stopped.
//!
//! ```text
//! scripts/soak.sh 600        # builds in release mode and runs this
//! cargo run --release --example soak -- --seconds 60 \
//!     --manifold target/release/manifold --fixture target/release/manifold-fixture
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;

#[derive(Parser, Debug, Clone)]
#[command(about = "Soak a manifold gateway: calls, reloads and killed backends")]
struct Args {
    /// How long to run, in seconds
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// The manifold binary (a release build)
    #[arg(long, default_value = "target/release/manifold")]
    manifold: PathBuf,
    /// The manifold-fixture binary
    #[arg(long, default_value = "target/release/manifold-fixture")]
    fixture: PathBuf,
    /// Concurrent MCP client sessions
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Pause between two calls of one client, in milliseconds
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    reload_every: Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    kill_every: Duration,
}

const BACKENDS: [&str; 5] = ["stable1", "stable2", "toggled", "victim", "flapper"];
/// Failures to these are the soak's verdict; the others are attributed.
const HEALTHY: [&str; 2] = ["stable1", "stable2"];
/// A call slower than this is a failure (the gateway's own call timeout is 60 s).
const CALL_DEADLINE: Duration = Duration::from_secs(30);

#[path = "soak/procs.rs"]
mod procs;
use procs::{Gateway, Sample};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for bin in [&args.manifold, &args.fixture] {
        if !bin.is_file() {
            bail!(
                "{} not found (build with `cargo build --release`)",
                bin.display()
            );
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// The config of reload number `step`: odd steps flip `toggled`'s filter,
/// even steps add or remove `flapper`; the others never change.
fn config_text(args: &Args, marker: &str, step: u64) -> String {
    let fixture = args.fixture.display();
    let backend = |name: &str, extra: &str| {
        format!(
            "[backends.{name}]\ntransport = \"stdio\"\ncommand = \"{fixture}\"\nargs = [\"--name\", \"{marker}-{name}\"]\n{extra}\n"
        )
    };
    let filter = if step.div_ceil(2).is_multiple_of(2) {
        "add"
    } else {
        "fail"
    };
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nrestart_min_backoff = \"100ms\"\nrestart_max_backoff = \"1s\"\n\n",
    );
    text += &backend("stable1", "");
    text += &backend("stable2", "");
    text += &backend("victim", "");
    text += &backend(
        "toggled",
        &format!("tools = {{ exclude = [\"{filter}\"] }}"),
    );
    if (step / 2).is_multiple_of(2) {
        text += &backend("flapper", "");
    }
    text
}

fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    // Write and rename, as editors do, so the watcher never reads half a file.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Calls and failures of one backend.
#[derive(Default)]
struct Counts {
    ok: u64,
    failed: u64,
    /// The first few distinct failures, with the second they happened at.
    samples: Vec<(u64, String)>,
}

struct Stats {
    started: Instant,
    by_backend: Mutex<BTreeMap<&'static str, Counts>>,
    latency_us: Mutex<Histogram<u64>>,
    reconnects: std::sync::atomic::AtomicU64,
}

impl Stats {
    fn record(&self, backend: &'static str, outcome: Result<Duration, String>) {
        let mut map = self.by_backend.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.entry(backend).or_default();
        match outcome {
            Ok(took) => {
                c.ok += 1;
                let mut h = self.latency_us.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.record(took.as_micros().try_into().unwrap_or(u64::MAX));
            }
            Err(e) => {
                c.failed += 1;
                if c.samples.len() < 8 && !c.samples.iter().any(|(_, s)| *s == e) {
                    c.samples.push((self.started.elapsed().as_secs(), e));
                }
            }
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let marker = format!("soak-{}", std::process::id());
    let config = dir.path().join("gateway.toml");
    write_config(&config, &config_text(&args, &marker, 0))?;
    let log = dir.path().join("gateway.log");
    let gw = Gateway::start(&args.manifold, &config, &log)?;
    println!(
        "gateway pid {} at {}; log {}",
        gw.pid,
        gw.url,
        log.display()
    );
    gw.wait_ready(Duration::from_secs(60)).await?;

    let stats = Arc::new(Stats {
        started: Instant::now(),
        by_backend: Mutex::default(),
        latency_us: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        reconnects: Default::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..args.clients {
        clients.push(tokio::spawn(client(
            i,
            gw.url.clone(),
            args.pause_ms,
            stats.clone(),
            stop.clone(),
        )));
    }
    // Let every session connect before the baseline is taken.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Sample::of(gw.pid)?;
    println!("start: {start}");

    let chaos = chaos(&args, &gw, &config, &marker, &stats).await;
    let end = Sample::of(gw.pid)?;
    println!("end:   {end}");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let metrics = gw.get("/metrics").await.unwrap_or_default();
    let exit = gw.stop(Duration::from_secs(40)).await;
    let leftovers = procs::with_marker(&marker);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    report(
        &args,
        &stats,
        &chaos?,
        (&start, &end),
        &metrics,
        &exit,
        &leftovers,
        &log_text,
    );
    Ok(())
}

/// What the chaos loop did.
struct Chaos {
    reloads: u64,
    kills: u64,
    kill_misses: u64,
    samples: Vec<(u64, Sample)>,
}

/// Reloads and kills on schedule until `--seconds` have passed.
async fn chaos(
    args: &Args,
    gw: &Gateway,
    config: &Path,
    marker: &str,
    stats: &Stats,
) -> anyhow::Result<Chaos> {
    let mut c = Chaos {
        reloads: 0,
        kills: 0,
        kill_misses: 0,
        samples: Vec::new(),
    };
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut next_reload = Instant::now() + args.reload_every;
    let mut next_kill = Instant::now() + args.kill_every;
    let mut next_sample = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_reload {
            c.reloads += 1;
            write_config(config, &config_text(args, marker, c.reloads))
                .context("rewrite config")?;
            next_reload += args.reload_every;
        }
        if now >= next_kill {
            match gw.backend_pid("victim").await {
                Some(pid) => {
                    // SAFETY: kill(2) with a pid read from /status; no memory involved.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    c.kills += 1;
                }
                None => c.kill_misses += 1,
            }
            next_kill += args.kill_every;
        }
        if now >= next_sample {
            let s = Sample::of(gw.pid)?;
            let t = stats.started.elapsed().as_secs();
            println!("t={t:>4}s {s}");
            c.samples.push((t, s));
            next_sample += Duration::from_secs(60);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(c)
}

/// One client session calling every backend's `echo` in turn until `stop`.
async fn client(id: usize, url: String, pause_ms: u64, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut n: usize = id;
    while !stop.load(Ordering::Relaxed) {
        let service = match ().serve(StreamableHttpClientTransport::from_uri(url.clone())).await {
            Ok(s) => s,
            Err(e) => {
                stats.record("(connect)", Err(e.to_string()));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let backend = BACKENDS[n % BACKENDS.len()];
            n += 1;
            let args = serde_json::json!({"message": format!("client {id} call {n}")});
            let params = CallToolRequestParams::new(format!("{backend}__echo"))
                .with_arguments(args.as_object().cloned().unwrap_or_default());
            let t = Instant::now();
            let answer =
                tokio::time::timeout(CALL_DEADLINE, service.peer().call_tool_once(params)).await;
            // Only a transport failure ends the session; a tool error (the
            // backend was killed mid-call) is an answer like any other.
            let session_lost = matches!(
                &answer,
                Ok(Err(
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                ))
            );
            let outcome = match answer {
                Err(_) => Err(format!("no answer within {CALL_DEADLINE:?}")),
                Ok(Ok(CallToolResponse::Complete(r))) if r.is_error != Some(true) => {
                    Ok(t.elapsed())
                }
                Ok(Ok(CallToolResponse::Complete(r))) => Err(format!(
                    "isError: {}",
                    serde_json::to_string(&r.content).unwrap_or_default()
                )),
                Ok(Ok(_)) => Err("not a finished tool result".into()),
                Ok(Err(e)) => Err(e.to_string()),
            };
            stats.record(backend, outcome);
            if session_lost {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                break;
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        let _ = service.cancel().await;
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    stats: &Stats,
    chaos: &Chaos,
    (start, end): (&Sample, &Sample),
    metrics: &str,
    exit: &str,
    leftovers: &[String],
    log: &str,
) {
    let map = stats.by_backend.lock().unwrap_or_else(|p| p.into_inner());
    let total: u64 = map.values().map(|c| c.ok + c.failed).sum();
    let healthy_failed: u64 = HEALTHY
        .iter()
        .filter_map(|b| map.get(b))
        .map(|c| c.failed)
        .sum();
    let h = stats.latency_us.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "\n## Soak report ({} s, {} clients)",
        args.seconds, args.clients
    );
    println!(
        "calls: {total} ({:.0}/s); latency of successful calls p50 {} us, p99 {} us, max {} us",
        total as f64 / args.seconds.max(1) as f64,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    println!(
        "reloads written: {}; victim kills: {} ({} times no pid yet); client reconnects: {}",
        chaos.reloads,
        chaos.kills,
        chaos.kill_misses,
        stats.reconnects.load(Ordering::Relaxed)
    );
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("manifold_config_reloads") || l.contains("restarts_total{"))
    {
        println!("metric: {line}");
    }
    println!("{:<10} {:>9} {:>7}  note", "backend", "ok", "failed");
    for (name, c) in map.iter() {
        let note = match *name {
            "stable1" | "stable2" => "healthy: must be 0",
            "toggled" => "filter flipped on every other reload",
            "victim" => "SIGKILLed on schedule (attributed)",
            "flapper" => "removed on every other reload (attributed)",
            _ => "",
        };
        println!("{name:<10} {:>9} {:>7}  {note}", c.ok, c.failed);
        for (t, s) in &c.samples {
            println!("    t={t}s {}", s.chars().take(200).collect::<String>());
        }
    }
    println!("FAILED CALLS TO HEALTHY BACKENDS: {healthy_failed}");
    println!("gateway at start: {start}");
    for (t, s) in &chaos.samples {
        println!("gateway at {t:>4}s: {s}");
    }
    println!("gateway at end:   {end}");
    println!("gateway exit: {exit}");
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    let errors = log.lines().filter(|l| l.contains(" ERROR ")).count();
    println!(
        "gateway log: {} lines, {errors} ERROR, {panics} panics",
        log.lines().count()
    );
    println!("gateway log lines by level and target:");
    for (target, n) in log_targets(log).iter().rev().take(6) {
        println!("    {n:>7} {target}");
    }
    println!("LEFTOVER PROCESSES: {}", leftovers.len());
    for l in leftovers {
        println!("    {l}");
    }
}

/// `(LEVEL target:, count)` for each kind of log line, fewest first.
fn log_targets(log: &str) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        // Strip ANSI colours, then take the words after the timestamp.
        let mut plain = String::new();
        let mut in_escape = false;
        for ch in line.chars() {
            match (in_escape, ch) {
                (false, '\u{1b}') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, c) => plain.push(c),
                _ => {}
            }
        }
        let key: Vec<&str> = plain.split_whitespace().skip(1).take(2).collect();
        *counts.entry(key.join(" ")).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by_key(|(_, n)| *n);
    v
}
