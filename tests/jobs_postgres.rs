//! The job queue on the real PostgreSQL at 127.0.0.1:5432: two gateway
//! instances share one queue; every job runs exactly once (counted outside
//! the gateway, as lines a fixture tool appends to a file); an instance
//! killed with SIGKILL mid-run has its jobs reclaimed by the other.
//!
//! Each test makes its own database and drops it at the end. Without
//! PostgreSQL a test prints why it is skipped, unless
//! `MANIFOLD_REQUIRE_POSTGRES=1` (CI), where it fails.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::jobs::*;
use common::postgres::{Db, database};
use common::{gateway_at, write_config};
use serde_json::{Value, json};

fn pg_config(db: &Db, extra: &str) -> String {
    format!(
        "{}[messaging]\nenabled = false\n\n[jobs]\nstore = \"postgres\"\nurl = \"{}\"\n{extra}\n",
        fixture_backend(""),
        db.url()
    )
}

async fn instance(url: &str) -> String {
    let (_, h) = http_queue(url, None, json!({"action": "health"})).await;
    h["instance"].as_str().expect("instance id").to_string()
}

/// Polls `health` until `n` jobs are completed (or the deadline passes).
async fn wait_completed(url: &str, n: i64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, h) = http_queue(url, None, json!({"action": "health"})).await;
        if h["jobs"]["completed"].as_i64() == Some(n) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "not all {n} jobs completed: {h:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_queue_and_run_each_of_500_jobs_exactly_once() {
    let Some(db) = database("two_instances_share_one_queue").await else {
        return;
    };
    let cfg = write_config(&pg_config(
        &db,
        "max_concurrent = 8\npoll_interval = \"100ms\"",
    ));
    let a = gateway_at(&cfg.path);
    let b = gateway_at(&cfg.path);
    let out = cfg.dir.path().join("runs.txt");
    const JOBS: usize = 500;
    // Sixteen submitters, alternating between the two instances.
    let mut tasks = Vec::new();
    for s in 0..16 {
        let urls = [a.url.clone(), b.url.clone()];
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            for i in (s..JOBS).step_by(16) {
                let url = &urls[i % 2];
                let (status, v) = http_queue(
                    url,
                    None,
                    json!({"action": "add_job", "job_id": format!("job-{i}"), "params": {
                        "tool": "fx__append", "arguments": {"path": out, "line": format!("job-{i}")}, "start": true}}),
                )
                .await;
                assert_eq!(status, 200, "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_completed(&a.url, JOBS as i64, Duration::from_secs(120)).await;
    let text = std::fs::read_to_string(&out).unwrap();
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *runs.entry(line).or_default() += 1;
    }
    assert_eq!(runs.len(), JOBS, "every job ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
    // Both instances took part.
    let (_, listed) = http_queue(&b.url, None, json!({"action": "list_jobs", "limit": 1000})).await;
    let mut by_instance: HashMap<String, usize> = HashMap::new();
    for j in listed["jobs"].as_array().unwrap() {
        *by_instance
            .entry(j["instance"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let (ia, ib) = (instance(&a.url).await, instance(&b.url).await);
    assert!(
        by_instance.get(&ia).is_some_and(|n| *n > 0),
        "{by_instance:?}"
    );
    assert!(
        by_instance.get(&ib).is_some_and(|n| *n > 0),
        "{by_instance:?}"
    );
    drop((a, b));
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_an_instance_killed_mid_run_are_reclaimed_by_the_other() {
    let Some(db) = database("jobs_reclaimed").await else {
        return;
    };
    // B polls rarely: it runs the jobs only once it reclaims them.
    let cfg_a = write_config(&pg_config(
        &db,
        "lease = \"1s\"\non_interrupt = \"requeue\"",
    ));
    let cfg_b = write_config(&pg_config(
        &db,
        "lease = \"1s\"\non_interrupt = \"requeue\"\npoll_interval = \"1h\"",
    ));
    let mut a = gateway_at(&cfg_a.path);
    let b = gateway_at(&cfg_b.path);
    let ia = instance(&a.url).await;
    let ib = instance(&b.url).await;
    let out = cfg_a.dir.path().join("runs.txt");
    for i in 0..4 {
        http_queue(&a.url, None, json!({"action": "add_job", "job_id": format!("slow-{i}"), "params": {
            "tool": "fx__append", "arguments": {"path": out, "line": format!("slow-{i}"), "ms": 3000}, "start": true}})).await;
    }
    for i in 0..4 {
        let job = wait_state(&b.url, None, &format!("slow-{i}"), "running").await;
        assert_eq!(job["instance"], ia.as_str(), "{job:#}");
    }
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    for i in 0..4 {
        let job = wait_job(
            &b.url,
            None,
            &format!("slow-{i}"),
            Duration::from_secs(30),
            |j| j["state"] == "completed",
        )
        .await;
        assert_eq!(job["instance"], ib.as_str(), "{job:#}");
        assert_eq!(job["attempts"], 2, "{job:#}");
    }
    // With the default `on_interrupt = "fail"`, a dead instance's job ends
    // interrupted (B, which would requeue it, is gone first).
    drop(b);
    let cfg_c = write_config(&pg_config(&db, "lease = \"1s\""));
    let mut c = gateway_at(&cfg_c.path);
    http_queue(&c.url, None, json!({"action": "add_job", "job_id": "doomed", "params": {"tool": "fx__hang", "start": true}})).await;
    wait_state(&c.url, None, "doomed", "running").await;
    c.child.kill().expect("SIGKILL");
    c.child.wait().expect("reaped");
    let d = gateway_at(&cfg_c.path);
    let job = wait_state(&d.url, None, "doomed", "interrupted").await;
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished"),
        "{job:#}"
    );
    drop(d);
    db.drop_it().await;
}
