//! Process lifecycle: stopping the gateway stops every backend process,
//! grandchildren included, and exits cleanly.

mod common;

use std::time::{Duration, Instant};

use common::*;
#[test]
fn sigterm_stops_every_backend_process_group_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let grandchild_file = dir.path().join("grandchild.pid");
    // A wrapper like `npx`: a shell that starts a helper process, then the server.
    let wrapper = format!(
        "[backends.wrapped]\ntransport = \"stdio\"\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 300 & echo $! > {}; exec {FIXTURE}\"]\n\n",
        grandchild_file.display()
    );
    let config = format!(
        "{wrapper}{}{}",
        stdio_backend("a", ""),
        stdio_backend("b", "")
    );
    let (mut gw, _cfg) = gateway(&config);
    let (_, body) = http_get(&gw.url, "/readyz");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut pids: Vec<u32> = ["a", "b", "wrapped"]
        .iter()
        .map(|b| {
            v["backends"][b]["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("no pid for {b}: {body}")) as u32
        })
        .collect();
    let grandchild: u32 = std::fs::read_to_string(&grandchild_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    pids.push(grandchild);
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");

    let status = gw.terminate();
    assert!(status.success(), "gateway exit status {status}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "still running after the gateway exited: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
