//! The Kafka destination against a real broker that speaks the Kafka
//! protocol (`tansu`, installed by scripts/install-test-deps.sh), read back
//! with a real Kafka consumer (rskafka's fetch). The broker is stopped
//! mid-run: calls go on unharmed, drops are counted, and entries flow again
//! once it is back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::audit::*;
use common::*;
use rmcp::model::*;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::UnknownTopicHandling;
use serde_json::{Value, json};

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu() -> Option<std::path::PathBuf> {
    let path = repo().join(".test-deps/tansu/bin/tansu");
    require_or_skip("the tansu Kafka broker", path.exists()).then_some(path)
}

/// Starts tansu (in-memory storage) on `port` and waits until it accepts connections.
fn broker(bin: &std::path::Path, port: u16) -> Broker {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker(child)
}

/// Every record on partition 0 of `topic`: (key, JSON value).
async fn consume(port: u16, topic: &str) -> Vec<(String, Value)> {
    let Ok(client) = ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
        .build()
        .await
    else {
        return Vec::new();
    };
    let Ok(partition) = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await
    else {
        return Vec::new();
    };
    let Ok((records, _)) = partition.fetch_records(0, 1..5_000_000, 500).await else {
        return Vec::new();
    };
    records
        .into_iter()
        .filter_map(|r| {
            let key = String::from_utf8(r.record.key?).ok()?;
            let value = serde_json::from_slice(&r.record.value?).ok()?;
            Some((key, value))
        })
        .collect()
}

async fn echo(client: &Client, message: &str) {
    let r = client
        .call_tool(
            CallToolRequestParams::new("fx__echo")
                .with_arguments(args(json!({"message": message, "secret": "s3cr3t"}))),
        )
        .await
        .expect("call");
    assert_eq!(first_text(&r), message);
}

#[tokio::test]
async fn entries_reach_a_real_broker_and_flow_again_after_it_restarts() {
    let Some(bin) = tansu() else { return };
    let port = free_port();
    let mut kafka = Some(broker(&bin, port));
    let (gw, _cfg) = gateway(&format!(
        "[audit]\nlocal = \"none\"\nproduction = \"kafka\"\nbatch_interval = \"10ms\"\nretry_attempts = 1\nqueue_size = 16\n[audit.kafka]\nbootstrap_servers = [\"127.0.0.1:{port}\"]\n\n{}",
        stdio_backend("fx", "")
    ));
    let client = client(&gw.url).await;
    echo(&client, "to kafka").await;
    let records = eventually("the entry on topic mcp-logs", 30, async || {
        let r = consume(port, "mcp-logs").await;
        r.iter()
            .any(|(_, v)| v["tool_name"] == "fx__echo")
            .then_some(r)
    })
    .await;
    let (key, entry) = records
        .iter()
        .find(|(_, v)| v["tool_name"] == "fx__echo")
        .unwrap();
    assert_eq!(
        key,
        entry["correlation_id"].as_str().unwrap(),
        "keyed by correlation_id"
    );
    assert_eq!(entry["log_type"], "tool_execution");
    assert_eq!(entry["status"], "success");
    assert_eq!(entry["input_args"]["secret"], "[redacted]");
    assert_eq!(entry["extra_data"]["backend"], "fx");

    // The broker goes away mid-run: calls are not slowed, entries are dropped and counted.
    drop(kafka.take());
    let started = Instant::now();
    for i in 0..30 {
        echo(&client, &format!("while down {i}")).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "30 calls took {:?}",
        started.elapsed()
    );
    eventually("drops to be counted", 30, async || {
        let c = counters(&gw.url, "kafka", None).await;
        (count(&c, "dropped") > 0 && !c["failing_since"].is_null()).then_some(())
    })
    .await;

    // Back on the same port (empty: in-memory storage): entries flow again.
    let _kafka = broker(&bin, port);
    let mut i = 0;
    eventually("entries after the restart", 40, async || {
        i += 1;
        echo(&client, &format!("after {i}")).await;
        let r = consume(port, "mcp-logs").await;
        r.iter()
            .any(|(_, v)| {
                v["output_summary"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("after"))
            })
            .then_some(())
    })
    .await;
    let c = counters(&gw.url, "kafka", None).await;
    assert!(
        c["failing_since"].is_null() || count(&c, "written") > 1,
        "{c}"
    );
    client.cancel().await.unwrap();
}
