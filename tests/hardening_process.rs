//! Issue 8, the stdio backend's process: what environment a child gets,
//! what its stderr may cost, a child that exits while a grandchild holds its
//! pipe, and children of a gateway killed with SIGKILL.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const SECRET_NAME: &str = "MANIFOLD_H1_TEST_SECRET";
const SECRET_VALUE: &str = "h1-secret-value-4f1c9a";

/// `manifold serve` on a free port with `env` added to its environment.
fn gateway_with_env(config: &str, env: &[(&str, &str)]) -> (Proc, ConfigFile) {
    let file = write_config(config);
    let mut cmd = Command::new(MANIFOLD);
    cmd.arg("serve")
        .arg("--config")
        .arg(&file.path)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info,rmcp=warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let gw = spawn_listening(cmd);
    wait_blocking("the gateway to be ready", 60, || {
        http_get(&gw.url, "/readyz").0 == 200
    });
    (gw, file)
}
async fn call_text(client: &Client, tool: &str, arguments: Value) -> Result<String, String> {
    match client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
    {
        Ok(r) if r.is_error != Some(true) => Ok(first_text(&r)),
        Ok(r) => Err(first_text(&r)),
        Err(e) => Err(e.to_string()),
    }
}

fn fixture_backend(name: &str, extra: &str) -> String {
    format!(
        "[backends.{name}]\ntransport = \"stdio\"\ncommand = {FIXTURE:?}\nargs = [\"--process-tools\"]\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_child_gets_only_the_base_environment_unless_names_are_inherited() {
    let config = format!(
        "{}{}{}",
        fixture_backend("plain", "env = { OWN_SETTING = \"from-env-table\" }"),
        fixture_backend("listed", &format!("inherit_env = [\"{SECRET_NAME}\"]")),
        fixture_backend("everything", "inherit_env = true"),
    );
    let (gw, _cfg) = gateway_with_env(&config, &[(SECRET_NAME, SECRET_VALUE)]);
    let client = client(&gw.url).await;

    let plain = call_text(&client, "plain__env", json!({})).await.unwrap();
    assert!(
        !plain.contains(SECRET_NAME) && !plain.contains(SECRET_VALUE),
        "the gateway's secret reached a backend that did not ask for it:\n{plain}"
    );
    assert!(plain.contains("OWN_SETTING=from-env-table"), "{plain}");
    assert!(plain.lines().any(|l| l.starts_with("PATH=")), "{plain}");
    // Nothing outside the documented base list and its own `env` table.
    for line in plain.lines() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            manifold::backend::spawn::BASE_ENV.contains(&name) || name == "OWN_SETTING",
            "unexpected variable {name} in a child's environment"
        );
    }

    let listed = call_text(&client, "listed__env", json!({})).await.unwrap();
    assert!(
        listed.contains(&format!("{SECRET_NAME}={SECRET_VALUE}")),
        "{listed}"
    );
    let everything = call_text(&client, "everything__env", json!({}))
        .await
        .unwrap();
    assert!(
        everything.contains(&format!("{SECRET_NAME}={SECRET_VALUE}"))
            && everything.contains("RUST_LOG="),
        "{everything}"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_stderr_without_newlines_or_utf8_costs_no_memory_and_the_backend_keeps_working()
{
    let (gw, _cfg) = gateway_with_env(&fixture_backend("noisy", ""), &[]);
    let client = client(&gw.url).await;
    let before = peak_rss_kib(gw.pid());

    // 200 MiB on one line, then bytes that are not UTF-8.
    let wrote = call_text(&client, "noisy__stderr", json!({"bytes": 200u64 << 20}))
        .await
        .unwrap();
    assert_eq!(wrote, format!("wrote {} bytes to stderr", 200u64 << 20));
    // The reader is still draining: more stderr, and calls, still work.
    for _ in 0..3 {
        let wrote = call_text(&client, "noisy__stderr", json!({"bytes": 1000}))
            .await
            .unwrap();
        assert_eq!(wrote, "wrote 1000 bytes to stderr");
        assert_eq!(
            call_text(&client, "noisy__echo", json!({"message": "still here"}))
                .await
                .unwrap(),
            "still here"
        );
    }
    let peak = peak_rss_kib(gw.pid());
    assert!(
        peak < 100 * 1024,
        "the gateway's peak RSS went from {before} KiB to {peak} KiB"
    );
    assert_eq!(ready_backends(&gw.url)["noisy"]["state"], "up");
}
fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_that_exits_while_a_grandchild_holds_its_pipe_is_restarted_at_once() {
    // The shell leaves `sleep` holding stdout and stdin, and ends when the
    // fixture does.
    let script = format!("sleep 1000 & {FIXTURE} --process-tools; exit 0");
    let config = format!(
        "[server]\nrestart_min_backoff = \"100ms\"\nrestart_max_backoff = \"200ms\"\n\n\
         [backends.orphaner]\ntransport = \"stdio\"\ncommand = \"sh\"\nargs = [\"-c\", {script:?}]\n"
    );
    let (gw, _cfg) = gateway_with_env(&config, &[]);
    let client = client(&gw.url).await;
    let old_pid = ready_backends(&gw.url)["orphaner"]["pid"].as_u64().unwrap() as u32;
    assert_eq!(
        call_text(&client, "orphaner__echo", json!({"message": "a"})).await,
        Ok("a".into())
    );

    // The fixture exits mid-call; the shell follows; `sleep` keeps the pipe.
    let _ = call_text(&client, "orphaner__crash", json!({})).await;
    let started = Instant::now();
    wait_blocking("the backend to be restarted in a new process", 5, || {
        let b = ready_backends(&gw.url);
        b["orphaner"]["state"] == "up" && b["orphaner"]["pid"].as_u64() != Some(old_pid as u64)
    });
    let took = started.elapsed();
    assert_eq!(
        call_text(&client, "orphaner__echo", json!({"message": "b"})).await,
        Ok("b".into()),
        "a call after the restart failed"
    );
    // The old process group, `sleep` included, was reaped.
    wait_blocking("the old process group to be gone", 5, || {
        !group_alive(old_pid)
    });
    eprintln!("restarted {took:?} after the child exited");
    let new_pid = ready_backends(&gw.url)["orphaner"]["pid"].as_u64().unwrap() as u32;
    drop(gw);
    kill_group(new_pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_with_sigkill_leaves_no_stdio_children() {
    // After the fixture exits (its stdin closes with the gateway), the shell
    // would sleep on: only the parent-death signal stops it.
    let script = format!("{FIXTURE}; sleep 1000");
    let config = format!(
        "[backends.a]\ntransport = \"stdio\"\ncommand = \"sh\"\nargs = [\"-c\", {script:?}]\n\n{}",
        fixture_backend("b", "")
    );
    let (mut gw, _cfg) = gateway_with_env(&config, &[]);
    let b = ready_backends(&gw.url);
    let pids: Vec<u32> = ["a", "b"]
        .iter()
        .map(|n| b[n]["pid"].as_u64().unwrap() as u32)
        .collect();
    assert!(pids.iter().all(|p| alive(*p)));

    gw.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    gw.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for p in &pids {
        kill_group(*p);
    }
    assert!(
        left.is_empty(),
        "children {left:?} outlived the SIGKILLed gateway"
    );
}
