//! The soak's view of processes: the gateway it runs (start, probe, stop),
//! what `/proc` says about its memory and descriptors, and which fixture
//! processes outlived it.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Gateway {
    pub pid: u32,
    /// The MCP endpoint, `http://ADDR/mcp`.
    pub url: String,
    base: String,
    http: reqwest::Client,
    child: Mutex<Option<Child>>,
}

impl Gateway {
    /// Starts `manifold serve` on a free port; its log goes to `log`.
    pub fn start(manifold: &Path, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(manifold)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info,rmcp=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log)?)
            .spawn()
            .with_context(|| format!("start {}", manifold.display()))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the announced address, then keeps draining stdout so the
        // gateway never blocks on a full pipe; ends when the gateway exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .context("the gateway did not announce its address")?;
        let base = url.trim_end_matches("/mcp").to_string();
        Ok(Self {
            pid: child.id(),
            url,
            base,
            http: reqwest::Client::new(),
            child: Mutex::new(Some(child)),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok(r.text().await?)
    }

    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the gateway was not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A stdio backend's pid as `/status` reports it.
    pub async fn backend_pid(&self, name: &str) -> Option<i32> {
        let status: serde_json::Value =
            serde_json::from_str(&self.get("/status").await.ok()?).ok()?;
        let pid = status["backends"][name]["pid"].as_i64()?;
        i32::try_from(pid).ok().filter(|p| *p > 0)
    }

    /// SIGTERM, then waits up to `grace` (then SIGKILL); says how it ended.
    pub async fn stop(&self, grace: Duration) -> String {
        let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return "already stopped".into();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had exited by itself: {status}");
        }
        let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return format!("{status} {:.1} s after SIGTERM", t.elapsed().as_secs_f64());
            }
            if t.elapsed() > grace {
                let _ = child.kill();
                let _ = child.wait();
                return format!("did not stop within {grace:?} of SIGTERM; killed");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The gateway's resident memory, open descriptors and threads.
pub struct Sample {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: u64,
}

impl Sample {
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        Ok(Self {
            rss_kib: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
        })
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, {} open fds, {} threads",
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.threads
        )
    }
}

/// Every live process whose command line contains `marker` (the soak puts
/// it in each fixture's arguments), as "PID CMDLINE".
pub fn with_marker(marker: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
                return None;
            }
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(marker)
                .then(|| format!("{pid} {}", cmd.trim()))
        })
        .collect()
}
