//! `postgres`: the table `unified_logs` (indexes on timestamp,
//! correlation_id and tool_name), created at first use; batched multi-row
//! inserts. Serves as the local store too (`local = "postgres"`), for
//! several gateways sharing one log.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres as Db, QueryBuilder, Row};
use tokio::sync::OnceCell;

use super::dest::{Destination, LogQuery};
use super::sqlite::COLUMNS;
use super::{AuditError, LogEntry};

const KIND: &str = "postgres";
/// PostgreSQL allows 65535 bound values per statement; 19 columns a row.
const ROWS_PER_INSERT: usize = 2000;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS unified_logs (
        id BIGSERIAL PRIMARY KEY,
        correlation_id TEXT NOT NULL, timestamp TIMESTAMPTZ NOT NULL, level TEXT NOT NULL,
        log_type TEXT NOT NULL, message TEXT NOT NULL, tool_name TEXT,
        duration_ms DOUBLE PRECISION, status TEXT, input_args JSONB, output_summary TEXT,
        error_message TEXT, module TEXT NOT NULL, function TEXT NOT NULL,
        line INTEGER NOT NULL, thread_name TEXT NOT NULL, process_id INTEGER NOT NULL,
        client_id TEXT, backend TEXT, extra_data JSONB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS unified_logs_timestamp ON unified_logs (timestamp)",
    "CREATE INDEX IF NOT EXISTS unified_logs_correlation_id ON unified_logs (correlation_id)",
    "CREATE INDEX IF NOT EXISTS unified_logs_tool_name ON unified_logs (tool_name)",
];

/// The columns as text, in [`COLUMNS`] order, for reading back.
const SELECT: &str = "correlation_id, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS timestamp, level, log_type, message, tool_name, duration_ms, status, input_args::text AS input_args, output_summary, error_message, module, function, line, thread_name, process_id, client_id, backend, extra_data::text AS extra_data";

pub struct Postgres {
    url: String,
    /// Lazy: no connection is made until the first write or query.
    pool: OnceCell<PgPool>,
}

impl Postgres {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            pool: OnceCell::new(),
        }
    }

    async fn pool(&self) -> Result<&PgPool, AuditError> {
        self.pool
            .get_or_try_init(|| async {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&self.url)
                    .await
                    .map_err(|e| AuditError::write(KIND, e))?;
                for stmt in SCHEMA {
                    sqlx::query(stmt)
                        .execute(&pool)
                        .await
                        .map_err(|e| AuditError::write(KIND, e))?;
                }
                Ok(pool)
            })
            .await
    }

    async fn insert(&self, batch: &[Arc<LogEntry>]) -> Result<(), AuditError> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(|e| AuditError::write(KIND, e))?;
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Db> =
                QueryBuilder::new(format!("INSERT INTO unified_logs ({COLUMNS}) "));
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.correlation_id)
                    .push_bind(&e.timestamp)
                    .push_unseparated("::timestamptz")
                    .push_bind(&e.level)
                    .push_bind(&e.log_type)
                    .push_bind(&e.message)
                    .push_bind(&e.tool_name)
                    .push_bind(e.duration_ms)
                    .push_bind(&e.status)
                    .push_bind(e.input_args.as_ref().map(|v| v.to_string()))
                    .push_unseparated("::jsonb")
                    .push_bind(&e.output_summary)
                    .push_bind(&e.error_message)
                    .push_bind(&e.module)
                    .push_bind(&e.function)
                    .push_bind(e.line as i32)
                    .push_bind(&e.thread_name)
                    .push_bind(e.process_id as i32)
                    .push_bind(e.extra_str("client_id"))
                    .push_bind(e.extra_str("backend"))
                    .push_bind(serde_json::Value::Object(e.extra_data.clone()).to_string())
                    .push_unseparated("::jsonb");
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| AuditError::write(KIND, e))?;
        }
        tx.commit().await.map_err(|e| AuditError::write(KIND, e))
    }

    async fn select(&self, f: &LogQuery) -> Result<Vec<LogEntry>, AuditError> {
        let pool = self.pool().await?;
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {SELECT} FROM unified_logs WHERE true"));
        for (column, value) in [
            ("tool_name", &f.tool),
            ("client_id", &f.client),
            ("backend", &f.backend),
            ("status", &f.status),
            ("correlation_id", &f.correlation_id),
        ] {
            if let Some(v) = value {
                q.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if let Some(t) = &f.since {
            q.push(" AND timestamp >= ")
                .push_bind(t.clone())
                .push("::timestamptz");
        }
        if let Some(t) = &f.until {
            q.push(" AND timestamp < ")
                .push_bind(t.clone())
                .push("::timestamptz");
        }
        if let Some(t) = &f.text {
            q.push(" AND (strpos(message, ")
                .push_bind(t.clone())
                .push(") > 0 OR strpos(coalesce(output_summary, ''), ")
                .push_bind(t.clone())
                .push(") > 0 OR strpos(coalesce(error_message, ''), ")
                .push_bind(t.clone())
                .push(") > 0)");
        }
        q.push(" ORDER BY unified_logs.timestamp DESC, id DESC LIMIT ")
            .push_bind(f.limit());
        let rows = q
            .build()
            .fetch_all(pool)
            .await
            .map_err(|e| AuditError::write(KIND, e))?;
        rows.iter().map(row_to_entry).collect()
    }
}

fn json_col(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn row_to_entry(r: &sqlx::postgres::PgRow) -> Result<LogEntry, AuditError> {
    let get = |e: sqlx::Error| AuditError::write(KIND, e);
    let extra = json_col(r.try_get("extra_data").map_err(get)?);
    Ok(LogEntry {
        correlation_id: r.try_get("correlation_id").map_err(get)?,
        timestamp: r.try_get("timestamp").map_err(get)?,
        level: r.try_get("level").map_err(get)?,
        log_type: r.try_get("log_type").map_err(get)?,
        message: r.try_get("message").map_err(get)?,
        tool_name: r.try_get("tool_name").map_err(get)?,
        duration_ms: r.try_get("duration_ms").map_err(get)?,
        status: r.try_get("status").map_err(get)?,
        input_args: json_col(r.try_get("input_args").map_err(get)?),
        output_summary: r.try_get("output_summary").map_err(get)?,
        error_message: r.try_get("error_message").map_err(get)?,
        module: r.try_get("module").map_err(get)?,
        function: r.try_get("function").map_err(get)?,
        line: r.try_get::<i32, _>("line").map_err(get)? as u32,
        thread_name: r.try_get("thread_name").map_err(get)?,
        process_id: r.try_get::<i32, _>("process_id").map_err(get)? as u32,
        extra_data: match extra {
            Some(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        },
    })
}

impl Destination for Postgres {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write<'a>(&'a self, batch: &'a [Arc<LogEntry>]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(self.insert(batch))
    }

    fn query<'a>(&'a self, q: &'a LogQuery) -> BoxFuture<'a, Result<Vec<LogEntry>, AuditError>> {
        Box::pin(self.select(q))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some(pool) = self.pool.get() {
                pool.close().await;
            }
        })
    }
}
