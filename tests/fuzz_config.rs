//! Property-based fuzzing of the config loader (`manifold::config`).
//!
//! Inputs: random bytes, random text, and random `gateway.toml` documents
//! built from the real section and key names mixed with wrong types, unknown
//! keys, huge numbers, bad durations, `${VAR}` references, deep nesting and
//! invalid UTF-8. Properties: the loader never panics, answers within a
//! deadline, and every error it reports renders as `file:line:col: message`
//! with a position inside the file.
//!
//! `PROPTEST_CASES` overrides the case count (256 by default):
//! `PROPTEST_CASES=5000 cargo test --test fuzz_config`.

use std::sync::mpsc;
use std::time::Duration;

use manifold::config::{Config, ConfigErrors, load_file, parse_str};
use proptest::prelude::*;
use proptest::test_runner::Config as RunnerConfig;

const LABEL: &str = "fuzz.toml";
/// Parsing a few kilobytes takes microseconds; this only catches a hang.
const DEADLINE: Duration = Duration::from_secs(10);

fn runner() -> RunnerConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    }
}

/// Runs `f` on a thread with the stack of a tokio worker (2 MiB), where a
/// reload parses the file, so deep recursion fails here as it would there.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn parser thread");
    match rx.recv_timeout(DEADLINE) {
        Ok(v) => v,
        // A panic drops `tx` without sending: the thread printed it already.
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the loader panicked on {what}"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the loader hung on {what}"),
    }
}

/// Every error names `label:line:col` inside `text` and says something.
fn assert_located(errors: &ConfigErrors, label: &str, text: &str) {
    assert!(!errors.0.is_empty(), "an Err with no error in it");
    let lines = text.split('\n').count();
    for e in &errors.0 {
        let l = e
            .location
            .as_ref()
            .unwrap_or_else(|| panic!("error without a location: {e}"));
        assert_eq!(l.file, label, "{e}");
        assert!(l.line >= 1 && l.line <= lines, "line out of the file: {e}");
        assert!(l.column >= 1, "column 0: {e}");
        let rendered = e.to_string();
        let head = format!("{label}:{}:{}: ", l.line, l.column);
        assert!(rendered.starts_with(&head), "rendered as {rendered:?}");
        assert!(
            rendered.len() > head.len(),
            "an empty message: {rendered:?}"
        );
    }
}

fn check_text(text: String) -> Result<Config, ConfigErrors> {
    let copy = text.clone();
    let result = bounded("text", move || parse_str(&copy, LABEL, None));
    if let Err(errors) = &result {
        assert_located(errors, LABEL, &text);
    }
    result
}

/// Writes `bytes` to a file and loads it as `manifold serve` would.
fn check_file(bytes: Vec<u8>) -> Result<Config, ConfigErrors> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &bytes).expect("write config");
    let label = path.display().to_string();
    let p = path.clone();
    let result = bounded("a file", move || load_file(&p));
    if let Err(errors) = &result {
        assert_located(errors, &label, &String::from_utf8_lossy(&bytes));
    }
    result
}

// ---- strategies -------------------------------------------------------

const SERVER_KEYS: &[&str] = &[
    "listen",
    "path",
    "separator",
    "session_idle_timeout",
    "connect_timeout",
    "call_timeout",
    "relay_timeout",
    "restart_min_backoff",
    "restart_max_backoff",
    "health_interval",
    "health_timeout",
    "down_backends",
    "worker_threads",
    "max_request_bytes",
    "allowed_hosts",
    "allowed_origins",
];
const LIMITS_KEYS: &[&str] = &[
    "request_timeout",
    "max_concurrent_requests",
    "max_concurrent_per_client",
    "rate_limit_per_second",
    "rate_limit_burst",
    "max_sessions",
];
const TOKEN_KEYS: &[&str] = &["client_id", "token", "backends", "tools", "admin"];
const BACKEND_KEYS: &[&str] = &[
    "transport",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "enabled",
    "prefix",
    "timeout",
    "isolation",
    "tools",
    "prompts",
    "max_concurrent",
    "max_sessions",
];
const MESSAGING_KEYS: &[&str] = &[
    "enabled",
    "store",
    "redis_url",
    "key_prefix",
    "message_ttl",
    "max_message_bytes",
    "require_checkin",
    "rate_limit",
    "max_wait",
    "checkin_ttl",
    "max_checkins",
];
const BUS_KEYS: &[&str] = &[
    "enabled",
    "history",
    "rate_limit",
    "max_message_bytes",
    "max_metadata_bytes",
];
const UNKNOWN_KEYS: &[&str] = &[
    "bogus",
    "Listen",
    "tranport",
    "x.y.z",
    "\"quoted key\"",
    "ü",
];

/// Strings a value may be: good and bad durations, addresses, globs,
/// transports, environment references and plain junk.
const WORDS: &[&str] = &[
    "30s",
    "5m",
    "0s",
    "-1s",
    "1.5h",
    "soon",
    "",
    " ",
    "18446744073709551615s",
    "584942417355y",
    "100000000000000y",
    "99999999999999999999999999ms",
    "1ns",
    "127.0.0.1:0",
    "127.0.0.1:99999",
    "[::1]:8123",
    "localhost",
    "/mcp",
    "mcp",
    "__",
    ".",
    "*",
    "[",
    "{a,b",
    "stdio",
    "http",
    "sse",
    "per_session",
    "shared",
    "hide",
    "error",
    "memory",
    "redis",
    "redis://127.0.0.1:6379",
    "http://127.0.0.1:1/mcp",
    "http://user:pw@h/x?k=v",
    "not a url",
    "${PATH}",
    "${HOME}/x",
    "${MANIFOLD_FUZZ_SURELY_UNSET}",
    "${}",
    "${a-b}",
    "${UNTERMINATED",
    "$${LITERAL}",
    "$$$${",
    "\\u0000",
    "a\\nb",
    "€ü\\u00e9",
];

fn leaf() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "1023",
            "1024",
            "9223372036854775807",
            "-9223372036854775808",
            "99999999999999999999999",
            "0x7fffffff",
            "1e400",
            "nan",
            "-inf",
            "1.5",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "07:32:00",
        ])
        .prop_map(str::to_string),
        prop::sample::select(WORDS).prop_map(|w| format!("\"{w}\"")),
        "[ -~]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', ""))),
        // Unquoted junk: a syntax error somewhere on the line.
        "[ -~]{1,8}",
    ]
    .boxed()
}

fn value() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

fn key() -> impl Strategy<Value = &'static str> {
    let all: Vec<&'static str> = [
        SERVER_KEYS,
        LIMITS_KEYS,
        TOKEN_KEYS,
        BACKEND_KEYS,
        MESSAGING_KEYS,
        BUS_KEYS,
        UNKNOWN_KEYS,
        &["include", "exclude"],
    ]
    .concat();
    prop::sample::select(all)
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[server]".to_string()),
        Just("[limits]".to_string()),
        Just("[auth]".to_string()),
        Just("[[auth.tokens]]".to_string()),
        Just("[messaging]".to_string()),
        Just("[bus]".to_string()),
        Just("[backends]".to_string()),
        Just("[[backends]]".to_string()),
        Just("[nonsense]".to_string()),
        prop::sample::select(vec!["fx", "a-b", "x_1", "bad name", "é", "", "fx.tools"])
            .prop_map(|n| format!("[backends.\"{n}\"]")),
    ]
}

/// One section: a header and a few `key = value` lines, sometimes a line of
/// junk.
fn section() -> impl Strategy<Value = String> {
    (
        header(),
        prop::collection::vec((key(), value()), 0..6),
        prop::option::weighted(0.1, "[ -~]{0,30}"),
    )
        .prop_map(|(h, kvs, junk)| {
            let mut s = h;
            s.push('\n');
            for (k, v) in kvs {
                s.push_str(&format!("{k} = {v}\n"));
            }
            if let Some(j) = junk {
                s.push_str(&j);
                s.push('\n');
            }
            s
        })
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(section(), 0..6).prop_map(|s| s.concat())
}

/// A valid config to mutate: one stdio backend with filters and limits.
const VALID: &str = r#"[server]
listen = "127.0.0.1:0"
call_timeout = "5s"

[limits]
max_concurrent_requests = 64

[backends.fx]
transport = "stdio"
command = "manifold-fixture"
tools = { exclude = ["crash"] }
"#;

// ---- properties -------------------------------------------------------

proptest! {
    #![proptest_config(runner())]

    #[test]
    fn random_text_never_panics_and_errors_are_located(text in "\\PC{0,400}") {
        let _ = check_text(text);
    }

    #[test]
    fn random_bytes_from_a_file_never_panic_and_errors_are_located(
        bytes in prop::collection::vec(any::<u8>(), 0..600)
    ) {
        let _ = check_file(bytes);
    }

    #[test]
    fn generated_configs_never_panic_and_errors_are_located(doc in document()) {
        let _ = check_text(doc);
    }

    #[test]
    fn one_wrong_line_in_a_valid_config_is_reported_where_it_is(
        k in key(), v in value(), at in 0usize..12
    ) {
        let mut lines: Vec<&str> = VALID.lines().collect();
        let extra = format!("{k} = {v}");
        let at = at.min(lines.len());
        lines.insert(at, &extra);
        let _ = check_text(lines.join("\n"));
    }

    #[test]
    fn invalid_utf8_anywhere_is_reported_with_its_position(
        doc in document(), at in any::<prop::sample::Index>(), byte in 0x80u8..=0xff
    ) {
        let mut bytes = doc.into_bytes();
        let at = at.index(bytes.len() + 1);
        // A lone continuation or lead byte followed by ASCII is never valid.
        bytes.splice(at..at, [byte, b'x']);
        let r = check_file(bytes);
        prop_assert!(r.is_err(), "invalid UTF-8 was accepted");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 1usize..3000, table in any::<bool>()) {
        let (open, close) = if table { ("{a=", "}") } else { ("[", "]") };
        let text = format!("[server]\nx = {}1{}\n", open.repeat(depth), close.repeat(depth));
        prop_assert!(check_text(text).is_err());
    }
}

/// A file that is not UTF-8 names the line and column of the first bad byte.
#[test]
fn invalid_utf8_names_the_first_bad_byte() {
    let errors = check_file(b"[server]\npath = \"/m\xffcp\"\n".to_vec()).expect_err("bad UTF-8");
    let e = errors.0[0].to_string();
    assert!(e.contains(":2:11: "), "{e}");
    assert!(e.contains("UTF-8"), "{e}");
}
