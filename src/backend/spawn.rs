//! Starting a stdio backend's process, and watching it: what environment it
//! gets, the process group and parent-death signal that keep it from
//! outliving the gateway, draining its stderr (`stderr.rs`), and ending the
//! connection when the process itself exits.
//!
//! Must not: decide when to restart (the supervisor in `connect.rs` does),
//! or reap the process group (also the supervisor, after the connection ends).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::ChildStdout;

use super::extras::ListTap;
use super::lines::{Lines, Read, invalid_request};
use super::wire::Wire;
use crate::config::InheritEnv;
use crate::config::redact::redact;

/// The gateway's variables every stdio child gets (when the gateway has
/// them): what programs need to find themselves, their home, their locale
/// and a temp dir. Nothing that usually carries a credential. Documented in
/// docs/configuration.md; `inherit_env` adds more.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_COLLATE",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NUMERIC",
    "LC_TIME",
    "TERM",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    // Windows needs these to start most programs at all.
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "APPDATA",
    "LOCALAPPDATA",
    "USERPROFILE",
    "PROGRAMDATA",
];

/// How long closing the connection waits for the child to exit on its own
/// (stdin closed) before the supervisor signals its process group.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// What a stdio backend's child is started with.
pub(super) struct StdioSpec<'a> {
    pub name: &'a str,
    pub command: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub cwd: Option<&'a Path>,
    pub inherit_env: &'a InheritEnv,
    /// Sees the raw answers to list requests (see `extras`).
    pub tap: Option<Arc<ListTap>>,
}

/// Starts the child; returns the connection's transport and the child's pid
/// (which is also its process group id).
pub(super) async fn stdio(spec: StdioSpec<'_>) -> Result<(StdioTransport, Option<u32>), String> {
    let mut cmd = tokio::process::Command::new(spec.command);
    cmd.args(spec.args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if *spec.inherit_env != InheritEnv::All {
        cmd.env_clear();
        cmd.envs(inherited(spec.inherit_env, std::env::vars_os()));
    }
    cmd.envs(spec.env);
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    }
    set_parent_death_signal(&mut cmd);
    let mut wrap = CommandWrap::from(cmd);
    // Its own process group, so `npx`/`uvx` grandchildren die with it.
    wrap.wrap(ProcessGroup::leader());
    let command = spec.command.to_string();
    let mut child = on_spawner_thread(move || wrap.spawn())
        .await
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| format!("failed to start `{}`: {e}", redact(&command)))?;
    let pid = child.id();
    let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
        return Err("the child's stdin or stdout was not piped".into());
    };
    if let Some(stderr) = child.stderr().take() {
        // Ends at EOF: when the child and everything that inherited its
        // stderr have exited.
        tokio::spawn(super::stderr::drain(spec.name.to_string(), stderr));
    }
    let exit = Arc::new(ExitFlag::default());
    // Ends when the child exits (the supervisor kills its group when the
    // connection ends, and `kill_on_drop` covers a runtime shutting down).
    tokio::spawn(watch_exit(spec.name.to_string(), child, exit.clone()));
    let stdout = UntilExit {
        inner: stdout,
        exit: exit.clone(),
    };
    let lines = Lines::new(stdout, spec.tap);
    Ok((
        StdioTransport {
            wire: Wire::new(stdin, lines.calls.clone()),
            lines,
            exit,
        },
        pid,
    ))
}

/// The gateway's variables a child gets: the base list, plus the listed names.
fn inherited(
    inherit: &InheritEnv,
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.filter(|(k, _)| {
        let Some(k) = k.to_str() else { return false };
        let listed = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(k));
        // Windows spells these in any case; elsewhere names are exact.
        let base = if cfg!(windows) {
            listed(BASE_ENV)
        } else {
            BASE_ENV.contains(&k)
        };
        base || match inherit {
            InheritEnv::All => true,
            InheritEnv::Base => false,
            InheritEnv::Names(names) => names.iter().any(|n| n == k),
        }
    })
    .collect()
}

/// Asks the kernel to SIGKILL the child when the gateway dies, so that a
/// gateway killed with SIGKILL (or by the OOM killer) leaves no orphan.
///
/// Linux sends it when the *thread* that forked the child exits, not the
/// process; that is why children are forked from [`on_spawner_thread`],
/// which lives as long as the process. Grandchildren do not get the
/// signal; they see their stdin close when the gateway's end of the pipe
/// goes, which ends any MCP server that reads it.
fn set_parent_death_signal(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: runs between fork and exec, and calls only async-signal-safe
        // functions (prctl, getppid), allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The gateway died between fork and prctl: nobody will wait for us.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` (a fork) on one thread that lives as long as the process; see
/// [`set_parent_death_signal`] for why. The caller's runtime is entered
/// there, so the child's pipes belong to it.
async fn on_spawner_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    static SPAWNER: OnceLock<Option<Mutex<std::sync::mpsc::Sender<Job>>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        // Never ends: the sender lives in a static.
        std::thread::Builder::new()
            .name("manifold-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _runtime = handle.enter();
        let _ = tx.send(f());
    });
    let sent = spawner
        .as_ref()
        .and_then(|s| s.lock().ok().map(|s| s.send(job)));
    match sent {
        Some(Ok(())) => rx
            .await
            .map_err(|_| "the spawner thread dropped the request".to_string()),
        // No thread could be started: fork here; the parent-death signal then
        // fires if this runtime thread ends first (see docs/operations.md).
        Some(Err(std::sync::mpsc::SendError(job))) => {
            job();
            rx.await.map_err(|_| "spawn failed".to_string())
        }
        None => Err("could not start the spawner thread".into()),
    }
}

/// Set once the child has exited; wakes the reader of its stdout.
#[derive(Default)]
struct ExitFlag {
    exited: AtomicBool,
    waker: AtomicWaker,
    notify: tokio::sync::Notify,
}

impl ExitFlag {
    fn set(&self) {
        self.exited.store(true, Ordering::Release);
        self.waker.wake();
        self.notify.notify_waiters();
    }
    fn is_set(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Waits for the child itself (not its process group) to exit. A
/// grandchild that keeps the stdout pipe open (`sleep 1000 &`) must not keep
/// a dead backend looking alive.
async fn watch_exit(name: String, mut child: Box<dyn ChildWrapper>, exit: Arc<ExitFlag>) {
    // The leader alone: `ProcessGroupChild::wait` would wait for the whole group.
    let status = child.inner_mut().wait().await;
    match status {
        Ok(s) => tracing::info!(backend = %name, status = %s, "backend process exited"),
        Err(e) => {
            tracing::warn!(backend = %name, error = %e, "cannot wait for the backend process")
        }
    }
    exit.set();
}

/// The child's stdout, which ends (EOF) once the child has exited and what
/// it wrote before exiting has been read, even if a grandchild still holds
/// the pipe open.
struct UntilExit {
    inner: ChildStdout,
    exit: Arc<ExitFlag>,
}

impl AsyncRead for UntilExit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => {
                self.exit.waker.register(cx.waker());
                if self.exit.is_set() {
                    Poll::Ready(Ok(())) // nothing filled: EOF
                } else {
                    Poll::Pending
                }
            }
            ready => ready,
        }
    }
}

/// The connection to a stdio child: our line reader over its stdout
/// (`lines.rs`), our writer over its stdin (`wire.rs`, shared with the calls
/// the gateway sends itself), and a `close` that gives the child a moment to
/// exit on its own.
pub(super) struct StdioTransport {
    wire: Arc<Wire>,
    lines: Lines<UntilExit>,
    exit: Arc<ExitFlag>,
}

impl StdioTransport {
    /// The write half, for calls sent without rmcp's service loop.
    pub(super) fn wire(&self) -> Arc<Wire> {
        self.wire.clone()
    }
}

impl Transport<RoleClient> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        std::future::ready(self.wire.write(&item))
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            match self.lines.next().await {
                Read::Message(message) => {
                    if let Some(message) = self.wire.claim(message) {
                        return Some(message);
                    }
                }
                Read::Invalid => {
                    if self.wire.write(&invalid_request()).is_err() {
                        self.wire.shut();
                        return None;
                    }
                }
                Read::End => {
                    self.wire.shut();
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Closing stdin asks an MCP server to exit (the stdio shutdown of
        // the specification); the supervisor signals the group afterwards.
        self.wire.shut();
        let closed = self.wire.close(EXIT_GRACE).await;
        let _ = tokio::time::timeout(EXIT_GRACE, self.exit.wait()).await;
        closed
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        // Calls still waiting fail as closed instead of timing out.
        self.wire.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_the_base_environment_and_what_is_listed() {
        let vars = || {
            [("PATH", "/bin"), ("SECRET_TOKEN", "s"), ("EXTRA", "e")]
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .into_iter()
        };
        let names = |v: Vec<(OsString, OsString)>| -> Vec<String> {
            v.into_iter()
                .map(|(k, _)| k.into_string().unwrap())
                .collect()
        };
        assert_eq!(names(inherited(&InheritEnv::Base, vars())), ["PATH"]);
        assert_eq!(
            names(inherited(&InheritEnv::Names(vec!["EXTRA".into()]), vars())),
            ["PATH", "EXTRA"]
        );
        assert_eq!(names(inherited(&InheritEnv::All, vars())).len(), 3);
    }
}
