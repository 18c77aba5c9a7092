//! The runner: worker slots, claiming queued jobs, running them through the
//! [`super::ToolInvoker`], leases, stops from other instances, recovery and
//! the retention sweep.
//!
//! Three kinds of task, all ended by [`super::Jobs`]'s stop token (dropped
//! with it, or cancelled by [`super::Jobs::shutdown`]):
//! - the claim loop: while a slot is free, claims queued jobs (woken by a
//!   local start, else every `poll_interval` for jobs other instances queued);
//! - the ticker: at a third of the lease (at most every second) renews the
//!   leases of the jobs this instance runs, picks up stops requested through
//!   other instances, stores progress, reclaims jobs whose lease ran out,
//!   and now and then deletes finished jobs past `retention`;
//! - one task per running job, which ends when the call does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::invoke::{Caller, InvokeError, ProgressSink};
use super::model::{Job, Outcome, Progress, State, capped_result, now_micros};
use crate::config::OnInterrupt;

/// How long a cancelled or timed-out call gets to wind down at the backend.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often finished jobs past `retention` are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One job this instance is running.
pub(super) struct Running {
    /// Cancels the tool call (and sends `notifications/cancelled`).
    pub cancel: CancellationToken,
    /// Set when a user stopped it (as opposed to a timeout or shutdown).
    pub stop: AtomicBool,
    pub progress: Mutex<Option<Progress>>,
    /// Progress changed since it was last stored.
    pub dirty: AtomicBool,
}

/// The worker slots and the jobs in them.
#[derive(Default)]
pub(super) struct Runner {
    pub used: AtomicUsize,
    /// Woken when a slot frees, a job is queued here, or the invoker arrives.
    pub wake: Arc<Notify>,
    /// Keyed by (namespace, id). Locked briefly, never across an await.
    pub running: Mutex<HashMap<(String, String), Arc<Running>>>,
    /// Set by shutdown: runs that end now are not failed by a stopping gateway.
    pub closing: AtomicBool,
    /// Set by a drain: no new job is claimed here; running ones go on.
    pub draining: AtomicBool,
}

impl Runner {
    pub fn get(&self, ns: &str, id: &str) -> Option<Arc<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.to_string(), id.to_string()))
            .cloned()
    }

    fn all(&self) -> Vec<((String, String), Arc<Running>)> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Opens the store, recovers what a previous run left, then runs the claim
/// loop and the ticker until `stop`.
pub(super) async fn start(jobs: Weak<Jobs>, stop: CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        let Some(j) = jobs.upgrade() else { return };
        match j.store().await {
            Ok(store) => {
                let settings = j.settings();
                // One SQLite file serves one instance: whatever it shows
                // running was running in a process that is gone.
                let all = store.kind() == "sqlite";
                let requeue = settings.on_interrupt == OnInterrupt::Requeue;
                match store.recover(now_micros(), all, requeue).await {
                    Ok(ended) => {
                        for job in ended {
                            j.finished(&job);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "jobs: recovery failed"),
                }
                break;
            }
            Err(e) => tracing::warn!(error = %e, "jobs: store not available yet; retrying"),
        }
        drop(j);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tokio::join!(claim_loop(jobs.clone(), stop.clone()), ticker(jobs, stop));
}

async fn claim_loop(jobs: Weak<Jobs>, stop: CancellationToken) {
    loop {
        let Some(j) = jobs.upgrade() else { return };
        let settings = j.settings();
        let free = settings
            .max_concurrent
            .saturating_sub(j.runner.used.load(Ordering::SeqCst));
        let ready = j.invoker.get().is_some()
            && !j.runner.closing.load(Ordering::SeqCst)
            && !j.runner.draining.load(Ordering::SeqCst);
        let mut claimed = 0;
        if free > 0 && ready {
            let now = now_micros();
            let claim = match j.store().await {
                Ok(store) => {
                    store
                        .claim(&j.instance, free as i64, now, now + micros(settings.lease))
                        .await
                }
                Err(e) => Err(e),
            };
            match claim {
                Ok(list) => {
                    claimed = list.len();
                    for job in list {
                        j.runner.used.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(run(j.clone(), job));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "jobs: claim failed"),
            }
        }
        if claimed > 0 {
            continue;
        }
        // Wait without holding the service, so dropping it ends this loop.
        let wake = j.runner.wake.clone();
        drop(j);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

async fn ticker(jobs: Weak<Jobs>, stop: CancellationToken) {
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        let Some(j) = jobs.upgrade() else { return };
        let settings = j.settings();
        let period = (settings.lease / 3).min(Duration::from_secs(1));
        drop(j);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(j) = jobs.upgrade() else { return };
        let Ok(store) = j.store().await else { continue };
        flush_progress(&j).await;
        let now = now_micros();
        match store.renew(&j.instance, now + micros(settings.lease)).await {
            Ok(stops) => {
                for (ns, id) in stops {
                    if let Some(r) = j.runner.get(&ns, &id) {
                        r.stop.store(true, Ordering::SeqCst);
                        r.cancel.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "jobs: lease renewal failed"),
        }
        let requeue = settings.on_interrupt == OnInterrupt::Requeue;
        match store.recover(now, false, requeue).await {
            Ok(ended) => {
                for job in ended {
                    j.finished(&job);
                }
            }
            Err(e) => tracing::debug!(error = %e, "jobs: reclaim failed"),
        }
        if requeue {
            // Jobs put back in the queue by the reclaim may be ours to run.
            j.runner.wake.notify_one();
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = tokio::time::Instant::now();
            match store.sweep(now - micros(settings.retention)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "jobs: finished jobs past retention deleted"),
                Err(e) => tracing::warn!(error = %e, "jobs: retention sweep failed"),
            }
        }
    }
}

/// Stores the progress of running jobs that changed since the last tick.
async fn flush_progress(j: &Jobs) {
    let Ok(store) = j.store().await else { return };
    for ((ns, id), r) in j.runner.all() {
        if !r.dirty.swap(false, Ordering::SeqCst) {
            continue;
        }
        let p = r.progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(p) = p
            && let Err(e) = store.set_progress(&ns, &id, &j.instance, &p).await
        {
            tracing::debug!(job = %id, error = %e, "jobs: cannot store progress");
        }
    }
}

/// Runs one claimed job to its end and stores how it ended.
async fn run(jobs: Arc<Jobs>, job: Job) {
    let key = (job.ns.clone(), job.id.clone());
    let entry = Arc::new(Running {
        cancel: CancellationToken::new(),
        stop: AtomicBool::new(false),
        progress: Mutex::new(None),
        dirty: AtomicBool::new(false),
    });
    jobs.runner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone(), entry.clone());
    let outcome = call(&jobs, &job, &entry).await;
    jobs.runner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    if let Some(outcome) = outcome {
        match jobs.store().await {
            Ok(store) => match store
                .finish(&job.ns, &job.id, &jobs.instance, &outcome, now_micros())
                .await
            {
                Ok(Some(done)) => jobs.finished(&done),
                Ok(None) => tracing::warn!(
                    job = %job.id,
                    "jobs: the job was taken over by another instance before it ended here; its result is dropped"
                ),
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "jobs: cannot store the end of a job")
                }
            },
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "jobs: cannot store the end of a job")
            }
        }
    }
    jobs.runner.used.fetch_sub(1, Ordering::SeqCst);
    jobs.runner.wake.notify_one();
}

/// Calls the job's tool; `None` when the gateway is shutting down and the
/// job is left for recovery (requeue) instead of being ended here.
async fn call(jobs: &Jobs, job: &Job, entry: &Arc<Running>) -> Option<Outcome> {
    let settings = jobs.settings();
    let Some(invoker) = jobs.invoker.get().cloned() else {
        return Some(failed(
            "the job runner has no way to call tools yet".into(),
            None,
        ));
    };
    let caller = Caller {
        namespace: job.ns.clone(),
        auth: (!job.ns.is_empty()).then(|| job.ns.clone()),
        session: None,
        job: Some(job.id.clone()),
    };
    let arguments = match job.arguments.as_deref().map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(Value::Object(map))) => Some(map),
        Some(_) => {
            return Some(failed(
                "the stored arguments are not a JSON object".into(),
                None,
            ));
        }
    };
    let sink_entry = entry.clone();
    let sink: ProgressSink = Arc::new(move |p: Progress| {
        *sink_entry
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(p);
        sink_entry.dirty.store(true, Ordering::SeqCst);
    });
    let timeout = job.timeout(settings.timeout);
    let fut = invoker.call(
        caller,
        job.tool.clone(),
        arguments,
        sink,
        entry.cancel.clone(),
    );
    tokio::pin!(fut);
    let mut timed_out = false;
    let result = tokio::select! {
        r = &mut fut => r,
        _ = tokio::time::sleep(timeout) => {
            timed_out = true;
            entry.cancel.cancel();
            tokio::time::timeout(CANCEL_GRACE, &mut fut).await.unwrap_or(Err(InvokeError::Cancelled))
        }
    };
    let progress = entry
        .progress
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if jobs.runner.closing.load(Ordering::SeqCst) && !entry.stop.load(Ordering::SeqCst) {
        if settings.on_interrupt == OnInterrupt::Requeue {
            return None;
        }
        return Some(Outcome {
            state: State::Interrupted,
            result: None,
            error: Some("the gateway shut down while the job ran".into()),
            progress,
        });
    }
    let stopped = entry.stop.load(Ordering::SeqCst);
    let timed_out = timed_out.then_some(timeout);
    Some(outcome(
        result,
        timed_out,
        stopped,
        progress,
        settings.max_result_bytes,
    ))
}

/// How the tool call ended, as the job's end state.
fn outcome(
    result: Result<rmcp::model::CallToolResult, InvokeError>,
    timed_out: Option<Duration>,
    stopped: bool,
    progress: Option<Progress>,
    max_result_bytes: usize,
) -> Outcome {
    if let Some(timeout) = timed_out {
        return failed(
            format!(
                "the job timed out after {} (its `timeout`, else [jobs] timeout)",
                humantime::format_duration(timeout)
            ),
            progress,
        );
    }
    match result {
        Ok(r) => {
            let text = serde_json::to_string(&r).unwrap_or_default();
            let is_error = r.is_error == Some(true);
            let error = is_error.then(|| {
                r.content
                    .iter()
                    .find_map(|c| c.as_text().map(|t| t.text.clone()))
                    .unwrap_or_else(|| "the tool reported an error".into())
            });
            Outcome {
                state: if is_error {
                    State::Failed
                } else {
                    State::Completed
                },
                result: Some(capped_result(text, max_result_bytes)),
                error,
                progress,
            }
        }
        Err(InvokeError::Cancelled) if stopped => Outcome {
            state: State::Stopped,
            result: None,
            error: None,
            progress,
        },
        Err(e) => failed(e.to_string(), progress),
    }
}

fn failed(error: String, progress: Option<Progress>) -> Outcome {
    Outcome {
        state: State::Failed,
        result: None,
        error: Some(error),
        progress,
    }
}
