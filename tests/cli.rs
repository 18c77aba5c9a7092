//! The command line as a user runs it: `check` (with and without
//! `--connect`), every shipped config, and `stdio` mode.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn check(args: &[&str], path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(MANIFOLD)
        .arg("check")
        .args(args)
        .arg(path)
        .env("GITHUB_TOKEN", "test-token")
        .env("DOCS_TOKEN", "test-token")
        .env("MANIFOLD_TOKEN_ALICE", "test-token-alice")
        .env("MANIFOLD_TOKEN_BOB", "test-token-bob")
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_every_error_with_file_line_and_column() {
    let cfg = write_config(
        "[server]\nlisten = \"localhost\"\nseperator = \"::\"\n\n\
         [backends.a]\ntransport = \"stdio\"\n\n\
         [backends.b]\ntransport = \"ftp\"\n\n\
         [backends.c]\ntransport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\nheaders = { Authorization = \"Bearer ${MANIFOLD_TEST_UNSET_TOKEN}\" }\n\n\
         [backends.d]\ntransport = \"stdio\"\ncommand = \"x\"\nprefix = \"c\"\n",
    );
    let (code, _, stderr) = check(&[], &cfg.path);
    assert_eq!(code, 1, "{stderr}");
    let file = cfg.path.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        format!("{file}:3:1: unknown field `seperator`"),
        format!("{file}:6:13: backend `a`: transport \"stdio\" needs `command`"),
        format!("{file}:9:13: unknown variant `ftp`"),
        format!("{file}:14:29: environment variable `MANIFOLD_TEST_UNSET_TOKEN` is not set"),
        format!("{file}:19:10: backend `d` uses prefix \"c\", already used by backend `c`"),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "got  {line}\nwant {want}");
    }
    // The server section failed to parse as a whole, so its listen error is
    // reported with the unknown key rather than separately.
    assert!(
        !stderr.contains("MANIFOLD_TEST_UNSET_TOKEN=") && !stderr.contains("Bearer"),
        "secrets leak: {stderr}"
    );
}

#[test]
fn check_summarizes_a_valid_config() {
    let cfg = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:9999\"\n\n{}{}",
        stdio_backend("fx", ""),
        url_backend(
            "web",
            "http",
            "http://127.0.0.1:1/mcp",
            "enabled = false\nheaders = { Authorization = \"Bearer hunter2\" }"
        )
    ));
    let (code, stdout, stderr) = check(&[], &cfg.path);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok: 2 backend(s), 1 enabled; serving http://127.0.0.1:9999/mcp"),
        "{stdout}"
    );
    assert!(stdout.contains("fx__"), "{stdout}");
    assert!(stdout.contains("disabled"), "{stdout}");
    assert!(
        !stdout.contains("hunter2"),
        "a header value was printed: {stdout}"
    );
}

#[test]
fn every_shipped_config_passes_check() {
    let mut configs = vec![repo().join("gateway.toml")];
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            configs.push(path);
        }
    }
    assert!(configs.len() >= 3, "{configs:?}");
    for path in configs {
        let (code, stdout, stderr) = check(&[], &path);
        assert_eq!(code, 0, "{}:\n{stdout}\n{stderr}", path.display());
    }
}

#[test]
fn check_connect_lists_names_and_reports_collisions_and_long_names() {
    let cfg = write_config(&format!(
        "{}{}",
        stdio_backend("one", "prefix = \"\""),
        stdio_backend("two", "prefix = \"\"\nargs = [\"--long-tool\"]"),
    ));
    let (code, stdout, stderr) = check(&["--connect"], &cfg.path);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("one: up: 20 tools"), "{stdout}");
    assert!(stdout.contains("  tool      echo"), "{stdout}");
    let file = cfg.path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:5:11: tool echo is exposed by backends `one` and `two`; only `one` will receive calls")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:5:11: backend `two`: exposed name \"{}\" is 70 characters",
            "l".repeat(70)
        )),
        "{stderr}"
    );

    let ok = write_config(&stdio_backend("fx", ""));
    let (code, stdout, stderr) = check(&["--connect"], &ok.path);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("  tool      fx__echo") && stdout.contains("  resource  fx+fixture://info"),
        "{stdout}"
    );
}

#[test]
fn stdio_mode_speaks_only_protocol_on_stdout() {
    let cfg = write_config(&stdio_backend("fx", ""));
    let mut child = Command::new(MANIFOLD)
        .arg("stdio")
        .arg("--config")
        .arg(&cfg.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stdio");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let send = |stdin: &mut std::process::ChildStdin, v: serde_json::Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    let recv = || -> serde_json::Value {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a line on stdout");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    };
    send(
        &mut stdin,
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let init = recv();
    assert_eq!(init["result"]["serverInfo"]["name"], "manifold", "{init}");
    send(
        &mut stdin,
        serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    );
    send(
        &mut stdin,
        serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"fx__echo","arguments":{"message":"over stdio"}}}),
    );
    let mut call = recv();
    while call.get("id") != Some(&serde_json::json!(2)) {
        assert!(call.get("method").is_some(), "unexpected line {call}");
        call = recv();
    }
    assert_eq!(call["result"]["content"][0]["text"], "over stdio", "{call}");
    // Params that do not fit the method: invalid params naming it, as over HTTP.
    send(
        &mut stdin,
        serde_json::json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":5}}),
    );
    let mut bad = recv();
    while bad.get("id") != Some(&serde_json::json!(3)) {
        assert!(bad.get("method").is_some(), "unexpected line {bad}");
        bad = recv();
    }
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let text = bad["error"]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("Invalid params for `tools/call`"), "{bad}");
    drop(stdin);
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status}");
    // Whatever else was printed must be protocol too.
    while let Ok(line) = rx.try_recv() {
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("non-protocol stdout ({e}): {line}"));
    }
}
