//! Issue 8, the HTTP edge and the config as printed: secrets that came from
//! the environment stay out of `check`, logs and `/readyz`; the probes get
//! the Host check; a non-loopback listener needs `[auth]`; half-open
//! connections cannot starve the gateway.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

const SECRET: &str = "h1-edge-secret-93b0d2";

fn manifold(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(MANIFOLD)
        .args(args)
        .arg(config)
        .env("MANIFOLD_H1_SECRET", SECRET)
        .output()
        .expect("run manifold");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LEAKY: &str = "[server]\nconnect_timeout = \"2s\"\n\n\
    [backends.remote]\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp?key=${MANIFOLD_H1_SECRET}\"\n\n\
    [backends.local]\ntransport = \"stdio\"\ncommand = \"/nonexistent/manifold-h1-tool\"\nargs = [\"--token\", \"${MANIFOLD_H1_SECRET}\"]\n";

#[test]
fn check_never_prints_a_secret_from_a_url_or_args() {
    let cfg = write_config(LEAKY);
    let (code, stdout, stderr) = manifold(&["check"], &cfg.path);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "check printed the secret:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("http://127.0.0.1:9/mcp?key=***"),
        "{stdout}"
    );
    assert!(stdout.contains("--token ***"), "{stdout}");

    // --connect fails both backends; their reasons quote neither.
    let (code, stdout, stderr) = manifold(&["check", "--connect"], &cfg.path);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("backend `remote` is down"), "{stderr}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "check --connect printed the secret:\n{stdout}\n{stderr}"
    );
}

/// A raw HTTP/1.1 GET with this `Host` header: (status, body).
fn get_with_host(url: &str, path: &str, host_header: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

#[test]
fn readyz_and_logs_never_show_a_secret_and_the_probes_check_host() {
    let cfg = write_config(LEAKY);
    let mut cmd = Command::new(MANIFOLD);
    cmd.arg("serve")
        .arg("--config")
        .arg(&cfg.path)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug,rmcp=debug")
        .env("MANIFOLD_H1_SECRET", SECRET);
    let mut gw = spawn_listening(cmd);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = http_get(&gw.url, "/readyz");
        if status == 200 && body.contains("\"down\"") {
            break body;
        }
        assert!(Instant::now() < deadline, "never ready: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!body.contains(SECRET), "/readyz shows the secret: {body}");
    let (status, status_body) = http_get(&gw.url, "/status");
    assert_eq!(status, 200);
    assert!(!status_body.contains(SECRET), "/status: {status_body}");

    // A foreign Host (DNS rebinding) gets no probe answer, like /mcp.
    for path in ["/readyz", "/healthz", "/status", "/metrics"] {
        let (status, body) = get_with_host(&gw.url, path, "evil.example.net");
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert_eq!(http_get(&gw.url, "/healthz").0, 200);

    gw.terminate();
    let logs = gw.stderr_lines().join("\n");
    assert!(logs.contains("remote"), "no logs captured: {logs}");
    assert!(!logs.contains(SECRET), "the logs show the secret:\n{logs}");
}

fn serve_output(config: &str, listen: &str) -> (Option<i32>, String) {
    use std::io::BufRead;
    let cfg = write_config(config);
    let mut child = Command::new(MANIFOLD)
        .args(["serve", "--config"])
        .arg(&cfg.path)
        .args(["--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if rx.try_iter().any(|l| l.starts_with("listening ")) {
            // Serving: that is the answer.
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new());
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        assert!(Instant::now() < deadline, "serve neither served nor exited");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn serving_beyond_loopback_without_auth_is_refused_unless_allowed() {
    // From the config file: serve and check both refuse, and say how to fix it.
    let open = "[server]\nlisten = \"0.0.0.0:0\"\n";
    let cfg = write_config(open);
    let (code, _, stderr) = manifold(&["check"], &cfg.path);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(":2:10: listening on 0.0.0.0:0")
            && stderr.contains("allow_unauthenticated"),
        "{stderr}"
    );
    // From --listen, with a loopback config file.
    let (code, stderr) = serve_output("", "0.0.0.0:0");
    assert_eq!(code, Some(1), "serve started on 0.0.0.0 without auth");
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("[auth]"),
        "{stderr}"
    );
    // Allowed explicitly, or with tokens: it serves.
    let (code, _) = serve_output("[server]\nallow_unauthenticated = true\n", "0.0.0.0:0");
    assert_eq!(code, None);
    let with_auth = "[[auth.tokens]]\nclient_id = \"alice\"\ntoken = \"a-long-token-1\"\n";
    let (code, _) = serve_output(with_auth, "0.0.0.0:0");
    assert_eq!(code, None);
}

/// Connects and sends half a request line, never the rest.
fn half_open(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HT").unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_connections_are_closed_and_cannot_starve_the_probes() {
    let config = format!(
        "[server]\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\nmax_connections = 20\n\n{}",
        stdio_backend("f", "")
    );
    let (gw, _cfg) = gateway(&config);

    // Beyond the cap: every new connection is answered at once, never queued.
    let mut stuck: Vec<TcpStream> = (0..40).map(|_| half_open(&gw.url)).collect();
    let started = Instant::now();
    let (status, body) = http_get(&gw.url, "/healthz");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/healthz took {:?}",
        started.elapsed()
    );
    assert!(status == 200 || status == 503, "{status} {body}");
    if status == 503 {
        assert!(body.contains("max_connections"), "{body}");
    }
    // The half-open ones are closed after header_timeout, and the probe is
    // served normally again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(&gw.url, "/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "/healthz never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = stuck.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = (&first).read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf.starts_with(b"HTTP/1.1 503"),
        "a half-open connection was not closed: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    // A fresh half-open connection is closed after about header_timeout.
    let late = half_open(&gw.url);
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let n = (&late).read(&mut buf).unwrap_or(usize::MAX);
    let took = started.elapsed();
    assert_eq!(n, 0, "expected the server to close the connection");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );

    // The idle timeout never cuts a request in progress.
    let client = client(&gw.url).await;
    let r = client
        .call_tool(CallToolRequestParams::new("f__sleep").with_arguments(args(json!({"ms": 2500}))))
        .await
        .expect("a call longer than idle_timeout");
    assert_eq!(first_text(&r), "slept 2500 ms");
}
