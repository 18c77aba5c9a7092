//! Audit log benchmark (not a test): what the audit log adds to a call, how
//! many entries per second the destinations take, and memory while the
//! production destination is down.
//!
//! ```text
//! # a Kafka-protocol broker for the Kafka figures (optional):
//! .test-deps/tansu/bin/tansu broker --listener-url tcp://127.0.0.1:19092 \
//!     --advertised-listener-url tcp://127.0.0.1:19092 --storage-engine memory://tansu/ &
//! cargo run --release --example audit_bench -- --kafka 127.0.0.1:19092 --rss-secs 60
//! ```
//!
//! 1. Added latency: the work the request path does per call when the log is
//!    on (stamp an entry, redact the arguments, summarize the result, hand it
//!    to every lane) against the work when it is off (one `enabled()` check),
//!    p50 and p99 over 200,000 calls, with SQLite + Kafka lanes running.
//! 2. Throughput: N entries recorded as fast as possible, timed until the
//!    destination's `written` counter reaches N.
//! 3. RSS: entries recorded at full rate for `--rss-secs` with the production
//!    destination (Kafka at a closed port) down; RSS sampled every 5 s.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use manifold::audit::{Audit, LogEntry, TOOL_EXECUTION};
use manifold::config::{AuditConfig, LocalStore, Production};
use serde_json::json;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn config(dir: &std::path::Path, kafka: Option<&str>) -> AuditConfig {
    AuditConfig {
        local: LocalStore::Sqlite {
            path: dir.join("bench-audit.db"),
            retention_days: 30,
        },
        production: kafka.map(|k| Production::Kafka {
            bootstrap_servers: vec![k.to_string()],
            topic: "mcp-logs-bench".into(),
            partitions: 1,
        }),
        queue_size: 1_000_000,
        batch_size: 5_000,
        batch_interval: Duration::from_millis(50),
        retry_attempts: 1,
        ..AuditConfig::default()
    }
}

/// What the front does for one call (see src/front/audit.rs).
fn one_call(audit: &Audit, i: u64, args: &serde_json::Value) {
    if !audit.enabled() {
        return;
    }
    let mut e = LogEntry::now(TOOL_EXECUTION, "info", "tools/call fx__echo").at(
        "manifold::front::session",
        "call_tool",
        0,
    );
    e.correlation_id = format!("bench{i:016x}");
    e.tool_name = Some("fx__echo".into());
    e.duration_ms = Some(0.2);
    e.status = Some("success".into());
    e.input_args = Some(audit.redact(args));
    e.output_summary = Some("hello".into());
    let e = e
        .extra("client_id", "bench")
        .extra("session_id", 1)
        .extra("backend", "fx")
        .extra("transport", "http")
        .extra("request_bytes", 40)
        .extra("response_bytes", 60);
    audit.record(e);
}

fn percentiles(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    (ns[ns.len() / 2], ns[ns.len() * 99 / 100])
}

fn latency(audit: &Audit, label: &str) {
    let args = json!({"message": "hello", "api_key": "sk-1"});
    let mut samples = Vec::with_capacity(200_000);
    for i in 0..200_000u64 {
        let t = Instant::now();
        one_call(audit, i, &args);
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let (p50, p99) = percentiles(samples);
    println!("latency {label}: p50 {p50} ns, p99 {p99} ns per call");
}

async fn throughput(audit: &Audit, destination: &str, n: u64) {
    let stats = audit
        .stats()
        .into_iter()
        .find(|(d, _)| *d == destination)
        .map(|(_, s)| s);
    let Some(stats) = stats else { return };
    let base = stats.written.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed);
    let args = json!({"message": "hello"});
    let t = Instant::now();
    for i in 0..n {
        one_call(audit, i, &args);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.written.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed) < base + n
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "throughput {destination}: {n} entries in {secs:.2} s = {:.0} entries/s (dropped {})",
        n as f64 / secs,
        stats.dropped.load(Ordering::Relaxed)
    );
}

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1_048_576.0
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = arg("--kafka");
    let rss_secs: u64 = arg("--rss-secs").and_then(|s| s.parse().ok()).unwrap_or(60);
    let http = reqwest::Client::new();

    let off = Audit::disabled();
    latency(&off, "audit off");
    let on = Audit::start(&config(dir.path(), kafka.as_deref()), http.clone());
    latency(&on, "audit on (sqlite + kafka)");
    drop(on);

    let sqlite = Audit::start(&config(dir.path(), None), http.clone());
    throughput(&sqlite, "sqlite", 200_000).await;
    drop(sqlite);
    if let Some(k) = &kafka {
        let mut c = config(dir.path(), Some(k));
        c.local = LocalStore::None;
        let kafka_only = Audit::start(&c, http.clone());
        throughput(&kafka_only, "kafka", 200_000).await;
    }

    // Production down: Kafka at a port nothing listens on, next to SQLite.
    let mut c = config(dir.path(), Some("127.0.0.1:1"));
    c.queue_size = 10_000;
    c.retry_attempts = 3;
    c.retry_delay = Duration::from_millis(200);
    let down = Audit::start(&c, http);
    let args = json!({"message": "hello"});
    let start = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut i = 0u64;
    let mut first = None;
    while start.elapsed() < Duration::from_secs(rss_secs) {
        one_call(&down, i, &args);
        i += 1;
        if i.is_multiple_of(1024) {
            // Let the lanes run: this loop stands in for a gateway at full call rate.
            tokio::task::yield_now().await;
            if start.elapsed() >= next_sample {
                let rss = rss_mb();
                first.get_or_insert(rss);
                println!("rss at {:>3} s: {rss:.1} MB", start.elapsed().as_secs());
                next_sample += Duration::from_secs(5);
            }
        }
    }
    let status = down.status_json();
    println!(
        "production down for {rss_secs} s: {i} calls, rss {:.1} → {:.1} MB; kafka lane {}",
        first.unwrap_or(0.0),
        rss_mb(),
        status["destinations"]["kafka"]
    );
}
