//! Opening a backend connection for each transport: stdio, streamable
//! HTTP, SSE, and the in-process built-in sets.

use std::collections::HashMap;

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};

use super::BackendEnv;
use super::client::BackendClient;
use crate::config::{BackendConfig, Secret, TransportConfig};

pub(super) type Running = RunningService<RoleClient, BackendClient>;

/// Opens the connection. The error becomes the backend's `down` reason,
/// shown by `/readyz` and `/status`: secrets are taken out of it.
pub(super) async fn open(
    config: &BackendConfig,
    env: &BackendEnv,
    handler: BackendClient,
    on_pid: impl FnOnce(u32),
) -> Result<Running, String> {
    open_transport(config, env, handler, on_pid)
        .await
        .map_err(|e| crate::config::redact::redact(&e).into_owned())
}

async fn open_transport(
    config: &BackendConfig,
    env: &BackendEnv,
    handler: BackendClient,
    on_pid: impl FnOnce(u32),
) -> Result<Running, String> {
    match &config.transport {
        TransportConfig::Stdio {
            command,
            args,
            env: vars,
            cwd,
            inherit_env,
        } => {
            let (proc, pid) = super::spawn::stdio(super::spawn::StdioSpec {
                name: &config.name,
                command,
                args,
                env: vars,
                cwd: cwd.as_deref(),
                inherit_env,
            })
            .await?;
            if let Some(pid) = pid {
                on_pid(pid);
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
                .ok_or_else(|| format!("no built-in tool set `{set}`"))?;
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
