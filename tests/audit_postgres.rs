//! The audit log in PostgreSQL at 127.0.0.1:5432 (a fresh database per
//! test): as the local store (`query_logs`, `GET /api/v1/logs`) and as the
//! production destination. Skipped with a message when PostgreSQL is not
//! reachable, unless `MANIFOLD_REQUIRE_POSTGRES=1`.

mod common;

use common::audit::*;
use common::http::get_json;
use common::*;
use rmcp::model::*;
use serde_json::json;
use sqlx::Row;

#[tokio::test]
async fn postgres_local_store_has_the_table_indexes_and_answers_queries() {
    let Some(db) = common::postgres::database("audit_postgres").await else {
        return;
    };
    let url = db.url();
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"postgres\"\nbatch_interval = \"10ms\"\n[audit.postgres]\nurl = \"{url}\"\n\n{}",
        stdio_backend("fx", "")
    ));
    let client = client(&gw.url).await;
    for i in 0..3 {
        client
            .call_tool(CallToolRequestParams::new("fx__echo").with_arguments(args(
                json!({"message": format!("pg {i}"), "password": "pw-1"}),
            )))
            .await
            .unwrap();
    }
    let (_, body) = eventually("three entries in unified_logs", 15, async || {
        let (_, b) = get_json(&gw.url, "/api/v1/logs?tool=fx__echo", None).await;
        (b["count"].as_u64() == Some(3)).then_some(((), b))
    })
    .await;
    let newest = &body["entries"][0];
    assert_eq!(newest["output_summary"], "pg 2", "newest first: {body}");
    assert_eq!(newest["input_args"]["password"], "[redacted]");
    assert_eq!(newest["extra_data"]["backend"], "fx");
    assert!(newest["timestamp"].as_str().unwrap().ends_with('Z'));
    let (_, some) = get_json(&gw.url, "/api/v1/logs?text=pg%201", None).await;
    assert_eq!(some["count"], 1, "{some}");
    let (_, none) = get_json(&gw.url, "/api/v1/logs?until=2000-01-01T00:00:00Z", None).await;
    assert_eq!(none["count"], 0);

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let indexes: Vec<String> =
        sqlx::query("SELECT indexname FROM pg_indexes WHERE tablename = 'unified_logs'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("indexname"))
            .collect();
    for want in [
        "unified_logs_timestamp",
        "unified_logs_correlation_id",
        "unified_logs_tool_name",
    ] {
        assert!(indexes.iter().any(|i| i == want), "{indexes:?}");
    }
    let leaked: i64 =
        sqlx::query("SELECT count(*) AS n FROM unified_logs WHERE input_args::text LIKE '%pw-1%'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("n");
    assert_eq!(leaked, 0);
    client.cancel().await.unwrap();
    db.drop_it().await;
}

#[tokio::test]
async fn postgres_as_production_destination_beside_sqlite() {
    let Some(db) = common::postgres::database("audit_postgres").await else {
        return;
    };
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let (gw, _cfg) = gateway(&format!(
        "[audit]\npath = {:?}\nproduction = \"postgres\"\nbatch_interval = \"10ms\"\n[audit.postgres]\nurl = \"{url}\"\n\n{}",
        dir.path().join("local.db").display().to_string(),
        stdio_backend("fx", "")
    ));
    let client = client(&gw.url).await;
    client
        .call_tool(
            CallToolRequestParams::new("fx__add").with_arguments(args(json!({"a": 1, "b": 2}))),
        )
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let row = eventually("the call in PostgreSQL", 15, async || {
        sqlx::query("SELECT tool_name, status, output_summary, extra_data->>'transport' AS transport FROM unified_logs WHERE tool_name = 'fx__add'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(row.get::<String, _>("status"), "success");
    assert_eq!(row.get::<String, _>("output_summary"), "3");
    assert_eq!(row.get::<String, _>("transport"), "http");
    let c = counters(&gw.url, "postgres", None).await;
    assert!(count(&c, "written") >= 1, "{c}");
    let c = counters(&gw.url, "sqlite", None).await;
    assert!(count(&c, "written") >= 1, "{c}");
    client.cancel().await.unwrap();
    db.drop_it().await;
}
