//! `[server]` and `[limits]`: the listener, its timeouts and the request limits.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::load::{Cx, duration, positive};
use super::model::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    separator: Option<Spanned<String>>,
    session_idle_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    call_timeout: Option<Spanned<String>>,
    relay_timeout: Option<Spanned<String>>,
    restart_min_backoff: Option<Spanned<String>>,
    restart_max_backoff: Option<Spanned<String>>,
    health_interval: Option<Spanned<String>>,
    health_timeout: Option<Spanned<String>>,
    down_backends: Option<RawDownBackends>,
    worker_threads: Option<Spanned<i64>>,
    max_request_bytes: Option<Spanned<i64>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    allow_unauthenticated: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    instance_id: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawDownBackends {
    Hide,
    Error,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    request_timeout: Option<Spanned<String>>,
    max_concurrent_requests: Option<Spanned<i64>>,
    max_concurrent_per_client: Option<Spanned<i64>>,
    rate_limit_per_second: Option<Spanned<f64>>,
    rate_limit_burst: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
}

pub(super) fn build_server(raw: RawServer, cx: &mut Cx<'_>) -> ServerConfig {
    let mut s = ServerConfig::default();
    addresses(&raw, &mut s, cx);
    instance(&raw, &mut s, cx);
    timeouts(&raw, &mut s, cx);
    connections(raw, &mut s, cx);
    s
}

/// Where the gateway listens and how it names what it exposes.
fn addresses(raw: &RawServer, s: &mut ServerConfig, cx: &mut Cx<'_>) {
    if let Some(listen) = &raw.listen {
        match listen.get_ref().parse() {
            Ok(addr) => s.listen = addr,
            Err(_) => cx.error(
                listen.span(),
                format!(
                    "invalid listen address \"{}\" (expected HOST:PORT, e.g. \"127.0.0.1:8123\")",
                    listen.get_ref()
                ),
            ),
        }
    }
    if let Some(path) = &raw.path {
        if path.get_ref().starts_with('/') && !path.get_ref().contains(char::is_whitespace) {
            s.path = path.get_ref().clone();
        } else {
            cx.error(
                path.span(),
                format!("path \"{}\" must start with `/`", path.get_ref()),
            );
        }
    }
    if let Some(sep) = &raw.separator {
        let v = sep.get_ref();
        if !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            s.separator = v.clone();
        } else {
            cx.error(sep.span(), format!("separator \"{v}\" must be non-empty and use only letters, digits, `_`, `-` or `.`"));
        }
    }
}

/// The instance's name (after `listen`, whose port the default uses) and its drain.
fn instance(raw: &RawServer, s: &mut ServerConfig, cx: &mut Cx<'_>) {
    s.instance_id = match &raw.instance_id {
        Some(id) if super::sessions::valid_instance_id(id.get_ref()) => id.get_ref().clone(),
        Some(id) => {
            cx.error(
                id.span(),
                format!(
                    "instance_id \"{}\" must be 1 to 64 letters, digits, `-` or `_` (it starts every session id)",
                    id.get_ref()
                ),
            );
            s.instance_id.clone()
        }
        None => super::sessions::default_instance_id(s.listen.port()),
    };
    s.drain_timeout = duration(&raw.drain_timeout, s.drain_timeout, cx);
}

/// Backend timeouts, restart backoff and health checks.
fn timeouts(raw: &RawServer, s: &mut ServerConfig, cx: &mut Cx<'_>) {
    s.session_idle_timeout = duration(&raw.session_idle_timeout, s.session_idle_timeout, cx);
    s.connect_timeout = duration(&raw.connect_timeout, s.connect_timeout, cx);
    s.call_timeout = duration(&raw.call_timeout, s.call_timeout, cx);
    s.relay_timeout = duration(&raw.relay_timeout, s.relay_timeout, cx);
    s.restart_min_backoff = duration(&raw.restart_min_backoff, s.restart_min_backoff, cx);
    s.restart_max_backoff = duration(&raw.restart_max_backoff, s.restart_max_backoff, cx);
    if s.restart_max_backoff < s.restart_min_backoff
        && let Some(max) = &raw.restart_max_backoff
    {
        cx.error(
            max.span(),
            "restart_max_backoff must not be below restart_min_backoff",
        );
    }
    s.health_interval = duration(&raw.health_interval, s.health_interval, cx);
    s.health_timeout = duration(&raw.health_timeout, s.health_timeout, cx);
    if let Some(d) = raw.down_backends {
        s.down_backends = match d {
            RawDownBackends::Hide => DownBackends::Hide,
            RawDownBackends::Error => DownBackends::Error,
        };
    }
}

/// What a client connection may do: header and idle timeouts, sizes, hosts, origins.
fn connections(raw: RawServer, s: &mut ServerConfig, cx: &mut Cx<'_>) {
    s.header_timeout = duration(&raw.header_timeout, s.header_timeout, cx);
    s.idle_timeout = duration(&raw.idle_timeout, s.idle_timeout, cx);
    if let Some(n) = positive(&raw.max_connections, "max_connections", cx) {
        s.max_connections = n;
    }
    s.allow_unauthenticated = raw.allow_unauthenticated.unwrap_or(false);
    if let Some(max) = &raw.max_request_bytes {
        match usize::try_from(*max.get_ref()) {
            Ok(n) if n >= 1024 => s.max_request_bytes = n,
            _ => cx.error(max.span(), "max_request_bytes must be at least 1024"),
        }
    }
    if let Some(n) = &raw.worker_threads {
        match usize::try_from(*n.get_ref()) {
            Ok(n @ 1..=1024) => s.worker_threads = Some(n),
            _ => cx.error(n.span(), "worker_threads must be between 1 and 1024"),
        }
    }
    if let Some(hosts) = raw.allowed_hosts {
        s.allowed_hosts = hosts;
    }
    for origin in raw.allowed_origins.unwrap_or_default() {
        let o = origin.get_ref();
        if o != "*" && o != "null" && !o.contains("://") {
            cx.error(
                origin.span(),
                format!("allowed origin \"{o}\" must be `*`, `null` or SCHEME://HOST[:PORT|:*]"),
            );
        }
        s.allowed_origins.push(origin.into_inner());
    }
}

pub(super) fn build_limits(raw: RawLimits, cx: &mut Cx<'_>) -> LimitsConfig {
    let mut l = LimitsConfig::default();
    if raw.request_timeout.is_some() {
        l.request_timeout = Some(duration(&raw.request_timeout, Duration::ZERO, cx));
    }
    if raw.max_concurrent_requests.is_some() {
        l.max_concurrent_requests =
            positive(&raw.max_concurrent_requests, "max_concurrent_requests", cx);
    }
    l.max_concurrent_per_client = match &raw.max_concurrent_per_client {
        Some(_) => positive(
            &raw.max_concurrent_per_client,
            "max_concurrent_per_client",
            cx,
        ),
        None => LimitsConfig::fair_share(l.max_concurrent_requests),
    };
    if let Some(n) = positive(&raw.max_sessions, "max_sessions", cx) {
        l.max_sessions = n;
    }
    if let Some(rate) = &raw.rate_limit_per_second {
        let r = *rate.get_ref();
        if r.is_finite() && r > 0.0 {
            l.rate_limit_per_second = Some(r);
        } else {
            cx.error(
                rate.span(),
                "rate_limit_per_second must be greater than zero",
            );
        }
    }
    if let Some(burst) = positive(&raw.rate_limit_burst, "rate_limit_burst", cx) {
        if l.rate_limit_per_second.is_none()
            && let Some(span) = raw.rate_limit_burst.as_ref().map(|b| b.span())
        {
            cx.error(span, "rate_limit_burst needs rate_limit_per_second");
        }
        l.rate_limit_burst = Some(u32::try_from(burst).unwrap_or(u32::MAX));
    }
    l
}
