//! Logging as a bus: a `tracing` layer that publishes every event with target
//! `queue` on the bus.
//!
//! Level → priority: TRACE and DEBUG → low, INFO → normal, WARN → high,
//! ERROR → urgent. A `priority` field overrides it (the only way to reach
//! critical). The event's message is the content; its other fields become
//! the metadata, except `client_id` and `session_id`, which route it.
//!
//! ```
//! tracing::warn!(target: "queue", backend = "github", "backend down");
//! tracing::error!(target: "queue", priority = "critical", "disk full");
//! ```

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

use crate::store::{BusMessage, BusSender, Priority, now_ms};

/// The target that publishes on the bus.
pub const TARGET: &str = "queue";

/// The layer, filtered to target `queue` at every level, to add to the
/// process's subscriber next to its log output.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // A per-layer filter: the log output's own filter does not apply here.
    QueueLayer.with_filter(Targets::new().with_target(TARGET, Level::TRACE))
}

struct QueueLayer;

impl<S: Subscriber> Layer<S> for QueueLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let priority = fields
            .priority
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(match *event.metadata().level() {
                Level::ERROR => Priority::Urgent,
                Level::WARN => Priority::High,
                Level::INFO => Priority::Normal,
                _ => Priority::Low,
            });
        super::publish(BusMessage {
            id: 0,
            priority,
            content: fields.message,
            client_id: fields.client_id,
            session_id: fields.session_id,
            metadata: fields.metadata,
            sent_at_ms: now_ms(),
            sender: BusSender::Gateway,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    priority: Option<String>,
    client_id: Option<String>,
    session_id: Option<String>,
    metadata: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(s)) => self.message = s,
            ("priority", Value::String(s)) => self.priority = Some(s),
            ("client_id", Value::String(s)) => self.client_id = Some(s),
            // A session's global id (`<instance_id>.<uuid>`).
            ("session_id", Value::String(s)) => self.session_id = Some(s),
            (name, v) => {
                self.metadata.insert(name.to_string(), v);
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}
