//! The issuer's signing keys (a JWK Set), fetched on first use, kept for
//! `jwks_refresh`, and fetched again early when a token names a key id we
//! do not have (the issuer rotated its keys). Every fetch, for whatever
//! reason, is at least `jwks_refetch_min` after the previous attempt, so a
//! flood of tokens with made-up key ids costs the issuer one request per
//! interval, and a failing issuer is not retried on every request.
//!
//! A failed fetch keeps the keys we had: tokens signed by them still pass.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::OAuthError;

/// The largest JWK Set accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable public key.
struct Key {
    key: DecodingKey,
    /// The `alg` the JWK names, if any: a token must use exactly that one.
    alg: Option<Algorithm>,
}

/// The keys of one successful fetch.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid` (usable only by tokens without one).
    unnamed: Vec<Arc<Key>>,
    fetched: Option<Instant>,
    /// Counts fetches, so a waiter can tell that another one fetched meanwhile.
    generation: u64,
}

impl KeySet {
    fn find(&self, kid: Option<&str>) -> Result<Option<Arc<Key>>, OAuthError> {
        match kid {
            Some(kid) => Ok(self.by_kid.get(kid).cloned()),
            None => {
                let mut all = self.by_kid.values().chain(&self.unnamed);
                match (all.next(), all.next()) {
                    (Some(only), None) => Ok(Some(only.clone())),
                    (None, _) => Ok(None),
                    (Some(_), Some(_)) => Err(OAuthError::Malformed(
                        "the token names no key id (kid), and the issuer publishes several keys"
                            .into(),
                    )),
                }
            }
        }
    }
}

pub struct Jwks {
    uri: String,
    http: reqwest::Client,
    refresh: Duration,
    refetch_min: Duration,
    /// The keys in use, swapped whole after each successful fetch; readers never wait.
    keys: ArcSwap<KeySet>,
    /// Held across one fetch, so concurrent requests that need keys share
    /// one fetch instead of each starting their own (a tokio mutex: it is
    /// held across the HTTP request; nothing else is ever awaited under it).
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch started, successful or not; locked only to read
    /// or set it, never across an await.
    last_attempt: Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(uri: &str, refresh: Duration, refetch_min: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        Self {
            uri: uri.to_string(),
            http,
            refresh,
            refetch_min,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
            last_attempt: Mutex::new(None),
        }
    }

    /// The key that signed a token with this `kid` and `alg`.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OAuthError> {
        let set = self.keys.load_full();
        let unknown = || OAuthError::UnknownKey(kid.unwrap_or("none").chars().take(64).collect());
        let key = match set.find(kid)? {
            Some(key) if set.fetched.is_some_and(|t| t.elapsed() < self.refresh) => key,
            // Stale: one request refreshes (the others go on with the keys
            // we have); a key the issuer no longer publishes stops working.
            Some(key) => match self.fetching.try_lock() {
                Ok(guard) => match self.fetch(guard, set.generation).await {
                    Ok(()) => self.keys.load().find(kid)?.ok_or_else(unknown)?,
                    Err(_) => key,
                },
                Err(_) => key,
            },
            // Unknown: the issuer may have rotated its keys.
            None => {
                let result = self.fetch(self.fetching.lock().await, set.generation).await;
                let set = self.keys.load_full();
                match (set.find(kid)?, result) {
                    (Some(key), _) => key,
                    // Never fetched successfully: nothing can be checked.
                    (None, Err(e)) if set.fetched.is_none() => return Err(e),
                    (None, _) => return Err(unknown()),
                }
            }
        };
        if key.alg.is_some_and(|a| a != alg) {
            return Err(OAuthError::Malformed(format!(
                "the token's alg {alg:?} is not the one its key is published for"
            )));
        }
        Ok(key.key.clone())
    }

    /// Fetches the keys (holding `_one_at_a_time`, the `fetching` lock)
    /// unless another fetch finished since `seen` was loaded, or the last
    /// attempt is under `refetch_min` ago.
    async fn fetch(
        &self,
        _one_at_a_time: tokio::sync::MutexGuard<'_, ()>,
        seen: u64,
    ) -> Result<(), OAuthError> {
        if self.keys.load().generation != seen {
            return Ok(());
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.refetch_min) {
                return Err(OAuthError::Jwks(format!(
                    "not fetched again within {} of the last attempt",
                    humantime::format_duration(self.refetch_min)
                )));
            }
            *last = Some(Instant::now());
        }
        match self.download().await {
            Ok(mut set) => {
                set.generation = seen + 1;
                set.fetched = Some(Instant::now());
                tracing::info!(
                    jwks_uri = %self.uri,
                    keys = set.by_kid.len() + set.unnamed.len(),
                    "fetched the OAuth issuer's signing keys"
                );
                self.keys.store(Arc::new(set));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(jwks_uri = %self.uri, error = %e, "could not fetch the OAuth issuer's signing keys");
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<KeySet, OAuthError> {
        let fail = |e: String| OAuthError::Jwks(e);
        let mut response = self
            .http
            .get(&self.uri)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(format!("GET {}: {e}", self.uri)))?;
        if !response.status().is_success() {
            return Err(fail(format!(
                "GET {} answered {}",
                self.uri,
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(format!("reading {}: {e}", self.uri)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(fail(format!(
                    "{} is larger than {MAX_JWKS_BYTES} bytes",
                    self.uri
                )));
            }
        }
        parse(&body).map_err(|e| fail(format!("{}: {e}", self.uri)))
    }
}

/// A JWK Set's usable signing keys. Keys that cannot verify a signature
/// here (symmetric keys, encryption keys, unknown types) are skipped.
fn parse(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut set = KeySet::default();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            || matches!(
                jwk.algorithm,
                AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
            )
        {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        let key = Arc::new(Key { key, alg });
        match jwk.common.key_id {
            Some(kid) => {
                set.by_kid.insert(kid, key);
            }
            None => set.unnamed.push(key),
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let body = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","kid":"sig","crv":"P-256","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let set = parse(body).unwrap();
        assert_eq!(set.by_kid.keys().collect::<Vec<_>>(), vec!["sig"]);
        assert_eq!(set.by_kid["sig"].alg, Some(Algorithm::ES256));
        assert!(parse(b"[]").is_err());
    }
}
