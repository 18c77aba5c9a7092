//! Running the gateway: `manifold serve` and `manifold stdio`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::front::{Front, Policy};
use crate::gateway::Gateway;
use crate::reload::Reloader;

/// Starts the gateway on `config` (empty gateway + the first apply) and the
/// front that serves it, with its auth and limits following reloads.
async fn start(config: Config, config_path: Option<PathBuf>) -> Front {
    let policy = Arc::new(Policy::new(&config));
    let sessions = config.sessions.clone();
    let reloader = Reloader::start(config, config_path).await;
    Front::new(reloader, policy, sessions)
}

/// Binds, starts the backends, serves until `shutdown`, then stops every backend.
///
/// `on_ready` is called with the bound address as soon as the listener is
/// accepting. Backends connect concurrently in the background, so a slow one
/// delays nobody; `GET /readyz` says when every backend has made its first
/// connect attempt.
pub async fn serve_http(
    config: Config,
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let addr = listen.unwrap_or(config.server.listen);
    // The loader refuses this for `[server] listen`; `--listen` may differ.
    if let Some(why) = crate::config::unauthenticated_exposure(&config.server, &config.auth, addr) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why,
        ));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let connect_timeout = config.server.connect_timeout;
    let front = start(config, config_path).await;
    crate::front::invoke::attach_jobs(&front).await;
    let front_jobs = front.reloader.jobs();
    let gateway = front.gateway.clone();
    // Ends at shutdown.
    tokio::spawn(crate::reload::watch(
        front.reloader.clone(),
        shutdown.clone(),
    ));
    // SIGTERM drains first (readiness 503, calls in flight finish), then stops.
    let stop = CancellationToken::new();
    let drain_timeout = gateway.server().drain_timeout;
    crate::front::drain::on_signal(
        front.drain.clone(),
        shutdown.clone(),
        stop.clone(),
        drain_timeout,
    );
    // Jobs drain alongside: no new claims, running ones get the same deadline.
    let jobs_drained = front_jobs.clone().map(|jobs| {
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            if !jobs.drain(drain_timeout).await {
                tracing::warn!(?drain_timeout, "drain deadline passed with jobs running");
            }
        })
    });
    tracing::info!(instance_id = %gateway.server().instance_id, %local, "listening");
    let server = tokio::spawn(crate::front::http::serve(front, listener, stop));
    on_ready(local);
    // Logs the startup outcome once; ends after the first connect attempts.
    let logger = gateway.clone();
    tokio::spawn(async move {
        wait_settled(&logger, connect_timeout).await;
        log_backends(&logger);
    });
    let result = server
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Some(drained) = jobs_drained {
        if shutdown.is_cancelled() {
            let _ = drained.await;
        } else {
            drained.abort();
        }
    }
    stop_jobs(&front_jobs).await;
    gateway.shutdown().await;
    result
}

/// Serves one client on stdin/stdout.
pub async fn serve_stdio(
    config: Config,
    config_path: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let connect_timeout = config.server.connect_timeout;
    let front = start(config, config_path).await;
    crate::front::invoke::attach_jobs(&front).await;
    let front_jobs = front.reloader.jobs();
    let gateway = front.gateway.clone();
    let shutdown = CancellationToken::new();
    // Ends when this function returns.
    tokio::spawn(crate::reload::watch(
        front.reloader.clone(),
        shutdown.clone(),
    ));
    let _stop_watch = shutdown.drop_guard();
    wait_settled(&gateway, connect_timeout).await;
    log_backends(&gateway);
    let result = crate::front::stdio::serve(front).await;
    stop_jobs(&front_jobs).await;
    gateway.shutdown().await;
    result
}

/// Lets running jobs end as `interrupted` (or stay for requeue) before the
/// backends they call are stopped.
async fn stop_jobs(jobs: &Option<Arc<crate::jobs::Jobs>>) {
    if let Some(jobs) = jobs {
        jobs.shutdown().await;
    }
}

async fn wait_settled(gateway: &Arc<Gateway>, connect_timeout: Duration) {
    let _ = tokio::time::timeout(
        connect_timeout + Duration::from_millis(500),
        gateway.settled(),
    )
    .await;
}

fn log_backends(gateway: &Gateway) {
    for b in gateway.snapshot().backends.values() {
        let c = b.catalog();
        match b.state() {
            crate::backend::BackendState::Down(reason) => {
                tracing::warn!(backend = %b.name(), %reason, "backend is down; serving the others")
            }
            state => tracing::info!(
                backend = %b.name(),
                state = state.label(),
                tools = c.tools.len(),
                prompts = c.prompts.len(),
                resources = c.resources.len(),
                "backend mounted"
            ),
        }
    }
}
