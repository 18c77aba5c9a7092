//! The job store's queries, one text for both engines: `sql_store!` writes
//! the same [`JobStore`] impl for [`SqliteStore`] and [`PgStore`].

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::{PgStore, SqliteStore, err};
use crate::jobs::model::{Job, NewJob, Outcome, Progress, State};
use crate::jobs::store::{JobStore, StoreError, StoreResult};

const COLS: &str = "ns, id, tool, arguments, timeout_ms, state, created_at, queued_at, started_at, \
    finished_at, progress, progress_total, progress_message, result, error, worker, attempts, \
    origin_instance, origin_session";

const UNFINISHED: &str = "('pending', 'queued', 'running')";
const FINISHED: &str = "('completed', 'failed', 'stopped', 'interrupted')";

/// Decodes one row of [`COLS`].
macro_rules! job_from_row {
    ($row:expr) => {{
        let row = $row;
        let state: String = row.try_get("state")?;
        let progress: Option<f64> = row.try_get("progress")?;
        Ok::<Job, sqlx::Error>(Job {
            ns: row.try_get("ns")?,
            id: row.try_get("id")?,
            tool: row.try_get("tool")?,
            arguments: row.try_get("arguments")?,
            timeout_ms: row.try_get("timeout_ms")?,
            state: State::parse(&state).unwrap_or(State::Failed),
            created_at: row.try_get("created_at")?,
            queued_at: row.try_get("queued_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            progress: match progress {
                Some(progress) => Some(Progress {
                    progress,
                    total: row.try_get("progress_total")?,
                    message: row.try_get("progress_message")?,
                }),
                None => None,
            },
            result: row.try_get("result")?,
            error: row.try_get("error")?,
            worker: row.try_get("worker")?,
            attempts: row.try_get("attempts")?,
            origin_instance: row.try_get("origin_instance")?,
            origin_session: row.try_get("origin_session")?,
        })
    }};
}

fn sqlite_job(row: &SqliteRow) -> Result<Job, sqlx::Error> {
    job_from_row!(row)
}

fn pg_job(row: &PgRow) -> Result<Job, sqlx::Error> {
    job_from_row!(row)
}

/// The job store methods, the same text for both engines.
macro_rules! sql_store {
    ($store:ty, $kind:expr, $decode:ident, $lock:expr) => {
        impl JobStore for $store {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
                async move {
                    sqlx::query("SELECT 1").execute(&self.pool).await.map_err(err($kind))?;
                    Ok(())
                }
                .boxed()
            }

            fn insert<'a>(&'a self, job: &'a NewJob) -> BoxFuture<'a, StoreResult<Job>> {
                async move {
                    let queued = (job.state == State::Queued).then_some(job.now);
                    let row = sqlx::query(&format!(
                        "INSERT INTO manifold_jobs (ns, id, tool, arguments, timeout_ms, state, created_at, queued_at, origin_instance, origin_session) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (ns, id) DO NOTHING RETURNING {COLS}"
                    ))
                    .bind(&job.ns)
                    .bind(&job.id)
                    .bind(&job.tool)
                    .bind(&job.arguments)
                    .bind(job.timeout_ms)
                    .bind(job.state.as_str())
                    .bind(job.now)
                    .bind(queued)
                    .bind(&job.origin_instance)
                    .bind(job.origin_session)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    match row {
                        Some(row) => $decode(&row).map_err(err($kind)),
                        None => Err(StoreError::Exists { id: job.id.clone() }),
                    }
                }
                .boxed()
            }

            fn get<'a>(&'a self, ns: &'a str, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Job>>> {
                async move {
                    let row = sqlx::query(&format!("SELECT {COLS} FROM manifold_jobs WHERE ns = $1 AND id = $2"))
                        .bind(ns)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err($kind))?;
                    row.map(|r| $decode(&r)).transpose().map_err(err($kind))
                }
                .boxed()
            }

            fn list<'a>(&'a self, ns: &'a str, state: Option<State>, limit: i64) -> BoxFuture<'a, StoreResult<Vec<Job>>> {
                async move {
                    let rows = sqlx::query(&format!(
                        "SELECT {COLS} FROM manifold_jobs WHERE ns = $1 AND ($2 IS NULL OR state = $2) ORDER BY seq DESC LIMIT $3"
                    ))
                    .bind(ns)
                    .bind(state.map(State::as_str))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    rows.iter().map(|r| $decode(r)).collect::<Result<_, _>>().map_err(err($kind))
                }
                .boxed()
            }

            fn unfinished<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, StoreResult<i64>> {
                async move {
                    sqlx::query(&format!("SELECT COUNT(*) FROM manifold_jobs WHERE ns = $1 AND state IN {UNFINISHED}"))
                        .bind(ns)
                        .fetch_one(&self.pool)
                        .await
                        .and_then(|r| r.try_get(0))
                        .map_err(err($kind))
                }
                .boxed()
            }

            fn counts(&self) -> BoxFuture<'_, StoreResult<Vec<(State, i64)>>> {
                async move {
                    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM manifold_jobs GROUP BY state")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(err($kind))?;
                    let mut out = Vec::new();
                    for r in rows {
                        let state: String = r.try_get("state").map_err(err($kind))?;
                        let n: i64 = r.try_get("n").map_err(err($kind))?;
                        if let Some(s) = State::parse(&state) {
                            out.push((s, n));
                        }
                    }
                    Ok(out)
                }
                .boxed()
            }

            fn enqueue<'a>(&'a self, ns: &'a str, id: &'a str, now: i64) -> BoxFuture<'a, StoreResult<Option<Job>>> {
                async move {
                    let row = sqlx::query(&format!(
                        "UPDATE manifold_jobs SET state = 'queued', queued_at = $3, started_at = NULL, finished_at = NULL, \
                         result = NULL, error = NULL, progress = NULL, progress_total = NULL, progress_message = NULL, \
                         worker = NULL, lease_until = NULL, stop_requested = FALSE \
                         WHERE ns = $1 AND id = $2 AND state NOT IN ('queued', 'running') RETURNING {COLS}"
                    ))
                    .bind(ns)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    row.map(|r| $decode(&r)).transpose().map_err(err($kind))
                }
                .boxed()
            }

            fn stop_waiting<'a>(&'a self, ns: &'a str, id: &'a str, now: i64) -> BoxFuture<'a, StoreResult<Option<Job>>> {
                async move {
                    let row = sqlx::query(&format!(
                        "UPDATE manifold_jobs SET state = 'stopped', finished_at = $3 \
                         WHERE ns = $1 AND id = $2 AND state IN ('pending', 'queued') RETURNING {COLS}"
                    ))
                    .bind(ns)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    row.map(|r| $decode(&r)).transpose().map_err(err($kind))
                }
                .boxed()
            }

            fn request_stop<'a>(&'a self, ns: &'a str, id: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
                async move {
                    let done = sqlx::query(
                        "UPDATE manifold_jobs SET stop_requested = TRUE WHERE ns = $1 AND id = $2 AND state = 'running'",
                    )
                    .bind(ns)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    Ok(done.rows_affected() > 0)
                }
                .boxed()
            }

            fn delete<'a>(&'a self, ns: &'a str, id: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
                async move {
                    let done = sqlx::query("DELETE FROM manifold_jobs WHERE ns = $1 AND id = $2 AND state <> 'running'")
                        .bind(ns)
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(err($kind))?;
                    Ok(done.rows_affected() > 0)
                }
                .boxed()
            }

            fn claim<'a>(&'a self, worker: &'a str, n: i64, now: i64, lease_until: i64) -> BoxFuture<'a, StoreResult<Vec<Job>>> {
                async move {
                    let rows = sqlx::query(&format!(
                        "UPDATE manifold_jobs SET state = 'running', worker = $1, started_at = $2, lease_until = $3, \
                         attempts = attempts + 1, stop_requested = FALSE \
                         WHERE seq IN (SELECT seq FROM manifold_jobs WHERE state = 'queued' ORDER BY seq LIMIT $4 {}) \
                         RETURNING {COLS}",
                        $lock
                    ))
                    .bind(worker)
                    .bind(now)
                    .bind(lease_until)
                    .bind(n)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    rows.iter().map(|r| $decode(r)).collect::<Result<_, _>>().map_err(err($kind))
                }
                .boxed()
            }

            fn renew<'a>(&'a self, worker: &'a str, lease_until: i64) -> BoxFuture<'a, StoreResult<Vec<(String, String)>>> {
                async move {
                    sqlx::query("UPDATE manifold_jobs SET lease_until = $2 WHERE worker = $1 AND state = 'running'")
                        .bind(worker)
                        .bind(lease_until)
                        .execute(&self.pool)
                        .await
                        .map_err(err($kind))?;
                    let rows = sqlx::query(
                        "SELECT ns, id FROM manifold_jobs WHERE worker = $1 AND state = 'running' AND stop_requested",
                    )
                    .bind(worker)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    rows.iter()
                        .map(|r| Ok((r.try_get("ns")?, r.try_get("id")?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(err($kind))
                }
                .boxed()
            }

            fn set_progress<'a>(&'a self, ns: &'a str, id: &'a str, worker: &'a str, p: &'a Progress) -> BoxFuture<'a, StoreResult<()>> {
                async move {
                    sqlx::query(
                        "UPDATE manifold_jobs SET progress = $4, progress_total = $5, progress_message = $6 \
                         WHERE ns = $1 AND id = $2 AND worker = $3 AND state = 'running'",
                    )
                    .bind(ns)
                    .bind(id)
                    .bind(worker)
                    .bind(p.progress)
                    .bind(p.total)
                    .bind(&p.message)
                    .execute(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    Ok(())
                }
                .boxed()
            }

            fn finish<'a>(&'a self, ns: &'a str, id: &'a str, worker: &'a str, outcome: &'a Outcome, now: i64) -> BoxFuture<'a, StoreResult<Option<Job>>> {
                async move {
                    let p = outcome.progress.as_ref();
                    let row = sqlx::query(&format!(
                        "UPDATE manifold_jobs SET state = $4, result = $5, error = $6, finished_at = $7, lease_until = NULL, \
                         progress = COALESCE($8, progress), progress_total = COALESCE($9, progress_total), \
                         progress_message = COALESCE($10, progress_message) \
                         WHERE ns = $1 AND id = $2 AND worker = $3 AND state = 'running' RETURNING {COLS}"
                    ))
                    .bind(ns)
                    .bind(id)
                    .bind(worker)
                    .bind(outcome.state.as_str())
                    .bind(&outcome.result)
                    .bind(&outcome.error)
                    .bind(now)
                    .bind(p.map(|p| p.progress))
                    .bind(p.and_then(|p| p.total))
                    .bind(p.and_then(|p| p.message.clone()))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    row.map(|r| $decode(&r)).transpose().map_err(err($kind))
                }
                .boxed()
            }

            fn recover<'a>(&'a self, now: i64, all_running: bool, requeue: bool) -> BoxFuture<'a, StoreResult<Vec<Job>>> {
                async move {
                    if requeue {
                        sqlx::query(
                            "UPDATE manifold_jobs SET state = 'queued', worker = NULL, lease_until = NULL, queued_at = $1 \
                             WHERE state = 'running' AND ($2 OR lease_until < $1)",
                        )
                        .bind(now)
                        .bind(all_running)
                        .execute(&self.pool)
                        .await
                        .map_err(err($kind))?;
                        return Ok(Vec::new());
                    }
                    let rows = sqlx::query(&format!(
                        "UPDATE manifold_jobs SET state = 'interrupted', finished_at = $1, lease_until = NULL, \
                         error = 'the gateway instance running this job (' || COALESCE(worker, '?') || ') stopped before it finished' \
                         WHERE state = 'running' AND ($2 OR lease_until < $1) RETURNING {COLS}"
                    ))
                    .bind(now)
                    .bind(all_running)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    rows.iter().map(|r| $decode(r)).collect::<Result<_, _>>().map_err(err($kind))
                }
                .boxed()
            }

            fn sweep(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>> {
                async move {
                    let done = sqlx::query(&format!(
                        "DELETE FROM manifold_jobs WHERE state IN {FINISHED} AND finished_at < $1"
                    ))
                    .bind(before)
                    .execute(&self.pool)
                    .await
                    .map_err(err($kind))?;
                    Ok(done.rows_affected())
                }
                .boxed()
            }
        }
    };
}

sql_store!(SqliteStore, "sqlite", sqlite_job, "");
sql_store!(PgStore, "postgres", pg_job, "FOR UPDATE SKIP LOCKED");
