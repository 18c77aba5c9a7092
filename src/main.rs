//! The `manifold` command line: serve | stdio | check | import.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use manifold::config::{self, Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "manifold",
    version,
    about = "One MCP endpoint in front of many MCP servers"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP streamable HTTP (default http://127.0.0.1:8123/mcp).
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// Listen on this address instead of the config's `[server] listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Serve one client over stdin/stdout (for clients that only spawn servers).
    Stdio {
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate a config: every error as FILE:LINE:COL, or a summary.
    Check {
        /// The config file.
        #[arg(default_value = "gateway.toml")]
        file: PathBuf,
        /// Also start every backend and report the names it would expose.
        #[arg(long)]
        connect: bool,
    },
    /// Turn MCP client configs (Claude Desktop, Claude Code, Cursor, VS Code) into backends.
    Import {
        /// The client config files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Merge the backends into this gateway.toml instead of printing them.
        #[arg(long)]
        write: Option<PathBuf>,
        /// `name`: each backend's prefix is its name; `none`: no prefix.
        #[arg(long, default_value = "name")]
        prefix_from: manifold::import::PrefixFrom,
    },
}

/// Log output to stderr (filtered by `RUST_LOG`), plus the bus layer, which
/// publishes events with target `queue` whatever the log filter says.
fn init_tracing(json: bool, default_filter: &str) {
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(manifold::builtin::bus::layer());
    // Colours only on a terminal (and not with NO_COLOR): a log file or a
    // journal gets plain text, and the formatter skips the styling work.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(|| RedactingStderr);
    if json {
        registry.with(fmt.json().with_filter(filter)).init();
    } else {
        registry.with(fmt.with_filter(filter)).init();
    }
}

/// Stderr, with every secret the config loader recorded replaced by `***`
/// (`config::redact`): whatever a log line quotes (a URL in an HTTP error,
/// an argument in a spawn error, a backend's own stderr), no value that came
/// from the environment reaches the log.
struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes each event in one call, so a secret is never
        // split across two writes.
        if !config::redact::any() {
            return std::io::stderr().write(buf);
        }
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(config::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load_file(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // rmcp logs every notification at info (rmcp notes, P20): keep it at warn unless asked.
    // `check` prints its own report, so it logs only problems.
    let default_filter = match cli.command {
        Command::Check { .. } => "warn",
        _ => "info,rmcp=warn",
    };
    init_tracing(cli.log_json, default_filter);
    // Import only reads and writes files: no runtime.
    if let Command::Import {
        files,
        write,
        prefix_from,
    } = cli.command
    {
        let opts = manifold::import::Options {
            files,
            write,
            prefix_from,
        };
        return ExitCode::from(manifold::import::main(&opts));
    }
    // The config is read before the runtime starts because it sizes the runtime.
    let config = match &cli.command {
        Command::Serve { config, .. } | Command::Stdio { config } => match load(config) {
            Ok(c) => Some(c),
            Err(code) => return code,
        },
        Command::Check { .. } | Command::Import { .. } => None,
    };
    let runtime = match runtime(config.as_ref()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("manifold: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("manifold: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime: `TOKIO_WORKER_THREADS` if set, else `[server] worker_threads`,
/// else half the cores. On a small machine the backends the gateway spawns
/// compete for the same cores, and fewer runtime threads mean fewer
/// cross-thread wake-ups per relayed message (see docs/performance.md).
fn runtime(config: Option<&Config>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = config
            .and_then(|c| c.server.worker_threads)
            .unwrap_or((cores / 2).max(1));
        builder.worker_threads(threads);
    }
    builder.build()
}

async fn run(command: Command, config: Option<Config>) -> anyhow::Result<ExitCode> {
    match (command, config) {
        (
            Command::Serve {
                listen,
                config: config_file,
            },
            Some(config),
        ) => {
            let path = config.server.path.clone();
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            manifold::serve::serve_http(config, Some(config_file), listen, shutdown, |addr| {
                tracing::info!(%addr, "manifold ready");
                // One line on stdout so scripts and tests learn the bound port.
                let mut out = std::io::stdout();
                let _ = writeln!(out, "listening http://{addr}{path}");
                let _ = out.flush();
            })
            .await
            .context("serve")?;
            Ok(ExitCode::SUCCESS)
        }
        (Command::Stdio { config: path }, Some(config)) => {
            manifold::serve::serve_stdio(config, Some(path))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        (Command::Serve { .. } | Command::Stdio { .. }, None) | (Command::Import { .. }, _) => {
            Ok(ExitCode::FAILURE)
        }
        (Command::Check { file, connect }, _) => {
            let config = match load(&file) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            print!(
                "{}",
                manifold::check::summary(&config, &file.display().to_string())
            );
            if connect {
                let result = manifold::check::connect(config).await;
                print!("{}", result.report);
                for e in &result.errors {
                    eprintln!("{e}");
                }
                if !result.errors.is_empty() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
