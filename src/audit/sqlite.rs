//! `sqlite`: the local default, a file next to the config. Batched
//! multi-row inserts in one transaction; entries older than
//! `retention_days` are swept at most once an hour.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite as Db, SqlitePool};
use tokio::sync::OnceCell;

use super::dest::{Destination, LogQuery};
use super::{AuditError, LogEntry};

const KIND: &str = "sqlite";
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// SQLite allows 32766 bound values per statement; 20 columns a row.
const ROWS_PER_INSERT: usize = 1000;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS unified_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        correlation_id TEXT NOT NULL, timestamp TEXT NOT NULL, level TEXT NOT NULL,
        log_type TEXT NOT NULL, message TEXT NOT NULL, tool_name TEXT, duration_ms REAL,
        status TEXT, input_args TEXT, output_summary TEXT, error_message TEXT,
        module TEXT NOT NULL, function TEXT NOT NULL, line INTEGER NOT NULL,
        thread_name TEXT NOT NULL, process_id INTEGER NOT NULL,
        client_id TEXT, backend TEXT, extra_data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS unified_logs_timestamp ON unified_logs (timestamp)",
    "CREATE INDEX IF NOT EXISTS unified_logs_correlation_id ON unified_logs (correlation_id)",
    "CREATE INDEX IF NOT EXISTS unified_logs_tool_name ON unified_logs (tool_name)",
    "CREATE INDEX IF NOT EXISTS unified_logs_client_id ON unified_logs (client_id)",
];

pub(super) const COLUMNS: &str = "correlation_id, timestamp, level, log_type, message, tool_name, duration_ms, status, input_args, output_summary, error_message, module, function, line, thread_name, process_id, client_id, backend, extra_data";

pub struct Sqlite {
    path: PathBuf,
    retention_days: u32,
    /// Opened (lazily) on first use; the file and schema are made then.
    pool: OnceCell<SqlitePool>,
    last_sweep: Mutex<Option<Instant>>,
}

impl Sqlite {
    pub fn new(path: PathBuf, retention_days: u32) -> Self {
        Self {
            path,
            retention_days,
            pool: OnceCell::new(),
            last_sweep: Mutex::new(None),
        }
    }

    async fn pool(&self) -> Result<&SqlitePool, AuditError> {
        self.pool
            .get_or_try_init(|| async {
                let options = SqliteConnectOptions::new()
                    .filename(&self.path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        AuditError::write(KIND, format!("{}: {e}", self.path.display()))
                    })?;
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

    async fn sweep(&self, pool: &SqlitePool) -> Result<(), AuditError> {
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(self.retention_days));
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        sqlx::query("DELETE FROM unified_logs WHERE timestamp < ?")
            .bind(cutoff)
            .execute(pool)
            .await
            .map_err(|e| AuditError::write(KIND, e))?;
        Ok(())
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
                    .push_bind(&e.level)
                    .push_bind(&e.log_type)
                    .push_bind(&e.message)
                    .push_bind(&e.tool_name)
                    .push_bind(e.duration_ms)
                    .push_bind(&e.status)
                    .push_bind(e.input_args.as_ref().map(|v| v.to_string()))
                    .push_bind(&e.output_summary)
                    .push_bind(&e.error_message)
                    .push_bind(&e.module)
                    .push_bind(&e.function)
                    .push_bind(i64::from(e.line))
                    .push_bind(&e.thread_name)
                    .push_bind(i64::from(e.process_id))
                    .push_bind(e.extra_str("client_id"))
                    .push_bind(e.extra_str("backend"))
                    .push_bind(serde_json::Value::Object(e.extra_data.clone()).to_string());
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| AuditError::write(KIND, e))?;
        }
        tx.commit().await.map_err(|e| AuditError::write(KIND, e))?;
        self.sweep(pool).await
    }

    async fn select(&self, f: &LogQuery) -> Result<Vec<LogEntry>, AuditError> {
        let pool = self.pool().await?;
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM unified_logs WHERE 1=1"));
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
            q.push(" AND timestamp >= ").push_bind(t.clone());
        }
        if let Some(t) = &f.until {
            q.push(" AND timestamp < ").push_bind(t.clone());
        }
        if let Some(t) = &f.text {
            q.push(" AND (instr(message, ")
                .push_bind(t.clone())
                .push(") > 0 OR instr(coalesce(output_summary, ''), ")
                .push_bind(t.clone())
                .push(") > 0 OR instr(coalesce(error_message, ''), ")
                .push_bind(t.clone())
                .push(") > 0)");
        }
        q.push(" ORDER BY timestamp DESC, id DESC LIMIT ")
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

fn row_to_entry(r: &sqlx::sqlite::SqliteRow) -> Result<LogEntry, AuditError> {
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
        line: r.try_get::<i64, _>("line").map_err(get)? as u32,
        thread_name: r.try_get("thread_name").map_err(get)?,
        process_id: r.try_get::<i64, _>("process_id").map_err(get)? as u32,
        extra_data: match extra {
            Some(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        },
    })
}

impl Destination for Sqlite {
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
