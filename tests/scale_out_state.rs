//! Three gateway instances behind HAProxy sharing Redis (sessions, messaging)
//! and PostgreSQL (jobs, audit), one HTTP backend and one per-session stdio
//! backend, clients doing tool calls, messaging and jobs; then one instance is
//! SIGKILLed and restarted (or all three restarted one by one). What must
//! hold: every client goes on (at most its call in flight at the kill fails),
//! no job is lost or stuck, every message arrives exactly once at its
//! recipient, one audit entry per successful call, nothing of one client
//! reaches another, and no backend process outlives its instance.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Instance, haproxy, haproxy_present};
use common::postgres::{Db, database};
use common::redis::{REDIS_URL, redis_cleanup, redis_or_skip, unique_prefix};
use common::{Proc, args, first_text, fixture, require_or_skip, url_backend};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const CLIENTS: usize = 6;

/// The two scenarios run one after the other: each is three gateways, HAProxy
/// and six busy clients, which is what a 2-core machine can carry at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the clients saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// Tool calls answered correctly, by tool.
    ok_calls: HashMap<String, usize>,
    errors: Vec<String>,
    /// (recipient, text) of every message whose send succeeded.
    sent: Vec<(usize, String)>,
    /// (recipient, sender, text) of every message a `get_messages` returned.
    received: Vec<(usize, String, String)>,
    jobs: Vec<String>,
}

struct Setup {
    _dir: tempfile::TempDir,
    db: Db,
    prefix: String,
    mark: String,
    instances: Vec<Instance>,
    _web: Proc,
    _lb: Proc,
    url: String,
}

async fn setup(test: &str) -> Option<Setup> {
    if !redis_or_skip(test) || !require_or_skip("haproxy", haproxy_present()) {
        return None;
    }
    let db = database(test).await?;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix(test);
    // Every backend process started for this test carries this variable.
    let mark = format!("{prefix}-{}", std::process::id());
    let web = fixture("http", &[]);
    // No sender rate limit: while a client waits out a call lost with the
    // killed instance, the others run many more rounds than usual, and the
    // test is about losing nothing, not about the limit.
    let shared = format!(
        "[messaging]\nstore = \"redis\"\nredis_url = \"{REDIS_URL}\"\nkey_prefix = \"{prefix}-msg\"\nrate_limit = 0\n\n\
         [jobs]\nstore = \"postgres\"\nurl = \"{0}\"\nlease = \"2s\"\npoll_interval = \"100ms\"\n\n\
         [audit]\nlocal = \"postgres\"\ndurable = true\n[audit.postgres]\nurl = \"{0}\"\n",
        db.url()
    );
    let backends = format!(
        "{}\n[backends.mine]\ntransport = \"stdio\"\ncommand = {:?}\nisolation = \"per_session\"\nenv = {{ MANIFOLD_TEST_MARK = \"{mark}\" }}\n",
        url_backend("web", "http", &web.url, ""),
        common::FIXTURE,
    );
    let instances: Vec<Instance> = ["g1", "g2", "g3"]
        .iter()
        .map(|id| Instance::with_backends(dir.path(), id, &prefix, &shared, &backends))
        .collect();
    let (lb, port) = haproxy(dir.path(), &instances.iter().collect::<Vec<_>>());
    Some(Setup {
        _dir: dir,
        db,
        prefix,
        mark,
        instances,
        _web: web,
        _lb: lb,
        url: format!("http://127.0.0.1:{port}/mcp"),
    })
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn connect(url: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("client connects through the load balancer")
}

/// Calls `tool`; the structured content, or why it failed.
async fn call(client: &Client, tool: &str, arguments: Value) -> Result<Value, String> {
    let call = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)));
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(r)) if r.is_error != Some(true) => Ok(r
            .structured_content
            .clone()
            .unwrap_or_else(|| Value::String(first_text(&r)))),
        Ok(Ok(r)) => Err(format!("{tool}: tool error {}", first_text(&r))),
        Ok(Err(e)) => Err(format!("{tool}: {e}")),
        Err(_) => Err(format!("{tool}: no answer in 30 s")),
    }
}

/// The messages `get_messages` returned, as (sender, text).
fn messages(v: &Value) -> Vec<(String, String)> {
    v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["from"].as_str().unwrap_or_default().to_string(),
                m["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// One client's round: both backends, and now and then a message or a job.
async fn round(client: &Client, n: usize, i: usize, seen: &Mutex<Seen>) {
    let me = format!("c{n}");
    let mut outcomes = Vec::new();
    for tool in ["web__echo", "mine__echo"] {
        let text = format!("{n}-{i}-{tool}");
        let r = call(client, tool, json!({"message": text})).await;
        outcomes.push(match r {
            Ok(v) if v == Value::String(text.clone()) => Ok(tool.to_string()),
            Ok(v) => Err(format!("{tool}: another answer than its own: {v}")),
            Err(e) => Err(e),
        });
    }
    let mut seen_now = Vec::new();
    if i.is_multiple_of(4) {
        let to = (n + 1) % CLIENTS;
        let text = format!("m{n}-{i}");
        let r = call(
            client,
            "send_message",
            json!({"sender_id": me, "recipient_id": format!("c{to}"), "message": text}),
        )
        .await;
        seen_now.push(r.map(|_| (to, text)));
    }
    let received = if i % 4 == 2 {
        call(client, "get_messages", json!({"client_id": me}))
            .await
            .map(|v| messages(&v))
    } else {
        Ok(Vec::new())
    };
    let job = if i % 10 == 5 {
        let id = format!("c{n}-j{i}");
        let params = json!({"tool": "web__sleep", "arguments": {"ms": 300}, "start": true});
        Some(
            call(
                client,
                "queue",
                json!({"action": "add_job", "job_id": id, "params": params}),
            )
            .await
            .map(|_| id),
        )
    } else {
        None
    };
    let mut seen = seen.lock().unwrap();
    for o in outcomes {
        match o {
            Ok(tool) => *seen.ok_calls.entry(tool).or_default() += 1,
            Err(e) => seen.errors.push(e),
        }
    }
    for s in seen_now {
        match s {
            Ok(sent) => seen.sent.push(sent),
            Err(e) => seen.errors.push(e),
        }
    }
    match received {
        Ok(got) => seen
            .received
            .extend(got.into_iter().map(|(from, text)| (n, from, text))),
        Err(e) => seen.errors.push(e),
    }
    match job {
        Some(Ok(id)) => seen.jobs.push(id),
        Some(Err(e)) => seen.errors.push(e),
        None => {}
    }
}

struct Load {
    rounds: Vec<Arc<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<Client>>,
}

async fn start_load(url: &str) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (mut rounds, mut tasks) = (Vec::new(), Vec::new());
    for n in 0..CLIENTS {
        let client = connect(url).await;
        let count = Arc::new(AtomicUsize::new(0));
        rounds.push(count.clone());
        let (stop, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                round(&client, n, i, &seen).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
            client
        }));
    }
    Load {
        rounds,
        stop,
        seen,
        tasks,
    }
}

impl Load {
    /// Waits until every client completed `more` further rounds.
    async fn progress(&self, more: usize) {
        common::cluster::progress(&self.rounds, more, Duration::from_secs(120)).await;
    }

    /// Stops the rounds; then each client collects the messages still waiting for it.
    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut clients = Vec::new();
        for t in self.tasks {
            clients.push(t.await.unwrap());
        }
        let expected: Vec<usize> = {
            let seen = self.seen.lock().unwrap();
            (0..CLIENTS)
                .map(|n| seen.sent.iter().filter(|(to, _)| *to == n).count())
                .collect()
        };
        for (n, client) in clients.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let got = self
                    .seen
                    .lock()
                    .unwrap()
                    .received
                    .iter()
                    .filter(|(to, _, _)| *to == n)
                    .count();
                if got >= expected[n] || Instant::now() > deadline {
                    break;
                }
                match call(
                    client,
                    "get_messages",
                    json!({"client_id": format!("c{n}")}),
                )
                .await
                {
                    Ok(v) => self
                        .seen
                        .lock()
                        .unwrap()
                        .received
                        .extend(messages(&v).into_iter().map(|(f, t)| (n, f, t))),
                    Err(e) => self.seen.lock().unwrap().errors.push(e),
                }
                // Paces the polls; the deadline above bounds the wait.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for client in clients {
            let _ = client.cancel().await;
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .expect("no client task left")
            .into_inner()
            .unwrap()
    }
}

/// Every job reaches an end state; returns how many ended in each.
async fn jobs_end(url: &str, jobs: &[String]) -> HashMap<String, usize> {
    let mut states = HashMap::new();
    for id in jobs {
        let job = common::jobs::wait_job(url, None, id, Duration::from_secs(60), |j| {
            matches!(
                j["state"].as_str(),
                Some("completed" | "failed" | "interrupted")
            )
        })
        .await;
        *states
            .entry(job["state"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    states
}

/// Successful calls of `tool` in the audit log (PostgreSQL, shared by all instances).
async fn audited(db: &Db, tool: &str) -> usize {
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unified_logs WHERE tool_name = $1 AND status = 'success'",
    )
    .bind(tool)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n as usize
}

/// Processes started with our mark in their environment.
fn marked_processes(mark: &str) -> Vec<u32> {
    let needle = format!("MANIFOLD_TEST_MARK={mark}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

/// The checks common to both scenarios, after the load stopped.
async fn check(setup: &mut Setup, seen: Seen, failures_allowed: usize, scenario: &str) {
    eprintln!(
        "{scenario}: calls {:?}, {} messages sent, {} received, {} jobs, {} failed: {:?}",
        seen.ok_calls,
        seen.sent.len(),
        seen.received.len(),
        seen.jobs.len(),
        seen.errors.len(),
        seen.errors
    );
    assert!(
        seen.errors.len() <= failures_allowed,
        "{scenario}: {} requests failed (at most {failures_allowed} allowed): {:?}",
        seen.errors.len(),
        seen.errors
    );
    // Messages: each exactly once, at its recipient, from the sender before it.
    let mut sent: Vec<(usize, String)> = seen.sent.clone();
    let mut received: Vec<(usize, String)> = Vec::new();
    for (to, from, text) in &seen.received {
        let sender = (to + CLIENTS - 1) % CLIENTS;
        assert_eq!(
            from,
            &format!("c{sender}"),
            "{scenario}: {text} came from {from}"
        );
        received.push((*to, text.clone()));
    }
    sent.sort();
    received.sort();
    assert_eq!(
        received, sent,
        "{scenario}: messages received differ from those sent"
    );
    // Jobs: none lost, none stuck.
    let states = jobs_end(&setup.url, &seen.jobs).await;
    eprintln!("{scenario}: job end states {states:?}");
    assert_eq!(states.values().sum::<usize>(), seen.jobs.len());
    // Audit (durable: an answer leaves after its entry is written): an entry
    // for every successful call, already there when the load stops. A call
    // whose answer died with its instance after the entry was written, and
    // which HAProxy then re-sent, ran twice and has two entries.
    for tool in ["web__echo", "mine__echo"] {
        let ok = seen.ok_calls.get(tool).copied().unwrap_or(0);
        let n = audited(&setup.db, tool).await;
        assert!(
            (ok..=ok + failures_allowed).contains(&n),
            "{scenario}: {n} audit entries for {ok} successful {tool} calls"
        );
    }
    // No backend process outlives its instance.
    for instance in &mut setup.instances {
        let exit = instance.terminate();
        assert!(exit.success(), "{} exits cleanly: {exit}", instance.id);
    }
    common::wait_until("the per-session backends are gone", 10, async || {
        marked_processes(&setup.mark).is_empty()
    })
    .await;
}

async fn teardown(setup: Setup) {
    redis_cleanup(&setup.prefix).await;
    redis_cleanup(&format!("{}-msg", setup.prefix)).await;
    setup.db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_an_instance_is_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut setup) = setup("state_killed").await else {
        return;
    };
    let load = start_load(&setup.url).await;
    load.progress(8).await;
    let victim = setup
        .instances
        .iter()
        .position(|i| i.sessions() > 0)
        .expect("some instance holds sessions");
    // SIGKILL: nothing of the instance gets to clean up.
    setup.instances[victim].kill();
    load.progress(8).await;
    setup.instances[victim].start();
    load.progress(8).await;
    let seen = load.finish().await;
    // Only a request in flight on the killed instance may fail: one per client.
    check(&mut setup, seen, CLIENTS, "SIGKILL").await;
    teardown(setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_in_a_rolling_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut setup) = setup("state_rolling").await else {
        return;
    };
    let load = start_load(&setup.url).await;
    load.progress(8).await;
    for n in 0..setup.instances.len() {
        let exit = setup.instances[n].terminate();
        assert!(
            exit.success(),
            "{} drains and exits: {exit}",
            setup.instances[n].id
        );
        load.progress(4).await;
        setup.instances[n].start();
        load.progress(4).await;
    }
    let seen = load.finish().await;
    check(&mut setup, seen, 0, "rolling restart").await;
    teardown(setup).await;
}
