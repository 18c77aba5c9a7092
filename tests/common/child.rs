//! Running a third-party program (Node, Python) to completion, bounded in
//! time, and reading the JSON it prints.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous for a Node or Python start on a loaded 2-core machine, yet a hang
/// fails the test in bounded time.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

/// What a finished child process printed.
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion in its own process group; on `CHILD_TIMEOUT` the
/// whole group (the inspector starts a second `node`) is killed and the test fails
/// with whatever the child printed.
pub fn run_bounded(mut cmd: Command) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = pipe.read_to_string(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let finished = Finished {
        success: status.is_some_and(|s| s.success()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "{shown} still running after {CHILD_TIMEOUT:?}; killed.\nstdout:\n{}\nstderr:\n{}",
        finished.stdout,
        finished.stderr
    );
    finished
}

/// The JSON document a successful child printed on stdout.
pub fn json_stdout(what: &str, run: &Finished) -> Value {
    assert!(
        run.success,
        "{what} failed.\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} did not print JSON ({e}).\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    })
}
