//! The supervisor task that owns a backend's connection: connect (through
//! `open.rs`), serve, watch health, and reconnect with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::service::ClientCacheConfig;

use super::client::BackendClient;
use super::{Backend, BackendEnv, BackendRef, BackendState, Catalog, LiveEnv};
use crate::config::DownBackends;
use crate::coordinator::ListKinds;

use super::open::{Opened, open};

/// How long a closing connection may take before its child is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The supervisor: connects, fills the catalog, watches the connection, and
/// when it fails (the process exits, the connection drops, or health pings go
/// unanswered) marks the backend down and reconnects with exponential backoff
/// and jitter, until the backend is stopped. Holds only a weak reference
/// between steps, so a dropped backend ends its supervisor.
pub(super) async fn supervise(
    weak: BackendRef,
    live: LiveEnv,
    capabilities: rmcp::model::ClientCapabilities,
) {
    let first = live.load();
    let mut backoff = Backoff::new(first.restart_min_backoff, first.restart_max_backoff);
    drop(first);
    loop {
        // Each attempt reads the settings in force now (a reload may have changed them).
        let env = live.load_full();
        backoff.set_bounds(env.restart_min_backoff, env.restart_max_backoff);
        let pid = Arc::new(AtomicU32::new(0));
        let outcome = run_once(&weak, &env, &live, &capabilities, &pid).await;
        // A stdio child leads its own process group: whatever it started (the
        // server behind `npx`, a helper process) goes with it.
        match pid.load(Ordering::Relaxed) {
            0 => {}
            pgid => reap_process_group(pgid).await,
        }
        let connected_for = match outcome {
            Outcome::Stopped => return,
            Outcome::Failed { connected_for } => connected_for,
        };
        let Some(backend) = weak.upgrade() else {
            return;
        };
        if connected_for >= STABLE_AFTER {
            backoff.reset();
        }
        let delay = backoff.next();
        // Target `queue`: logged, and published on the bus (builtin::bus).
        tracing::info!(target: "queue", backend = %backend.name(), delay = %humantime::format_duration(delay), "restarting backend");
        let shutdown = backend.shutdown.clone();
        drop(backend);
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Some(b) = weak.upgrade() {
                    b.set_state(BackendState::Stopped);
                }
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        match weak.upgrade() {
            Some(b) => {
                b.restarts.fetch_add(1, Ordering::Relaxed);
                crate::metrics::backend_restart(b.name());
                b.audit.event(
                    "info",
                    "backend_restarted",
                    format!("backend {} restarted", b.name()),
                    serde_json::json!({"backend": b.name(), "restarts": b.restarts()}),
                );
            }
            None => return,
        }
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

/// A connection that stayed up this long resets the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Exponential backoff with full jitter between `min` and the current ceiling.
struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            ceiling: min,
        }
    }

    fn reset(&mut self) {
        self.ceiling = self.min;
    }

    /// Takes on new bounds (a reload), keeping the current ceiling within them.
    fn set_bounds(&mut self, min: Duration, max: Duration) {
        self.min = min;
        self.max = max.max(min);
        self.ceiling = self.ceiling.clamp(self.min, self.max);
    }

    fn next(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        // Jitter spreads restarts of many backends that failed together.
        let span = ceiling.saturating_sub(self.min).as_millis() as u64;
        let jitter = if span == 0 {
            0
        } else {
            jitter_seed() % (span + 1)
        };
        self.min + Duration::from_millis(jitter)
    }
}

fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

enum Outcome {
    /// The backend was stopped: do not reconnect.
    Stopped,
    /// The connection could not be made or ended; reconnect after a delay.
    Failed { connected_for: Duration },
}

/// One connection's life: connect, serve until it ends, clean up.
async fn run_once(
    weak: &BackendRef,
    env: &BackendEnv,
    live: &LiveEnv,
    capabilities: &rmcp::model::ClientCapabilities,
    pid: &Arc<AtomicU32>,
) -> Outcome {
    let failed = Outcome::Failed {
        connected_for: Duration::ZERO,
    };
    let (
        Opened {
            running,
            wire,
            post,
        },
        shutdown,
    ) = match connect(weak, env, capabilities, pid).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };

    let peer = running.peer().clone();
    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let Some(backend) = weak.upgrade() else {
        ct.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE * 3, &mut waiting).await;
        return Outcome::Stopped;
    };
    backend.server_info.store(peer.peer_info());
    backend.peer.store(Some(Arc::new(peer.clone())));
    backend.wire.store(wire);
    backend.post.store(post);
    let fill = tokio::time::timeout(env.connect_timeout, backend.refresh(ListKinds::ALL)).await;
    let up = match fill {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("listing failed: {e}")),
        Err(_) => Err("listing timed out".to_string()),
    };
    if let Err(reason) = up {
        backend.peer.store(None);
        backend.wire.store(None);
        backend.post.store(None);
        backend.set_state(BackendState::Down(reason));
        ct.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE * 3, &mut waiting).await;
        return failed;
    }
    backend.set_state(BackendState::Up);
    restore_session_state(&backend, env).await;
    // Sessions learn about what this backend now offers.
    env.hub.lists_recompute();
    drop(backend);

    let started = Instant::now();
    let lists = follow_lists(peer.clone(), weak.clone(), env.hub.clone());
    tokio::pin!(lists);
    let health = health_watch(peer, live.clone());
    tokio::pin!(health);
    let reason = tokio::select! {
        _ = &mut waiting => Some("connection closed by the backend".to_string()),
        never = &mut lists => match never {},
        failure = &mut health => {
            ct.cancel();
            let _ = tokio::time::timeout(CLOSE_GRACE * 3, &mut waiting).await;
            Some(failure)
        }
        _ = shutdown.cancelled() => {
            ct.cancel();
            let _ = tokio::time::timeout(CLOSE_GRACE * 3, &mut waiting).await;
            None
        }
    };
    ended(weak, env, live, reason, started)
}

/// Opens the connection within `connect_timeout`; on failure the backend is
/// already marked down (or stopped) and the outcome says what next.
async fn connect(
    weak: &BackendRef,
    env: &BackendEnv,
    capabilities: &rmcp::model::ClientCapabilities,
    pid: &Arc<AtomicU32>,
) -> Result<(Opened, tokio_util::sync::CancellationToken), Outcome> {
    let failed = Outcome::Failed {
        connected_for: Duration::ZERO,
    };
    let Some(backend) = weak.upgrade() else {
        return Err(Outcome::Stopped);
    };
    let shutdown = backend.shutdown.clone();
    let config = backend.config.clone();
    let handler = || BackendClient {
        backend: weak.clone(),
        hub: env.hub.clone(),
        capabilities: capabilities.clone(),
        log_limit: crate::ratelimit::KeyedLimiter::per_second(
            super::client::LOG_RATE,
            super::client::LOG_BURST,
        ),
        roots_cache: tokio::sync::Mutex::new(None),
    };
    let attempt = async {
        let opened = open(&config, env, weak, handler, |p| {
            backend.pid.store(p, Ordering::Relaxed);
            pid.store(p, Ordering::Relaxed);
        })
        .await?;
        opened
            .running
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        Ok::<_, String>(opened)
    };
    tokio::select! {
        _ = shutdown.cancelled() => {
            backend.set_state(BackendState::Stopped);
            Err(Outcome::Stopped)
        }
        r = tokio::time::timeout(env.connect_timeout, attempt) => match r {
            Ok(Ok(running)) => Ok((running, shutdown)),
            Ok(Err(reason)) => {
                backend.set_state(BackendState::Down(reason));
                Err(failed)
            }
            Err(_) => {
                backend.set_state(BackendState::Down(format!(
                    "did not finish connecting within {}",
                    humantime::format_duration(env.connect_timeout)
                )));
                Err(failed)
            }
        }
    }
}

/// The connection ended: stopped (`reason` is `None`) or down for `reason`.
fn ended(
    weak: &BackendRef,
    env: &BackendEnv,
    live: &LiveEnv,
    reason: Option<String>,
    started: Instant,
) -> Outcome {
    let Some(backend) = weak.upgrade() else {
        return Outcome::Stopped;
    };
    backend.peer.store(None);
    backend.wire.store(None);
    backend.post.store(None);
    match reason {
        None => {
            backend.catalog.store(Arc::new(Catalog::default()));
            backend.set_state(BackendState::Stopped);
            Outcome::Stopped
        }
        Some(reason) => {
            if live.load().down_backends == DownBackends::Hide {
                backend.catalog.store(Arc::new(Catalog::default()));
            }
            backend.set_state(BackendState::Down(reason));
            env.hub.lists_recompute();
            Outcome::Failed {
                connected_for: started.elapsed(),
            }
        }
    }
}

/// Pings the backend every `health_interval`; returns why when it stops
/// answering. Reads the interval and timeout live at every round.
async fn health_watch(peer: rmcp::Peer<RoleClient>, live: LiveEnv) -> String {
    // Wakes at least every second to re-read the interval, so a reload that
    // shortens it takes effect without waiting out the old one.
    const RECHECK: Duration = Duration::from_secs(1);
    let mut last = Instant::now();
    loop {
        let (interval, timeout) = {
            let env = live.load();
            (env.health_interval, env.health_timeout)
        };
        let due = last + interval;
        let now = Instant::now();
        if now < due {
            tokio::time::sleep((due - now).min(RECHECK)).await;
            continue;
        }
        last = now;
        let ping = peer.send_request(rmcp::model::ClientRequest::PingRequest(Default::default()));
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => {}
            // A backend that does not implement ping is alive all the same.
            Ok(Err(rmcp::service::ServiceError::McpError(_))) => {}
            // An HTTP client's error may quote the URL, query and all.
            Ok(Err(e)) => {
                return crate::config::redact::redact(&format!("health check failed: {e}"))
                    .into_owned();
            }
            Err(_) => {
                return format!(
                    "health check failed: no answer to ping within {}",
                    humantime::format_duration(timeout)
                );
            }
        }
    }
}

/// A backend that speaks 2026-07-28 announces list changes and resource
/// updates on a `subscriptions/listen` stream, not unprompted: this keeps one
/// open for the connection's life, asking for every list kind and for the
/// URIs sessions subscribed to (opened again when those change), and feeds
/// what it brings to the coordinator, as `BackendClient` does for other
/// backends. Polled with the connection, so it ends with it; never completes
/// on its own.
async fn follow_lists(
    peer: rmcp::Peer<RoleClient>,
    weak: BackendRef,
    hub: Arc<crate::coordinator::Hub>,
) -> std::convert::Infallible {
    let modern = peer
        .peer_info()
        .is_some_and(|i| !i.protocol_version.has_initialize());
    let Some(mut uris) = weak.upgrade().map(|b| b.listen_uris()) else {
        return std::future::pending().await;
    };
    let name = weak
        .upgrade()
        .map(|b| b.name().to_string())
        .unwrap_or_default();
    // The stream being replaced, dropped once the new one is open, so no
    // notification falls between them (one may come twice).
    let mut previous = None;
    if !modern {
        return std::future::pending().await;
    }
    loop {
        let asked: Vec<String> = uris.borrow_and_update().iter().cloned().collect();
        let filter = rmcp::model::SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed()
            .resource_subscriptions(asked)
            .build();
        let mut sub = match peer.listen(filter).await {
            Ok(sub) => {
                drop(previous.take());
                sub
            }
            Err(e) => {
                tracing::warn!(backend = %name, error = %e, "the backend refused subscriptions/listen; its list changes and resource updates are not followed");
                break;
            }
        };
        loop {
            tokio::select! {
                n = sub.next() => {
                    let Ok(Some(n)) = n else {
                        tracing::debug!(backend = %name, "the backend's listen stream ended");
                        return std::future::pending().await;
                    };
                    let Some(backend) = weak.upgrade() else {
                        return std::future::pending().await;
                    };
                    use rmcp::model::ServerNotification as N;
                    let kinds = match n {
                        N::ToolListChangedNotification(_) => ListKinds::TOOLS,
                        N::PromptListChangedNotification(_) => ListKinds::PROMPTS,
                        N::ResourceListChangedNotification(_) => ListKinds::RESOURCES,
                        N::ResourceUpdatedNotification(u) => {
                            hub.resource_updated(
                                super::prefix_uri(&backend.config.prefix, &u.params.uri),
                                backend.owner,
                            );
                            continue;
                        }
                        _ => continue,
                    };
                    hub.list_changed(backend.id, kinds);
                }
                // Sessions subscribed or unsubscribed: ask again (dropping
                // the stream cancels it on the backend).
                changed = uris.changed() => if changed.is_err() {
                    return std::future::pending().await;
                } else {
                    break;
                },
            }
        }
        previous = Some(sub);
    }
    std::future::pending().await
}

/// After a (re)connect: the log level and resource subscriptions the
/// sessions asked for, which a new connection does not have.
async fn restore_session_state(backend: &Backend, env: &BackendEnv) {
    // A session's own connection follows that session's level; a shared one
    // the most verbose level any session asked for.
    let level = match backend.owner {
        Some(owner) => env
            .hub
            .session(owner)
            .filter(|s| s.has_set_log_level())
            .map(|s| crate::coordinator::level_from_u8(s.log_level())),
        None => env.hub.log_floor_for(backend.name()),
    };
    if let Some(level) = level {
        backend.set_log_level(level).await;
    }
    if !backend.supports_subscriptions() {
        return;
    }
    let prefix = &backend.config.prefix;
    let catalog = backend.catalog();
    for exposed in env.hub.subscribed_uris(backend.owner) {
        let own = if prefix.is_empty() {
            catalog
                .resources
                .iter()
                .any(|r| r.uri == exposed)
                .then(|| exposed.clone())
        } else {
            exposed
                .strip_prefix(&format!("{prefix}+"))
                .map(String::from)
        };
        if let Some(uri) = own
            && let Err(e) = backend.subscribe(uri).await
        {
            tracing::warn!(backend = %backend.name(), uri = %exposed, error = %e, "could not restore a subscription");
        }
    }
}
