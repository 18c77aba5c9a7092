//! `kafka`: each entry as JSON on a topic (default `mcp-logs`), keyed by
//! `correlation_id`, through rskafka (pure Rust; see ADR 0009).
//!
//! The client is built on first write, in the lane's worker, so a broker that
//! is missing at start delays nothing; after a failure it is rebuilt on the
//! next write. rskafka always asks for acks from every in-sync replica.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rskafka::BackoffConfig;
use rskafka::client::ClientBuilder;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::sync::Mutex;

use super::dest::Destination;
use super::{AuditError, LogEntry};

const KIND: &str = "kafka";

pub struct Kafka {
    brokers: Vec<String>,
    topic: String,
    partitions: i32,
    /// One client per partition, made on first write; cleared after a failure.
    clients: Mutex<Option<Vec<PartitionClient>>>,
}

impl Kafka {
    pub fn new(brokers: Vec<String>, topic: String, partitions: i32) -> Self {
        Self {
            brokers,
            topic,
            partitions,
            clients: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Vec<PartitionClient>, AuditError> {
        // A bounded backoff: a broker that is down must fail the write (the
        // lane counts and retries), not block it forever.
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(Duration::from_secs(3)),
        };
        let client = ClientBuilder::new(self.brokers.clone())
            .client_id("manifold-audit")
            .backoff_config(backoff)
            .build()
            .await
            .map_err(|e| AuditError::write(KIND, e))?;
        let controller = client
            .controller_client()
            .map_err(|e| AuditError::write(KIND, e))?;
        match controller
            .create_topic(&self.topic, self.partitions, 1, 5_000)
            .await
        {
            Ok(()) => {}
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => {
                return Err(AuditError::write(
                    KIND,
                    format!("create topic {}: {e}", self.topic),
                ));
            }
        }
        let mut out = Vec::new();
        for p in 0..self.partitions {
            let pc = client
                .partition_client(&self.topic, p, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| AuditError::write(KIND, e))?;
            out.push(pc);
        }
        Ok(out)
    }

    async fn produce(&self, batch: &[Arc<LogEntry>]) -> Result<(), AuditError> {
        let mut guard = self.clients.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(clients) = guard.as_ref() else {
            return Err(AuditError::write(KIND, "not connected"));
        };
        let mut by_partition: Vec<Vec<Record>> = (0..clients.len()).map(|_| Vec::new()).collect();
        let now = chrono::Utc::now();
        for e in batch {
            let value = serde_json::to_vec(&**e).map_err(|e| AuditError::write(KIND, e))?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            e.correlation_id.hash(&mut h);
            let p = (h.finish() % clients.len() as u64) as usize;
            by_partition[p].push(Record {
                key: Some(e.correlation_id.as_bytes().to_vec()),
                value: Some(value),
                headers: BTreeMap::new(),
                timestamp: now,
            });
        }
        for (client, records) in clients.iter().zip(by_partition) {
            if let Err(e) = client.produce(records, Compression::NoCompression).await {
                *guard = None;
                return Err(AuditError::write(KIND, e));
            }
        }
        Ok(())
    }
}

impl Destination for Kafka {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write<'a>(&'a self, batch: &'a [Arc<LogEntry>]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(self.produce(batch))
    }
}
