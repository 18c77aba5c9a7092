//! OAuth 2.0 Protected Resource Metadata (RFC 9728) and the
//! `WWW-Authenticate` challenges (RFC 6750) that point clients to it.
//!
//! The document is served at `/.well-known/oauth-protected-resource` and at
//! that path followed by the MCP endpoint's path (the form RFC 9728 derives
//! from the resource URL, which MCP clients try first). Both carry the same
//! document; the challenges name the path-suffixed one.

use serde_json::{Value, json};

use crate::config::{OAuthConfig, RuleMatch};

/// The well-known path prefix of RFC 9728.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Every scope the config knows: the required ones and those rules match on.
pub fn scopes_supported(config: &OAuthConfig) -> Vec<String> {
    let mut out: Vec<String> = config.required_scopes.clone();
    for rule in &config.rules {
        if let RuleMatch::Scope(s) = &rule.when
            && !out.contains(s)
        {
            out.push(s.clone());
        }
    }
    out
}

/// The metadata document.
pub fn document(config: &OAuthConfig) -> Value {
    json!({
        "resource": config.resource,
        "authorization_servers": [config.issuer],
        "scopes_supported": scopes_supported(config),
        "bearer_methods_supported": ["header"],
        "resource_name": "Manifold MCP gateway",
    })
}

/// The path of `resource` (`""` for a bare origin or `/`).
fn resource_path(resource: &str) -> String {
    url::Url::parse(resource)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

/// The document's URL as clients reach it: RFC 9728's well-known URL of
/// the resource (the well-known prefix inserted after the origin).
pub fn url(config: &OAuthConfig) -> String {
    match url::Url::parse(&config.resource) {
        Ok(u) => format!(
            "{}{WELL_KNOWN}{}",
            u.origin().ascii_serialization(),
            resource_path(&config.resource)
        ),
        Err(_) => WELL_KNOWN.to_string(),
    }
}

/// Whether the document is served at `path`: the root form, the resource
/// URL's form, and the form for the MCP endpoint's own path (the same one
/// unless a proxy in front rewrites paths).
pub fn serves(config: &OAuthConfig, path: &str, mcp_path: &str) -> bool {
    let Some(suffix) = path.strip_prefix(WELL_KNOWN) else {
        return false;
    };
    let suffix = suffix.trim_end_matches('/');
    suffix.is_empty() || suffix == resource_path(&config.resource) || suffix == mcp_path
}

/// A value fit for a quoted auth-param (RFC 6750 §3: no `"` or `\`,
/// printable ASCII only).
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// The challenge of a 401: where the metadata is, the scopes to ask for,
/// and (when a token was presented) why it was refused.
pub fn unauthorized(config: &OAuthConfig, invalid: Option<&str>) -> String {
    let mut out = format!(
        "Bearer realm=\"manifold\", resource_metadata=\"{}\"",
        url(config)
    );
    if !config.required_scopes.is_empty() {
        out.push_str(&format!(
            ", scope=\"{}\"",
            quoted(&config.required_scopes.join(" "))
        ));
    }
    if let Some(why) = invalid {
        out.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            quoted(why)
        ));
    }
    out
}

/// The challenge of a 403 for a token without a scope it needs.
pub fn insufficient_scope(config: &OAuthConfig, scope: &str, why: &str) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"{}\"",
        quoted(scope),
        url(config),
        quoted(why)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(resource: &str) -> OAuthConfig {
        crate::config::parse_str(
            &format!(
                "[auth.oauth]\nissuer = \"https://idp.example.com\"\njwks_uri = \"https://idp.example.com/jwks\"\nresource = \"{resource}\"\n[[auth.oauth.rules]]\nscope = \"a\"\nbackends = [\"*\"]\n"
            ),
            "g.toml",
            None,
        )
        .unwrap()
        .auth
        .oauth
        .unwrap()
    }

    #[test]
    fn the_document_url_follows_rfc_9728() {
        let c = config("https://mcp.example.com:8443/team/mcp");
        assert_eq!(
            url(&c),
            "https://mcp.example.com:8443/.well-known/oauth-protected-resource/team/mcp"
        );
        assert!(serves(&c, WELL_KNOWN, "/mcp"));
        assert!(serves(&c, &format!("{WELL_KNOWN}/team/mcp"), "/mcp"));
        assert!(serves(&c, &format!("{WELL_KNOWN}/mcp"), "/mcp"));
        assert!(!serves(&c, &format!("{WELL_KNOWN}/other"), "/mcp"));
        let root = config("https://mcp.example.com");
        assert_eq!(
            url(&root),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn challenges_quote_safely() {
        let c = config("https://mcp.example.com/mcp");
        let h = unauthorized(&c, Some("bad \"kid\" é"));
        assert!(h.ends_with("error_description=\"bad 'kid' ?\""), "{h}");
        assert!(h.contains(
            "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        ));
    }
}
