//! Property-based fuzzing of the HTTP front, against one real gateway process
//! with a real stdio fixture backend.
//!
//! Cases are generated HTTP requests sent over loopback with a raw client:
//! random methods, paths, headers (content type, accept, session id,
//! protocol version, origin, host, huge and duplicate headers) and bodies
//! (random bytes and JSON, JSON-RPC messages with ids of every type, wrong
//! params, unknown methods, batches, deep nesting, bodies over the limit).
//! Each case sends a few requests at once. Properties: every request gets a
//! well-formed HTTP response before a deadline, with a status below 500 (503
//! only when the gateway sheds load); every JSON error object carries an
//! integer `code`; the gateway process never exits; and `/healthz` answers
//! after every case.
//!
//! All properties share one gateway, so they run in one test function; each
//! phase is its own proptest runner. `PROPTEST_CASES` overrides the case
//! count of each phase (256 by default).

mod common;
#[path = "fuzz_front/gen.rs"]
mod gen_req;
#[path = "fuzz_front/wire.rs"]
mod wire;

use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::Value;

use common::*;
use gen_req::{Host, Req, Session, request};
use wire::{Reply, exchange};

/// The fixture's `hang`/`sleep` tools end at `call_timeout` (2 s); anything
/// slower than this is the gateway not answering.
const DEADLINE: Duration = Duration::from_secs(20);

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        // Shrinking re-sends requests; a few dozen steps find the culprit.
        // A case that fails by timing out costs DEADLINE a step, so the
        // whole shrink is also bounded in time (ms): a failure is reported
        // within minutes instead of stalling the run.
        max_shrink_iters: 64,
        max_shrink_time: 90_000,
        ..RunnerConfig::default()
    })
}

fn config() -> String {
    format!(
        "[server]\ncall_timeout = \"2s\"\nmax_request_bytes = 65536\n\n[limits]\nmax_concurrent_requests = 64\n\n{}",
        stdio_backend("fx", "")
    )
}

/// The gateway under test and the live session cases may use.
struct Target {
    gateway: Mutex<Proc>,
    addr: String,
    session: Mutex<String>,
    /// How many answers had each status, printed at the end to show what the
    /// cases reached (a run that only ever saw 400 tested little).
    statuses: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// The same for JSON-RPC error codes (0: a result).
    codes: Mutex<std::collections::BTreeMap<i64, u64>>,
}

impl Target {
    fn alive(&self) -> Result<(), TestCaseError> {
        let mut gw = self.gateway.lock().unwrap_or_else(|p| p.into_inner());
        match gw.child.try_wait() {
            Ok(None) => Ok(()),
            other => {
                let log = gw.stderr_lines().join("\n");
                Err(TestCaseError::fail(format!(
                    "the gateway exited: {other:?}\n{log}"
                )))
            }
        }
    }

    fn live_session(&self) -> String {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A fresh session, after a case may have deleted the live one.
    fn renew_session(&self) {
        let id = initialize(&self.addr);
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    fn healthz(&self) -> Result<(), TestCaseError> {
        let req = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        match exchange(&self.addr, req.as_bytes(), false, Duration::from_secs(5)) {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(TestCaseError::fail(format!("/healthz failed: {other:?}"))),
        }
    }
}

/// Opens an MCP session by hand and returns its id.
fn initialize(addr: &str) -> String {
    let post = |session: Option<&str>, body: &str| {
        let sid = session
            .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{sid}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        exchange(addr, req.as_bytes(), false, DEADLINE).expect("initialize answered")
    };
    let init = post(
        None,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}"#,
    );
    assert_eq!(init.status, 200, "initialize: {init:?}");
    let id = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let done = post(
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert!(done.status < 300, "initialized: {done:?}");
    id
}

/// Every JSON-RPC message in a body: the body itself, or each SSE `data:`.
fn messages(reply: &Reply) -> Vec<Result<Value, String>> {
    let ct = reply
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(&reply.body);
    if ct.starts_with("text/event-stream") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                serde_json::from_str(d).map_err(|e| format!("SSE data is not JSON ({e}): {d}"))
            })
            .collect()
    } else if ct.starts_with("application/json") && !reply.body.is_empty() {
        vec![
            serde_json::from_slice(&reply.body)
                .map_err(|e| format!("JSON body is not JSON ({e}): {text}")),
        ]
    } else {
        Vec::new()
    }
}

/// An error object must carry an integer code and a message.
fn check_errors(v: &Value) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(check_errors),
        Value::Object(m) => match m.get("error") {
            Some(Value::Object(e))
                if e.get("code").is_some_and(Value::is_i64)
                    && e.get("message").is_some_and(Value::is_string) =>
            {
                Ok(())
            }
            Some(e) => Err(format!("error without an integer code and a message: {e}")),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_reply(req: &Req, reply: &Reply) -> Result<(), String> {
    let shed = reply.status == 503;
    if reply.status >= 500 && !shed {
        return Err(format!(
            "status {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
    }
    for m in messages(reply) {
        check_errors(&m?)?;
    }
    if matches!(req.session, Session::Live) && req.method == "DELETE" && reply.status < 300 {
        return Err("renew".into());
    }
    Ok(())
}

/// Sends a case's requests at once and checks every answer.
fn run_case(t: &Target, reqs: &[Req]) -> Result<(), TestCaseError> {
    let live = t.live_session();
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|req| {
                let live = live.clone();
                s.spawn(move || {
                    let bytes = req.render(&t.addr, &live);
                    let open_stream = req.method == "GET";
                    let reply = exchange(&t.addr, &bytes, open_stream, DEADLINE)
                        .map_err(|e| format!("{e}\nrequest: {}", summary(&bytes)))?;
                    *t.statuses
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(reply.status)
                        .or_default() += 1;
                    for m in messages(&reply).into_iter().flatten() {
                        let code = m["error"]["code"].as_i64().unwrap_or(0);
                        *t.codes
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(code)
                            .or_default() += 1;
                    }
                    check_reply(req, &reply).map_err(|e| {
                        if e == "renew" {
                            e
                        } else {
                            format!("{e}\nrequest: {}", summary(&bytes))
                        }
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("client thread panicked".into()))
            })
            .collect()
    });
    let mut renew = false;
    for o in outcomes {
        match o {
            Err(e) if e == "renew" => renew = true,
            Err(e) => return Err(TestCaseError::fail(e)),
            Ok(()) => {}
        }
    }
    t.alive()?;
    t.healthz()?;
    if renew {
        t.renew_session();
    }
    Ok(())
}

fn summary(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]);
    format!("{text:?}{}", if bytes.len() > 600 { " …" } else { "" })
}

#[test]
fn gateway_answers_every_generated_request_and_stays_up() {
    let (gw, _file) = gateway(&config());
    let addr = gw
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("addr")
        .to_string();
    let t = Target {
        gateway: Mutex::new(gw),
        addr,
        session: Mutex::new(String::new()),
        statuses: Mutex::default(),
        codes: Mutex::default(),
    };
    t.renew_session();

    // Phase 1: one request at a time (clean failures, shrinkable).
    let one = request().prop_map(|r| vec![r]);
    if let Err(e) = runner().run(&one, |reqs| run_case(&t, &reqs)) {
        panic!("single requests: {e}");
    }
    // Phase 2: up to eight at once on the same session.
    let many = prop::collection::vec(request(), 2..8);
    if let Err(e) = runner().run(&many, |reqs| run_case(&t, &reqs)) {
        panic!("concurrent requests: {e}");
    }
    // Phase 3: requests a real client sends, so the session layer sees
    // well-formed traffic between the junk and still serves it.
    let echo = Req {
        method: "POST".into(),
        path: "/mcp".into(),
        host: Host::Right,
        session: Session::Live,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Accept".into(), "application/json, text/event-stream".into()),
        ],
        body: br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fx__echo","arguments":{"message":"still here"}}}"#.to_vec(),
        chunked: false,
    };
    let bytes = echo.render(&t.addr, &t.live_session());
    let reply = exchange(&t.addr, &bytes, false, DEADLINE).expect("echo answered");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        String::from_utf8_lossy(&reply.body).contains("still here"),
        "{reply:?}"
    );
    t.alive().expect("gateway alive at the end");
    eprintln!(
        "answers by status: {:?}",
        t.statuses.lock().unwrap_or_else(|p| p.into_inner())
    );
    eprintln!(
        "JSON-RPC error codes (0: result): {:?}",
        t.codes.lock().unwrap_or_else(|p| p.into_inner())
    );
}
