//! The gateway as an OAuth 2.1 resource server (`[auth.oauth]`): checks a
//! JWT access token (signature by the issuer's published keys, `iss`,
//! `aud`, `exp`, `nbf`, the required scopes) and turns its claims into the
//! same [`Client`] a static token gives: a client id, allow-lists and the
//! admin marker, by the rules of the config.
//!
//! The protected-resource metadata (RFC 9728) and the `WWW-Authenticate`
//! challenges that point to it are in [`metadata`]; the key cache in
//! `jwks.rs`. This module decides; `reject.rs` builds the responses.

mod jwks;
pub mod metadata;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::policy::{Client, Grant};
use crate::config::{OAuthConfig, OAuthRule, RuleMatch};

/// The algorithms a token may be signed with: public-key ones only, so a
/// published key can never be used as an HMAC secret.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Clients remembered for calls made on their behalf without a token at hand (jobs).
const MAX_REMEMBERED: usize = 10_000;

/// Why a token was refused. Never quotes the token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the access token was issued for another audience (aud must name {0})")]
    Audience(String),
    #[error("the access token was issued by another issuer (iss must be {0})")]
    Issuer(String),
    #[error("the access token is signed by an unknown key (kid \"{0}\")")]
    UnknownKey(String),
    #[error("the access token's signature is invalid")]
    Signature,
    #[error("the issuer's signing keys are unavailable: {0}")]
    Jwks(String),
    #[error("the access token has no usable `{0}` claim (the client id)")]
    NoClientId(String),
    /// A valid token without a scope every request needs (403).
    #[error("the access token lacks the required scope {missing}")]
    InsufficientScope { missing: String, challenge: String },
    /// A valid token whose claim names a statically configured client (403).
    #[error(
        "the token's `{claim}` is \"{id}\", the client id of a static token; map it explicitly with a rule's `client_id`"
    )]
    Reserved { claim: String, id: String },
}

impl OAuthError {
    /// Refused with 403 (the token is valid); every other error is a 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::InsufficientScope { .. } | Self::Reserved { .. })
    }
}

/// A valid token: who it is and what scopes it holds.
pub struct Verified {
    pub client: Arc<Client>,
    pub scopes: Vec<String>,
}

/// `[auth.oauth]` in force, with its key cache.
pub struct OAuth {
    pub config: OAuthConfig,
    keys: jwks::Jwks,
    /// The ids of static tokens: a claim value may not take one by chance.
    static_ids: HashSet<String>,
    /// The last client each id was seen as. Locked only to read or insert.
    seen: Mutex<HashMap<Arc<str>, Arc<Client>>>,
}

impl OAuth {
    pub fn new(config: &OAuthConfig, static_ids: HashSet<String>) -> Self {
        Self {
            keys: jwks::Jwks::new(
                &config.jwks_uri,
                config.jwks_refresh,
                config.jwks_refetch_min,
            ),
            config: config.clone(),
            static_ids,
            seen: Mutex::default(),
        }
    }

    /// Whether this verifier was built with these static client ids.
    pub fn same_static_ids(&self, ids: &HashSet<String>) -> bool {
        self.static_ids == *ids
    }

    /// Whether `token` looks like a JWT (three base64url parts), as
    /// opposed to a static token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// Checks a token and maps its claims to a client.
    pub async fn verify(&self, token: &str) -> Result<Verified, OAuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OAuthError::Malformed(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(OAuthError::Malformed(format!(
                "alg {:?} is not accepted (only public-key signatures)",
                header.alg
            )));
        }
        let key = self.keys.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| self.refusal(e.into_kind()))?
            .claims;
        let scopes = strings(lookup(&claims, &self.config.scope_claim), true);
        let missing: Vec<&str> = self
            .config
            .required_scopes
            .iter()
            .filter(|s| !scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(OAuthError::InsufficientScope {
                missing: missing.join(" "),
                challenge: self.challenge_scopes(&scopes, None),
            });
        }
        let client = Arc::new(self.client(&claims, &scopes)?);
        self.remember(&client);
        Ok(Verified { client, scopes })
    }

    fn refusal(&self, kind: ErrorKind) -> OAuthError {
        match kind {
            ErrorKind::ExpiredSignature => OAuthError::Expired,
            ErrorKind::ImmatureSignature => OAuthError::NotYetValid,
            ErrorKind::InvalidAudience => OAuthError::Audience(self.config.audiences.join(" or ")),
            ErrorKind::InvalidIssuer => OAuthError::Issuer(self.config.issuer.clone()),
            ErrorKind::InvalidSignature => OAuthError::Signature,
            ErrorKind::MissingRequiredClaim(c) => {
                OAuthError::Malformed(format!("it has no `{c}` claim"))
            }
            other => OAuthError::Malformed(format!("{other:?}")),
        }
    }

    /// The client a valid token's claims make: every matching rule adds
    /// its grant; the first matching rule with a `client_id` names it.
    fn client(&self, claims: &Map<String, Value>, scopes: &[String]) -> Result<Client, OAuthError> {
        let claim = &self.config.client_id_claim;
        let subject = match lookup(claims, claim) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let groups = strings(lookup(claims, &self.config.groups_claim), false);
        let matched: Vec<&OAuthRule> = self
            .config
            .rules
            .iter()
            .filter(|r| match &r.when {
                RuleMatch::Any => true,
                RuleMatch::Subject(s) => *s == subject,
                RuleMatch::Scope(s) => scopes.contains(s),
                RuleMatch::Group(g) => groups.contains(g),
            })
            .collect();
        let id = match matched.iter().find_map(|r| r.client_id.clone()) {
            Some(id) => id,
            None if subject.is_empty()
                || subject.len() > 256
                || subject.chars().any(char::is_control) =>
            {
                return Err(OAuthError::NoClientId(claim.clone()));
            }
            None if self.static_ids.contains(&subject) => {
                return Err(OAuthError::Reserved {
                    claim: claim.clone(),
                    id: subject,
                });
            }
            None => subject,
        };
        let grants = matched
            .iter()
            .filter(|r| r.grants_use())
            .map(|r| Grant::new(r.backends.clone(), r.tools.clone()))
            .collect();
        let admin = matched.iter().any(|r| r.admin);
        Ok(Client::new(id.into(), admin, grants))
    }

    fn remember(&self, client: &Arc<Client>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&client.id) {
            seen.clear();
        }
        seen.insert(client.id.clone(), client.clone());
    }

    /// The client last seen with this id (for its jobs).
    pub fn remembered(&self, id: &str) -> Option<Arc<Client>> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(id).cloned()
    }

    /// The scope a token lacks for something the rules give with a scope:
    /// the first `scope` rule for which `gives` holds. `None` when no
    /// scope would help (a group or subject rule, or nothing at all).
    pub fn step_up(&self, scopes: &[String], gives: impl Fn(&OAuthRule) -> bool) -> Option<String> {
        let needed = self.config.rules.iter().find_map(|r| match &r.when {
            RuleMatch::Scope(s) if !scopes.contains(s) && gives(r) => Some(s.as_str()),
            _ => None,
        })?;
        Some(self.challenge_scopes(scopes, Some(needed)))
    }

    /// The `scope` of a challenge: the required scopes, the scopes the
    /// token already holds that the rules know (so a client asking again
    /// does not lose them), and the one it needs now.
    fn challenge_scopes(&self, held: &[String], needed: Option<&str>) -> String {
        let known = metadata::scopes_supported(&self.config);
        let mut out: Vec<&str> = self
            .config
            .required_scopes
            .iter()
            .map(String::as_str)
            .collect();
        out.extend(
            held.iter()
                .map(String::as_str)
                .filter(|s| known.iter().any(|k| k == s)),
        );
        out.extend(needed);
        let mut seen = HashSet::new();
        out.retain(|s| seen.insert(*s));
        out.join(" ")
    }
}

/// A claim by name, or by a dotted path into objects (`realm_access.roles`)
/// when no claim has the whole name.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A claim as a list of strings: a list, or one string (split at spaces
/// when `split`, as the OAuth `scope` claim is).
fn strings(value: Option<&Value>, split: bool) -> Vec<String> {
    match value {
        Some(Value::String(s)) if split => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_found_by_name_or_dotted_path() {
        let claims = json!({
            "scope": "mcp tools:github",
            "https://example.com/groups": ["a"],
            "realm_access": {"roles": ["mcp-admins"]},
            "scp": ["x", "y"],
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(
            strings(lookup(claims, "scope"), true),
            vec!["mcp", "tools:github"]
        );
        assert_eq!(
            strings(lookup(claims, "https://example.com/groups"), false),
            vec!["a"]
        );
        assert_eq!(
            strings(lookup(claims, "realm_access.roles"), false),
            vec!["mcp-admins"]
        );
        assert_eq!(strings(lookup(claims, "scp"), true), vec!["x", "y"]);
        assert!(strings(lookup(claims, "missing.path"), false).is_empty());
    }
}
