//! The two SQL job stores. The statements are the same on both engines
//! (numbered `$n` parameters work on SQLite too), except the claim, which on
//! PostgreSQL locks the rows it takes with `FOR UPDATE SKIP LOCKED` so that
//! two instances claiming at once never take the same job. SQLite has one
//! writer at a time, so its claim is atomic as it is.
//!
//! Schema migrations are embedded (`migrations/jobs/{sqlite,postgres}/`),
//! numbered, and applied at open inside one transaction; the applied
//! versions are kept in `manifold_jobs_schema` (not sqlx's shared
//! `_sqlx_migrations`, which another component may use in the same database).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::store::{StoreError, StoreResult};

mod queries;

/// (version, description, SQL) of each SQLite migration, in order.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "jobs",
    include_str!("../../../migrations/jobs/sqlite/0001_jobs.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "jobs",
    include_str!("../../../migrations/jobs/postgres/0001_jobs.sql"),
)];

/// Any number: two instances migrating one PostgreSQL database at once take turns on it.
const MIGRATION_LOCK: i64 = 0x6d_6a6f_6273;

/// Applies the migrations newer than the database's version, in `$tx`.
macro_rules! migrate_in {
    ($tx:ident, $list:expr, $kind:expr) => {{
        let e = err($kind);
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS manifold_jobs_schema (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *$tx)
        .await
        .map_err(&e)?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM manifold_jobs_schema")
            .fetch_one(&mut *$tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(&e)?;
        let known = $list.last().map_or(0, |m| m.0);
        if current > known {
            return Err(unavailable(
                $kind,
                format!("the jobs schema is at version {current}, newer than this gateway knows ({known}); upgrade the gateway").into(),
            ));
        }
        // Collected first: an iterator adapter held across the awaits below
        // would make the future's `Send` unprovable.
        let pending: Vec<(i64, &'static str, &'static str)> =
            $list.iter().copied().filter(|m| m.0 > current).collect();
        for (version, description, sql) in pending {
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *$tx).await.map_err(&e)?;
            }
            sqlx::query("INSERT INTO manifold_jobs_schema (version, description, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(description)
                .bind(super::model::now_micros())
                .execute(&mut *$tx)
                .await
                .map_err(&e)?;
            tracing::info!(store = $kind, version, description, "jobs schema migrated");
        }
    }};
}

pub struct SqliteStore {
    pool: SqlitePool,
}

pub struct PgStore {
    pool: PgPool,
}

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the database file.
    ///
    /// Boxed: the future holds a transaction across awaits, and naming its
    /// type in callers' futures trips the compiler's `Send` check (a
    /// higher-ranked lifetime limitation with sqlx's executors).
    pub fn open(path: &Path) -> BoxFuture<'static, StoreResult<Self>> {
        let path = path.to_path_buf();
        async move { Self::open_now(&path).await }.boxed()
    }

    async fn open_now(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers do not wait for the writer; NORMAL: durable at
            // checkpoints, and a crash loses no committed transaction's
            // consistency (only, at worst, the last ones before power loss).
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                unavailable(
                    "sqlite",
                    format!("cannot open {}: {e}", path.display()).into(),
                )
            })?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err("sqlite"))?;
        migrate_in!(tx, SQLITE_MIGRATIONS, "sqlite");
        tx.commit().await.map_err(err("sqlite"))
    }
}

impl PgStore {
    /// Connects and migrates; boxed for the reason given at [`SqliteStore::open`].
    pub fn open(url: &str) -> BoxFuture<'static, StoreResult<Self>> {
        let url = url.to_string();
        async move { Self::open_now(&url).await }.boxed()
    }

    async fn open_now(url: &str) -> StoreResult<Self> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| unavailable("postgres", format!("invalid url: {e}").into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(err("postgres"))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err("postgres"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(err("postgres"))?;
        migrate_in!(tx, POSTGRES_MIGRATIONS, "postgres");
        tx.commit().await.map_err(err("postgres"))
    }
}

fn unavailable(kind: &'static str, message: std::borrow::Cow<'_, str>) -> StoreError {
    StoreError::Unavailable {
        kind,
        message: message.into_owned(),
    }
}

fn err(kind: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| unavailable(kind, e.to_string().into())
}
