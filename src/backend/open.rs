//! Opening a backend connection for each transport: stdio, streamable
//! HTTP, SSE, and the in-process built-in sets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientInitializeError, ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::IntoTransport;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};

use super::BackendEnv;
use super::BackendRef;
use super::client::BackendClient;
use super::ordering::Ordered;
use super::post::{Injected, Post};
use super::wire::Wire;
use crate::config::{BackendConfig, Lifecycle, Secret, TransportConfig};

pub(super) type Running = RunningService<RoleClient, BackendClient>;

/// An open connection: rmcp's service, and for a stdio backend the write
/// half the gateway sends calls on itself (`wire.rs`), for a
/// streamable-HTTP one the calls it POSTs itself (`post.rs`).
pub(super) struct Opened {
    pub running: Running,
    pub wire: Option<Arc<Wire>>,
    pub post: Option<Arc<Post>>,
}

/// Opens the connection. The error becomes the backend's `down` reason,
/// shown by `/readyz` and `/status`: secrets are taken out of it.
///
/// Stdio and streamable-HTTP backends are connected with `initialize` at
/// 2025-11-25 first; one that refuses it (a server that speaks only
/// 2026-07-28) is connected again with `server/discover`. Not discover
/// first, as rmcp's auto mode does: a server that speaks both keeps asking
/// for sampling, elicitation and roots with requests, which reach the exact
/// caller over the relay path, and an old server that ignores an unknown
/// method would hold every connect up for the discovery timeout.
pub(super) async fn open(
    config: &BackendConfig,
    env: &BackendEnv,
    backend: &BackendRef,
    handler: impl Fn() -> BackendClient,
    on_pid: impl Fn(u32),
) -> Result<Opened, String> {
    open_transport(config, env, backend, handler, on_pid)
        .await
        .map_err(|e| crate::config::redact::redact(&e).into_owned())
}

/// Whether `initialize` failed because the server wants another lifecycle
/// (it answered with an error, or with no version we share).
fn refused_initialize(e: &ClientInitializeError) -> bool {
    matches!(
        e,
        ClientInitializeError::JsonRpcError(_)
            | ClientInitializeError::NoCompatibleProtocolVersion { .. }
    )
}

fn discover() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

/// Connects with `initialize`, and with `server/discover` on a fresh
/// transport from `open` when the server refuses that.
async fn serve_either<T, E, A, F>(
    lifecycle: Lifecycle,
    backend: &BackendRef,
    handler: impl Fn() -> BackendClient,
    open: impl Fn() -> F,
) -> Result<Running, String>
where
    F: std::future::Future<Output = Result<T, String>>,
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let ordered = async || {
        Ok::<_, String>(Ordered::new(
            open().await?.into_transport(),
            backend.clone(),
        ))
    };
    if lifecycle == Lifecycle::Discover {
        return match handler()
            .serve_with_lifecycle(ordered().await?, discover())
            .await
        {
            Ok(running) => Ok(running),
            Err(d) if refused_initialize(&d) => handler()
                .serve(ordered().await?)
                .await
                .map_err(|e| format!("server/discover failed: {d}; initialize failed: {e}")),
            Err(d) => Err(format!("server/discover failed: {d}")),
        };
    }
    match handler().serve(ordered().await?).await {
        Ok(running) => Ok(running),
        Err(e) if refused_initialize(&e) => handler()
            .serve_with_lifecycle(ordered().await?, discover())
            .await
            .map_err(|d| format!("initialize failed: {e}; server/discover failed: {d}")),
        Err(e) => Err(format!("initialize failed: {e}")),
    }
}

async fn open_transport(
    config: &BackendConfig,
    env: &BackendEnv,
    backend: &BackendRef,
    handler: impl Fn() -> BackendClient,
    on_pid: impl Fn(u32),
) -> Result<Opened, String> {
    let without_direct = |running| Opened {
        running,
        wire: None,
        post: None,
    };
    match &config.transport {
        TransportConfig::Stdio {
            command,
            args,
            env: vars,
            cwd,
            inherit_env,
        } => {
            // The last child started is the one served (`serve_either` may
            // start a second one to connect another way).
            let wire = Mutex::new(None);
            let spawn = || async {
                let (proc, pid) = super::spawn::stdio(super::spawn::StdioSpec {
                    name: &config.name,
                    command,
                    args,
                    env: vars,
                    cwd: cwd.as_deref(),
                    inherit_env,
                    tap: backend.upgrade().map(|b| b.list_tap.clone()),
                })
                .await?;
                if let Some(pid) = pid {
                    on_pid(pid);
                }
                *wire.lock().unwrap_or_else(|p| p.into_inner()) = Some(proc.wire());
                Ok(proc)
            };
            let running = serve_either(config.lifecycle, backend, handler, spawn).await?;
            let wire = wire.lock().unwrap_or_else(|p| p.into_inner()).take();
            Ok(Opened {
                running,
                wire,
                post: None,
            })
        }
        TransportConfig::Http { url, headers } => {
            let headers = header_map(headers)?;
            // The last connection made is the one served, as for stdio.
            let post = Mutex::new(None);
            let connect = || async {
                let cfg = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(headers.clone())
                    .max_concurrent_requests(256)
                    .reinit_on_expired_session(true);
                let (direct, injected) = Post::new(env.http.clone());
                let client = super::http_tap::TappedHttp {
                    http: env.http.clone(),
                    tap: backend.upgrade().map(|b| b.list_tap.clone()),
                    post: Some(direct.clone()),
                };
                *post.lock().unwrap_or_else(|p| p.into_inner()) = Some(direct);
                Ok(Injected::new(
                    StreamableHttpClientTransport::with_client(client, cfg),
                    injected,
                ))
            };
            let running = serve_either(config.lifecycle, backend, handler, connect).await?;
            let post = post.lock().unwrap_or_else(|p| p.into_inner()).take();
            Ok(Opened {
                running,
                wire: None,
                post,
            })
        }
        TransportConfig::Builtin { set } => {
            let handler = handler();
            let serve = env
                .builtins
                .get(set)
                .ok_or_else(|| format!("no built-in tool set `{set}`"))?;
            // The set's task ends when our connection drops its end.
            let (ours, theirs) = super::inprocess::pipe();
            tokio::spawn(serve(theirs));
            handler
                .serve((ours.to_server, ours.from_server))
                .await
                .map(without_direct)
                .map_err(|e| format!("initialize failed: {e}"))
        }
        TransportConfig::Sse { url, headers } => {
            let handler = handler();
            let cfg = super::sse::SseClientConfig {
                url: url.clone(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect(),
                connect_timeout: env.connect_timeout,
                tap: backend.upgrade().map(|b| b.list_tap.clone()),
            };
            let transport = super::sse::connect(env.http.clone(), cfg)
                .await
                .map_err(|e| e.to_string())?;
            handler
                .serve(Ordered::new(transport, backend.clone()))
                .await
                .map(without_direct)
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
