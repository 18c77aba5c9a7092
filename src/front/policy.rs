//! Who may use the gateway and how much: the state behind the auth and
//! limits layers and the session's allow-list checks.
//!
//! Built from `[auth]` and `[limits]`; [`Policy::update`] swaps in a new
//! config (hot reload) so the next request sees it, while requests in flight
//! keep the permits they hold. This module decides; it never builds a
//! response (that is `reject.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{AuthConfig, Config, LimitsConfig, NameFilter};

/// The auth and limits in force; swapped whole on reload.
pub struct Policy {
    auth: ArcSwap<Auth>,
    limits: ArcSwap<Limits>,
}

impl Policy {
    pub fn new(config: &Config) -> Self {
        Self {
            auth: ArcSwap::from_pointee(Auth::new(&config.auth)),
            limits: ArcSwap::from_pointee(Limits::new(&config.limits)),
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

/// An authenticated client and what it may use.
#[derive(Debug)]
pub struct Client {
    pub id: Arc<str>,
    backends: Option<NameFilter>,
    tools: Option<NameFilter>,
    /// `admin = true` on its token: may read every client's audit entries.
    pub admin: bool,
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
                    backends: t.backends.clone(),
                    tools: t.tools.clone(),
                    admin: t.admin,
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
    /// Per-client state, created on a client's first request. Locked only to
    /// look up or insert, never across an await.
    clients: Mutex<HashMap<String, ClientLimits>>,
}

struct ClientLimits {
    concurrency: Option<Arc<Semaphore>>,
    bucket: Option<Bucket>,
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Permits held for one admitted request; dropping them frees the slots.
pub struct Admitted {
    _permits: Vec<OwnedSemaphorePermit>,
}

impl Limits {
    fn new(config: &LimitsConfig) -> Self {
        Self {
            config: config.clone(),
            global: config
                .max_concurrent_requests
                .map(|n| Arc::new(Semaphore::new(n))),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn burst(&self) -> f64 {
        match (
            self.config.rate_limit_burst,
            self.config.rate_limit_per_second,
        ) {
            (Some(b), _) => f64::from(b),
            (None, Some(rate)) => rate.ceil().max(1.0),
            (None, None) => 0.0,
        }
    }

    /// Admits one MCP request from `client` (a client id or a remote
    /// address), or says which limit refuses it. Refusals are immediate:
    /// a client that waits gains nothing over one that retries.
    pub fn admit(&self, client: &str) -> Result<Admitted, LimitError> {
        let mut permits = Vec::with_capacity(2);
        let per_client = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(client) {
                // Keep the clients with requests in flight; the rest start over.
                let limit = self.config.max_concurrent_per_client.unwrap_or_default();
                clients.retain(|_, c| {
                    c.concurrency
                        .as_ref()
                        .is_some_and(|s| s.available_permits() < limit)
                });
            }
            let burst = self.burst();
            let state = clients
                .entry(client.to_string())
                .or_insert_with(|| ClientLimits {
                    concurrency: self
                        .config
                        .max_concurrent_per_client
                        .map(|n| Arc::new(Semaphore::new(n))),
                    bucket: self.config.rate_limit_per_second.map(|_| Bucket {
                        tokens: burst,
                        at: Instant::now(),
                    }),
                });
            if let (Some(bucket), Some(rate)) =
                (state.bucket.as_mut(), self.config.rate_limit_per_second)
            {
                let now = Instant::now();
                let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
                bucket.tokens = (bucket.tokens + refill).min(burst);
                bucket.at = now;
                if bucket.tokens < 1.0 {
                    let wait = (1.0 - bucket.tokens) / rate;
                    return Err(LimitError::RateLimited {
                        client: client.to_string(),
                        rate,
                        retry_after: Duration::from_millis((wait * 1000.0).ceil() as u64),
                    });
                }
                bucket.tokens -= 1.0;
            }
            state.concurrency.clone()
        };
        if let Some(sem) = per_client {
            let limit = self.config.max_concurrent_per_client.unwrap_or_default();
            permits.push(
                sem.try_acquire_owned()
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
                    admin: false,
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
