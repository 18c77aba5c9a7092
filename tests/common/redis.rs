//! The real Redis at 127.0.0.1:6379, for messaging and bus tests: whether it
//! answers, a key prefix per test, and cleaning up after one.

use std::time::Duration;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Whether Redis answers at 127.0.0.1:6379. Without it a test prints a
/// SKIPPED line and passes, unless `MANIFOLD_REQUIRE_REDIS=1` (CI).
pub fn redis_or_skip(test: &str) -> bool {
    use std::io::{Read, Write};
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().unwrap(),
        Duration::from_secs(1),
    )
    .and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    })
    .unwrap_or(false);
    if up {
        return true;
    }
    if std::env::var("MANIFOLD_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: Redis is required (MANIFOLD_REQUIRE_REDIS=1) but does not answer at 127.0.0.1:6379"
        );
    }
    eprintln!(
        "SKIPPED {test}: Redis does not answer at 127.0.0.1:6379 (start it with redis-server; CI sets MANIFOLD_REQUIRE_REDIS=1)"
    );
    false
}

/// A key prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("manifold-test:{test}:{}:{nanos}", std::process::id())
}

/// `[messaging]` on Redis under `prefix`, plus `extra` keys.
pub fn redis_config(prefix: &str, extra: &str) -> String {
    format!(
        "[messaging]\nstore = \"redis\"\nredis_url = \"{REDIS_URL}\"\nkey_prefix = \"{prefix}\"\n{extra}\n"
    )
}

/// Deletes every key under `prefix` (run at the end of a Redis test).
pub async fn redis_cleanup(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else {
        return;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut con).await;
    }
}

/// The keys under `prefix` right now.
pub async fn redis_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    keys.sort();
    keys
}
