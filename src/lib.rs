//! Manifold: an MCP aggregating proxy gateway.
//!
//! The modules in the order a request flows through them:
//!
//! - [`config`]: `gateway.toml` → a validated [`config::Config`] (every error at once, with
//!   `file:line:col`).
//! - [`front`]: the client side. [`front::http`] serves MCP streamable HTTP (hyper, our tower
//!   stack [`front::stack`]: trace, metrics, origin, auth, body, limits; then rmcp's
//!   `StreamableHttpService`); [`front::stdio`] serves one client over stdio. Each client
//!   session is a [`front::FrontSession`], which applies the client's allow-lists.
//! - [`gateway`]: the [`gateway::Gateway`] and its swappable [`gateway::Snapshot`] of mounted
//!   backends; routing of exposed names (`{prefix}{sep}{name}`, `{prefix}+{uri}`) to a backend.
//! - [`backend`]: one supervised rmcp client per backend over stdio, streamable HTTP or legacy
//!   SSE, with per-backend list caches ([`backend::Catalog`]).
//! - [`coordinator`]: what sessions and backend handlers share: the session registry, in-flight
//!   calls, subscriptions and counters; routes what backends send back to the right sessions.
//!   Owns no backend.
//! - [`builtin`]: tool sets served in process and mounted like backends:
//!   `gateway_status`, client-to-client [`builtin::messaging`], the priority
//!   [`builtin::bus`] (also fed by `tracing` events with target `queue`).
//! - [`store`]: where messaging and the bus keep their state (memory or
//!   Redis), and the event feed that wakes waiters on every instance.
//! - [`audit`]: the audit log: a [`audit::LogEntry`] per call and gateway event, handed without
//!   waiting to per-destination queues (SQLite, PostgreSQL, Kafka, Elasticsearch, HTTP,
//!   stderr); `query_logs` and `GET /api/v1/logs` read the local store.
//! - [`check`]: `manifold check`, validation and the `--connect` name report.
//! - [`metrics`]: process-wide counters and histograms, served at `GET /metrics`.
//!
//! Events flow back the other way: a backend's `list_changed` refreshes its catalog and the hub
//! tells every live session.

pub mod audit;
pub mod backend;
pub mod builtin;
pub mod check;
pub mod config;
pub mod coordinator;
pub mod front;
pub mod gateway;
pub mod metrics;

pub mod reload;
pub mod serve;
pub mod store;
