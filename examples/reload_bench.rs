//! Benchmarks of live operations (hot reload and supervision), against a
//! release gateway mounting 10 stdio fixture backends:
//!
//! 1. reload latency: from writing the config file (adding a backend) to the
//!    new backend's tools being listed to a connected client, over `--reloads`
//!    reloads, while a client keeps calling an unchanged backend;
//! 2. failed calls to the unchanged backend during all those reloads;
//! 3. recovery: from killing a backend's process to its tool answering again.
//!
//! ```text
//! cargo build --release --bins --example reload_bench
//! target/release/examples/reload_bench --reloads 100
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    reloads: usize,
    #[arg(long, default_value = "target/release")]
    bin_dir: String,
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(fixture: &str, extra: Option<usize>) -> String {
    let mut text = String::from("[server]\nrestart_min_backoff = \"100ms\"\n\n");
    for i in 0..10 {
        text.push_str(&format!(
            "[backends.fx{i}]\ntransport = \"stdio\"\ncommand = {fixture:?}\n\n"
        ));
    }
    if let Some(n) = extra {
        text.push_str(&format!(
            "[backends.extra{n}]\ntransport = \"stdio\"\ncommand = {fixture:?}\n"
        ));
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fixture = format!("{}/manifold-fixture", args.bin_dir);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(&fixture, None))?;
    let mut child = Command::new(format!("{}/manifold", args.bin_dir))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
        &mut line,
    )?;
    let _gw = Killed(child);
    let url = line
        .trim()
        .strip_prefix("listening ")
        .context("ready line")?
        .to_string();
    let client = Arc::new(
        ().serve(StreamableHttpClientTransport::from_uri(url.clone()))
            .await?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .list_all_tools()
        .await?
        .iter()
        .filter(|t| t.name.ends_with("__echo"))
        .count()
        < 10
    {
        anyhow::ensure!(Instant::now() < deadline, "backends did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (calls, failures, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = {
        let (client, calls, failures, stop) = (
            client.clone(),
            calls.clone(),
            failures.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let args = serde_json::json!({"message": "x"})
                .as_object()
                .cloned()
                .unwrap_or_default();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .call_tool(CallToolRequestParams::new("fx0__echo").with_arguments(args.clone()))
                    .await;
                calls.fetch_add(1, Ordering::Relaxed);
                if !matches!(&r, Ok(r) if r.is_error != Some(true)) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut latencies = Vec::with_capacity(args.reloads);
    for n in 0..args.reloads {
        let want = format!("extra{n}__echo");
        let started = Instant::now();
        std::fs::write(&path, config(&fixture, Some(n)))?;
        loop {
            if client
                .list_all_tools()
                .await?
                .iter()
                .any(|t| t.name == want)
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "reload {n} never showed {want}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    load.await?;
    latencies.sort();
    println!(
        "reload (10 backends, adding one): file write -> new tools listed: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} reloads",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.9).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len()
    );
    println!(
        "calls to an unchanged backend during the reloads: {} calls, {} failed",
        calls.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );

    // Recovery after a crash.
    let status: serde_json::Value = reqwest::get(url.replace("/mcp", "/status"))
        .await?
        .json()
        .await?;
    let pid = status["backends"]["fx1"]["pid"]
        .as_u64()
        .context("fx1 pid")?;
    let args1 = serde_json::json!({"message": "x"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let started = Instant::now();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    loop {
        let r = client
            .call_tool(CallToolRequestParams::new("fx1__echo").with_arguments(args1.clone()))
            .await;
        if matches!(&r, Ok(r) if r.is_error != Some(true)) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "fx1 never came back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "backend killed -> its tool answers again: {:.0} ms (restart_min_backoff = 100ms)",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
