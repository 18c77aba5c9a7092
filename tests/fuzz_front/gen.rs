//! Strategies for HTTP requests to the gateway: methods, paths, headers and
//! bodies, from well-formed MCP to junk, with JSON-RPC shapes of every wrong
//! type in between.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Which `Mcp-Session-Id` to send; `Live` is replaced by a real session's id
/// when the request is sent.
#[derive(Clone, Debug)]
pub enum Session {
    None,
    Live,
    Text(String),
}

#[derive(Clone, Debug)]
pub enum Host {
    Right,
    Missing,
    Twice,
    Other(&'static str),
}

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub host: Host,
    pub session: Session,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body with `Transfer-Encoding: chunked` instead of a length.
    pub chunked: bool,
}

impl Req {
    /// The bytes on the wire. `Connection: close` makes the end of the
    /// response the end of the connection.
    pub fn render(&self, addr: &str, live: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        let mut line = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        match &self.host {
            Host::Right => line("Host", addr.as_bytes()),
            Host::Missing => {}
            Host::Twice => {
                line("Host", addr.as_bytes());
                line("Host", b"evil.example");
            }
            Host::Other(h) => line("Host", h.as_bytes()),
        }
        match &self.session {
            Session::None => {}
            Session::Live => line("Mcp-Session-Id", live.as_bytes()),
            Session::Text(t) => line("Mcp-Session-Id", t.as_bytes()),
        }
        for (n, v) in &self.headers {
            line(n, v.as_bytes());
        }
        line("Connection", b"close");
        if self.chunked {
            line("Transfer-Encoding", b"chunked");
        } else {
            line("Content-Length", self.body.len().to_string().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if self.chunked {
            for piece in self.body.chunks(100) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("POST".to_string()),
        2 => Just("GET".to_string()),
        1 => Just("DELETE".to_string()),
        1 => prop::sample::select(vec![
            "PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "post", "PRI", "M-SEARCH", "X"
        ])
        .prop_map(str::to_string),
        1 => "[A-Z]{1,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("/mcp".to_string()),
        4 => prop::sample::select(vec![
            "/mcp/", "/MCP", "//mcp", "/mcp?x=1&y", "/mcp#f", "/healthz", "/readyz", "/status",
            "/metrics", "/admin/reload", "/", "*", "/%00", "/../../etc/passwd", "/mcp%2f",
            "http://127.0.0.1/mcp",
        ])
        .prop_map(str::to_string),
        1 => "/[!-~]{0,60}",
        1 => (1usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n))),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        8 => Just(Host::Right),
        1 => Just(Host::Missing),
        1 => Just(Host::Twice),
        1 => prop::sample::select(vec!["evil.example", "localhost", "", "127.0.0.1:1", "[::1]"])
            .prop_map(Host::Other),
    ]
}

fn session() -> impl Strategy<Value = Session> {
    prop_oneof![
        3 => Just(Session::Live),
        2 => Just(Session::None),
        1 => "[!-~]{0,40}".prop_map(Session::Text),
        1 => (1usize..9000).prop_map(|n| Session::Text("s".repeat(n))),
    ]
}

/// Headers MCP clients send, with right and wrong values, and others.
fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let named = |name: &'static str, values: Vec<&'static str>| {
        prop::sample::select(values).prop_map(move |v| (name.to_string(), v.to_string()))
    };
    let one = prop_oneof![
        named(
            "Content-Type",
            vec![
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "*/*",
                "application/jsonx"
            ]
        ),
        named(
            "Accept",
            vec![
                "application/json, text/event-stream",
                "application/json",
                "text/event-stream",
                "*/*",
                "",
                "text/html"
            ]
        ),
        named(
            "MCP-Protocol-Version",
            vec![
                "2025-11-25",
                "2025-06-18",
                "2025-03-26",
                "2024-11-05",
                "2026-07-28",
                "1999-01-01",
                "",
                "latest"
            ]
        ),
        named(
            "Origin",
            vec![
                "http://127.0.0.1",
                "http://localhost:3000",
                "http://evil.example",
                "null",
                "",
                "file://"
            ]
        ),
        named(
            "Authorization",
            vec!["Bearer x", "Bearer", "Basic Zm9vOmJhcg==", ""]
        ),
        named("Last-Event-ID", vec!["0", "1/2", "x", ""]),
        named("Accept-Encoding", vec!["gzip", "br, zstd", "*"]),
        ("[A-Za-z-]{1,20}", "[ -~]{0,40}"),
        (1usize..20_000).prop_map(|n| ("X-Huge".to_string(), "h".repeat(n))),
    ];
    prop::collection::vec(one, 0..6)
}

/// The usual headers of a real client, so that a fair share of the cases
/// reaches the JSON-RPC layer instead of stopping at the first check.
fn usual() -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        (
            "Accept".into(),
            "application/json, text/event-stream".into(),
        ),
        ("MCP-Protocol-Version".into(), "2025-11-25".into()),
    ]
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ]
    .boxed()
}

pub fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An id of every JSON type, and none.
fn id() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => any::<i64>().prop_map(|n| Some(json!(n))),
        1 => Just(None),
        1 => json_value().prop_map(Some),
        1 => Just(Some(json!(1e300))),
        1 => Just(Some(json!("req-1"))),
    ]
}

const METHODS: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "logging/setLevel",
    "completion/complete",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "server/discover",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "sampling/createMessage",
    "nope",
    "",
];

/// Params that look like what `method` expects, with fields of wrong types.
fn params() -> impl Strategy<Value = Option<Value>> {
    let tool = prop::sample::select(vec![
        json!("fx__echo"),
        json!("fx__add"),
        json!("fx__fail"),
        json!("fx__rpc_error"),
        json!("fx__sleep"),
        json!("fx__progress"),
        json!("fx__log"),
        json!("gateway_status"),
        json!("nope"),
        json!(5),
        json!(null),
        json!(["fx__echo"]),
    ]);
    prop_oneof![
        2 => (tool, json_value(), json_value()).prop_map(|(name, arguments, meta)| {
            Some(json!({"name": name, "arguments": arguments, "_meta": meta}))
        }),
        1 => Just(Some(json!({"name": "fx__sleep", "arguments": {"ms": 100}}))),
        1 => Just(Some(json!({
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "0"}
        }))),
        1 => json_value().prop_map(|v| Some(json!({"level": v}))),
        1 => json_value().prop_map(|v| Some(json!({"uri": v, "cursor": v, "requestId": v}))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
}

fn rpc_message() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            4 => Just(json!("2.0")),
            1 => json_value(),
        ],
        id(),
        prop_oneof![
            6 => prop::sample::select(METHODS).prop_map(Value::from),
            1 => json_value(),
        ],
        params(),
        any::<bool>(),
    )
        .prop_map(|(version, id, method, params, has_method)| {
            let mut m = serde_json::Map::new();
            m.insert("jsonrpc".into(), version);
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            if has_method {
                m.insert("method".into(), method);
            } else {
                // A response or error from the "client", to no request.
                m.insert("result".into(), params.clone().unwrap_or_default());
            }
            if let Some(p) = params {
                m.insert("params".into(), p);
            }
            Value::Object(m)
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => rpc_message().prop_map(|v| v.to_string().into_bytes()),
        2 => prop::collection::vec(rpc_message(), 0..5)
            .prop_map(|v| Value::Array(v).to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => Just(Vec::new()),
        1 => (1usize..5000, any::<bool>()).prop_map(|(depth, obj)| {
            let (o, c) = if obj { ("{\"a\":", "}") } else { ("[", "]") };
            format!("{}1{}", o.repeat(depth), c.repeat(depth)).into_bytes()
        }),
        // Over max_request_bytes (64 KiB in the fuzz config).
        1 => (60_000usize..80_000).prop_map(|n| {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"p\":\"{}\"}}}}",
                "x".repeat(n)).into_bytes()
        }),
    ]
}

/// Any request: half with a real client's envelope (POST to `/mcp` on the
/// live session with the usual headers) so the body reaches the JSON-RPC
/// layer, half with every part generated.
pub fn request() -> impl Strategy<Value = Req> {
    prop_oneof![1 => well_addressed(), 1 => anything()]
}

fn well_addressed() -> impl Strategy<Value = Req> {
    (body(), prop::bool::weighted(0.8)).prop_map(|(body, live)| Req {
        method: "POST".into(),
        path: "/mcp".into(),
        host: Host::Right,
        session: if live { Session::Live } else { Session::None },
        headers: usual(),
        body,
        chunked: false,
    })
}

fn anything() -> impl Strategy<Value = Req> {
    (
        method(),
        path(),
        host(),
        session(),
        prop_oneof![3 => Just(true), 1 => Just(false)],
        headers(),
        body(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(method, path, host, session, usual_first, extra, body, chunked)| {
                let mut headers = if usual_first { usual() } else { Vec::new() };
                headers.extend(extra);
                Req {
                    method,
                    path,
                    host,
                    session,
                    headers,
                    body,
                    chunked,
                }
            },
        )
}
