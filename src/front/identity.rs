//! Who a request is: the static bearer tokens and the OAuth resource
//! server (`super::oauth`) turn a presented token into a [`Client`], with
//! the allow-lists and admin marker the rest of the front enforces.
//! Part of the [`super::policy`] in force; swapped with it on reload.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::oauth::{OAuth, OAuthError};
use crate::config::{AuthConfig, NameFilter};

/// An authenticated client and what it may use.
#[derive(Debug)]
pub struct Client {
    pub id: Arc<str>,
    /// May use `/admin/*`, see everything in status, and read every client's
    /// audit entries.
    pub admin: bool,
    /// What it may use: anything one of these allows. A static token has
    /// one; an OAuth token one per matching rule (none: nothing).
    grants: Vec<Grant>,
}

/// One allow-list pair: backends, and exposed tools of those backends.
#[derive(Debug, Clone)]
pub struct Grant {
    backends: Option<NameFilter>,
    tools: Option<NameFilter>,
}

impl Grant {
    /// `None` allows every backend, or every tool of an allowed backend.
    pub fn new(backends: Option<NameFilter>, tools: Option<NameFilter>) -> Self {
        Self { backends, tools }
    }

    fn allows_backend(&self, backend: &str) -> bool {
        self.backends.as_ref().is_none_or(|f| f.allows(backend))
    }

    /// Whether this grant lets its holder call `tool` of `backend`.
    pub fn allows_tool(&self, backend: &str, tool: &str) -> bool {
        self.allows_backend(backend) && self.tools.as_ref().is_none_or(|f| f.allows(tool))
    }
}

impl Client {
    pub fn new(id: Arc<str>, admin: bool, grants: Vec<Grant>) -> Self {
        Self { id, admin, grants }
    }

    /// Whether the client may see and use anything of `backend`.
    pub fn may_use_backend(&self, backend: &str) -> bool {
        self.grants.iter().any(|g| g.allows_backend(backend))
    }

    /// Whether the client may see and call the exposed tool `tool` of `backend`.
    pub fn may_call_tool(&self, backend: &str, tool: &str) -> bool {
        self.grants.iter().any(|g| g.allows_tool(backend, tool))
    }
}

/// The bearer tokens, kept only as SHA-256 digests, and the OAuth
/// resource server.
pub struct Auth {
    /// What it was built from (a reload rebuilds it only when this changed).
    pub(super) config: AuthConfig,
    clients: Vec<([u8; 32], Arc<Client>)>,
    oauth: Option<Arc<OAuth>>,
}

/// A request's proven identity.
pub struct Authenticated {
    pub client: Arc<Client>,
    /// Set for an OAuth access token: the scopes it holds.
    pub oauth: Option<OAuthToken>,
}

/// What the later steps need of an OAuth token (in the request extensions).
#[derive(Clone)]
pub struct OAuthToken {
    pub oauth: Arc<OAuth>,
    pub scopes: Arc<[String]>,
}

/// Why a request was not authenticated. Never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("no bearer token")]
    Missing,
    #[error("unknown bearer token")]
    Unknown,
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// The OAuth key cache of `previous` is kept when `[auth.oauth]` did
    /// not change (a reload of the static tokens refetches nothing).
    pub(super) fn new(config: &AuthConfig, previous: Option<&Auth>) -> Self {
        let clients = config
            .tokens
            .iter()
            .map(|t| {
                let grant = Grant::new(t.backends.clone(), t.tools.clone());
                let client = Client::new(t.client_id.as_str().into(), t.admin, vec![grant]);
                (digest(t.token.expose()), Arc::new(client))
            })
            .collect();
        let oauth = config.oauth.as_ref().map(|o| {
            let static_ids = config.tokens.iter().map(|t| t.client_id.clone()).collect();
            match previous.and_then(|p| p.oauth.as_ref()) {
                Some(old) if old.config == *o && old.same_static_ids(&static_ids) => old.clone(),
                _ => Arc::new(OAuth::new(o, static_ids)),
            }
        });
        Self {
            config: config.clone(),
            clients,
            oauth,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.clients.is_empty() || self.oauth.is_some()
    }

    /// `[auth.oauth]`, when configured.
    pub fn oauth(&self) -> Option<&Arc<OAuth>> {
        self.oauth.as_ref()
    }

    /// The client with this id (for calls made on its behalf without a
    /// token at hand, such as its jobs): a static token's, or the one an
    /// OAuth token last proved since the gateway started.
    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .iter()
            .find(|(_, c)| &*c.id == id)
            .map(|(_, c)| c.clone())
            .or_else(|| self.oauth.as_ref()?.remembered(id))
    }

    /// The client a request's bearer token proves: a static token, else
    /// (when it looks like a JWT and `[auth.oauth]` is on) an access token.
    pub async fn authenticate(
        &self,
        presented: Option<&str>,
    ) -> Result<Authenticated, AuthFailure> {
        let presented = presented.ok_or(AuthFailure::Missing)?;
        if let Some(client) = self.static_token(presented) {
            return Ok(Authenticated {
                client,
                oauth: None,
            });
        }
        let Some(oauth) = self
            .oauth
            .as_ref()
            .filter(|_| OAuth::looks_like_jwt(presented))
        else {
            return Err(AuthFailure::Unknown);
        };
        let verified = oauth.verify(presented).await?;
        Ok(Authenticated {
            client: verified.client,
            oauth: Some(OAuthToken {
                oauth: oauth.clone(),
                scopes: verified.scopes.into(),
            }),
        })
    }

    /// The client a presented token belongs to. Compares digests (fixed
    /// length) in constant time against every token, so neither the length
    /// nor the position of a match shows in the timing.
    fn static_token(&self, presented: &str) -> Option<Arc<Client>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, TokenConfig};

    #[test]
    fn tokens_match_their_client_only() {
        let auth = Auth::new(
            &AuthConfig {
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
                oauth: None,
            },
            None,
        );
        assert_eq!(&*auth.static_token("token-aaaa").unwrap().id, "a");
        let b = auth.static_token("token-bbbb").unwrap();
        assert!(b.may_use_backend("fx") && !b.may_use_backend("other"));
        assert!(auth.static_token("token-aaaa").unwrap().admin && !b.admin);
        assert!(auth.static_token("token-aaa").is_none());
        assert!(auth.static_token("").is_none());
    }
}
