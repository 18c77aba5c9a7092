//! The job queue: a tool call that a client starts, watches, stops and
//! collects later, that survives a restart and that several gateway
//! instances share.
//!
//! - [`model`]: jobs, their states and the JSON users see;
//! - [`store`] / [`sql`]: where jobs live (SQLite by default, PostgreSQL for
//!   several instances), behind one trait;
//! - `runner`: worker slots, claims, leases, recovery, the retention sweep;
//! - [`invoke`]: the [`ToolInvoker`] the runner calls tools through. The
//!   front implements it, so a job passes the same route, allow-lists,
//!   limits and backend timeouts as a direct call;
//! - [`actions`]: the `queue` tool's actions and replies, shared by the
//!   `@jobs` built-in set and `POST /api/v1/execute`.
//!
//! This module must not name the front, the gateway or the built-in sets:
//! they sit above it and hand it what it needs ([`ToolInvoker`], [`JobListener`]).

pub mod actions;
pub mod invoke;
pub mod model;
mod runner;
pub mod sql;
pub mod store;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use invoke::{Caller, InvokeError, JobListener, ProgressSink, ToolInvoker};
pub use model::{Job, NewJob, Progress, State};
pub use store::{JobStore, StoreError};

use crate::config::{JobStoreConfig, JobsConfig};

/// A refused or failed queue action, as the caller reads it. [`JobError::kind`]
/// is what `POST /api/v1/execute` turns into an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Job {id} not found")]
    NotFound { id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Limit(String),
    #[error("the job runner is not ready yet; retry shortly")]
    NotReady,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists { id } => Self::Conflict(format!("Job {id} already exists")),
            other => Self::Store(other),
        }
    }
}

impl JobError {
    /// A stable name for the kind of error: `bad_request`, `not_found`,
    /// `conflict`, `forbidden`, `limit` or `unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound { .. } => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Forbidden(_) => "forbidden",
            Self::Limit(_) => "limit",
            Self::NotReady | Self::Store(_) => "unavailable",
        }
    }
}

/// The job queue of one gateway instance.
pub struct Jobs {
    /// Unique per process start: names this instance in leases and `health`.
    pub instance: String,
    store_config: JobStoreConfig,
    /// Opened on first use (and retried until it opens), so a database that
    /// comes up after the gateway is found then.
    store: OnceCell<Arc<dyn JobStore>>,
    /// The live-changeable settings; a reload stores new ones.
    settings: ArcSwap<JobsConfig>,
    /// Set once by the front after the gateway is built; the runner claims
    /// nothing before.
    invoker: OnceLock<Arc<dyn ToolInvoker>>,
    listener: Arc<dyn JobListener>,
    runner: runner::Runner,
    /// Ends the runner's tasks: cancelled by [`Jobs::shutdown`] or on drop.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Jobs {
    /// Builds the queue and starts its runner (which opens the store in the background).
    pub fn start(config: JobsConfig, listener: Arc<dyn JobListener>) -> Arc<Self> {
        let stop = CancellationToken::new();
        let instance = format!(
            "{}-{}-{:x}",
            hostname(),
            std::process::id(),
            model::now_micros() & 0xff_ffff
        );
        let jobs = Arc::new(Self {
            instance,
            store_config: config.store.clone(),
            store: OnceCell::new(),
            settings: ArcSwap::from_pointee(config),
            invoker: OnceLock::new(),
            listener,
            runner: runner::Runner::default(),
            stop: stop.clone(),
            _stop_on_drop: stop.clone().drop_guard(),
        });
        // Ends when `stop` is cancelled (shutdown, or this value dropped).
        tokio::spawn(runner::start(Arc::downgrade(&jobs), stop));
        jobs
    }

    /// Hands the runner its way to call tools; later calls are ignored.
    pub fn attach(&self, invoker: Arc<dyn ToolInvoker>) {
        if self.invoker.set(invoker).is_ok() {
            self.runner.wake.notify_one();
        }
    }

    /// Applies reloaded settings (all but the store, which needs a restart).
    pub fn update(&self, config: JobsConfig) {
        if **self.settings.load() != config {
            self.settings.store(Arc::new(config));
            // More slots may have opened.
            self.runner.wake.notify_one();
        }
    }

    pub fn settings(&self) -> Arc<JobsConfig> {
        self.settings.load_full()
    }

    /// Stops claiming, cancels the calls of running jobs and waits (briefly)
    /// for their ends to be stored: `interrupted`, or left for recovery to
    /// requeue with `on_interrupt = "requeue"`.
    /// Stops claiming jobs (other instances take the queued ones) and waits
    /// up to `deadline` for the jobs running here to end; true when they all
    /// did. Their leases are renewed meanwhile. What still runs after it is
    /// ended by [`Jobs::shutdown`].
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.runner.draining.store(true, Ordering::SeqCst);
        let running = self.runner.used.load(Ordering::SeqCst);
        if running > 0 {
            tracing::info!(running, "draining: waiting for the jobs running here");
        }
        // Polled: the runner's wake-up is the claim loop's (one waiter).
        let end = tokio::time::Instant::now() + deadline;
        while self.runner.used.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    pub async fn shutdown(&self) {
        self.runner.closing.store(true, Ordering::SeqCst);
        self.stop.cancel();
        for ((_, _), r) in self
            .runner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            r.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.runner.used.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The store, opened (and migrated) on first use.
    pub async fn store(&self) -> Result<&Arc<dyn JobStore>, StoreError> {
        self.store
            .get_or_try_init(|| async {
                let store: Arc<dyn JobStore> = match &self.store_config {
                    JobStoreConfig::Sqlite { path } => {
                        Arc::new(sql::SqliteStore::open(path).await?)
                    }
                    JobStoreConfig::Postgres { url } => {
                        Arc::new(sql::PgStore::open(url.expose()).await?)
                    }
                };
                Ok::<_, StoreError>(store)
            })
            .await
    }

    fn invoker(&self) -> Result<&Arc<dyn ToolInvoker>, JobError> {
        self.invoker.get().ok_or(JobError::NotReady)
    }

    /// Tells the listener and the bus that a job ended (it is stored already).
    fn finished(&self, job: &Job) {
        // Target `queue`: logged, and published on the bus (builtin::bus);
        // with auth, routed to the job's own client only.
        if job.ns.is_empty() {
            tracing::info!(target: "queue", job = %job.id, tool = %job.tool, state = job.state.as_str(), error = job.error.as_deref().unwrap_or(""), "job finished");
        } else {
            tracing::info!(target: "queue", client_id = %job.ns, job = %job.id, tool = %job.tool, state = job.state.as_str(), error = job.error.as_deref().unwrap_or(""), "job finished");
        }
        self.listener.finished(job, &self.instance);
    }

    /// `health`: whether the store answers, jobs per state, slots, instance.
    pub async fn health(&self) -> Value {
        let settings = self.settings();
        let used = self.runner.used.load(Ordering::SeqCst);
        let slots = json!({
            "in_use": used,
            "free": settings.max_concurrent.saturating_sub(used),
            "max": settings.max_concurrent,
        });
        let (store_ok, counts, error) = match self.store().await {
            Ok(store) => match store.counts().await {
                Ok(c) => (true, c, None),
                Err(e) => (false, Vec::new(), Some(e.to_string())),
            },
            Err(e) => (false, Vec::new(), Some(e.to_string())),
        };
        let mut by_state = serde_json::Map::new();
        for s in State::ALL {
            let n = counts.iter().find(|(st, _)| *st == s).map_or(0, |c| c.1);
            by_state.insert(s.as_str().into(), n.into());
        }
        json!({
            "store": {"kind": self.store_config.kind(), "ok": store_ok, "error": error},
            "jobs": by_state,
            "slots": slots,
            "instance": self.instance,
            "runner_ready": self.invoker.get().is_some(),
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "manifold".into())
}
