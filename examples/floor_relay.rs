//! The least a relay from streamable HTTP to one stdio MCP server can do, to measure what the
//! extra process hop itself costs on a machine (`scripts/bench.sh`, the `floor/...` rows).
//!
//! It is not a gateway and not for use: no sessions, no prefixes, no checks, no SSE. Each POST
//! body is one JSON-RPC message. A request gets a relay-wide id (the client's ids repeat across
//! sessions), is written to the child's stdin as one line, and its answer, read from the
//! child's stdout, goes back as `application/json` with the client's id put back. A
//! notification is written and answered 202. `initialize` reaches the child once; later ones
//! are answered from the first answer, and `notifications/initialized` is passed on once, so
//! many clients can share the one child. GET and DELETE are answered 405 (no server stream).
//!
//! What a call costs here, beside what it costs through Manifold, separates the cost of the
//! hop (two more processes to wake per call, on this machine's scheduler) from the cost of
//! the gateway's own work.
//!
//! ```text
//! cargo run --release --example floor_relay -- --listen 127.0.0.1:0 -- CMD ARG…
//! ```
//!
//! It prints `listening http://ADDR/mcp` once bound, like the gateway.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{ChildStdin, Command};
use tokio::sync::oneshot;

struct Relay {
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// Answers awaited, by the relay's id.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next_id: AtomicU64,
    /// The child's first `initialize` result, for the clients after the first.
    initialized: tokio::sync::OnceCell<Value>,
    initialized_sent: AtomicBool,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_string();
    let mut command = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().context("--listen needs an address")?,
            "--" => command.extend(args.by_ref()),
            other => bail!("unknown argument {other}"),
        }
    }
    if command.is_empty() {
        bail!("usage: floor_relay [--listen ADDR] -- CMD ARG…");
    }
    // One runtime thread, as Manifold runs on a two-core machine.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(listen, command))
}

async fn run(listen: String, command: Vec<String>) -> anyhow::Result<()> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", command[0]))?;
    let relay = Arc::new(Relay {
        stdin: tokio::sync::Mutex::new(child.stdin.take().context("stdin")?),
        waiting: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        initialized: tokio::sync::OnceCell::new(),
        initialized_sent: false.into(),
    });
    let stdout = child.stdout.take().context("stdout")?;
    let reader = relay.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::with_capacity(64 * 1024, stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(id) = message.get("id").and_then(Value::as_u64) else {
                continue; // the child's notifications and requests: nobody to give them to
            };
            let waiter = reader.waiting.lock().unwrap().remove(&id);
            if let Some(tx) = waiter {
                let _ = tx.send(message);
            }
        }
    });

    let listener = TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "listening http://{addr}/mcp")?;
    out.flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let relay = relay.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let relay = relay.clone();
                async move { Ok::<_, Infallible>(relay.serve(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Relay {
    async fn serve(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        let Ok(body) = req.into_body().collect().await else {
            return status(StatusCode::BAD_REQUEST);
        };
        let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(client_id) = message.get("id").cloned() else {
            if method == "notifications/initialized"
                && self.initialized_sent.swap(true, Ordering::SeqCst)
            {
                return status(StatusCode::ACCEPTED);
            }
            return match self.write(&message).await {
                Ok(()) => status(StatusCode::ACCEPTED),
                Err(_) => status(StatusCode::BAD_GATEWAY),
            };
        };
        if method == "initialize" {
            // The first client's initialize reaches the child; the others wait for its answer.
            let first = self.initialized.get_or_try_init(|| self.ask(message)).await;
            return match first {
                Ok(first) => {
                    let mut answer = first.clone();
                    answer["id"] = client_id;
                    json(&answer)
                }
                Err(code) => status(code),
            };
        }
        match self.ask(message).await {
            Ok(mut answer) => {
                answer["id"] = client_id;
                json(&answer)
            }
            Err(code) => status(code),
        }
    }

    /// Sends a request to the child under a relay-wide id and waits for its answer.
    async fn ask(&self, mut message: Value) -> Result<Value, StatusCode> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        message["id"] = id.into();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, tx);
        if self.write(&message).await.is_err() {
            self.waiting.lock().unwrap().remove(&id);
            return Err(StatusCode::BAD_GATEWAY);
        }
        rx.await.map_err(|_| StatusCode::BAD_GATEWAY)
    }

    async fn write(&self, message: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.lock().await.write_all(&line).await
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::default());
    *r.status_mut() = code;
    r
}

fn json(message: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(message).unwrap_or_default(),
    )));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
