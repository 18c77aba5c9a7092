//! The job store: one trait, two implementations in [`super::sql`] (SQLite,
//! the embedded default, and PostgreSQL, shared by several instances).
//!
//! Every method is one statement (or one short transaction), so a
//! transition is stored before anyone is told about it, and conditional
//! updates (`WHERE state = …`, `WHERE worker = me`) keep two instances from
//! both acting on one job.

use futures::future::BoxFuture;

use super::model::{Job, NewJob, Outcome, Progress, State};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store ({kind}) is unavailable: {message}")]
    Unavailable { kind: &'static str, message: String },
    #[error("job \"{id}\" already exists")]
    Exists { id: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where jobs live. Methods that take `ns` act only inside that namespace.
pub trait JobStore: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn kind(&self) -> &'static str;
    /// Answers if the store is reachable.
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;
    /// Stores a new job; [`StoreError::Exists`] if the id is taken.
    fn insert<'a>(&'a self, job: &'a NewJob) -> BoxFuture<'a, StoreResult<Job>>;
    fn get<'a>(&'a self, ns: &'a str, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Job>>>;
    /// Newest first.
    fn list<'a>(
        &'a self,
        ns: &'a str,
        state: Option<State>,
        limit: i64,
    ) -> BoxFuture<'a, StoreResult<Vec<Job>>>;
    /// Jobs of `ns` that are pending, queued or running.
    fn unfinished<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, StoreResult<i64>>;
    /// How many jobs are in each state (all namespaces).
    fn counts(&self) -> BoxFuture<'_, StoreResult<Vec<(State, i64)>>>;
    /// Pending or finished → queued (clearing the last run); `None` if the
    /// job is queued or running already (or does not exist).
    fn enqueue<'a>(
        &'a self,
        ns: &'a str,
        id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, StoreResult<Option<Job>>>;
    /// Pending or queued → stopped; `None` if it was in another state.
    fn stop_waiting<'a>(
        &'a self,
        ns: &'a str,
        id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, StoreResult<Option<Job>>>;
    /// Asks the instance running the job to stop it; false if it is not running.
    fn request_stop<'a>(&'a self, ns: &'a str, id: &'a str) -> BoxFuture<'a, StoreResult<bool>>;
    /// Deletes a job that is not running; false if none was deleted.
    fn delete<'a>(&'a self, ns: &'a str, id: &'a str) -> BoxFuture<'a, StoreResult<bool>>;
    /// Claims up to `n` queued jobs for `worker`, oldest first, each at most
    /// once across every instance sharing the store.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        n: i64,
        now: i64,
        lease_until: i64,
    ) -> BoxFuture<'a, StoreResult<Vec<Job>>>;
    /// Renews the lease on every job `worker` runs; returns those whose stop
    /// was requested (through another instance).
    fn renew<'a>(
        &'a self,
        worker: &'a str,
        lease_until: i64,
    ) -> BoxFuture<'a, StoreResult<Vec<(String, String)>>>;
    fn set_progress<'a>(
        &'a self,
        ns: &'a str,
        id: &'a str,
        worker: &'a str,
        progress: &'a Progress,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Running → the outcome's state, only while `worker` still holds the
    /// job; the stored job, or `None` if another instance took it over.
    fn finish<'a>(
        &'a self,
        ns: &'a str,
        id: &'a str,
        worker: &'a str,
        outcome: &'a Outcome,
        now: i64,
    ) -> BoxFuture<'a, StoreResult<Option<Job>>>;
    /// Running jobs whose lease ran out before `now` (of every worker when
    /// `all_running`, for a single-instance store at start) → interrupted,
    /// or queued again when `requeue`; returns the jobs that ended interrupted.
    fn recover<'a>(
        &'a self,
        now: i64,
        all_running: bool,
        requeue: bool,
    ) -> BoxFuture<'a, StoreResult<Vec<Job>>>;
    /// Deletes finished jobs that finished before `before`; returns how many.
    fn sweep(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>>;
}
