//! The validated configuration: plain values, no spans, comparable with `==`.
//!
//! These types are what the rest of the gateway sees. They are built only by
//! [`super::load`], which checks every invariant documented here, so code that
//! holds a [`Config`] never re-validates it. `PartialEq` is what a reload uses
//! to decide whether a backend changed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::filter::NameFilter;

/// The default listen address of `manifold serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8123";
const DEFAULT_LISTEN_PORT: u16 = 8123;
/// MCP names longer than this are rejected by several LLM function-calling APIs.
pub const MAX_EXPOSED_NAME: usize = 64;

/// A whole `gateway.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    /// Every declared backend, enabled or not, by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Where each backend's table starts (`file:line:col`), for messages found
    /// after loading (name collisions seen once backends are connected).
    pub locations: BTreeMap<String, Location>,
    /// `[messaging]`: client-to-client messages, and the store the bus shares.
    pub messaging: MessagingConfig,
    /// `[bus]`: the priority message bus.
    pub bus: BusConfig,
    /// `[audit]`: the audit log of every call.
    pub audit: super::AuditConfig,
    /// `[auth]`: who may use the gateway, and what each client may see.
    pub auth: AuthConfig,
    /// `[limits]`: how much each client and the whole gateway may ask for.
    pub limits: LimitsConfig,
    /// `[jobs]`: the built-in job queue (off unless the section is present).
    pub jobs: super::JobsConfig,
    /// `[sessions]`: where MCP sessions live (fixed at start).
    pub sessions: SessionsConfig,
}

/// `[sessions]`: in this process, or in Redis so that another instance can
/// restore a session (docs/scale-out.md).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SessionsConfig {
    pub store: StoreConfig,
}

impl Config {
    /// The backends that should run.
    pub fn enabled_backends(&self) -> impl Iterator<Item = &BackendConfig> {
        self.backends.values().filter(|b| b.enabled)
    }
}

/// A position in a config file, printed as `file:line:col`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// `[server]`: how clients reach the gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The HTTP path of the MCP endpoint, e.g. `/mcp`.
    pub path: String,
    /// Joins a backend's prefix and a tool or prompt name.
    pub separator: String,
    /// A client session with no traffic for this long is closed.
    pub session_idle_timeout: Duration,
    /// How long a backend may take to start and answer `initialize`.
    pub connect_timeout: Duration,
    /// The default per-call timeout of backends that set none.
    pub call_timeout: Duration,
    /// The largest request body accepted on the MCP endpoint.
    pub max_request_bytes: usize,
    /// Host names accepted in the `Host` header (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted in the `Origin` header, besides loopback
    /// ones; `"*"` accepts any. Requests without `Origin` are not browsers.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to answer a sampling, elicitation or roots
    /// request relayed from a backend.
    pub relay_timeout: Duration,
    /// Restart delay after a backend fails: doubles from `min` up to `max`
    /// (with jitter), and starts over after a connection stayed up a while.
    pub restart_min_backoff: Duration,
    pub restart_max_backoff: Duration,
    /// How often each backend is pinged, and how long it may take to answer.
    pub health_interval: Duration,
    pub health_timeout: Duration,
    /// What clients see of a backend that is down.
    pub down_backends: DownBackends,
    /// Threads of the async runtime; `None` means half the CPU cores (at
    /// least one), leaving the rest to the backends the gateway runs.
    pub worker_threads: Option<usize>,
    /// How long a connection may take to send a complete request head; a
    /// connection that has not done so by then is closed (slow-loris).
    pub header_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Open client connections at most; past it new connections are
    /// answered 503 and closed at once instead of queueing.
    pub max_connections: usize,
    /// Serve on a non-loopback address without `[auth]` (refused otherwise).
    pub allow_unauthenticated: bool,
    /// This instance's name: the prefix of the session ids it mints, shown in
    /// `/readyz`, `/status`, metrics and logs. Default: host name and port.
    pub instance_id: String,
    /// After SIGTERM, how long requests in flight may take to finish.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!()),
            path: "/mcp".into(),
            separator: "__".into(),
            session_idle_timeout: Duration::from_secs(30 * 60),
            connect_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            max_request_bytes: 4 * 1024 * 1024,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            relay_timeout: Duration::from_secs(120),
            worker_threads: None,
            restart_min_backoff: Duration::from_millis(500),
            restart_max_backoff: Duration::from_secs(60),
            health_interval: Duration::from_secs(30),
            health_timeout: Duration::from_secs(10),
            down_backends: DownBackends::Hide,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            allow_unauthenticated: false,
            instance_id: super::sessions::default_instance_id(DEFAULT_LISTEN_PORT),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// `[messaging]`: the built-in client-to-client messaging tools.
#[derive(Clone, Debug, PartialEq)]
pub struct MessagingConfig {
    /// Whether the messaging tools are mounted.
    pub enabled: bool,
    /// Where messages, check-ins and the bus history live (shared with `[bus]`).
    pub store: StoreConfig,
    /// A message not read within this long is dropped.
    pub message_ttl: Duration,
    /// The largest message body accepted, in bytes.
    pub max_message_bytes: usize,
    /// Whether a recipient must have called `checkin_client` first.
    pub require_checkin: bool,
    /// Messages one sender may send per minute (on one gateway instance); 0 is unlimited.
    pub rate_limit: u32,
    /// The longest `timeout` a `send_message_and_wait` may ask for.
    pub max_wait: Duration,
    /// A check-in is forgotten this long after the client was last seen,
    /// unless a session acts as it.
    pub checkin_ttl: Duration,
    /// The most check-ins kept; a new client id is refused beyond it.
    pub max_checkins: usize,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store: StoreConfig::Memory,
            message_ttl: Duration::from_secs(5 * 60),
            max_message_bytes: 64 * 1024,
            require_checkin: false,
            rate_limit: 120,
            max_wait: Duration::from_secs(10 * 60),
            checkin_ttl: Duration::from_secs(24 * 3600),
            max_checkins: 10_000,
        }
    }
}

/// Where the messaging and bus state lives.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum StoreConfig {
    /// In this process: nothing to install, gone at restart, one instance only.
    #[default]
    Memory,
    /// In Redis, shared by every gateway instance that names the same server and prefix.
    Redis {
        /// `redis://[user:password@]host:port[/db]`; may hold a password.
        url: Secret,
        /// Every key starts with `{key_prefix}:`, so instances sharing a prefix
        /// form one messaging system and others stay apart.
        key_prefix: String,
    },
}

impl StoreConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis { .. } => "redis",
        }
    }
}

/// `[bus]`: the priority message bus (stored in the `[messaging]` store).
#[derive(Clone, Debug, PartialEq)]
pub struct BusConfig {
    /// Whether the bus tools are mounted (the Rust API and the `queue`
    /// tracing target publish only when they are).
    pub enabled: bool,
    /// How many messages the history keeps.
    pub history: usize,
    /// Messages one client may publish per minute (per instance); 0 is unlimited.
    pub rate_limit: u32,
    /// The largest message content accepted, in bytes.
    pub max_message_bytes: usize,
    /// The largest `metadata` accepted, in bytes of compact JSON.
    pub max_metadata_bytes: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            history: 1000,
            rate_limit: 60,
            max_message_bytes: 16 * 1024,
            max_metadata_bytes: 4 * 1024,
        }
    }
}
/// What clients see of a backend that is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DownBackends {
    /// Its tools, prompts and resources leave the lists (clients are told).
    #[default]
    Hide,
    /// They stay listed, and calls answer a clear error saying it is down.
    Error,
}

/// `[backends.NAME]`: one mounted MCP server.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    /// Put before every tool and prompt name (with the separator) and every
    /// resource URI (with `+`). Empty exposes names bare.
    pub prefix: String,
    pub enabled: bool,
    /// Per-call timeout for requests forwarded to this backend.
    pub timeout: Duration,
    pub transport: TransportConfig,
    pub isolation: Isolation,
    pub tools: NameFilter,
    pub prompts: NameFilter,
    /// At most this many requests in flight to this backend at once; more
    /// wait for a free slot (within the call's timeout). `None`: no limit.
    pub max_concurrent: Option<usize>,
    /// With `isolation = "per_session"`: at most this many sessions have their
    /// own connection (process) at once; past it a session's call gets a
    /// clear error instead of a new process.
    pub max_sessions: usize,
    /// How the gateway connects: `initialize` first (the default) or
    /// `server/discover` first (2026-07-28), each falling back to the other.
    pub lifecycle: Lifecycle,
    /// Whether the gateway serves this backend's tool calls as tasks (the
    /// `io.modelcontextprotocol/tasks` extension), run by the job queue.
    pub tasks: TaskSupport,
}

/// `lifecycle` of a stdio or streamable-HTTP backend: which protocol era
/// the gateway tries first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lifecycle {
    /// `initialize` at 2025-11-25; `server/discover` if the backend refuses it.
    #[default]
    Initialize,
    /// `server/discover` at 2026-07-28; `initialize` if the backend does not
    /// know it. For a backend that speaks both and offers more to 2026-07-28
    /// clients (tools that ask with `InputRequired`).
    Discover,
}

/// `tasks` of a backend: when a tool call becomes a task of the job queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskSupport {
    /// Never: calls are answered when they end (the default).
    #[default]
    Forbidden,
    /// When the request declares the tasks extension; otherwise answered inline.
    Optional,
    /// Always: a request that does not declare the extension is refused
    /// with -32021 (missing required client capability).
    Required,
}

/// The default of `max_sessions` for per-session backends.
pub const DEFAULT_MAX_SESSIONS: usize = 32;

/// `[auth]`: bearer tokens and OAuth access tokens. With neither, the
/// gateway is open to anyone who can reach it (bind it to loopback).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
    /// `[auth.oauth]`: JWT access tokens from an issuer.
    pub oauth: Option<super::OAuthConfig>,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.oauth.is_some()
    }
}

/// `[[auth.tokens]]`: one client's credential and what it may use.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenConfig {
    /// The identity the token proves: in logs, metrics and `_meta` for built-in sets.
    pub client_id: String,
    pub token: Secret,
    /// Globs over backend names (built-in sets are `@name`); `None`: every backend.
    pub backends: Option<NameFilter>,
    /// Globs over exposed tool names; `None`: every tool of an allowed backend.
    pub tools: Option<NameFilter>,
    /// May use the admin routes (`/admin/*`), see every backend and session
    /// in status, and every client's entries in the audit log; `false`
    /// unless the token says `admin = true`.
    pub admin: bool,
}

/// `[limits]`: every limit is off when unset, except the global concurrency cap.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    /// The longest one MCP request may take end to end, progress or not.
    pub request_timeout: Option<Duration>,
    /// MCP requests in flight at once over all clients.
    pub max_concurrent_requests: Option<usize>,
    /// MCP requests in flight at once per client. Unset in the file, it is
    /// a quarter of `max_concurrent_requests` (at least 1), so one client
    /// cannot hold every slot; see [`LimitsConfig::fair_share`].
    pub max_concurrent_per_client: Option<usize>,
    /// Sustained MCP requests per second per client (token bucket).
    pub rate_limit_per_second: Option<f64>,
    /// Requests a client may make in a burst above the sustained rate.
    pub rate_limit_burst: Option<u32>,
    /// Live client sessions at once; past it a new `initialize` is refused.
    pub max_sessions: usize,
}

impl LimitsConfig {
    /// The default share of the global cap one client may hold: a quarter,
    /// at least 1. `None` when that would equal the global cap itself (a
    /// cap of 1), where a per-client cap protects nobody.
    pub fn fair_share(max_concurrent_requests: Option<usize>) -> Option<usize> {
        let global = max_concurrent_requests?;
        let share = (global / 4).max(1);
        (share < global).then_some(share)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            request_timeout: None,
            max_concurrent_requests: Some(1024),
            max_concurrent_per_client: Self::fair_share(Some(1024)),
            rate_limit_per_second: None,
            rate_limit_burst: None,
            max_sessions: 10_000,
        }
    }
}

/// Whether client sessions share one backend connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// One connection (one child process) for every client session.
    #[default]
    Shared,
    /// A connection per client session, opened on its first use and closed
    /// when the session ends.
    PerSession,
}

/// `inherit_env` of a stdio backend: which of the gateway's variables its
/// child gets besides the base list and its own `env` table.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum InheritEnv {
    /// Only the base list (`false`, or the key left out).
    #[default]
    Base,
    /// Every variable of the gateway (`true`).
    All,
    /// The base list and these names.
    Names(Vec<String>),
}

/// How to reach a backend.
#[derive(Clone, Debug, PartialEq)]
pub enum TransportConfig {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
        /// What the child takes from the gateway's environment besides the
        /// base list (see `backend::spawn`).
        inherit_env: InheritEnv,
    },
    /// Streamable HTTP.
    Http {
        url: String,
        headers: BTreeMap<String, Secret>,
    },
    /// The legacy HTTP+SSE transport (protocol 2024-11-05).
    Sse {
        url: String,
        headers: BTreeMap<String, Secret>,
    },
    /// A built-in tool set served in process (see `crate::builtin`); never
    /// written in a config file.
    Builtin { set: String },
}

impl TransportConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
            Self::Sse { .. } => "sse",
            Self::Builtin { .. } => "builtin",
        }
    }

    /// A one-line description for summaries and logs; never includes header
    /// values, values that came from the environment, URL credentials or
    /// query values.
    pub fn describe(&self) -> String {
        match self {
            Self::Stdio { command, args, .. } => {
                let mut s = super::redact::redact(command).into_owned();
                for a in args {
                    s.push(' ');
                    s.push_str(&super::redact::redact(a));
                }
                s
            }
            Self::Http { url, .. } | Self::Sse { url, .. } => super::redact::redact_url(url),
            Self::Builtin { set } => format!("built-in {set}"),
        }
    }
}

/// A string that may hold a credential (header values, tokens): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
