//! Benchmark of the job queue through a real release gateway over HTTP:
//! `--submitters` concurrent clients add `--jobs` jobs with `start: true`
//! through `POST /api/v1/execute`, each running `echo` on the stdio fixture;
//! the run ends when the gateway reports every job completed (and stored).
//!
//! Reports end-to-end jobs per second (first submit → last job stored
//! completed) and the queue's own overhead per job: `started_at −
//! queued_at` (submit stored → claimed as running), read from the store.
//!
//! ```text
//! cargo build --release --bins --example jobs_bench
//! target/release/examples/jobs_bench --store sqlite
//! target/release/examples/jobs_bench --store postgres   # PostgreSQL at 127.0.0.1:5432
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

#[derive(Parser)]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// A database the benchmark may create others from (postgres).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    admin_url: String,
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    #[arg(long, default_value_t = 16)]
    submitters: usize,
    /// `[jobs] max_concurrent` of the gateway.
    #[arg(long, default_value_t = 16)]
    max_concurrent: usize,
    /// Jobs run one at a time after the concurrent run, for the idle overhead.
    #[arg(long, default_value_t = 300)]
    sequential: usize,
    /// Directory holding the `manifold` and `manifold-fixture` binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: String,
}

struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(bin_dir: &str, config: &std::path::Path) -> anyhow::Result<Gateway> {
    let mut child = Command::new(format!("{bin_dir}/manifold"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start manifold (build with `cargo build --release --bins`)")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(u) = l.strip_prefix("listening ") {
                    break u.to_string();
                }
            }
            _ => bail!("the gateway exited before listening"),
        }
    };
    // Keep draining stdout so the gateway never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Ok(Gateway {
        child,
        base: url.trim_end_matches("/mcp").to_string(),
    })
}

async fn queue(http: &reqwest::Client, base: &str, params: Value) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{base}/api/v1/execute"))
        .json(&json!({"command": "queue", "params": params}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("{status}: {v}");
    }
    Ok(v)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (store_toml, pg_db) = match args.store.as_str() {
        "sqlite" => ("path = \"bench-jobs.db\"".to_string(), None),
        "postgres" => {
            let name = format!("manifold_jobs_bench_{}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(&args.admin_url).await?;
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await?;
            let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
            (
                format!("store = \"postgres\"\nurl = \"{url}\""),
                Some((name, url)),
            )
        }
        other => bail!("unknown store {other}"),
    };
    let config = format!(
        "[backends.fast]\ntransport = \"stdio\"\ncommand = \"{}/manifold-fixture\"\n\n\
         [messaging]\nenabled = false\n\n[jobs]\n{store_toml}\nmax_concurrent = {}\nmax_unfinished_per_client = 1000000\n",
        args.bin_dir, args.max_concurrent
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config)?;
    let gw = start_gateway(&args.bin_dir, &path)?;
    let http = reqwest::Client::new();
    // Ready: the fixture is mounted and the store answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("{}/readyz", gw.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready
            && queue(&http, &gw.base, json!({"action": "health"}))
                .await
                .is_ok_and(|h| h["store"]["ok"] == true)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the gateway never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.submitters {
        let (http, base, next) = (http.clone(), gw.base.clone(), next.clone());
        let total = args.jobs;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                queue(&http, &base, json!({"action": "add_job", "job_id": format!("b{i}"),
                    "params": {"tool": "fast__echo", "arguments": {"message": "x"}, "start": true}})).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let submitted = started.elapsed();
    loop {
        let h = queue(&http, &gw.base, json!({"action": "health"})).await?;
        let done = h["jobs"]["completed"].as_u64().unwrap_or(0)
            + h["jobs"]["failed"].as_u64().unwrap_or(0);
        if done as usize >= args.jobs {
            if h["jobs"]["failed"].as_u64().unwrap_or(0) > 0 {
                eprintln!("warning: {} jobs failed", h["jobs"]["failed"]);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();

    // The same, one job at a time: the overhead of an idle queue.
    for i in 0..args.sequential {
        let id = format!("s{i}");
        queue(
            &http,
            &gw.base,
            json!({"action": "add_job", "job_id": id,
            "params": {"tool": "fast__echo", "arguments": {"message": "x"}, "start": true}}),
        )
        .await?;
        loop {
            let v = queue(
                &http,
                &gw.base,
                json!({"action": "get_status", "job_id": id}),
            )
            .await?;
            if v["job"]["state"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    drop(gw);

    // The queue's own overhead: submit stored → claimed, from the store.
    let sql = "SELECT id, started_at - queued_at AS waited FROM manifold_jobs WHERE started_at IS NOT NULL";
    let rows: Vec<(String, i64)> = match &pg_db {
        None => {
            let db = dir.path().join("bench-jobs.db");
            let mut c =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
            sqlx::query(sql)
                .fetch_all(&mut c)
                .await?
                .iter()
                .map(|r| (r.get("id"), r.get("waited")))
                .collect()
        }
        Some((_, url)) => {
            let mut c = sqlx::PgConnection::connect(url).await?;
            sqlx::query(sql)
                .fetch_all(&mut c)
                .await?
                .iter()
                .map(|r| (r.get("id"), r.get("waited")))
                .collect()
        }
    };
    let pcts = |prefix: &str| {
        let mut w: Vec<i64> = rows
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|r| r.1)
            .collect();
        w.sort_unstable();
        let at = |p: f64| {
            w.get(((w.len().max(1) as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms ({} jobs)",
            at(0.5),
            at(0.9),
            at(0.99),
            w.len()
        )
    };
    println!(
        "store={} jobs={} submitters={} max_concurrent={}: submitted in {:.2}s, all completed in {:.2}s → {:.0} jobs/s end to end",
        args.store,
        args.jobs,
        args.submitters,
        args.max_concurrent,
        submitted.as_secs_f64(),
        elapsed.as_secs_f64(),
        args.jobs as f64 / elapsed.as_secs_f64()
    );
    println!("queued → running under load: {}", pcts("b"));
    println!("queued → running, one job at a time: {}", pcts("s"));
    if let Some((name, _)) = pg_db {
        let mut admin = sqlx::PgConnection::connect(&args.admin_url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}
