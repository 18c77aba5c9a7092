//! `manifold-fixture`: a small, fast MCP server of our own, for tests and
//! benchmarks. It speaks stdio, streamable HTTP or legacy SSE, and has tools
//! that succeed, fail, hang, crash or answer with a JSON-RPC error on demand,
//! and tools that make it send what a backend may send unprompted: progress,
//! sampling, elicitation and roots requests, log messages, list changes and
//! resource updates.

#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol
//!
//! ```text
//! manifold-fixture --transport stdio
//! manifold-fixture --transport http --listen 127.0.0.1:0   # prints "listening http://ADDR/mcp"
//! manifold-fixture --transport sse  --listen 127.0.0.1:0   # prints "listening http://ADDR/sse"
//! ```

mod calls;
mod eras;
mod server;
mod sse_server;
mod tasks;
mod tools;

use std::io::Write;
use std::sync::Arc;

use clap::Parser;
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use server::Fixture;

#[derive(Parser, Clone)]
pub(crate) struct Args {
    #[arg(long, default_value = "stdio")]
    pub(crate) transport: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: String,
    /// Shown in instructions and resource text.
    #[arg(long, default_value = "fixture")]
    pub(crate) name: String,
    /// Add this many extra tools `tool_0` … (to exercise pagination).
    #[arg(long, default_value_t = 0)]
    pub(crate) extra_tools: usize,
    /// List only the extra tools (benchmarks that count listed tools).
    #[arg(long)]
    pub(crate) only_extra_tools: bool,
    /// Serve `tools/list` in pages of this size (0: one page).
    #[arg(long, default_value_t = 0)]
    pub(crate) page_size: usize,
    /// Add a tool whose name is 70 characters long.
    #[arg(long)]
    pub(crate) long_tool: bool,
    /// Add `env` (prints this process's environment) and `stderr` (writes a
    /// long line without newline and invalid UTF-8 to stderr).
    #[arg(long)]
    pub(crate) process_tools: bool,
    /// Add `append`, which appends a line to a file: a side effect that
    /// tests count outside the gateway (jobs run exactly once).
    #[arg(long)]
    pub(crate) append_tool: bool,
    /// Add tool `meta`, which returns the request's `_meta` (audit tests).
    #[arg(long)]
    pub(crate) meta_tool: bool,
    /// Add the tools and resources of newer protocol revisions (`eras.rs`)
    /// and a title, icons and website in the server info.
    #[arg(long)]
    pub(crate) eras: bool,
    /// Speak only 2026-07-28: refuse `initialize` (clients must discover).
    #[arg(long)]
    pub(crate) modern_only: bool,
    /// Speak only the initialize-based versions: refuse `server/discover`.
    #[arg(long)]
    pub(crate) legacy_only: bool,
}

fn announce(url: String) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening {url}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let fixture = Fixture::new(args.clone());
    match args.transport.as_str() {
        "stdio" => {
            let running = fixture.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        "http" => {
            use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
            use rmcp::transport::streamable_http_server::{
                StreamableHttpServerConfig, StreamableHttpService,
            };
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            let addr = listener.local_addr()?;
            let service = StreamableHttpService::new(
                move || Ok(fixture.clone()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            );
            announce(format!("http://{addr}/mcp"));
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, std::convert::Infallible>(service.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        }
        "sse" => {
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            let addr = listener.local_addr()?;
            announce(format!("http://{addr}/sse"));
            sse_server::serve(listener, move || fixture.clone(), CancellationToken::new()).await?;
        }
        other => return Err(format!("unknown transport `{other}` (stdio, http, sse)").into()),
    }
    Ok(())
}
