//! The real PostgreSQL at 127.0.0.1:5432 (trust auth): a database of its
//! own per test. Without PostgreSQL a test prints why it is skipped, unless
//! `MANIFOLD_REQUIRE_POSTGRES=1` (CI), where it fails.

use std::time::Duration;

use sqlx::Connection;

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own, dropped when the test is done.
pub struct Db {
    pub name: String,
}

impl Db {
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub async fn drop_it(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(ADMIN_URL).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(&sql).execute(&mut admin).await;
        }
    }
}

/// A fresh database, or `None` (after saying why) when PostgreSQL is not there.
pub async fn database(test: &str) -> Option<Db> {
    let admin = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(ADMIN_URL),
    )
    .await;
    let mut admin = match admin {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return skip(test, &e.to_string()),
        Err(_) => return skip(test, "connect timed out"),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "manifold_test_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    Some(Db { name })
}

fn skip(test: &str, why: &str) -> Option<Db> {
    if std::env::var("MANIFOLD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: PostgreSQL is required (MANIFOLD_REQUIRE_POSTGRES=1) but {ADMIN_URL} does not answer: {why}"
        );
    }
    eprintln!(
        "SKIPPED {test}: PostgreSQL does not answer at {ADMIN_URL} ({why}); start it (pg_ctlcluster <version> main start); CI sets MANIFOLD_REQUIRE_POSTGRES=1"
    );
    None
}
