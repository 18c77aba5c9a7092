//! Raw HTTP requests to a gateway, for what an MCP client does not send:
//! probes, admin routes, a chosen `Host`, a bearer token on a plain GET.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

/// The `host:port` of a URL such as `http://127.0.0.1:8123/mcp`.
pub fn host_of(url: &str) -> &str {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
}

/// The base URL (`http://host:port`) of a gateway's MCP URL.
pub fn base(url: &str) -> String {
    url.trim_end_matches("/mcp").to_string()
}

/// One HTTP/1.1 request with an empty body on the host of `url`: (status, body).
/// `headers` may set `Host` (it is sent as given instead of the real one).
/// A connection that cannot be made answers status 0.
pub fn raw(url: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let host = host_of(url);
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = s.write_all(head.as_bytes());
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A plain GET of `path` on the host of `url`: (status, body).
pub fn http_get(url: &str, path: &str) -> (u16, String) {
    raw(url, "GET", path, &[])
}

/// A GET with `Authorization: Bearer {token}`.
pub fn http_get_auth(url: &str, path: &str, token: &str) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    raw(url, "GET", path, &[("Authorization", &bearer)])
}

/// A POST with an empty body.
pub fn http_post(url: &str, path: &str) -> (u16, String) {
    raw(url, "POST", path, &[])
}

/// `/status` as JSON (no auth).
pub fn status(url: &str) -> Value {
    serde_json::from_str(&http_get(url, "/status").1).expect("status JSON")
}

/// The `backends` of `/readyz` (null while the gateway does not answer).
pub fn ready_backends(url: &str) -> Value {
    let (_, body) = http_get(url, "/readyz");
    serde_json::from_str::<Value>(&body).unwrap_or_default()["backends"].clone()
}

/// MCP requests the gateway has admitted (past auth and limits) and not yet
/// answered, from `/readyz`: what a test waits on to know a call holds its slot.
pub fn in_flight(url: &str) -> u64 {
    let (_, body) = http_get(url, "/readyz");
    serde_json::from_str::<Value>(&body).unwrap_or_default()["in_flight"]
        .as_u64()
        .unwrap_or(0)
}

/// `GET {base}{path}` with an optional bearer token, as JSON.
pub async fn get_json(url: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", base(url)));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("GET");
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}
