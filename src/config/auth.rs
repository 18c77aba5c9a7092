//! `[auth]`: client tokens and what each may use.

use globset::Glob;
use serde::Deserialize;
use toml::Spanned;

use super::load::Cx;
use super::model::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    client_id: Spanned<String>,
    token: Spanned<String>,
    backends: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<String>>>,
    admin: Option<bool>,
}

pub(super) fn build_auth(raw: RawAuth, cx: &mut Cx<'_>) -> AuthConfig {
    let mut tokens: Vec<TokenConfig> = Vec::new();
    for t in raw.tokens {
        let id = t.client_id.get_ref();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        {
            cx.error(
                t.client_id.span(),
                format!("client_id \"{id}\" must be non-empty and use only letters, digits, `_`, `-`, `.` or `@`"),
            );
        } else if tokens.iter().any(|o| o.client_id == *id) {
            cx.error(
                t.client_id.span(),
                format!("client_id \"{id}\" is declared twice"),
            );
        }
        // The token itself is never echoed, not even in config errors.
        let secret = t.token.get_ref();
        if secret.len() < 8 || secret.chars().any(|c| !c.is_ascii_graphic()) {
            cx.error(
                t.token.span(),
                format!("the token of client `{id}` must be at least 8 printable ASCII characters without spaces"),
            );
        } else if tokens.iter().any(|o| o.token.expose() == secret) {
            cx.error(
                t.token.span(),
                format!("client `{id}` has the same token as another client"),
            );
        }
        let backends = allow_list(t.backends, cx);
        let tools = allow_list(t.tools, cx);
        tokens.push(TokenConfig {
            client_id: id.clone(),
            token: Secret::new(t.token.into_inner()),
            backends,
            tools,
            admin: t.admin.unwrap_or(false),
        });
    }
    AuthConfig { tokens }
}

/// Globs as an allow-list: an empty list allows nothing.
fn allow_list(raw: Option<Vec<Spanned<String>>>, cx: &mut Cx<'_>) -> Option<NameFilter> {
    let raw = raw?;
    let mut bad = false;
    for p in &raw {
        if let Err(e) = Glob::new(p.get_ref()) {
            cx.error(
                p.span(),
                format!("invalid glob pattern \"{}\": {}", p.get_ref(), e.kind()),
            );
            bad = true;
        }
    }
    let patterns: Vec<String> = raw.into_iter().map(Spanned::into_inner).collect();
    let filter = if bad {
        NameFilter::default()
    } else if patterns.is_empty() {
        NameFilter::new(Vec::new(), vec!["*".into()]).unwrap_or_default()
    } else {
        NameFilter::new(patterns, Vec::new()).unwrap_or_default()
    };
    Some(filter)
}

/// Why serving on `listen` with this config would expose every backend to
/// anyone who reaches the port, if it would.
pub fn unauthenticated_exposure(
    server: &ServerConfig,
    auth: &AuthConfig,
    listen: std::net::SocketAddr,
) -> Option<String> {
    (!listen.ip().is_loopback() && !auth.enabled() && !server.allow_unauthenticated).then(|| {
        format!(
            "listening on {listen}, which is not a loopback address, without `[auth]` would let anyone who reaches the port use every backend; add `[[auth.tokens]]` (see docs/operations.md), listen on 127.0.0.1, or set `[server] allow_unauthenticated = true` if something in front of the gateway authenticates clients"
        )
    })
}
