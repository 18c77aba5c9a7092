//! The `[audit]` section and the environment variables that override it.
//!
//! The variables are the ones deployments of this kind of logger already set
//! (`ENABLE_LOCAL_LOGGING`, `LOG_DESTINATION_TYPE`, `KAFKA_BOOTSTRAP_SERVERS`,
//! …); they win over the file. A value from the file is reported at its
//! `file:line:col`; a value from the environment by the variable's name.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::load::{Cx, deserialize, duration};
use super::model::Secret;

mod production;
use production::production;

/// `[audit]`: the audit log. Off unless the section (or an `ENABLE_*_LOGGING`
/// variable) turns it on.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditConfig {
    /// The queryable store `query_logs` and `GET /api/v1/logs` read.
    pub local: LocalStore,
    /// Where entries go for the long term, besides the local store.
    pub production: Option<Production>,
    /// JSON lines on stderr as well.
    pub stderr: bool,
    /// A request's answer waits until its entry is written to every
    /// destination (or finally failed), so no answered call goes unaudited
    /// when the instance dies.
    pub durable: bool,
    /// Entries waiting per destination; more are dropped (and counted).
    pub queue_size: usize,
    pub batch_size: usize,
    /// The longest an entry waits for its batch to fill.
    pub batch_interval: Duration,
    /// Tries per batch, the first included.
    pub retry_attempts: u32,
    pub retry_delay: Duration,
    /// Words added to the built-in list of secret-looking argument names.
    pub redact_keys: Vec<String>,
    /// Argument strings longer than this are cut.
    pub max_arg_chars: usize,
    /// `output_summary` is the first this-many characters of the result's text.
    pub summary_chars: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            local: LocalStore::None,
            production: None,
            stderr: false,
            durable: false,
            queue_size: 10_000,
            batch_size: 500,
            batch_interval: Duration::from_millis(100),
            retry_attempts: 3,
            retry_delay: Duration::from_millis(200),
            redact_keys: Vec::new(),
            max_arg_chars: 2048,
            summary_chars: 500,
        }
    }
}

impl AuditConfig {
    /// Whether any entry is written anywhere.
    pub fn enabled(&self) -> bool {
        self.local != LocalStore::None || self.production.is_some() || self.stderr
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum LocalStore {
    None,
    Sqlite { path: PathBuf, retention_days: u32 },
    Postgres { url: Secret },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Production {
    Kafka {
        bootstrap_servers: Vec<String>,
        topic: String,
        /// Partitions of the topic when we create it; entries are spread by key.
        partitions: i32,
    },
    Elasticsearch {
        hosts: Vec<String>,
        index_prefix: String,
        api_key: Option<Secret>,
    },
    Postgres {
        url: Secret,
    },
    Http {
        url: String,
        api_key: Option<Secret>,
    },
}

impl Production {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kafka { .. } => "kafka",
            Self::Elasticsearch { .. } => "elasticsearch",
            Self::Postgres { .. } => "postgres",
            Self::Http { .. } => "http",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    local: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    retention_days: Option<Spanned<i64>>,
    production: Option<Spanned<String>>,
    stderr: Option<bool>,
    durable: Option<bool>,
    queue_size: Option<Spanned<i64>>,
    batch_size: Option<Spanned<i64>>,
    batch_interval: Option<Spanned<String>>,
    retry_attempts: Option<Spanned<i64>>,
    retry_delay: Option<Spanned<String>>,
    #[serde(default)]
    redact_keys: Vec<String>,
    max_arg_chars: Option<Spanned<i64>>,
    summary_chars: Option<Spanned<i64>>,
    #[serde(default)]
    kafka: RawKafka,
    #[serde(default)]
    elasticsearch: RawEs,
    #[serde(default)]
    postgres: RawPg,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    bootstrap_servers: Option<Vec<String>>,
    topic: Option<String>,
    partitions: Option<Spanned<i64>>,
    acks: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEs {
    hosts: Option<Vec<String>>,
    index_prefix: Option<String>,
    api_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPg {
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Option<String>,
    api_key: Option<String>,
}

/// A setting and where it came from, for the error that names it.
struct Src<T> {
    value: T,
    span: Option<Range<usize>>,
    var: Option<&'static str>,
}

impl<T> Src<T> {
    fn file(value: T, span: Option<Range<usize>>) -> Self {
        Self {
            value,
            span,
            var: None,
        }
    }
    fn env(value: T, var: &'static str) -> Self {
        Self {
            value,
            span: None,
            var: Some(var),
        }
    }
}

fn report<T>(cx: &mut Cx<'_>, at: &Src<T>, message: String) {
    match (&at.span, at.var) {
        (_, Some(var)) => cx.general(format!("environment variable {var}: {message}")),
        (Some(span), None) => cx.error(span.clone(), message),
        (None, None) => cx.general(format!("[audit]: {message}")),
    }
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_bool(lookup: Lookup<'_>, var: &'static str, cx: &mut Cx<'_>) -> Option<bool> {
    let v = lookup(var)?;
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        other => {
            cx.general(format!(
                "environment variable {var}: \"{other}\" is not a boolean (true or false)"
            ));
            None
        }
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn count(raw: &Option<Spanned<i64>>, key: &str, max: i64, cx: &mut Cx<'_>) -> Option<usize> {
    let raw = raw.as_ref()?;
    match *raw.get_ref() {
        n @ 1.. if n <= max => Some(n as usize),
        _ => {
            cx.error(raw.span(), format!("{key} must be between 1 and {max}"));
            None
        }
    }
}

/// `[audit]` (or its absence, `None`), with the environment applied over it.
pub(super) fn audit(
    value: Option<Spanned<DeValue<'_>>>,
    cx: &mut Cx<'_>,
    base_dir: Option<&Path>,
    lookup: Lookup<'_>,
) -> AuditConfig {
    let present = value.is_some();
    let raw: RawAudit = match value {
        Some(v) => match deserialize(v, cx) {
            Some(r) => r,
            None => return AuditConfig::default(),
        },
        None => RawAudit::default(),
    };
    let mut a = AuditConfig::default();
    a.stderr = raw.stderr.unwrap_or(false);
    a.durable = raw.durable.unwrap_or(false);
    a.queue_size = count(&raw.queue_size, "queue_size", 10_000_000, cx).unwrap_or(a.queue_size);
    a.batch_size = count(&raw.batch_size, "batch_size", 100_000, cx).unwrap_or(a.batch_size);
    a.max_arg_chars =
        count(&raw.max_arg_chars, "max_arg_chars", 1 << 20, cx).unwrap_or(a.max_arg_chars);
    a.summary_chars =
        count(&raw.summary_chars, "summary_chars", 1 << 20, cx).unwrap_or(a.summary_chars);
    a.batch_interval = duration(&raw.batch_interval, a.batch_interval, cx);
    a.retry_delay = duration(&raw.retry_delay, a.retry_delay, cx);
    a.redact_keys = raw.redact_keys.clone();
    if let Some(n) = &raw.retry_attempts {
        match u32::try_from(*n.get_ref()) {
            Ok(n @ 1..=100) => a.retry_attempts = n,
            _ => cx.error(n.span(), "retry_attempts must be between 1 and 100"),
        }
    }
    if let Some(n) = env_u64(lookup, "LOG_RETRY_ATTEMPTS", 1, 100, cx) {
        a.retry_attempts = n as u32;
    }
    if let Some(ms) = env_u64(lookup, "LOG_RETRY_DELAY_MS", 0, 3_600_000, cx) {
        a.retry_delay = Duration::from_millis(ms);
    }

    // Which local store: the file's choice, then ENABLE_LOCAL_LOGGING.
    let mut local = Src::file(
        raw.local
            .as_ref()
            .map(|l| l.get_ref().clone())
            .unwrap_or_else(|| if present { "sqlite" } else { "none" }.into()),
        raw.local.as_ref().map(|l| l.span()),
    );
    match env_bool(lookup, "ENABLE_LOCAL_LOGGING", cx) {
        Some(false) => local = Src::env("none".into(), "ENABLE_LOCAL_LOGGING"),
        Some(true) if local.value == "none" => {
            local = Src::env("sqlite".into(), "ENABLE_LOCAL_LOGGING")
        }
        _ => {}
    }
    let pg_url = lookup("POSTGRES_DSN")
        .map(|u| Src::env(u, "POSTGRES_DSN"))
        .or_else(|| raw.postgres.url.clone().map(|u| Src::file(u, None)));
    a.local = local_store(&raw, local, pg_url.as_ref(), base_dir, cx);

    a.production = production(&raw, cx, lookup, pg_url);
    if let (LocalStore::Postgres { url }, Some(Production::Postgres { url: p })) =
        (&a.local, &a.production)
        && url == p
    {
        cx.general(
            "[audit]: the production destination is the local PostgreSQL store itself; set `production = \"none\"`".into(),
        );
    }
    a
}

/// The local store chosen (`none`, `sqlite` or `postgres`) with its settings.
fn local_store(
    raw: &RawAudit,
    local: Src<String>,
    pg_url: Option<&Src<String>>,
    base_dir: Option<&Path>,
    cx: &mut Cx<'_>,
) -> LocalStore {
    match local.value.as_str() {
        "none" => LocalStore::None,
        "sqlite" => {
            let file = raw
                .path
                .as_ref()
                .map_or("manifold-audit.db", |p| p.get_ref());
            let path = PathBuf::from(file);
            let path = match base_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path,
            };
            let mut retention_days = 30;
            if let Some(n) = &raw.retention_days {
                match u32::try_from(*n.get_ref()) {
                    Ok(n @ 1..=36_500) => retention_days = n,
                    _ => cx.error(n.span(), "retention_days must be between 1 and 36500"),
                }
            }
            LocalStore::Sqlite {
                path,
                retention_days,
            }
        }
        "postgres" => match pg_url {
            Some(url) => LocalStore::Postgres {
                url: Secret::new(url.value.clone()),
            },
            None => {
                report(
                    cx,
                    &local,
                    "`local = \"postgres\"` needs [audit.postgres] url (or POSTGRES_DSN)".into(),
                );
                LocalStore::None
            }
        },
        other => {
            report(
                cx,
                &local,
                format!(
                    "unknown local store \"{other}\" (expected \"sqlite\", \"postgres\" or \"none\")"
                ),
            );
            LocalStore::None
        }
    }
}

fn env_u64(
    lookup: Lookup<'_>,
    var: &'static str,
    min: u64,
    max: u64,
    cx: &mut Cx<'_>,
) -> Option<u64> {
    let v = lookup(var)?;
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            cx.general(format!(
                "environment variable {var}: \"{v}\" must be a whole number between {min} and {max}"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
