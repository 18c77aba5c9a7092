//! Manifold: an MCP aggregating proxy gateway.
//!
//! The modules in layers, lowest first; each uses only modules below it
//! (`python3 ../shared/tools/module-graph.py` checks). Where a lower layer must
//! call up, it defines a trait the higher one implements.
//!
//! - [`config`]: `gateway.toml` → a validated [`config::Config`] (every error at once, with
//!   `file:line:col`), and the pure diff between two configs ([`config::diff_backends`]).
//! - [`jobs`]: the job queue behind the `queue` tool and `POST /api/v1/execute`:
//!   jobs in SQLite or PostgreSQL, run through a tool invoker the front implements.
//! - [`store`]: where messaging and the bus keep their state (memory or Redis), the event
//!   feed that wakes waiters on every instance, and the shared session table
//!   ([`store::sessions`]) that lets another instance restore a session and tells
//!   instances of each other's list changes.
//! - [`audit`]: the audit log: a [`audit::LogEntry`] per call and gateway event, handed without
//!   waiting to per-destination queues (SQLite, PostgreSQL, Kafka, Elasticsearch, HTTP,
//!   stderr); `query_logs` and `GET /api/v1/logs` read the local store.
//! - [`metrics`]: process-wide counters and histograms, served at `GET /metrics`, and
//!   per-backend rolling call rates and latency percentiles ([`metrics::window`]).
//! - [`ratelimit`]: the one keyed token bucket behind every per-client rate limit (requests,
//!   messages, bus publishes); a leaf that names nothing else of the crate.
//! - [`coordinator`]: what sessions and backend handlers share: the session registry (each
//!   session with what it may see, keyed by a local number and named by its global id), in-flight calls, subscriptions, counters, and the list task
//!   that coalesces `list_changed` by backend id. Names no backend type
//!   ([`coordinator::ListSource`] is implemented above).
//! - [`backend`]: one supervised rmcp client per backend over stdio, streamable HTTP, legacy
//!   SSE or an in-process pipe of typed messages ([`backend::InProcessSets`], implemented by the
//!   built-in sets),
//!   with per-backend list caches ([`backend::Catalog`]) and live settings; its transports are
//!   wrapped so progress is routed in the order the backend sent it, before its answer, and
//!   the raw list answers are tapped for the item fields rmcp's model drops ([`backend::extras`]);
//!   a task a backend makes for a client that cannot take one is waited for, and the call
//!   answered inline; a stdio backend's calls are written and answered by our own write
//!   half and reader, without rmcp's service loop (decision 0022), and a streamable-HTTP
//!   backend's calls are POSTed and their answers read by the calling task (decision 0023).
//! - [`router`]: the [`router::Snapshot`] of mounted backends: routing of exposed names
//!   (`{prefix}{sep}{name}`, `{prefix}+{uri}`) and the aggregated lists.
//! - [`gateway`]: the running [`gateway::Gateway`]: the swappable snapshot, the hub, the live
//!   backend settings, sessions' own `per_session` connections, status.
//! - [`builtin`]: tool sets served in process and mounted like backends: `gateway_status`,
//!   client-to-client [`builtin::messaging`], the priority [`builtin::bus`] (also fed by
//!   `tracing` events with target `queue`).
//! - [`reload`]: startup and every reload on one path (empty gateway + apply(config)); file and
//!   SIGHUP triggers; [`reload::ConfigListener`] for what else follows the config.
//! - [`front`]: the client side. [`front::http`] serves MCP streamable HTTP through the tower
//!   stack [`front::stack`] (trace, metrics, origin, auth, body, scope, limits); a request of a
//!   session held here is read once by its method and, once the session has initialized here,
//!   handed to its handler in the connection's task (decision 0020),
//!   everything else goes to rmcp's `StreamableHttpService` (either way, a request answered
//!   by one message gets it as plain JSON, not an SSE stream); [`front::oauth`] checks OAuth access tokens (`[auth.oauth]`) and serves
//!   the protected-resource metadata; [`front::stdio`] serves one client over stdio. Each client session
//!   (or request, for a 2026-07-28 client) is a [`front::FrontSession`] (over stdio wrapped in
//!   [`front::FrontService`], which puts listed items' extra fields back); its requests take one
//!   route → authorize → rewrite → forward → map pipeline. [`front::parked`] turns a
//!   backend's sampling, elicitation and roots during a 2026-07-28 client's call into
//!   `InputRequired` rounds; `front::tasks` serves tool calls as tasks (the tasks
//!   extension) from the job queue. [`front::sessions`] mints session ids that name the instance and
//!   restores shared sessions; [`front::drain`] is the SIGTERM drain;
//!   [`front::console`] is the browser console at `/ui` and its push stream.
//! - [`serve`] and [`check`]: `manifold serve|stdio` and `manifold check`, wiring the above.
//! - [`import`]: `manifold import`, client configs (`mcpServers`, VS Code `servers`) → backend
//!   tables; uses only [`config`].
//!
//! Requests flow down through front → router → backend; events flow back up through backend
//! → coordinator → the sessions they belong to.

pub mod audit;
pub mod backend;
pub mod builtin;
pub mod check;
pub mod config;
pub mod coordinator;
pub mod front;
pub mod gateway;
pub mod import;
pub mod jobs;
pub mod metrics;
pub mod ratelimit;
pub mod reload;
pub mod router;
pub mod serve;
pub mod store;
