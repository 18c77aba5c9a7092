//! One lane per destination: a bounded queue, a batching worker, a retry
//! wrapper, and the lane's counters.
//!
//! The request path only ever calls [`Lane::offer`], a `try_send`: when the
//! queue is full the entry is dropped for this lane and counted, so a slow or
//! dead destination costs a call nothing and memory stays bounded by
//! `queue_size` entries per lane.
//!
//! With `[audit] durable = true` the front offers its entries with
//! [`Lane::offer_confirmed`] and waits for the answer: the worker then writes
//! what is queued at once instead of waiting for the batch to fill (entries
//! arriving during a write form the next batch: group commit), and tells each
//! waiter when its batch was written or finally dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::LogEntry;
use super::dest::Destination;

/// How long one write attempt may take before it counts as failed: a
/// destination that hangs (a broker that accepts and never answers) must not
/// hold its lane forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a lane has done, read by `/metrics`, `/status` and `gateway_status`.
#[derive(Default)]
pub struct LaneStats {
    pub written: AtomicU64,
    pub batches: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
    /// When the destination started failing (RFC 3339), and why; `None` while healthy.
    pub failing: Mutex<Option<(String, String)>>,
}

impl LaneStats {
    pub fn to_json(&self) -> serde_json::Value {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "written": self.written.load(Ordering::Relaxed),
            "batches": self.batches.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "failing_since": failing.as_ref().map(|f| f.0.clone()),
            "last_error": failing.map(|f| f.1),
        })
    }
}

/// How a lane batches and retries.
#[derive(Clone, Copy, Debug)]
pub struct LaneSettings {
    pub queue_size: usize,
    pub batch_size: usize,
    pub batch_interval: Duration,
    pub retry_attempts: u32,
    pub retry_delay: Duration,
}

pub struct Lane {
    pub name: &'static str,
    /// Entries waiting for the worker. The worker ends (after writing what it
    /// holds and closing the destination) once every sender is gone, which is
    /// when the pipeline holding this lane is replaced or dropped.
    tx: mpsc::Sender<Queued>,
    pub stats: Arc<LaneStats>,
}

/// An entry waiting for its lane's worker, and who waits for its write.
struct Queued {
    entry: Arc<LogEntry>,
    written: Option<oneshot::Sender<()>>,
}

impl Lane {
    /// Starts the lane's worker; must run inside a tokio runtime.
    pub fn start(dest: Arc<dyn Destination>, settings: LaneSettings) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue_size);
        let stats = Arc::new(LaneStats::default());
        let name = dest.kind();
        tokio::spawn(run(dest, rx, settings, stats.clone()));
        Self { name, tx, stats }
    }

    /// Hands `entry` to the worker without waiting; drops and counts it when the queue is full.
    pub fn offer(&self, entry: &Arc<LogEntry>) {
        self.queue(entry, None);
    }

    /// Like [`Lane::offer`]; the receiver hears when the entry's batch was
    /// written or finally dropped, and is closed at once when the queue was full.
    pub fn offer_confirmed(&self, entry: &Arc<LogEntry>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.queue(entry, Some(tx));
        rx
    }

    fn queue(&self, entry: &Arc<LogEntry>, written: Option<oneshot::Sender<()>>) {
        let queued = Queued {
            entry: entry.clone(),
            written,
        };
        if self.tx.try_send(queued).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run(
    dest: Arc<dyn Destination>,
    mut rx: mpsc::Receiver<Queued>,
    settings: LaneSettings,
    stats: Arc<LaneStats>,
) {
    let mut batch: Vec<Arc<LogEntry>> = Vec::with_capacity(settings.batch_size);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let take = |q: Queued, batch: &mut Vec<Arc<LogEntry>>, waiting: &mut Vec<_>| {
        batch.push(q.entry);
        waiting.extend(q.written);
    };
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut waiting);
        // Fill the batch: what is queued now, then whatever arrives before the
        // interval ends, unless someone waits for this batch.
        let deadline = tokio::time::Instant::now() + settings.batch_interval;
        while batch.len() < settings.batch_size {
            match rx.try_recv() {
                Ok(q) => take(q, &mut batch, &mut waiting),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) if !waiting.is_empty() => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(q)) => take(q, &mut batch, &mut waiting),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        write_with_retry(&*dest, &batch, &settings, &stats).await;
        batch.clear();
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
    dest.close().await;
}

/// Writes one batch, trying up to `retry_attempts` times; a batch that still
/// fails is dropped (and counted) so the lane moves on.
async fn write_with_retry(
    dest: &dyn Destination,
    batch: &[Arc<LogEntry>],
    settings: &LaneSettings,
    stats: &LaneStats,
) {
    let n = batch.len() as u64;
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(WRITE_TIMEOUT, dest.write(batch)).await {
            Ok(r) => r,
            Err(_) => Err(super::AuditError::Timeout(dest.kind(), WRITE_TIMEOUT)),
        };
        match result {
            Ok(()) => {
                stats.written.fetch_add(n, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                let was = stats
                    .failing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if was.is_some() {
                    tracing::info!(destination = dest.kind(), "audit destination recovered");
                }
                return;
            }
            Err(e) if attempt < settings.retry_attempts => {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(destination = dest.kind(), error = %e, attempt, "audit write failed; retrying");
                attempt += 1;
                tokio::time::sleep(settings.retry_delay).await;
            }
            Err(e) => {
                stats.dropped.fetch_add(n, Ordering::Relaxed);
                let mut failing = stats.failing.lock().unwrap_or_else(|p| p.into_inner());
                // Logged once per change of state, not once per batch.
                if failing.is_none() {
                    tracing::warn!(destination = dest.kind(), error = %e, "audit destination failing; entries are dropped until it recovers");
                    *failing = Some((super::entry::now_rfc3339(), e.to_string()));
                } else if let Some(f) = failing.as_mut() {
                    f.1 = e.to_string();
                }
                return;
            }
        }
    }
}
