//! `[auth.oauth]`: the gateway as an OAuth 2.1 resource server, against the
//! real binary over real HTTP. Keys are minted here and published by a JWKS
//! endpoint on 127.0.0.1 that the test can switch; tokens are signed with
//! jsonwebtoken; clients are rmcp's streamable-HTTP client and raw HTTP.

mod common;
mod oauth_support;

use std::time::{Duration, Instant};

use common::*;
use oauth_support::*;
use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// The resource URL clients use: the gateway behind a TLS proxy.
const RESOURCE: &str = "https://mcp.example.test/mcp";
const METADATA: &str = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp";
const STATIC: &str = "tok-static-0123456789";

/// Backends `fx` and `other`, a static token, and rules: scope `mcp` is
/// required; `tools:fx` gives backend `fx`; group `mcp-admins` gives every
/// backend and admin; scope `mcp:admin` makes an admin too.
fn config(jwks: &Jwks, refetch_min: &str, extra_backends: &str) -> String {
    format!(
        r#"[[auth.tokens]]
client_id = "ci"
token = "{STATIC}"

[auth.oauth]
issuer = "{issuer}"
jwks_uri = "{uri}"
resource = "{RESOURCE}"
required_scopes = ["mcp"]
leeway = "5s"
jwks_refetch_min = "{refetch_min}"

[[auth.oauth.rules]]
scope = "tools:fx"
backends = ["fx"]

[[auth.oauth.rules]]
group = "mcp-admins"
admin = true
backends = ["*"]

[[auth.oauth.rules]]
scope = "mcp:admin"
admin = true

{fx}{other}{extra_backends}"#,
        issuer = jwks.issuer(),
        uri = jwks.uri(),
        fx = stdio_backend("fx", ""),
        other = stdio_backend("other", ""),
    )
}

/// Claims valid for an hour, for `sub`, with these scopes and groups.
fn claims(jwks: &Jwks, sub: &str, scope: &str, groups: &[&str]) -> Value {
    json!({
        "iss": jwks.issuer(),
        "aud": RESOURCE,
        "sub": sub,
        "scope": scope,
        "groups": groups,
        "iat": now(),
        "exp": now() + 3600,
    })
}

async fn connect(url: &str, token: &str) -> Result<Client, String> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| e.to_string())
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

fn root(url: &str, path: &str) -> String {
    format!("{}{path}", url.trim_end_matches("/mcp"))
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

async fn post(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.send().await.expect("request")
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_tokens_get_the_allow_lists_and_admin_their_claims_map_to() {
    let key = SigningKey::rsa("rsa-1");
    let jwks = Jwks::start(&[&key]).await;
    let (gw, _cfg) = gateway(&config(&jwks, "10s", ""));

    // A user with scope tools:fx sees and calls fx only.
    let user = key.sign(&claims(&jwks, "user-1", "mcp tools:fx", &[]));
    let client = connect(&gw.url, &user).await.expect("user connects");
    let names = tool_names(&client).await;
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("fx__")),
        "{names:?}"
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("fx__echo").with_arguments(args(json!({"message": "hi"}))),
        )
        .await
        .expect("fx__echo");
    assert_eq!(first_text(&r), "hi");
    // No scope would give `other` to it: the session's JSON-RPC refusal.
    let err = client
        .call_tool(CallToolRequestParams::new("other__echo"))
        .await
        .unwrap_err();
    let ServiceError::McpError(e) = &err else {
        panic!("expected a JSON-RPC error, got {err}")
    };
    assert_eq!(e.code.0, -32005, "{err}");
    assert!(
        e.message.contains("client `user-1` is not allowed"),
        "{}",
        e.message
    );
    client.cancel().await.unwrap();

    // The admin route: refused to the user, allowed to a member of mcp-admins.
    let reload = |token: String| {
        let url = root(&gw.url, "/admin/reload");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .expect("reload request")
        }
    };
    let r = reload(user.clone()).await;
    assert_eq!(r.status(), 403);
    let admin = key.sign(&claims(&jwks, "ops-1", "mcp", &["mcp-admins"]));
    let r = reload(admin.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The admin sees every backend.
    let client = connect(&gw.url, &admin).await.expect("admin connects");
    let names = tool_names(&client).await;
    assert!(names.iter().any(|n| n.starts_with("other__")), "{names:?}");
    assert!(names.iter().any(|n| n == "gateway_status"), "{names:?}");
    let status = client
        .call_tool(CallToolRequestParams::new("gateway_status"))
        .await
        .unwrap();
    assert_eq!(
        status.structured_content.unwrap()["caller"]["authenticated"],
        "ops-1"
    );
    client.cancel().await.unwrap();

    // The static token works beside OAuth, unchanged.
    let client = connect(&gw.url, STATIC)
        .await
        .expect("static token connects");
    assert!(
        tool_names(&client)
            .await
            .iter()
            .any(|n| n.starts_with("other__"))
    );
    client.cancel().await.unwrap();
    assert_eq!(
        reload(STATIC.into()).await.status(),
        403,
        "ci is not an admin"
    );

    // A token whose subject is a static client's id may not take it by chance.
    let squatter = key.sign(&claims(&jwks, "ci", "mcp tools:fx", &[]));
    let r = post(&gw.url, Some(&squatter), None, INIT).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("client id of a static token")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tokens_get_401_pointing_at_the_metadata() {
    let key = SigningKey::rsa("rsa-1");
    let stranger = SigningKey::rsa("rsa-1"); // same kid, key not published
    let jwks = Jwks::start(&[&key]).await;
    let (gw, _cfg) = gateway(&config(&jwks, "30s", ""));
    let good = claims(&jwks, "user-1", "mcp tools:fx", &[]);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = [
        ("no token", None, "resource_metadata"),
        (
            "expired",
            Some(key.sign(&with(json!({"exp": now() - 60})))),
            "expired",
        ),
        (
            "not yet valid",
            Some(key.sign(&with(json!({"nbf": now() + 600})))),
            "not valid yet",
        ),
        (
            "wrong audience",
            Some(key.sign(&with(json!({"aud": "https://elsewhere.example/mcp"})))),
            "another audience",
        ),
        (
            "wrong issuer",
            Some(key.sign(&with(json!({"iss": "https://evil.example"})))),
            "another issuer",
        ),
        (
            "unknown key id",
            Some(key.sign_as("who-knows", &good)),
            "unknown key",
        ),
        (
            "bad signature",
            Some(stranger.sign(&good)),
            "signature is invalid",
        ),
        ("not a token", Some("abc.def.ghi".to_string()), "malformed"),
    ];
    for (what, token, why) in cases {
        let r = post(&gw.url, token.as_deref(), None, INIT).await;
        assert_eq!(r.status(), 401, "{what}");
        let h = challenge(&r);
        assert!(h.starts_with("Bearer "), "{what}: {h}");
        assert!(
            h.contains(&format!("resource_metadata=\"{METADATA}\"")),
            "{what}: {h}"
        );
        assert!(h.contains("scope=\"mcp\""), "{what}: {h}");
        if token.is_some() {
            assert!(h.contains("error=\"invalid_token\""), "{what}: {h}");
        }
        assert!(h.contains(why), "{what}: {h}");
    }
    // Within the leeway, an expired token still passes.
    let r = post(
        &gw.url,
        Some(&key.sign(&with(json!({"exp": now() - 2})))),
        None,
        INIT,
    )
    .await;
    assert_eq!(r.status(), 200, "inside the 5s leeway");

    // A valid token without the required scope: 403 naming it.
    let r = post(
        &gw.url,
        Some(&key.sign(&with(json!({"scope": "tools:fx"})))),
        None,
        INIT,
    )
    .await;
    assert_eq!(r.status(), 403);
    let h = challenge(&r);
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(h.contains("scope=\"mcp tools:fx\""), "{h}");
    assert!(
        h.contains(&format!("resource_metadata=\"{METADATA}\"")),
        "{h}"
    );

    // The metadata the challenge points to, at its path and at the root.
    let path = METADATA.trim_start_matches("https://mcp.example.test");
    for p in [path, "/.well-known/oauth-protected-resource"] {
        let (status, body) = http_get(&gw.url, p);
        assert_eq!(status, 200, "{p}");
        let doc: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            doc,
            json!({
                "resource": RESOURCE,
                "authorization_servers": [jwks.issuer()],
                "scopes_supported": ["mcp", "tools:fx", "mcp:admin"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Manifold MCP gateway",
            }),
            "{p}"
        );
    }
    assert_eq!(
        http_get(&gw.url, "/.well-known/oauth-protected-resource/nope").0,
        404
    );

    // A flood of made-up key ids costs the issuer nothing more: one fetch
    // per jwks_refetch_min (30s here), and the first one already happened.
    let before = jwks.hits();
    assert!(before >= 1);
    for i in 0..50 {
        let r = post(
            &gw.url,
            Some(&key.sign_as(&format!("bogus-{i}"), &good)),
            None,
            INIT,
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    assert!(
        jwks.hits() <= before + 1,
        "{} fetches for 50 bogus kids",
        jwks.hits() - before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_are_picked_up_without_a_restart() {
    let old = SigningKey::rsa("2024-key");
    let new = SigningKey::ec("2025-key");
    let jwks = Jwks::start(&[&old]).await;
    let (gw, _cfg) = gateway(&config(&jwks, "200ms", ""));
    let c = claims(&jwks, "user-1", "mcp tools:fx", &[]);
    let client = connect(&gw.url, &old.sign(&c))
        .await
        .expect("old key works");
    client.cancel().await.unwrap();

    jwks.publish(&[&new]);
    // The first token with the new kid refetches the keys (at most one
    // fetch per 200ms, so it may have to come again once).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(&gw.url, Some(&new.sign(&c)), None, INIT).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 401);
        assert!(
            Instant::now() < deadline,
            "the new key was never accepted: {}",
            challenge(&r)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = connect(&gw.url, &new.sign(&c))
        .await
        .expect("new key works");
    assert!(
        tool_names(&client)
            .await
            .iter()
            .all(|n| n.starts_with("fx__"))
    );
    client.cancel().await.unwrap();
    // The retired key is gone with the old key set.
    let r = post(&gw.url, Some(&old.sign(&c)), None, INIT).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("unknown key"), "{}", challenge(&r));
}

/// Opens a session over raw HTTP; returns its id.
async fn open_session(url: &str, token: &str) -> String {
    let r = post(url, Some(token), None, INIT).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let _ = r.text().await;
    let r = post(
        url,
        Some(token),
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_scope_is_a_step_up_challenge_naming_it() {
    let key = SigningKey::ec("ec-1");
    let jwks = Jwks::start(&[&key]).await;
    let (gw, _cfg) = gateway(&config(&jwks, "10s", ""));
    let token = key.sign(&claims(&jwks, "user-2", "mcp", &[]));
    let session = open_session(&gw.url, &token).await;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"fx__echo","arguments":{"message":"x"}}}"#;
    let r = post(&gw.url, Some(&token), Some(&session), call).await;
    assert_eq!(r.status(), 403);
    let h = challenge(&r);
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(h.contains("scope=\"mcp tools:fx\""), "{h}");
    assert!(
        h.contains(&format!("resource_metadata=\"{METADATA}\"")),
        "{h}"
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("tool `fx__echo` of backend `fx`")
    );

    // With the scope it asked for, the same call passes.
    let more = key.sign(&claims(&jwks, "user-2", "mcp tools:fx", &[]));
    let r = post(&gw.url, Some(&more), Some(&session), call).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"x\""));

    // The admin route names the scope that makes an admin.
    let r = reqwest::Client::new()
        .post(root(&gw.url, "/admin/reload"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let h = challenge(&r);
    assert!(
        h.contains("error=\"insufficient_scope\", scope=\"mcp mcp:admin\""),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_reaches_an_http_backend() {
    let key = SigningKey::ec("ec-1");
    let jwks = Jwks::start(&[&key]).await;
    let backend = fixture("http", &[]);
    let proxy = RecordingProxy::start(&backend.url).await;
    let extra = url_backend("web", "http", &proxy.url(), "");
    let (gw, _cfg) = gateway(&config(&jwks, "10s", &extra));
    let token = key.sign(&claims(&jwks, "ops-2", "mcp", &["mcp-admins"]));
    for credential in [token.as_str(), STATIC] {
        let client = connect(&gw.url, credential).await.expect("connects");
        let r = client
            .call_tool(
                CallToolRequestParams::new("web__echo")
                    .with_arguments(args(json!({"message": "via http"}))),
            )
            .await
            .expect("web__echo");
        assert_eq!(first_text(&r), "via http");
        client.cancel().await.unwrap();
    }
    let seen = proxy.seen();
    assert!(seen.len() >= 3, "the backend saw {} requests", seen.len());
    for headers in &seen {
        assert!(!headers.contains_key("authorization"), "{headers:?}");
        for value in headers.values() {
            let v = value.to_str().unwrap_or_default();
            assert!(!v.contains(&token) && !v.contains(STATIC), "{headers:?}");
        }
    }
}

#[test]
fn check_validates_the_oauth_section() {
    let file = write_config(
        r#"[auth.oauth]
issuer = "https://idp.example.com/realms/acme"
jwks_uri = "http://idp.example.com/certs"
resource = "https://mcp.example.com/mcp"
"#,
    );
    let out = std::process::Command::new(MANIFOLD)
        .arg("check")
        .arg(&file.path)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:3:12: jwks_uri must use https://", file.path.display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(
        stderr.contains("needs at least one [[auth.oauth.rules]]"),
        "{stderr}"
    );

    let file = write_config(
        r#"[auth.oauth]
issuer = "https://idp.example.com/realms/acme"
jwks_uri = "https://idp.example.com/realms/acme/protocol/openid-connect/certs"
resource = "https://mcp.example.com/mcp"

[[auth.oauth.rules]]
group = "mcp-users"
backends = ["*"]
"#,
    );
    let out = std::process::Command::new(MANIFOLD)
        .arg("check")
        .arg(&file.path)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("auth: OAuth access tokens from https://idp.example.com/realms/acme for https://mcp.example.com/mcp (1 rules"),
        "{stdout}"
    );
}
