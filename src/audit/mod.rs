//! The audit log: a [`LogEntry`] for every call and gateway event, handed to
//! destinations without waiting.
//!
//! ```text
//! request path ──record()──▶ Audit ──try_send──▶ lane: queue → batch → retry → destination
//!                                   └─try_send──▶ lane: …        (one per destination)
//! ```
//!
//! [`Audit`] is a cheap cloneable handle. [`Audit::record`] never waits and
//! never fails: each destination has its own bounded queue and worker
//! ([`worker`]), so a slow one holds back no other, and a full queue drops the
//! entry for that destination only (counted). The request path never learns
//! which destinations exist. A reload that changes `[audit]` builds a new
//! pipeline and swaps it in; the old lanes drain and close behind it.
//!
//! This module sits low in the module graph: it imports `config` and nothing
//! else of ours.

pub mod dest;
mod elasticsearch;
pub mod entry;
mod http;
mod kafka;
mod postgres;
mod sqlite;
mod stderr;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

pub use dest::{Destination, LogQuery};
pub use entry::{FRAMEWORK, INTERNAL, LogEntry, Redactor, TOOL_EXECUTION};
use worker::{Lane, LaneSettings};

use crate::config::{AuditConfig, LocalStore, Production};

/// The longest a request's answer waits for its entry with `[audit] durable
/// = true` (a destination's own retries normally end it sooner).
pub const DURABLE_WAIT: Duration = Duration::from_secs(30);

/// `_meta` key carrying the correlation id (the gateway's request id) to backends.
pub const CORRELATION_META_KEY: &str = "io.manifold/correlation_id";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit destination {0}: {1}")]
    Write(&'static str, String),
    #[error("audit destination {0}: no answer within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("audit destination {0} cannot be queried (only the local store can)")]
    NotQueryable(&'static str),
    #[error("the audit log has no local store to query (set [audit] local)")]
    NoLocalStore,
    #[error("bad log query: {0}")]
    BadQuery(String),
}

impl AuditError {
    pub(crate) fn write(kind: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Write(kind, e.to_string())
    }
}

/// The running destinations of one `[audit]` config.
struct Pipeline {
    config: AuditConfig,
    lanes: Vec<Lane>,
    /// The store queries read (also one of the lanes' destinations).
    local: Option<Arc<dyn Destination>>,
    redactor: Redactor,
}

impl Pipeline {
    fn off() -> Self {
        Self {
            config: AuditConfig::default(),
            lanes: Vec::new(),
            local: None,
            redactor: Redactor::new(&[], 0),
        }
    }

    fn build(config: &AuditConfig, http: &reqwest::Client) -> Self {
        let settings = LaneSettings {
            queue_size: config.queue_size,
            batch_size: config.batch_size,
            batch_interval: config.batch_interval,
            retry_attempts: config.retry_attempts,
            retry_delay: config.retry_delay,
        };
        let mut dests: Vec<Arc<dyn Destination>> = Vec::new();
        let local: Option<Arc<dyn Destination>> = match &config.local {
            LocalStore::None => None,
            LocalStore::Sqlite {
                path,
                retention_days,
            } => Some(Arc::new(sqlite::Sqlite::new(path.clone(), *retention_days))),
            LocalStore::Postgres { url } => Some(Arc::new(postgres::Postgres::new(url.expose()))),
        };
        dests.extend(local.clone());
        match &config.production {
            None => {}
            Some(Production::Kafka {
                bootstrap_servers,
                topic,
                partitions,
            }) => dests.push(Arc::new(kafka::Kafka::new(
                bootstrap_servers.clone(),
                topic.clone(),
                *partitions,
            ))),
            Some(Production::Elasticsearch {
                hosts,
                index_prefix,
                api_key,
            }) => dests.push(Arc::new(elasticsearch::Elasticsearch::new(
                http.clone(),
                hosts.clone(),
                index_prefix.clone(),
                api_key.as_ref().map(|k| k.expose().to_string()),
            ))),
            Some(Production::Postgres { url }) => {
                dests.push(Arc::new(postgres::Postgres::new(url.expose())))
            }
            Some(Production::Http { url, api_key }) => dests.push(Arc::new(http::Http::new(
                http.clone(),
                url.clone(),
                api_key.as_ref().map(|k| k.expose().to_string()),
            ))),
        }
        if config.stderr {
            dests.push(Arc::new(stderr::Stderr));
        }
        Self {
            config: config.clone(),
            lanes: dests
                .into_iter()
                .map(|d| Lane::start(d, settings))
                .collect(),
            local,
            redactor: Redactor::new(&config.redact_keys, config.max_arg_chars),
        }
    }
}

/// The handle the request path and the gateway's events write through.
#[derive(Clone)]
pub struct Audit {
    pipeline: Arc<ArcSwap<Pipeline>>,
    http: reqwest::Client,
    /// Every recorded entry, for live followers (the console). Sent to only
    /// while someone follows; a follower that falls `FOLLOW_BUFFER` behind
    /// skips ahead (and is told how many it missed). Survives reloads.
    tap: tokio::sync::broadcast::Sender<Arc<LogEntry>>,
}

/// Entries a live follower may fall behind by before it skips some.
const FOLLOW_BUFFER: usize = 1024;

impl Default for Audit {
    fn default() -> Self {
        Self::disabled()
    }
}

impl Audit {
    /// Writes nothing; needs no runtime.
    pub fn disabled() -> Self {
        Self {
            pipeline: Arc::new(ArcSwap::from_pointee(Pipeline::off())),
            http: reqwest::Client::new(),
            tap: tokio::sync::broadcast::channel(FOLLOW_BUFFER).0,
        }
    }

    /// Starts the destinations of `config` (in the background: nothing here
    /// connects). Must run inside a tokio runtime when `config` enables any.
    pub fn start(config: &AuditConfig, http: reqwest::Client) -> Self {
        let audit = Self {
            pipeline: Arc::new(ArcSwap::from_pointee(Pipeline::off())),
            http,
            tap: tokio::sync::broadcast::channel(FOLLOW_BUFFER).0,
        };
        audit.apply(config);
        audit
    }

    /// Applies a reloaded `[audit]`: unchanged, nothing happens; changed, new
    /// lanes replace the old, which write what they hold and close.
    pub fn apply(&self, config: &AuditConfig) {
        if self.pipeline.load().config == *config && !self.pipeline.load().lanes.is_empty() {
            return;
        }
        let next = if config.enabled() {
            Pipeline::build(config, &self.http)
        } else {
            Pipeline::off()
        };
        self.pipeline.store(Arc::new(next));
    }

    /// Whether entries go anywhere; callers skip building them when not.
    pub fn enabled(&self) -> bool {
        !self.pipeline.load().lanes.is_empty()
    }

    /// Redaction as configured, for the request's arguments.
    pub fn redact(&self, args: &Value) -> Value {
        self.pipeline.load().redactor.redact(args)
    }

    /// How many characters of a result's text go into `output_summary`.
    pub fn summary_chars(&self) -> usize {
        self.pipeline.load().config.summary_chars
    }

    /// Hands a request's `entry` to every destination. With `[audit] durable
    /// = true` the future ends once every destination has written it (or
    /// finally failed to, or [`DURABLE_WAIT`] passed): the caller answers
    /// after it. Otherwise it is ready at once, like [`Audit::record`].
    pub fn record_request(
        &self,
        entry: LogEntry,
    ) -> impl Future<Output = ()> + Send + 'static + use<> {
        let pipeline = self.pipeline.load();
        let mut written = Vec::new();
        if pipeline.config.durable && !pipeline.lanes.is_empty() {
            let entry = Arc::new(entry);
            written = pipeline
                .lanes
                .iter()
                .map(|lane| lane.offer_confirmed(&entry))
                .collect();
            if self.tap.receiver_count() > 0 {
                let _ = self.tap.send(entry);
            }
        } else {
            self.record(entry);
        }
        async move {
            if written.is_empty() {
                return;
            }
            let all = futures::future::join_all(written);
            if tokio::time::timeout(DURABLE_WAIT, all).await.is_err() {
                tracing::warn!(
                    waited = ?DURABLE_WAIT,
                    "an audit entry was not written in time; answering anyway"
                );
            }
        }
    }

    /// Hands `entry` to every destination without waiting.
    pub fn record(&self, entry: LogEntry) {
        let pipeline = self.pipeline.load();
        if pipeline.lanes.is_empty() {
            return;
        }
        let entry = Arc::new(entry);
        for lane in &pipeline.lanes {
            lane.offer(&entry);
        }
        if self.tap.receiver_count() > 0 {
            let _ = self.tap.send(entry);
        }
    }

    /// Every entry recorded from now on, as it is recorded (before any
    /// destination has written it). Nothing arrives while the log is off.
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<Arc<LogEntry>> {
        self.tap.subscribe()
    }

    /// Records one of the gateway's own events (`log_type = "internal"`).
    pub fn event(&self, level: &str, function: &str, message: impl Into<String>, extra: Value) {
        if !self.enabled() {
            return;
        }
        static NEXT_EVENT: AtomicU64 = AtomicU64::new(1);
        let mut entry = LogEntry::now(INTERNAL, level, message).at("manifold", function, 0);
        entry.status = Some(if level == "error" { "error" } else { "success" }.into());
        if let Value::Object(mut map) = extra {
            // `status` and `correlation_id` given by the caller are the entry's own fields.
            if let Some(Value::String(s)) = map.remove("status") {
                entry.status = Some(s);
            }
            if let Some(Value::String(id)) = map.remove("correlation_id") {
                entry.correlation_id = id;
            }
            entry.extra_data = map;
        }
        if entry.correlation_id.is_empty() {
            let n = NEXT_EVENT.fetch_add(1, Ordering::Relaxed);
            entry.correlation_id = format!("event-{}-{n}", std::process::id());
        }
        self.record(entry);
    }

    /// Reads the local store, newest first.
    pub async fn query(&self, q: LogQuery) -> Result<Vec<LogEntry>, AuditError> {
        let q = q.normalized()?;
        let local = self.pipeline.load().local.clone();
        let local = local.ok_or(AuditError::NoLocalStore)?;
        local.query(&q).await
    }

    /// Counters per destination, by destination kind.
    pub fn stats(&self) -> Vec<(&'static str, Arc<worker::LaneStats>)> {
        self.pipeline
            .load()
            .lanes
            .iter()
            .map(|l| (l.name, l.stats.clone()))
            .collect()
    }

    /// The audit part of `/status` and `gateway_status`.
    pub fn status_json(&self) -> Value {
        let p = self.pipeline.load();
        let destinations: serde_json::Map<String, Value> = p
            .lanes
            .iter()
            .map(|l| (l.name.to_string(), l.stats.to_json()))
            .collect();
        json!({
            "enabled": !p.lanes.is_empty(),
            "local": p.local.as_ref().map(|l| l.kind()),
            "production": p.config.production.as_ref().map(|d| d.kind()),
            "destinations": destinations,
        })
    }
}
