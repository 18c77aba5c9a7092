//! Opening a backend connection for each transport, and the supervisor task
//! that owns it.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::service::{ClientCacheConfig, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;

use super::client::BackendClient;
use super::{BackendEnv, BackendRef, BackendState, Catalog};
use crate::config::{BackendConfig, Secret, TransportConfig};
use crate::coordinator::{ListEvent, ListKinds};

type Running = RunningService<RoleClient, BackendClient>;

/// How long a closing connection may take before its child is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Connects, fills the catalog, then waits until the connection ends or the
/// backend is stopped. Holds only a weak reference between steps, so a
/// dropped backend ends its supervisor.
pub(super) async fn supervise(
    weak: BackendRef,
    env: BackendEnv,
    capabilities: rmcp::model::ClientCapabilities,
) {
    let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
    run(weak, env, capabilities, pid.clone()).await;
    // A stdio child leads its own process group: whatever it started (the
    // server behind `npx`, a helper process) goes with it.
    match pid.load(Ordering::Relaxed) {
        0 => {}
        pgid => reap_process_group(pgid).await,
    }
}

/// SIGTERM to the group, a short grace, then SIGKILL to whatever is left.
async fn reap_process_group(pgid: u32) {
    #[cfg(unix)]
    {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return;
        };
        // SAFETY: killpg only sends a signal; the group is one we created.
        let signal = |sig| unsafe { libc::killpg(pgid, sig) } == 0;
        if !signal(libc::SIGTERM) {
            return; // ESRCH: nothing left in the group.
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !signal(0) {
                return;
            }
        }
        signal(libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

async fn run(
    weak: BackendRef,
    env: BackendEnv,
    capabilities: rmcp::model::ClientCapabilities,
    pid: Arc<std::sync::atomic::AtomicU32>,
) {
    let Some(backend) = weak.upgrade() else {
        return;
    };
    let shutdown = backend.shutdown.clone();
    let config = backend.config.clone();
    let handler = BackendClient {
        backend: weak.clone(),
        hub: env.hub.clone(),
        capabilities,
        log_limit: std::sync::Mutex::new(super::client::RateLimit::new()),
    };
    let pid_slot = backend.clone();
    drop(backend);

    let attempt = async {
        let running = open(&config, &env, handler, |p| {
            pid_slot.pid.store(p, Ordering::Relaxed);
            pid.store(p, Ordering::Relaxed);
        })
        .await?;
        running
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        Ok::<_, String>(running)
    };
    let running = tokio::select! {
        _ = shutdown.cancelled() => {
            pid_slot.set_state(BackendState::Stopped);
            return;
        }
        r = tokio::time::timeout(env.connect_timeout, attempt) => match r {
            Ok(Ok(running)) => running,
            Ok(Err(reason)) => {
                pid_slot.set_state(BackendState::Down(reason));
                return;
            }
            Err(_) => {
                pid_slot.set_state(BackendState::Down(format!(
                    "did not finish connecting within {}",
                    humantime::format_duration(env.connect_timeout)
                )));
                return;
            }
        }
    };
    drop(pid_slot);

    if let Some(backend) = weak.upgrade() {
        let info = running.peer().peer_info();
        backend.server_info.store(info);
        backend.peer.store(Some(Arc::new(running.peer().clone())));
        let fill = tokio::time::timeout(env.connect_timeout, backend.refresh(ListKinds::ALL)).await;
        match fill {
            Ok(Ok(())) => backend.set_state(BackendState::Up),
            Ok(Err(e)) => backend.set_state(BackendState::Down(format!("listing failed: {e}"))),
            Err(_) => backend.set_state(BackendState::Down("listing timed out".into())),
        }
        if backend.state() == BackendState::Up {
            // A session's own connection follows that session's level; a
            // shared one the most verbose level any session asked for.
            let level = match backend.owner {
                Some(owner) => env
                    .hub
                    .session(owner)
                    .filter(|s| s.has_set_log_level())
                    .map(|s| crate::coordinator::level_from_u8(s.log_level())),
                None => env.hub.log_floor(),
            };
            if let Some(level) = level {
                backend.set_log_level(level).await;
            }
            // Sessions that started before this backend was ready learn about it now.
            env.hub.list_changed(ListEvent::Recompute(ListKinds::ALL));
        }
    } else {
        return;
    }

    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let stopped = tokio::select! {
        _ = &mut waiting => false,
        _ = shutdown.cancelled() => {
            ct.cancel();
            let _ = tokio::time::timeout(CLOSE_GRACE * 3, &mut waiting).await;
            true
        }
    };
    if let Some(backend) = weak.upgrade() {
        backend.peer.store(None);
        backend.catalog.store(Arc::new(Catalog::default()));
        if stopped {
            backend.set_state(BackendState::Stopped);
        } else {
            backend.set_state(BackendState::Down(
                "connection closed by the backend".into(),
            ));
            env.hub.list_changed(ListEvent::Recompute(ListKinds::ALL));
        }
    }
}

async fn open(
    config: &BackendConfig,
    env: &BackendEnv,
    handler: BackendClient,
    on_pid: impl FnOnce(u32),
) -> Result<Running, String> {
    let name = config.name.clone();
    match &config.transport {
        TransportConfig::Stdio {
            command,
            args,
            env: vars,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).envs(vars).kill_on_drop(true);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            let mut wrap = process_wrap::tokio::CommandWrap::from(cmd);
            // Its own process group, so `npx`/`uvx` grandchildren die with it.
            wrap.wrap(process_wrap::tokio::ProcessGroup::leader());
            let (proc, stderr) = TokioChildProcess::builder(wrap)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("failed to start `{command}`: {e}"))?;
            if let Some(pid) = proc.id() {
                on_pid(pid);
            }
            if let Some(stderr) = stderr {
                // Ends at EOF, i.e. when the child exits.
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::info!(target: "manifold::backend::stderr", backend = %name, "{line}");
                    }
                });
            }
            handler
                .serve(proc)
                .await
                .map_err(|e| format!("initialize failed: {e}"))
        }
        TransportConfig::Http { url, headers } => {
            let cfg = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .custom_headers(header_map(headers)?)
                .max_concurrent_requests(256)
                .reinit_on_expired_session(true);
            let transport = StreamableHttpClientTransport::with_client(env.http.clone(), cfg);
            handler
                .serve(transport)
                .await
                .map_err(|e| format!("initialize failed: {e}"))
        }
        TransportConfig::Builtin { set } => {
            let serve = env
                .builtins
                .get(set)
                .ok_or_else(|| format!("no built-in tool set `{set}`"))?
                .clone();
            // The pipe lives as long as both ends: the set's task ends when
            // our connection closes it.
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(serve(theirs));
            handler
                .serve(ours)
                .await
                .map_err(|e| format!("initialize failed: {e}"))
        }
        TransportConfig::Sse { url, headers } => {
            let cfg = super::sse::SseClientConfig {
                url: url.clone(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect(),
                connect_timeout: env.connect_timeout,
            };
            let transport = super::sse::connect(env.http.clone(), cfg)
                .await
                .map_err(|e| e.to_string())?;
            handler
                .serve(transport)
                .await
                .map_err(|e| format!("initialize failed: {e}"))
        }
    }
}

fn header_map(
    headers: &std::collections::BTreeMap<String, Secret>,
) -> Result<HashMap<http::HeaderName, http::HeaderValue>, String> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("header `{k}`: {e}"))?;
            let mut value = http::HeaderValue::from_str(v.expose())
                .map_err(|e| format!("header `{k}`: {e}"))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}
