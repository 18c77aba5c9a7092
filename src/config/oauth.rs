//! `[auth.oauth]`: OAuth 2.1 access tokens (JWTs from one issuer) beside the
//! static bearer tokens, and the rules that turn a token's claims into a
//! client id, allow-lists and the admin marker. Raw (spanned) form and
//! checks; errors go to the shared collector with `file:line:col`.
//!
//! Loading fetches nothing: the issuer's keys are read by the front when
//! the first token arrives.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::auth::{allow_list, valid_client_id};
use super::load::{Cx, deserialize};
use super::model::NameFilter;

/// `[auth.oauth]`: the gateway as an OAuth 2.1 resource server.
#[derive(Clone, Debug, PartialEq)]
pub struct OAuthConfig {
    /// The `iss` every token must carry; also the authorization server
    /// named in the protected-resource metadata.
    pub issuer: String,
    /// Where the issuer publishes its signing keys (a JWK Set).
    pub jwks_uri: String,
    /// The gateway's MCP endpoint as clients reach it (RFC 9728 `resource`).
    pub resource: String,
    /// The `aud` values accepted: `audience` in the file, else `[resource]`.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Scopes every request's token must hold (403 `insufficient_scope` else).
    pub required_scopes: Vec<String>,
    /// The claim whose value is the client id when no rule names one.
    pub client_id_claim: String,
    /// The claim holding the token's scopes (a space-separated string or a list).
    pub scope_claim: String,
    /// The claim holding the token's groups or roles (a list or a string;
    /// a dotted path such as `realm_access.roles` reaches into objects).
    pub groups_claim: String,
    /// The keys are fetched again after this long.
    pub jwks_refresh: Duration,
    /// A token signed by an unknown key refetches the keys at most this
    /// often, so bogus key ids cannot hammer the issuer.
    pub jwks_refetch_min: Duration,
    /// What a token's claims give it; every matching rule adds its part.
    pub rules: Vec<OAuthRule>,
}

/// `[[auth.oauth.rules]]`: tokens that match get what the rule names.
#[derive(Clone, Debug, PartialEq)]
pub struct OAuthRule {
    pub when: RuleMatch,
    /// Tokens matching this rule act as this client (the first matching
    /// rule that names one wins); otherwise the `client_id_claim` value.
    pub client_id: Option<String>,
    pub admin: bool,
    /// Globs over backend names; `None`: every backend (if `tools` is set)
    /// or nothing (if neither is set: the rule grants no backend).
    pub backends: Option<NameFilter>,
    /// Globs over exposed tool names.
    pub tools: Option<NameFilter>,
}

impl OAuthRule {
    /// Whether the rule lets its tokens use anything (some backend or tool).
    pub fn grants_use(&self) -> bool {
        self.backends.is_some() || self.tools.is_some()
    }
}

/// Which tokens a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleMatch {
    /// Every valid token.
    Any,
    /// The token's `client_id_claim` (by default `sub`) equals this.
    Subject(String),
    /// The token holds this scope.
    Scope(String),
    /// The token's groups claim holds this group or role.
    Group(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    issuer: Spanned<String>,
    jwks_uri: Spanned<String>,
    resource: Spanned<String>,
    audience: Option<Spanned<toml::Value>>,
    leeway: Option<Spanned<String>>,
    #[serde(default)]
    required_scopes: Vec<Spanned<String>>,
    client_id_claim: Option<Spanned<String>>,
    scope_claim: Option<Spanned<String>>,
    groups_claim: Option<Spanned<String>>,
    jwks_refresh: Option<Spanned<String>>,
    jwks_refetch_min: Option<Spanned<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    subject: Option<Spanned<String>>,
    scope: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    admin: Option<bool>,
    backends: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<String>>>,
}

/// Takes `oauth` out of the `[auth]` table, so the rest deserializes as before.
pub(super) fn take<'a>(auth: &mut Spanned<DeValue<'a>>) -> Option<Spanned<DeValue<'a>>> {
    match auth.get_mut() {
        DeValue::Table(table) => table.remove("oauth"),
        _ => None,
    }
}

/// `[auth.oauth]`; `None` when absent or unreadable (the error is in `cx`).
pub(super) fn oauth(value: Option<Spanned<DeValue<'_>>>, cx: &mut Cx<'_>) -> Option<OAuthConfig> {
    let raw: RawOAuth = deserialize(value?, cx)?;
    let issuer = url(&raw.issuer, "issuer", false, cx);
    let jwks_uri = url(&raw.jwks_uri, "jwks_uri", true, cx);
    let resource = url(&raw.resource, "resource", false, cx);
    if let Ok(u) = url::Url::parse(raw.resource.get_ref())
        && (u.query().is_some() || u.fragment().is_some())
    {
        cx.error(
            raw.resource.span(),
            "resource must not have a query or a fragment (RFC 9728)",
        );
    }
    let audiences = match &raw.audience {
        None => vec![resource.clone()],
        Some(a) => audiences(a, cx),
    };
    let required_scopes = raw
        .required_scopes
        .iter()
        .map(|s| scope_token(s, cx))
        .collect();
    let claim = |c: &Option<Spanned<String>>, default: &str, cx: &mut Cx<'_>| match c {
        Some(c) if c.get_ref().trim().is_empty() => {
            cx.error(c.span(), "a claim name must not be empty");
            default.to_string()
        }
        Some(c) => c.get_ref().clone(),
        None => default.to_string(),
    };
    let client_id_claim = claim(&raw.client_id_claim, "sub", cx);
    let scope_claim = claim(&raw.scope_claim, "scope", cx);
    let groups_claim = claim(&raw.groups_claim, "groups", cx);
    let leeway = leeway(&raw.leeway, cx);
    let jwks_refresh = super::load::duration(&raw.jwks_refresh, Duration::from_secs(600), cx);
    let jwks_refetch_min =
        super::load::duration(&raw.jwks_refetch_min, Duration::from_secs(10), cx);
    if raw.rules.is_empty() {
        cx.error(
            raw.issuer.span(),
            "[auth.oauth] needs at least one [[auth.oauth.rules]]: without a rule a valid token may use nothing (see docs/operations.md, \"OAuth 2.1\")",
        );
    }
    let rules = raw.rules.into_iter().map(|r| rule(r, cx)).collect();
    Some(OAuthConfig {
        issuer,
        jwks_uri,
        resource,
        audiences,
        leeway,
        required_scopes,
        client_id_claim,
        scope_claim,
        groups_claim,
        jwks_refresh,
        jwks_refetch_min,
        rules,
    })
}

/// An absolute `http(s)` URL. With `keys`, plain `http` only to a loopback
/// host: keys fetched in clear could be swapped on the way.
fn url(raw: &Spanned<String>, key: &str, keys: bool, cx: &mut Cx<'_>) -> String {
    let text = raw.get_ref().trim();
    match url::Url::parse(text) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => cx.error(
            raw.span(),
            format!("{key} must be an http:// or https:// URL with a host, found \"{text}\""),
        ),
        Ok(u) if keys && u.scheme() == "http" && !loopback(&u) => cx.error(
            raw.span(),
            format!(
                "{key} must use https:// (plain http:// only to a loopback address): keys fetched in clear could be replaced on the way"
            ),
        ),
        Ok(_) => {}
        Err(e) => cx.error(raw.span(), format!("{key} \"{text}\" is not a URL: {e}")),
    }
    text.to_string()
}

fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn audiences(raw: &Spanned<toml::Value>, cx: &mut Cx<'_>) -> Vec<String> {
    let list = match raw.get_ref() {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let well_formed = match raw.get_ref() {
        toml::Value::Array(items) => items.iter().all(toml::Value::is_str),
        v => v.is_str(),
    };
    if !well_formed || list.is_empty() || list.iter().any(|a| a.trim().is_empty()) {
        cx.error(
            raw.span(),
            "audience must be a non-empty string or list of non-empty strings",
        );
    }
    list
}

/// A scope as RFC 6750 allows it in a `WWW-Authenticate` header.
fn scope_token(raw: &Spanned<String>, cx: &mut Cx<'_>) -> String {
    let s = raw.get_ref();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if !ok {
        cx.error(
            raw.span(),
            format!("scope \"{s}\" must be non-empty printable ASCII without spaces, `\"` or `\\`"),
        );
    }
    s.clone()
}

fn leeway(raw: &Option<Spanned<String>>, cx: &mut Cx<'_>) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(30);
    const MAX: Duration = Duration::from_secs(300);
    let Some(raw) = raw else { return DEFAULT };
    match humantime::parse_duration(raw.get_ref().trim()) {
        Ok(d) if d <= MAX => d,
        Ok(_) => {
            cx.error(raw.span(), "leeway must be at most 5m");
            DEFAULT
        }
        Err(e) => {
            cx.error(
                raw.span(),
                format!(
                    "invalid duration \"{}\": {e} (write e.g. \"30s\")",
                    raw.get_ref()
                ),
            );
            DEFAULT
        }
    }
}

fn rule(raw: RawRule, cx: &mut Cx<'_>) -> OAuthRule {
    let conditions: Vec<(&str, &Spanned<String>)> = [
        ("subject", &raw.subject),
        ("scope", &raw.scope),
        ("group", &raw.group),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    if let [_, (second, v), ..] = conditions.as_slice() {
        cx.error(
            v.span(),
            format!(
                "a rule matches on one of `subject`, `scope` or `group`; `{second}` is a second one (write two rules)"
            ),
        );
    }
    for (key, v) in &conditions {
        if v.get_ref().is_empty() {
            cx.error(v.span(), format!("`{key}` must not be empty"));
        }
    }
    let when = if let Some(s) = &raw.scope {
        RuleMatch::Scope(scope_token(s, cx))
    } else if let Some(s) = &raw.subject {
        RuleMatch::Subject(s.get_ref().clone())
    } else if let Some(g) = &raw.group {
        RuleMatch::Group(g.get_ref().clone())
    } else {
        RuleMatch::Any
    };
    let client_id = raw.client_id.map(|id| {
        if !valid_client_id(id.get_ref()) {
            cx.error(
                id.span(),
                format!("client_id \"{}\" must be non-empty and use only letters, digits, `_`, `-`, `.` or `@`", id.get_ref()),
            );
        }
        id.into_inner()
    });
    OAuthRule {
        when,
        client_id,
        admin: raw.admin.unwrap_or(false),
        backends: allow_list(raw.backends, cx),
        tools: allow_list(raw.tools, cx),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::test_parse_with_env;

    const BASE: &str = r#"
[auth.oauth]
issuer = "https://idp.example.com/realms/acme"
jwks_uri = "https://idp.example.com/realms/acme/protocol/openid-connect/certs"
resource = "https://mcp.example.com/mcp"
required_scopes = ["mcp"]

[[auth.oauth.rules]]
group = "mcp-admins"
admin = true
backends = ["*"]

[[auth.oauth.rules]]
scope = "tools:github"
backends = ["github"]
"#;

    #[test]
    fn a_full_section_loads_with_defaults() {
        let config = test_parse_with_env(BASE, &[]).unwrap();
        let o = config.auth.oauth.as_ref().unwrap();
        assert!(config.auth.enabled());
        assert_eq!(o.audiences, vec!["https://mcp.example.com/mcp".to_string()]);
        assert_eq!(o.client_id_claim, "sub");
        assert_eq!(o.leeway.as_secs(), 30);
        assert_eq!(o.rules.len(), 2);
        assert_eq!(
            o.rules[1].when,
            super::RuleMatch::Scope("tools:github".into())
        );
    }

    #[test]
    fn every_mistake_is_reported_with_its_place() {
        let text = r#"
[auth.oauth]
issuer = "idp"
jwks_uri = "http://idp.example.com/certs"
resource = "https://mcp.example.com/mcp#x"
leeway = "1h"
required_scopes = ["has space"]
colour = "blue"
"#;
        let errors = test_parse_with_env(text, &[]).unwrap_err();
        assert!(errors[0].contains("unknown field `colour`"), "{errors:?}");
        let text = text.replace("colour = \"blue\"\n", "");
        let errors = test_parse_with_env(&text, &[]).unwrap_err();
        let joined = errors.join("\n");
        for want in [
            "g.toml:3:10: issuer \"idp\" is not a URL",
            "g.toml:4:12: jwks_uri must use https://",
            "g.toml:5:12: resource must not have a query or a fragment",
            "g.toml:6:10: leeway must be at most 5m",
            "g.toml:7:20: scope \"has space\" must be",
            "needs at least one [[auth.oauth.rules]]",
        ] {
            assert!(joined.contains(want), "missing {want:?} in\n{joined}");
        }
    }

    #[test]
    fn a_rule_matches_on_one_condition_only() {
        let text = format!("{BASE}\n[[auth.oauth.rules]]\nscope = \"a\"\ngroup = \"b\"\n");
        let errors = test_parse_with_env(&text, &[]).unwrap_err();
        assert!(errors[0].contains("`group` is a second one"), "{errors:?}");
    }
}
