//! A small closed-loop load generator for MCP servers over streamable HTTP.
//!
//! For each concurrency level it starts that many workers; each worker loops `tools/call`
//! against one tool, back to back, for a warm-up period and then a measured period. It reports
//! calls per second, latency percentiles (from an HDR histogram, 3 significant digits) and
//! errors. `scripts/bench.sh` drives it to produce every figure in `docs/performance.md`.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8123/mcp \
//!     --tool fx__echo --args '{"message":"hi"}' --concurrency 1,8,64 --duration 10s
//! ```
//!
//! What counts as an error: a transport or JSON-RPC error, a result with `isError: true`, and
//! a result that is not a finished tool result (MRTR `InputRequired`, a task). Calls that end
//! outside the measured window are not counted at all.
//!
//! Workers share MCP sessions, `--workers-per-session` to a session (8 by default). rmcp's
//! client allows `max_concurrent_requests` POSTs in flight per session (16 by default); we set
//! it to the number of workers on the session, so the client never queues a call and the
//! load generator is not the bottleneck.
//!
//! `--stdio "CMD ARG…"` drives an MCP server over stdio instead, with no HTTP and no gateway:
//! one child process, one rmcp client connection, every worker on it (as a gateway shares one
//! backend connection). It gives the ceiling of what that server can serve over stdio. The
//! command is split on whitespace.
//!
//! `--cpu-pid PID[,PID…]` reads those processes' CPU time (user + system, all threads, from
//! `/proc/PID/stat`) at the start and the end of the measured window, and reports the cores
//! they used and their CPU time per call: the gateway's cost, apart from the client's and the
//! backend's. Every row also carries the 1-minute load average at the window's start, so a
//! figure taken on a busy machine says so.
//!
//! `--client raw` swaps rmcp's client for a minimal one (one POST per call, the body read
//! whole, `Mcp-Session-Id` kept by hand). It does less work per call than rmcp's client, so it
//! shows how much of a latency figure is the client's own cost; the default stays rmcp.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, ProtocolVersion,
};
use rmcp::service::{ClientCacheConfig, Peer, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientLifecycleMode, ClientServiceExt, ServiceExt};

#[derive(Parser, Debug)]
#[command(about = "Closed-loop tools/call load generator for MCP streamable HTTP servers")]
struct Args {
    /// MCP endpoint, e.g. http://127.0.0.1:8123/mcp
    #[arg(long, default_value = "")]
    url: String,
    /// Tool to call, e.g. fx__echo
    #[arg(long, default_value = "")]
    tool: String,
    /// Tool arguments as a JSON object
    #[arg(long, default_value = "{}")]
    args: String,
    /// Comma-separated concurrency levels (number of workers), run in order
    #[arg(long, default_value = "1,8,64", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Measured time per level
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured time per level before the measured time starts
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Workers sharing one MCP session
    #[arg(long, default_value_t = 8)]
    workers_per_session: usize,
    /// How each session starts: `initialize` (protocol 2025-11-25, sessions) or
    /// `discover` (protocol 2026-07-28, stateless)
    #[arg(long, value_enum, default_value_t = Lifecycle::Initialize)]
    lifecycle: Lifecycle,
    /// Which MCP client sends the calls
    #[arg(long, value_enum, default_value_t = Client::Rmcp)]
    client: Client,
    /// Open a new TCP connection for every request (rmcp's default client) instead of
    /// reusing keep-alive connections
    #[arg(long)]
    no_keepalive: bool,
    /// Tokio worker threads of the load generator
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Drive this command's MCP server over stdio (no HTTP, no gateway) instead of `--url`;
    /// split on whitespace
    #[arg(long)]
    stdio: Option<String>,
    /// The request each worker repeats: `tools/call` of `--tool`, or `tools/list` (one page)
    #[arg(long, default_value = "tools/call", value_parser = ["tools/call", "tools/list"])]
    method: String,
    /// Processes whose CPU time to report for the measured window (the gateway's pid)
    #[arg(long, value_delimiter = ',')]
    cpu_pid: Vec<u32>,
    /// Name printed with every result row
    #[arg(long, default_value = "")]
    label: String,
    /// Print one JSON object per level instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Lifecycle {
    Initialize,
    Discover,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Client {
    /// rmcp's streamable-HTTP client, as a real Rust MCP client would use it
    Rmcp,
    /// A bare HTTP client that speaks just enough MCP (initialize, tools/call)
    Raw,
}

/// One MCP session, made by either client. Cloning shares the session.
#[derive(Clone)]
enum Session {
    Rmcp(Arc<RunningService<RoleClient, ClientConfig>>),
    Raw(Arc<RawSession>),
}

impl Session {
    async fn call(&self, params: &CallToolRequestParams) -> Result<(), String> {
        match self {
            Session::Rmcp(service) => call_once(service.peer(), params).await,
            Session::Raw(raw) => raw.call(params).await,
        }
    }

    /// One `tools/list`, the first page.
    async fn list(&self) -> Result<(), String> {
        match self {
            Session::Rmcp(service) => match service.peer().list_tools(None).await {
                Ok(r) if r.tools.is_empty() => Err("tools/list returned no tools".into()),
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Session::Raw(_) => Err("--method tools/list needs the rmcp client".into()),
        }
    }

    async fn close(self) {
        match self {
            Session::Rmcp(service) => {
                if let Some(service) = Arc::into_inner(service) {
                    let _ = service.cancel().await;
                }
            }
            Session::Raw(raw) => raw.close().await,
        }
    }
}

/// What one worker saw during the measured window.
struct WorkerReport {
    latency_ns: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// One row of output.
struct LevelReport {
    concurrency: usize,
    /// CPU seconds of the `--cpu-pid` processes in the measured window.
    cpu_s: Option<f64>,
    /// The 1-minute load average when the window started.
    load1: Option<f64>,
    sessions: usize,
    elapsed: Duration,
    latency_ns: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs positive numbers, e.g. 1,8,64");
    }
    if args.url.is_empty() == args.stdio.is_none() {
        bail!("give exactly one of --url and --stdio");
    }
    if args.method == "tools/call" && args.tool.is_empty() {
        bail!("--tool is required for tools/call");
    }
    if args.workers_per_session == 0 {
        bail!("--workers-per-session must be positive");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let arguments: JsonObject =
        serde_json::from_str(&args.args).context("--args must be a JSON object")?;
    let params = CallToolRequestParams::new(args.tool.clone()).with_arguments(arguments);
    let list = args.method == "tools/list";
    let http = http_client(args.no_keepalive)?;

    // Fail fast, with the server's own words, if the tool is missing or errors.
    let probe = connect(&args, &http, 1).await?;
    let outcome = if list {
        probe.list().await
    } else {
        probe.call(&params).await
    };
    probe.close().await;
    outcome.map_err(|e| anyhow::anyhow!("probe call to tool {:?} failed: {e}", args.tool))?;

    if !args.json {
        println!(
            "{:<24} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "label", "conc", "calls/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        );
    }
    for &concurrency in &args.concurrency {
        let report = run_level(&args, &http, &params, list, concurrency).await?;
        print_report(&args, &report);
    }
    Ok(())
}

fn http_client(no_keepalive: bool) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().tcp_nodelay(true);
    if no_keepalive {
        builder = builder.pool_max_idle_per_host(0);
    }
    Ok(builder.build()?)
}

/// Opens one MCP session whose client lets `in_flight` requests run at once.
async fn connect(args: &Args, http: &reqwest::Client, in_flight: usize) -> anyhow::Result<Session> {
    let service = match (&args.stdio, args.client) {
        (Some(command), _) => connect_stdio(command).await?,
        (None, Client::Rmcp) => connect_rmcp(args, http, in_flight).await?,
        (None, Client::Raw) => {
            return Ok(Session::Raw(Arc::new(
                RawSession::connect(http, &args.url).await?,
            )));
        }
    };
    // rmcp caches list results by default: every tools/list must reach the server.
    service
        .peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    Ok(Session::Rmcp(Arc::new(service)))
}

async fn connect_rmcp(
    args: &Args,
    http: &reqwest::Client,
    in_flight: usize,
) -> anyhow::Result<RunningService<RoleClient, ClientConfig>> {
    let config = StreamableHttpClientTransportConfig::with_uri(args.url.as_str())
        .max_concurrent_requests(in_flight);
    let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("manifold-loadgen", env!("CARGO_PKG_VERSION")),
    );
    let service = match args.lifecycle {
        Lifecycle::Initialize => {
            info.with_protocol_version(ProtocolVersion::V_2025_11_25)
                .serve(transport)
                .await
        }
        Lifecycle::Discover => {
            let mode = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            info.serve_with_lifecycle(transport, mode).await
        }
    };
    service.with_context(|| format!("connect to {}", args.url))
}

/// One child process speaking MCP on stdin/stdout; its stderr is dropped.
async fn connect_stdio(command: &str) -> anyhow::Result<RunningService<RoleClient, ClientConfig>> {
    let mut words = command.split_whitespace();
    let program = words.next().context("--stdio needs a command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(words);
    let (transport, _stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {command}"))?;
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("manifold-loadgen", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    info.serve(transport)
        .await
        .with_context(|| format!("initialize {command}"))
}

/// User + system CPU seconds of the processes, all threads, from `/proc/PID/stat`.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        total += (utime + stime) / ticks;
    }
    Some(total)
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One `tools/call`; anything but a finished, non-error tool result is an error.
async fn call_once(peer: &Peer<RoleClient>, params: &CallToolRequestParams) -> Result<(), String> {
    match peer.call_tool_once(params.clone()).await {
        Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => {
            let text = serde_json::to_string(&result.content).unwrap_or_default();
            Err(format!("tool returned isError: {text}"))
        }
        Ok(CallToolResponse::Complete(_)) => Ok(()),
        Ok(CallToolResponse::InputRequired(_)) => Err("tool asked for input (MRTR)".into()),
        Ok(CallToolResponse::Task(_)) => Err("tool answered with a task".into()),
        Ok(_) => Err("unexpected tools/call response".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn run_level(
    args: &Args,
    http: &reqwest::Client,
    params: &CallToolRequestParams,
    list: bool,
    concurrency: usize,
) -> anyhow::Result<LevelReport> {
    // Sessions are opened before the clock starts; each carries up to workers_per_session
    // (over stdio, one connection carries every worker).
    let per_session = if args.stdio.is_some() {
        concurrency
    } else {
        args.workers_per_session
    };
    let n_sessions = concurrency.div_ceil(per_session);
    let mut sessions = Vec::with_capacity(n_sessions);
    for i in 0..n_sessions {
        let workers_here = per_session.min(concurrency - i * per_session);
        sessions.push(connect(args, http, workers_here).await?);
    }

    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let params = Arc::new(params.clone());
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let session = sessions[w / per_session].clone();
        let params = Arc::clone(&params);
        // Each worker ends by itself at `end`; the JoinSet is drained below.
        workers.spawn(worker(session, params, list, start, end));
    }

    // Samples the CPU time of --cpu-pid at the window's edges; ends at `end`.
    let pids = args.cpu_pid.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let (before, load1) = (cpu_seconds(&pids), load_average());
        tokio::time::sleep_until(end.into()).await;
        let cpu = match (before, cpu_seconds(&pids)) {
            (Some(a), Some(b)) if !pids.is_empty() => Some(b - a),
            _ => None,
        };
        (cpu, load1)
    });
    let mut total = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(report) = workers.join_next().await {
        let report = report.context("worker panicked")?;
        total.add(&report.latency_ns)?;
        errors += report.errors;
        first_error = first_error.or(report.first_error);
    }
    let elapsed = Instant::now()
        .saturating_duration_since(start)
        .min(args.duration);
    let (cpu_s, load1) = sampler.await.context("CPU sampler panicked")?;
    for session in sessions {
        session.close().await;
    }
    Ok(LevelReport {
        concurrency,
        cpu_s,
        load1,
        sessions: n_sessions,
        elapsed,
        latency_ns: total,
        errors,
        first_error,
    })
}

async fn worker(
    session: Session,
    params: Arc<CallToolRequestParams>,
    list: bool,
    start: Instant,
    end: Instant,
) -> WorkerReport {
    let mut report = WorkerReport {
        latency_ns: new_histogram(),
        errors: 0,
        first_error: None,
    };
    loop {
        let sent = Instant::now();
        if sent >= end {
            return report;
        }
        let outcome = if list {
            session.list().await
        } else {
            session.call(&params).await
        };
        let done = Instant::now();
        // Only calls that finish inside the measured window count.
        if done < start || done > end {
            continue;
        }
        match outcome {
            Ok(()) => {
                let ns = u64::try_from((done - sent).as_nanos()).unwrap_or(u64::MAX);
                report.latency_ns.saturating_record(ns);
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert(e);
            }
        }
    }
}

/// The `--client raw` session: plain POSTs of JSON-RPC, protocol 2025-11-25.
struct RawSession {
    http: reqwest::Client,
    url: String,
    session_id: Option<String>,
    next_id: AtomicU64,
}

const RAW_PROTOCOL: &str = "2025-11-25";

impl RawSession {
    async fn connect(http: &reqwest::Client, url: &str) -> anyhow::Result<Self> {
        let mut session = RawSession {
            http: http.clone(),
            url: url.to_owned(),
            session_id: None,
            next_id: AtomicU64::new(1),
        };
        let init = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": RAW_PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "manifold-loadgen-raw", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let response = session.post(&init).send().await.context("initialize")?;
        session.session_id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        json_rpc_result(response)
            .await
            .map_err(anyhow::Error::msg)?;
        let initialized =
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let status = session.post(&initialized).send().await?.status();
        if !status.is_success() {
            bail!("notifications/initialized: HTTP {status}");
        }
        Ok(session)
    }

    fn post(&self, body: &serde_json::Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", RAW_PROTOCOL)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        request
    }

    async fn call(&self, params: &CallToolRequestParams) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": params.name, "arguments": params.arguments},
        });
        let response = self.post(&body).send().await.map_err(|e| e.to_string())?;
        let result = json_rpc_result(response).await?;
        if result.get("isError").and_then(|v| v.as_bool()) == Some(true) {
            return Err(format!("tool returned isError: {}", result["content"]));
        }
        Ok(())
    }

    async fn close(&self) {
        if let Some(id) = &self.session_id {
            let _ = self
                .http
                .delete(&self.url)
                .header("mcp-session-id", id)
                .send()
                .await;
        }
    }
}

/// The `result` of the one JSON-RPC response in a POST's body, JSON or SSE.
async fn json_rpc_result(response: reqwest::Response) -> Result<serde_json::Value, String> {
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    // An SSE body may also carry notifications and priming events: take the message with an id.
    let message = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .chain(std::iter::once(body.as_str()))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
        .find(|m| m.get("id").is_some_and(|id| !id.is_null()))
        .ok_or_else(|| format!("no JSON-RPC response in body: {body}"))?;
    match (message.get("result"), message.get("error")) {
        (Some(result), _) => Ok(result.clone()),
        (None, Some(error)) => Err(format!("JSON-RPC error: {error}")),
        (None, None) => Err(format!("malformed JSON-RPC response: {message}")),
    }
}

/// 1 µs to 60 s at 3 significant digits; values outside are clamped.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn print_report(args: &Args, r: &LevelReport) {
    let calls = r.latency_ns.len();
    let rate = calls as f64 / r.elapsed.as_secs_f64();
    let ms = |q: f64| r.latency_ns.value_at_quantile(q) as f64 / 1e6;
    if args.json {
        let row = serde_json::json!({
            "label": args.label,
            "url": args.url,
            "tool": args.tool,
            "concurrency": r.concurrency,
            "sessions": r.sessions,
            "duration_s": r.elapsed.as_secs_f64(),
            "calls": calls,
            "errors": r.errors,
            "calls_per_s": rate,
            "p50_ms": ms(0.50),
            "p90_ms": ms(0.90),
            "p99_ms": ms(0.99),
            "max_ms": r.latency_ns.max() as f64 / 1e6,
            "first_error": r.first_error,
            "load1": r.load1,
            "cpu_s": r.cpu_s,
            "cpu_cores": r.cpu_s.map(|s| s / r.elapsed.as_secs_f64()),
            "cpu_us_per_call": r.cpu_s.filter(|_| calls > 0).map(|s| s * 1e6 / calls as f64),
        });
        println!("{row}");
    } else {
        println!(
            "{:<24} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}",
            args.label,
            r.concurrency,
            rate,
            ms(0.50),
            ms(0.90),
            ms(0.99),
            r.latency_ns.max() as f64 / 1e6,
            r.errors
        );
        if let Some(e) = &r.first_error {
            eprintln!("  first error: {e}");
        }
    }
}
