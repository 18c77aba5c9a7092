//! Process metrics, served by `GET /metrics` in the OpenMetrics text format
//! (which Prometheus scrapes natively).
//!
//! Counters and histograms live in one process-wide registry, like the
//! default registry of every Prometheus client: whoever observes something
//! calls a free function here (`metrics::reload(true)`), with no handle to
//! thread through. Gauges that describe the current state (live sessions,
//! backends up, the hub's notification counters) are handed to [`render`] at
//! scrape time as a [`Scrape`] instead of being kept in sync. This module
//! names no other module of the crate (it sits at the bottom of the graph),
//! and must not log or block: it is called on every request.
//!
//! Label values are bounded: MCP method names come from a fixed list, backend
//! names from the config, outcomes and reasons from enums here.

pub mod window;

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    backend: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: &'static str,
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    kind: &'static str,
    fate: &'static str,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<LatencyLabels, Histogram>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    rejected: Family<ReasonLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    restarts: Family<BackendLabels, Counter>,
    // Set from the gateway at scrape time.
    sessions: Gauge,
    backend_up: Family<BackendLabels, Gauge>,
    notifications: Family<NotificationLabels, Counter>,
    // audit: mirrored from each destination's lane at scrape time.
    audit: Family<AuditLabels, Counter>,
    audit_failing: Family<DestinationLabels, Gauge>,
    session_moves: Family<MoveLabels, Counter>,
    instance: Family<InstanceLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    destination: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MoveLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s: from a cached list to a slow tool call.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("manifold");
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register(
        "requests",
        "MCP requests from clients, by method, backend and outcome",
        requests.clone(),
    );
    let request_seconds =
        Family::<LatencyLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
    registry.register(
        "request_duration_seconds",
        "Time to answer an MCP request, by method and backend",
        request_seconds.clone(),
    );
    let http_requests = Family::<HttpLabels, Counter>::default();
    registry.register(
        "http_requests",
        "HTTP requests, by route and response status",
        http_requests.clone(),
    );
    let http_seconds =
        Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
    registry.register(
        "http_response_duration_seconds",
        "Time to the HTTP response headers, by route (an MCP stream may last longer)",
        http_seconds.clone(),
    );
    let rejected = Family::<ReasonLabels, Counter>::default();
    registry.register(
        "rejected_requests",
        "Requests refused before reaching a session, by reason",
        rejected.clone(),
    );
    let reloads = Family::<OutcomeLabels, Counter>::default();
    registry.register(
        "config_reloads",
        "Config reloads, by outcome (success or failure)",
        reloads.clone(),
    );
    let restarts = Family::<BackendLabels, Counter>::default();
    registry.register(
        "backend_restarts",
        "Backend reconnects and process restarts",
        restarts.clone(),
    );
    // Both outcomes exist from the start, so `increase()` sees the first one.
    for outcome in ["success", "failure"] {
        let _ = reloads.get_or_create(&OutcomeLabels { outcome });
    }
    let sessions = Gauge::default();
    registry.register("sessions", "Live client sessions", sessions.clone());
    let backend_up = Family::<BackendLabels, Gauge>::default();
    registry.register(
        "backend_up",
        "1 when the backend is connected, 0 otherwise",
        backend_up.clone(),
    );
    let audit = Family::<AuditLabels, Counter>::default();
    registry.register(
        "audit_entries",
        "Audit log entries per destination: written, retried (batches), dropped; and batches written",
        audit.clone(),
    );
    let audit_failing = Family::<DestinationLabels, Gauge>::default();
    registry.register(
        "audit_destination_failing",
        "1 while an audit destination's writes fail",
        audit_failing.clone(),
    );
    let notifications = Family::<NotificationLabels, Counter>::default();
    registry.register(
        "notifications",
        "Notifications and server-to-client requests from backends, by kind and fate",
        notifications.clone(),
    );
    let session_moves = Family::<MoveLabels, Counter>::default();
    registry.register(
        "session_moves",
        "Sessions restored here from the shared store (restored), and local copies closed because another instance took the session (released)",
        session_moves.clone(),
    );
    for event in ["restored", "released"] {
        let _ = session_moves.get_or_create(&MoveLabels { event });
    }
    let instance = Family::<InstanceLabels, Gauge>::default();
    registry.register(
        "instance_info",
        "1, labelled with this instance's `[server] instance_id`",
        instance.clone(),
    );
    Metrics {
        registry,
        session_moves,
        instance,
        requests,
        request_seconds,
        http_requests,
        http_seconds,
        rejected,
        reloads,
        restarts,
        sessions,
        backend_up,
        notifications,
        audit,
        audit_failing,
    }
});

/// Serializes scrapes: each one rewrites the state gauges before encoding.
static SCRAPE: Mutex<()> = Mutex::new(());

/// One MCP request answered. `backend` is empty when no backend was involved
/// (lists, `initialize`); `outcome` is one of `ok`, `error`, `tool_error`,
/// `denied`, `timeout`. Calls that reached a backend also go into its
/// rolling [`window`].
pub fn request(method: &'static str, backend: &str, outcome: &'static str, took: Duration) {
    if !backend.is_empty() && outcome != "denied" {
        window::observe(backend, took);
    }
    let backend = backend_label(backend);
    let m = &*METRICS;
    m.requests
        .get_or_create(&RequestLabels {
            method,
            backend,
            outcome,
        })
        .inc();
    m.request_seconds
        .get_or_create(&LatencyLabels { method, backend })
        .observe(took.as_secs_f64());
}

/// A backend's name as a label value that lives as long as the process.
///
/// Each distinct name is kept once, so looking up a call's labels allocates
/// nothing (building them from owned strings took four allocations per
/// call). Names come from the config, so there are few of them; a name a
/// reload removed stays, as its series in the registry do.
fn backend_label(name: &str) -> &'static str {
    static NAMES: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(Default::default);
    if name.is_empty() {
        return "";
    }
    if let Some(kept) = NAMES.read().unwrap_or_else(|p| p.into_inner()).get(name) {
        return kept;
    }
    let mut names = NAMES.write().unwrap_or_else(|p| p.into_inner());
    if let Some(kept) = names.get(name) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.into());
    names.insert(kept);
    kept
}

/// One HTTP response sent; `route` is a fixed label (`mcp`, `healthz`, …).
pub fn http(route: &'static str, status: u16, took: Duration) {
    let m = &*METRICS;
    m.http_requests
        .get_or_create(&HttpLabels { route, status })
        .inc();
    m.http_seconds
        .get_or_create(&RouteLabels { route })
        .observe(took.as_secs_f64());
}

/// A request refused at the edge (`unauthorized`, `rate_limited`, …).
pub fn rejected(reason: &'static str) {
    METRICS
        .rejected
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// A config reload finished; for the reload path to call.
pub fn reload(ok: bool) {
    let outcome = if ok { "success" } else { "failure" };
    METRICS
        .reloads
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// A backend was restarted or reconnected; for the supervisor to call.
pub fn backend_restart(name: &str) {
    METRICS
        .restarts
        .get_or_create(&BackendLabels {
            backend: name.to_string(),
        })
        .inc();
}

/// A session moved: `restored` here from the shared store, or `released`
/// here because another instance restored it.
pub fn session_moved(event: &'static str) {
    METRICS
        .session_moves
        .get_or_create(&MoveLabels { event })
        .inc();
}

/// The state gauges at scrape time, read by the caller from the running gateway.
#[derive(Default)]
pub struct Scrape {
    /// `[server] instance_id`.
    pub instance: String,
    pub sessions: usize,
    /// Every mounted backend: name, and whether it is up.
    pub backends: Vec<(String, bool)>,
    /// The coordinator's notification counters: kind, fate, value.
    pub notifications: Vec<(&'static str, &'static str, u64)>,
    /// Per audit destination: its counters (written, batches, retried,
    /// dropped) and whether it is failing now.
    pub audit: Vec<AuditScrape>,
}

/// One audit destination at scrape time: name, counters by outcome, failing now.
pub type AuditScrape = (&'static str, [(&'static str, u64); 4], bool);

/// Every metric, in the OpenMetrics text format.
pub fn render(scrape: &Scrape) -> String {
    let m = &*METRICS;
    let _serial = SCRAPE.lock().unwrap_or_else(|p| p.into_inner());
    m.sessions.set(scrape.sessions as i64);
    m.instance.clear();
    m.instance
        .get_or_create(&InstanceLabels {
            instance: scrape.instance.clone(),
        })
        .set(1);
    // Cleared first so that a removed backend disappears instead of staying at its last value.
    m.backend_up.clear();
    for (name, up) in &scrape.backends {
        // A backend that never restarted still shows, at 0.
        let _ = m.restarts.get_or_create(&BackendLabels {
            backend: name.clone(),
        });
        m.backend_up
            .get_or_create(&BackendLabels {
                backend: name.clone(),
            })
            .set(i64::from(*up));
    }
    for &(kind, fate, value) in &scrape.notifications {
        let counter = m
            .notifications
            .get_or_create(&NotificationLabels { kind, fate });
        // The hub's counters are the source of truth; mirror them.
        counter
            .inner()
            .store(value, std::sync::atomic::Ordering::Relaxed);
    }
    m.audit.clear();
    m.audit_failing.clear();
    for (destination, outcomes, failing) in &scrape.audit {
        for &(outcome, value) in outcomes {
            m.audit
                .get_or_create(&AuditLabels {
                    destination,
                    outcome,
                })
                .inner()
                .store(value, std::sync::atomic::Ordering::Relaxed);
        }
        m.audit_failing
            .get_or_create(&DestinationLabels { destination })
            .set(i64::from(*failing));
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        out = format!("# encoding failed: {e}\n");
    }
    out
}
