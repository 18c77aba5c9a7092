//! Who may use the gateway and how much: the state behind the auth and
//! limits layers and the session's allow-list checks.
//!
//! Built from `[auth]` and `[limits]`; [`Policy::update`] swaps in a new
//! config (hot reload) so the next request sees it, while requests in flight
//! keep the permits they hold. This module decides; it never builds a
//! response (that is `reject.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::sessions::Sessions;
use crate::config::{AuthConfig, Config, LimitsConfig, NameFilter};
use crate::ratelimit::KeyedLimiter;
use crate::store::sessions::SharedSessions;

/// The auth and limits in force; swapped whole on reload.
pub struct Policy {
    auth: ArcSwap<Auth>,
    limits: ArcSwap<Limits>,
    /// Which client opened each MCP session; kept across reloads.
    pub sessions: SessionOwners,
}

impl Policy {
    pub fn new(config: &Config) -> Self {
        Self {
            auth: ArcSwap::from_pointee(Auth::new(&config.auth)),
            limits: ArcSwap::from_pointee(Limits::new(&config.limits)),
            sessions: SessionOwners::default(),
        }
    }

    /// Applies a new config's `[auth]` and `[limits]`, each only if it
    /// changed (so rate-limit buckets survive an unrelated reload).
    pub fn update(&self, config: &Config) {
        if self.auth.load().config != config.auth {
            self.auth.store(Arc::new(Auth::new(&config.auth)));
        }
        if self.limits.load().config != config.limits {
            self.limits.store(Arc::new(Limits::new(&config.limits)));
        }
    }

    pub fn auth(&self) -> Arc<Auth> {
        self.auth.load_full()
    }

    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
    }
}

impl crate::reload::ConfigListener for Policy {
    fn apply(&self, config: &Config) {
        // New tokens, allow-lists and limits apply from the next request.
        self.update(config);
    }
}

/// An authenticated client and what it may use.
#[derive(Debug)]
pub struct Client {
    pub id: Arc<str>,
    /// May use `/admin/*`, see everything in status, and read every client's
    /// audit entries.
    pub admin: bool,
    backends: Option<NameFilter>,
    tools: Option<NameFilter>,
}

impl Client {
    /// Whether the client may see and use anything of `backend`.
    pub fn may_use_backend(&self, backend: &str) -> bool {
        self.backends.as_ref().is_none_or(|f| f.allows(backend))
    }

    /// Whether the client may see and call the exposed tool `tool` of `backend`.
    pub fn may_call_tool(&self, backend: &str, tool: &str) -> bool {
        self.may_use_backend(backend) && self.tools.as_ref().is_none_or(|f| f.allows(tool))
    }
}

/// The bearer tokens, kept only as SHA-256 digests.
pub struct Auth {
    config: AuthConfig,
    clients: Vec<([u8; 32], Arc<Client>)>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    fn new(config: &AuthConfig) -> Self {
        let clients = config
            .tokens
            .iter()
            .map(|t| {
                let client = Client {
                    id: t.client_id.as_str().into(),
                    admin: t.admin,
                    backends: t.backends.clone(),
                    tools: t.tools.clone(),
                };
                (digest(t.token.expose()), Arc::new(client))
            })
            .collect();
        Self {
            config: config.clone(),
            clients,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    /// The configured client with this id (for calls made on its behalf
    /// without a token at hand, such as its jobs).
    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .iter()
            .find(|(_, c)| &*c.id == id)
            .map(|(_, c)| c.clone())
    }

    /// The client a presented token belongs to. Compares digests (fixed
    /// length) in constant time against every token, so neither the length
    /// nor the position of a match shows in the timing.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<Client>> {
        let presented = digest(presented);
        let mut found = None;
        for (d, client) in &self.clients {
            if bool::from(d.ct_eq(&presented)) {
                found = Some(client.clone());
            }
        }
        found
    }
}

/// Which authenticated client opened each MCP session (by its
/// `Mcp-Session-Id`), so that no other token can use it for anything: not
/// to post, not to open its stream, not to delete it.
///
/// An entry goes when its session is deleted or found gone; sessions that
/// end by themselves (idle timeout) are pruned against rmcp's session table
/// whenever the table here has doubled since the last prune.
#[derive(Default)]
pub struct SessionOwners {
    /// Locked only to look up, insert or remove; never across an await.
    owners: Mutex<HashMap<Arc<str>, Arc<str>>>,
    /// The size after the last prune.
    pruned_at: AtomicUsize,
    /// rmcp's sessions, to tell which are still alive; set once by the HTTP front.
    live: OnceLock<Weak<Sessions>>,
    /// The shared session table (`[sessions] store = "redis"`), where a
    /// session's client id is kept for the instance that restores it.
    shared: OnceLock<(Arc<SharedSessions>, Duration)>,
}

/// The size below which the owner table is never pruned.
const PRUNE_FLOOR: usize = 1024;

impl SessionOwners {
    /// Prunes against `sessions` from now on.
    pub fn track(&self, sessions: &Arc<Sessions>) {
        let _ = self.live.set(Arc::downgrade(sessions));
    }

    /// The client that opened `session`, if it is known here.
    pub fn owner(&self, session: &str) -> Option<Arc<str>> {
        self.lock().get(session).cloned()
    }

    /// Records that `client` opened `session`.
    pub fn bind(&self, session: &str, client: Arc<str>) {
        let mut owners = self.lock();
        owners.insert(session.into(), client);
        let threshold = (2 * self.pruned_at.load(Ordering::Relaxed)).max(PRUNE_FLOOR);
        if owners.len() > threshold
            && let Some(live) = self.live.get().and_then(Weak::upgrade)
            // Never wait here: if rmcp's table is busy, prune on a later bind.
            && let Ok(sessions) = live.local.sessions.try_read()
        {
            owners.retain(|id, _| sessions.contains_key(id));
            self.pruned_at.store(owners.len(), Ordering::Relaxed);
        }
    }

    /// Keeps the client ids of sessions in `table` too, from now on.
    pub fn share(&self, table: Arc<SharedSessions>, ttl: Duration) {
        let _ = self.shared.set((table, ttl));
    }

    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// Records that `client` opened `session`, here and (awaited, so that the
    /// client cannot reach another instance first) in the shared table.
    pub async fn bind_shared(&self, session: &str, client: Arc<str>) {
        self.bind(session, client.clone());
        if let Some((table, ttl)) = self.shared.get()
            && let Err(e) = table.put(session, &[("client", &client)], *ttl).await
        {
            tracing::warn!(error = %e, "cannot record a session's client in the shared store; it cannot move to another instance");
        }
    }

    /// Whether `client` may take over `session` from the shared table (it
    /// opened it); binds it here when so. An unreachable store says no.
    pub async fn claim_shared(&self, session: &str, client: &Arc<str>) -> bool {
        let Some((table, _)) = self.shared.get() else {
            return false;
        };
        match table.load(session).await {
            Ok(Some(record)) if record.client.as_deref() == Some(&**client) => {
                self.bind(session, client.clone());
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared session store; answering as for an unknown session");
                false
            }
        }
    }

    /// Forgets `session` (deleted, or unknown to rmcp).
    pub fn forget(&self, session: &str) {
        self.lock().remove(session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<str>>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a request was refused by a limit.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "the gateway is at its limit of {limit} concurrent requests (limits.max_concurrent_requests); retry shortly"
    )]
    Overloaded { limit: usize },
    #[error(
        "client `{client}` is at its limit of {limit} concurrent requests (limits.max_concurrent_per_client)"
    )]
    ClientBusy { client: String, limit: usize },
    #[error(
        "client `{client}` exceeded its rate limit of {rate} requests per second (limits.rate_limit_per_second); retry in {}",
        humantime::format_duration(*retry_after)
    )]
    RateLimited {
        client: String,
        rate: f64,
        retry_after: Duration,
    },
}

/// Above this many tracked clients, idle ones are forgotten (a client is
/// keyed by remote address when there is no auth, so the set is open).
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Concurrency caps and rate buckets.
pub struct Limits {
    pub config: LimitsConfig,
    /// Permits for every MCP request in flight; a permit lives as long as the
    /// request's response body, so it is returned when the answer is sent.
    global: Option<Arc<Semaphore>>,
    /// Per-client concurrency, created on a client's first request. Locked
    /// only to look up or insert, never across an await.
    clients: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The per-client request rate (`rate_limit_per_second`); forgets idle
    /// clients by itself.
    rate: Option<KeyedLimiter>,
}

/// Permits held for one admitted request; dropping them frees the slots.
pub struct Admitted {
    _permits: Vec<OwnedSemaphorePermit>,
}

impl Limits {
    fn new(config: &LimitsConfig) -> Self {
        let rate = config.rate_limit_per_second.and_then(|rate| {
            let burst = config
                .rate_limit_burst
                .unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
            KeyedLimiter::per_second(rate, burst)
        });
        Self {
            config: config.clone(),
            global: config
                .max_concurrent_requests
                .map(|n| Arc::new(Semaphore::new(n))),
            clients: Mutex::new(HashMap::new()),
            rate,
        }
    }

    /// The concurrency semaphore of `client`, created on its first request.
    fn client_slots(&self, client: &str, limit: usize) -> Arc<Semaphore> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(client) {
            // Keep the clients with requests in flight; the rest start over.
            clients.retain(|_, s| s.available_permits() < limit);
        }
        clients
            .entry(client.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone()
    }

    /// Admits one MCP request from `client` (a client id or a remote
    /// address), or says which limit refuses it. Refusals are immediate:
    /// a client that waits gains nothing over one that retries.
    pub fn admit(&self, client: &str) -> Result<Admitted, LimitError> {
        let mut permits = Vec::with_capacity(2);
        if let (Some(limiter), Some(rate)) = (&self.rate, self.config.rate_limit_per_second) {
            limiter
                .check(client)
                .map_err(|wait| LimitError::RateLimited {
                    client: client.to_string(),
                    rate,
                    // Whole milliseconds, rounded up, as clients read them.
                    retry_after: Duration::from_millis(wait.as_micros().div_ceil(1000) as u64),
                })?;
        }
        if let Some(limit) = self.config.max_concurrent_per_client {
            permits.push(
                self.client_slots(client, limit)
                    .try_acquire_owned()
                    .map_err(|_| LimitError::ClientBusy {
                        client: client.to_string(),
                        limit,
                    })?,
            );
        }
        if let Some(sem) = &self.global {
            let limit = self.config.max_concurrent_requests.unwrap_or_default();
            permits.push(
                sem.clone()
                    .try_acquire_owned()
                    .map_err(|_| LimitError::Overloaded { limit })?,
            );
        }
        Ok(Admitted { _permits: permits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, TokenConfig};

    #[test]
    fn tokens_match_their_client_only() {
        let auth = Auth::new(&AuthConfig {
            tokens: vec![
                TokenConfig {
                    client_id: "a".into(),
                    token: Secret::new("token-aaaa"),
                    backends: None,
                    tools: None,
                    admin: true,
                },
                TokenConfig {
                    client_id: "b".into(),
                    token: Secret::new("token-bbbb"),
                    backends: Some(NameFilter::new(vec!["fx".into()], vec![]).unwrap()),
                    tools: None,
                    admin: false,
                },
            ],
        });
        assert_eq!(&*auth.authenticate("token-aaaa").unwrap().id, "a");
        let b = auth.authenticate("token-bbbb").unwrap();
        assert!(b.may_use_backend("fx") && !b.may_use_backend("other"));
        assert!(auth.authenticate("token-aaaa").unwrap().admin && !b.admin);
        assert!(auth.authenticate("token-aaa").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn rate_limit_refills_and_concurrency_frees_on_drop() {
        let limits = Limits::new(&LimitsConfig {
            rate_limit_per_second: Some(1000.0),
            rate_limit_burst: Some(2),
            max_concurrent_per_client: Some(1),
            ..LimitsConfig::default()
        });
        let first = limits.admit("c").unwrap();
        assert!(matches!(
            limits.admit("c"),
            Err(LimitError::ClientBusy { .. })
        ));
        drop(first);
        std::thread::sleep(Duration::from_millis(5));
        let _second = limits.admit("c").unwrap();
        assert!(limits.admit("other").is_ok());
        let slow = Limits::new(&LimitsConfig {
            rate_limit_per_second: Some(0.5),
            ..LimitsConfig::default()
        });
        assert!(slow.admit("c").is_ok());
        match slow.admit("c") {
            Err(LimitError::RateLimited { retry_after, .. }) => {
                assert!(retry_after > Duration::from_secs(1))
            }
            other => panic!("expected a rate limit, got {:?}", other.err()),
        }
    }
}
