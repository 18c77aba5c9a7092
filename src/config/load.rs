//! Text → [`Config`]: parse, interpolate `${VAR}`, deserialize, validate.
//!
//! Every error is collected rather than returned at the first one, and each
//! carries the `file:line:col` of the value it is about. Syntax errors are
//! recovered by the TOML parser; each section and each backend table is then
//! deserialized on its own, so one bad backend does not hide the errors of
//! another. This module must not start anything: it only reads text.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::model::*;

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a config file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Reads and validates a config file. Relative `cwd`s are resolved against
/// the file's directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            location: None,
            message: format!("{label}: cannot read config: {e}"),
        }])
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_str(text, &label, path.parent()),
        Err(e) => Err(not_utf8(&bytes, e, &label)),
    }
}

/// A file that is not UTF-8, located at its first bad byte (an editor that
/// saved Latin-1 shows where to look).
fn not_utf8(bytes: &[u8], e: std::str::Utf8Error, label: &str) -> ConfigErrors {
    let valid = &bytes[..e.valid_up_to()];
    let mut cx = Cx {
        // The prefix before the first bad byte is valid UTF-8 by definition.
        text: std::str::from_utf8(valid).unwrap_or_default(),
        label,
        errors: Vec::new(),
    };
    cx.error(
        valid.len()..valid.len(),
        "the file is not valid UTF-8 (save it as UTF-8)",
    );
    cx.finish()
}

/// Parses config text; `label` names the file in messages.
pub fn parse_str(text: &str, label: &str, base_dir: Option<&Path>) -> Result<Config, ConfigErrors> {
    parse_with_env(text, label, base_dir, &|name| std::env::var(name).ok())
}

/// [`parse_str`] with the environment given as a function (tests).
fn parse_with_env(
    text: &str,
    label: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut cx = Cx {
        text,
        label,
        errors: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            cx.toml_error(&e);
        }
        return Err(cx.finish());
    }
    let mut root = root.into_inner();
    // Every value taken from the environment is a potential secret.
    let from_env = std::cell::RefCell::new(Vec::new());
    let lookup = |name: &str| {
        let value = env(name);
        from_env.borrow_mut().extend(value.clone());
        value
    };
    for (_, v) in root.iter_mut() {
        interpolate(v, &mut cx, &lookup);
    }
    // Remembered before validation, so that no error message prints them.
    super::redact::remember(from_env.into_inner());
    let config = build(root, &mut cx, base_dir, env);
    super::redact::remember(config.backends.values().flat_map(|b| match &b.transport {
        TransportConfig::Http { url, .. } | TransportConfig::Sse { url, .. } => {
            super::redact::url_secrets(url)
        }
        _ => Vec::new(),
    }));
    if cx.errors.is_empty() {
        Ok(config)
    } else {
        Err(cx.finish())
    }
}

pub(super) struct Cx<'a> {
    text: &'a str,
    label: &'a str,
    errors: Vec<(usize, ConfigError)>,
}

impl Cx<'_> {
    fn location(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: self.label.to_string(),
            line,
            column,
        }
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let location = Some(self.location(span.start));
        // A message may quote a value, and the value may come from the environment.
        let message = super::redact::redact(&message.into()).into_owned();
        self.errors
            .push((span.start, ConfigError { location, message }));
    }

    /// An error with no place in the file (an environment variable's).
    pub(super) fn general(&mut self, message: String) {
        self.errors.push((
            usize::MAX,
            ConfigError {
                location: None,
                message,
            },
        ));
    }

    fn toml_error(&mut self, e: &toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        self.error(span, e.message().trim().to_string());
    }

    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.dedup_by(|a, b| a.1 == b.1);
        ConfigErrors(self.errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// Replaces `${NAME}` in every string value; `$${` is a literal `${`.
fn interpolate(
    value: &mut Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains("${") => match expand(s, lookup) {
            Ok(expanded) => *s = expanded.into(),
            Err(msg) => cx.error(span, msg),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate(item, cx, lookup);
            }
        }
        DeValue::Table(table) => {
            for (_, v) in table.iter_mut() {
                interpolate(v, cx, lookup);
            }
        }
        _ => {}
    }
}

fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in \"{s}\""))?;
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "invalid environment variable name `{name}` in \"{s}\""
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    separator: Option<Spanned<String>>,
    session_idle_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    call_timeout: Option<Spanned<String>>,
    relay_timeout: Option<Spanned<String>>,
    restart_min_backoff: Option<Spanned<String>>,
    restart_max_backoff: Option<Spanned<String>>,
    health_interval: Option<Spanned<String>>,
    health_timeout: Option<Spanned<String>>,
    down_backends: Option<RawDownBackends>,
    worker_threads: Option<Spanned<i64>>,
    max_request_bytes: Option<Spanned<i64>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    allow_unauthenticated: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    instance_id: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    client_id: Spanned<String>,
    token: Spanned<String>,
    backends: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<String>>>,
    admin: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    request_timeout: Option<Spanned<String>>,
    max_concurrent_requests: Option<Spanned<i64>>,
    max_concurrent_per_client: Option<Spanned<i64>>,
    rate_limit_per_second: Option<Spanned<f64>>,
    rate_limit_burst: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
    Stdio,
    Http,
    Sse,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    transport: Spanned<TransportKind>,
    command: Option<Spanned<String>>,
    args: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    cwd: Option<Spanned<String>>,
    inherit_env: Option<Spanned<toml::Value>>,
    url: Option<Spanned<String>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    enabled: Option<bool>,
    prefix: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    isolation: Option<RawIsolation>,
    tools: Option<RawFilter>,
    prompts: Option<RawFilter>,
    max_concurrent: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawDownBackends {
    Hide,
    Error,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawIsolation {
    Shared,
    PerSession,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
}

pub(super) fn deserialize<'de, T: Deserialize<'de>>(
    value: Spanned<DeValue<'de>>,
    cx: &mut Cx<'_>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.toml_error(&e);
            None
        }
    }
}

fn build(
    root: DeTable<'_>,
    cx: &mut Cx<'_>,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let mut raw_audit = None;
    let mut raw_server = RawServer::default();
    let mut raw_auth = RawAuth::default();
    let mut raw_limits = RawLimits::default();
    let mut raw_backends = Vec::new();
    let mut messaging = MessagingConfig::default();
    let mut bus = BusConfig::default();
    let mut jobs = super::JobsConfig::default();
    let mut sessions = SessionsConfig::default();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "server" => {
                if let Some(s) = deserialize(value, cx) {
                    raw_server = s;
                }
            }
            "auth" => {
                if let Some(a) = deserialize(value, cx) {
                    raw_auth = a;
                }
            }
            "limits" => {
                if let Some(l) = deserialize(value, cx) {
                    raw_limits = l;
                }
            }
            "backends" => {
                let span = value.span();
                match value.into_inner() {
                    DeValue::Table(table) => {
                        for (name, body) in table {
                            let name_span = name.span();
                            let name = name.into_inner().into_owned();
                            if let Some(raw) = deserialize::<RawBackend>(body, cx) {
                                raw_backends.push((name, name_span, raw));
                            }
                        }
                    }
                    other => cx.error(
                        span,
                        format!("`backends` must be a table, found {}", other.type_str()),
                    ),
                }
            }
            "messaging" => {
                if let Some(m) = super::messaging::messaging(value, cx) {
                    messaging = m;
                }
            }
            "bus" => {
                if let Some(b) = super::messaging::bus(value, cx) {
                    bus = b;
                }
            }
            "audit" => raw_audit = Some(value),
            "sessions" => {
                if let Some(v) = super::sessions::sessions(value, cx) {
                    sessions = v;
                }
            }
            "jobs" => {
                if let Some(j) = super::jobs::jobs(value, cx, base_dir) {
                    jobs = j;
                }
            }
            other => cx.error(
                key.span(),
                format!(
                    "unknown section `{other}` (expected `server`, `auth`, `limits`, `backends`, `messaging`, `bus`, `jobs`, `sessions` or `audit`)"
                ),
            ),
        }
    }

    let listen_span = raw_server.listen.as_ref().map(|l| l.span());
    let server = build_server(raw_server, cx);
    let auth = build_auth(raw_auth, cx);
    if let Some(span) = listen_span
        && let Some(message) = unauthenticated_exposure(&server, &auth, server.listen)
    {
        cx.error(span, message);
    }
    let mut backends = BTreeMap::new();
    let mut locations = BTreeMap::new();
    let mut prefixes: HashMap<String, String> = HashMap::new();
    for (name, name_span, raw) in raw_backends {
        locations.insert(name.clone(), cx.location(name_span.start));
        if let Some(b) = build_backend(&name, name_span, raw, &server, cx, base_dir, &mut prefixes)
        {
            backends.insert(name, b);
        }
    }
    Config {
        server,
        backends,
        locations,
        messaging,
        bus,
        audit: super::audit::audit(raw_audit, cx, base_dir, env),
        auth,
        limits: build_limits(raw_limits, cx),
        jobs,
        sessions,
    }
}

/// Globs as an allow-list: an empty list allows nothing.
fn allow_list(raw: Option<Vec<Spanned<String>>>, cx: &mut Cx<'_>) -> Option<NameFilter> {
    let raw = raw?;
    let mut bad = false;
    for p in &raw {
        if let Err(e) = Glob::new(p.get_ref()) {
            cx.error(
                p.span(),
                format!("invalid glob pattern \"{}\": {}", p.get_ref(), e.kind()),
            );
            bad = true;
        }
    }
    let patterns: Vec<String> = raw.into_iter().map(Spanned::into_inner).collect();
    let filter = if bad {
        NameFilter::default()
    } else if patterns.is_empty() {
        NameFilter::new(Vec::new(), vec!["*".into()]).unwrap_or_default()
    } else {
        NameFilter::new(patterns, Vec::new()).unwrap_or_default()
    };
    Some(filter)
}

fn build_auth(raw: RawAuth, cx: &mut Cx<'_>) -> AuthConfig {
    let mut tokens: Vec<TokenConfig> = Vec::new();
    for t in raw.tokens {
        let id = t.client_id.get_ref();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        {
            cx.error(
                t.client_id.span(),
                format!("client_id \"{id}\" must be non-empty and use only letters, digits, `_`, `-`, `.` or `@`"),
            );
        } else if tokens.iter().any(|o| o.client_id == *id) {
            cx.error(
                t.client_id.span(),
                format!("client_id \"{id}\" is declared twice"),
            );
        }
        // The token itself is never echoed, not even in config errors.
        let secret = t.token.get_ref();
        if secret.len() < 8 || secret.chars().any(|c| !c.is_ascii_graphic()) {
            cx.error(
                t.token.span(),
                format!("the token of client `{id}` must be at least 8 printable ASCII characters without spaces"),
            );
        } else if tokens.iter().any(|o| o.token.expose() == secret) {
            cx.error(
                t.token.span(),
                format!("client `{id}` has the same token as another client"),
            );
        }
        let backends = allow_list(t.backends, cx);
        let tools = allow_list(t.tools, cx);
        tokens.push(TokenConfig {
            client_id: id.clone(),
            token: Secret::new(t.token.into_inner()),
            backends,
            tools,
            admin: t.admin.unwrap_or(false),
        });
    }
    AuthConfig { tokens }
}

fn positive(raw: &Option<Spanned<i64>>, key: &str, cx: &mut Cx<'_>) -> Option<usize> {
    let raw = raw.as_ref()?;
    match usize::try_from(*raw.get_ref()) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            cx.error(raw.span(), format!("{key} must be at least 1"));
            None
        }
    }
}

fn build_limits(raw: RawLimits, cx: &mut Cx<'_>) -> LimitsConfig {
    let mut l = LimitsConfig::default();
    if raw.request_timeout.is_some() {
        l.request_timeout = Some(duration(&raw.request_timeout, Duration::ZERO, cx));
    }
    if raw.max_concurrent_requests.is_some() {
        l.max_concurrent_requests =
            positive(&raw.max_concurrent_requests, "max_concurrent_requests", cx);
    }
    l.max_concurrent_per_client = match &raw.max_concurrent_per_client {
        Some(_) => positive(
            &raw.max_concurrent_per_client,
            "max_concurrent_per_client",
            cx,
        ),
        None => LimitsConfig::fair_share(l.max_concurrent_requests),
    };
    if let Some(n) = positive(&raw.max_sessions, "max_sessions", cx) {
        l.max_sessions = n;
    }
    if let Some(rate) = &raw.rate_limit_per_second {
        let r = *rate.get_ref();
        if r.is_finite() && r > 0.0 {
            l.rate_limit_per_second = Some(r);
        } else {
            cx.error(
                rate.span(),
                "rate_limit_per_second must be greater than zero",
            );
        }
    }
    if let Some(burst) = positive(&raw.rate_limit_burst, "rate_limit_burst", cx) {
        if l.rate_limit_per_second.is_none()
            && let Some(span) = raw.rate_limit_burst.as_ref().map(|b| b.span())
        {
            cx.error(span, "rate_limit_burst needs rate_limit_per_second");
        }
        l.rate_limit_burst = Some(u32::try_from(burst).unwrap_or(u32::MAX));
    }
    l
}

pub(super) fn duration(
    raw: &Option<Spanned<String>>,
    default: Duration,
    cx: &mut Cx<'_>,
) -> Duration {
    let Some(raw) = raw else { return default };
    match humantime::parse_duration(raw.get_ref().trim()) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            cx.error(raw.span(), "duration must be greater than zero");
            default
        }
        Err(e) => {
            cx.error(
                raw.span(),
                format!(
                    "invalid duration \"{}\": {e} (write e.g. \"30s\", \"5m\")",
                    raw.get_ref()
                ),
            );
            default
        }
    }
}

fn build_server(raw: RawServer, cx: &mut Cx<'_>) -> ServerConfig {
    let mut s = ServerConfig::default();
    if let Some(listen) = &raw.listen {
        match listen.get_ref().parse() {
            Ok(addr) => s.listen = addr,
            Err(_) => cx.error(
                listen.span(),
                format!(
                    "invalid listen address \"{}\" (expected HOST:PORT, e.g. \"127.0.0.1:8123\")",
                    listen.get_ref()
                ),
            ),
        }
    }
    if let Some(path) = &raw.path {
        if path.get_ref().starts_with('/') && !path.get_ref().contains(char::is_whitespace) {
            s.path = path.get_ref().clone();
        } else {
            cx.error(
                path.span(),
                format!("path \"{}\" must start with `/`", path.get_ref()),
            );
        }
    }
    if let Some(sep) = &raw.separator {
        let v = sep.get_ref();
        if !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            s.separator = v.clone();
        } else {
            cx.error(sep.span(), format!("separator \"{v}\" must be non-empty and use only letters, digits, `_`, `-` or `.`"));
        }
    }
    s.instance_id = match &raw.instance_id {
        Some(id) if super::sessions::valid_instance_id(id.get_ref()) => id.get_ref().clone(),
        Some(id) => {
            cx.error(
                id.span(),
                format!(
                    "instance_id \"{}\" must be 1 to 64 letters, digits, `-` or `_` (it starts every session id)",
                    id.get_ref()
                ),
            );
            s.instance_id.clone()
        }
        None => super::sessions::default_instance_id(s.listen.port()),
    };
    s.drain_timeout = duration(&raw.drain_timeout, s.drain_timeout, cx);
    s.session_idle_timeout = duration(&raw.session_idle_timeout, s.session_idle_timeout, cx);
    s.connect_timeout = duration(&raw.connect_timeout, s.connect_timeout, cx);
    s.call_timeout = duration(&raw.call_timeout, s.call_timeout, cx);
    s.relay_timeout = duration(&raw.relay_timeout, s.relay_timeout, cx);
    s.restart_min_backoff = duration(&raw.restart_min_backoff, s.restart_min_backoff, cx);
    s.restart_max_backoff = duration(&raw.restart_max_backoff, s.restart_max_backoff, cx);
    if s.restart_max_backoff < s.restart_min_backoff
        && let Some(max) = &raw.restart_max_backoff
    {
        cx.error(
            max.span(),
            "restart_max_backoff must not be below restart_min_backoff",
        );
    }
    s.header_timeout = duration(&raw.header_timeout, s.header_timeout, cx);
    s.idle_timeout = duration(&raw.idle_timeout, s.idle_timeout, cx);
    if let Some(n) = positive(&raw.max_connections, "max_connections", cx) {
        s.max_connections = n;
    }
    s.allow_unauthenticated = raw.allow_unauthenticated.unwrap_or(false);
    s.health_interval = duration(&raw.health_interval, s.health_interval, cx);
    s.health_timeout = duration(&raw.health_timeout, s.health_timeout, cx);
    if let Some(d) = raw.down_backends {
        s.down_backends = match d {
            RawDownBackends::Hide => DownBackends::Hide,
            RawDownBackends::Error => DownBackends::Error,
        };
    }
    if let Some(max) = &raw.max_request_bytes {
        match usize::try_from(*max.get_ref()) {
            Ok(n) if n >= 1024 => s.max_request_bytes = n,
            _ => cx.error(max.span(), "max_request_bytes must be at least 1024"),
        }
    }
    if let Some(n) = &raw.worker_threads {
        match usize::try_from(*n.get_ref()) {
            Ok(n @ 1..=1024) => s.worker_threads = Some(n),
            _ => cx.error(n.span(), "worker_threads must be between 1 and 1024"),
        }
    }
    if let Some(hosts) = raw.allowed_hosts {
        s.allowed_hosts = hosts;
    }
    for origin in raw.allowed_origins.unwrap_or_default() {
        let o = origin.get_ref();
        if o != "*" && o != "null" && !o.contains("://") {
            cx.error(
                origin.span(),
                format!("allowed origin \"{o}\" must be `*`, `null` or SCHEME://HOST[:PORT|:*]"),
            );
        }
        s.allowed_origins.push(origin.into_inner());
    }
    s
}

fn valid_ident(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn build_backend(
    name: &str,
    name_span: Range<usize>,
    raw: RawBackend,
    server: &ServerConfig,
    cx: &mut Cx<'_>,
    base_dir: Option<&Path>,
    prefixes: &mut HashMap<String, String>,
) -> Option<BackendConfig> {
    let errors_before = cx.errors.len();
    let sep = &server.separator;
    if name.is_empty() || !valid_ident(name) {
        cx.error(
            name_span.clone(),
            format!("backend name \"{name}\" must use only letters, digits, `_` or `-`"),
        );
    }
    let (prefix, prefix_span) = match &raw.prefix {
        Some(p) => (p.get_ref().clone(), p.span()),
        None => (name.to_string(), name_span.clone()),
    };
    if !valid_ident(&prefix) {
        cx.error(
            prefix_span.clone(),
            format!("prefix \"{prefix}\" must use only letters, digits, `_` or `-`"),
        );
    } else if !prefix.is_empty() && prefix.contains(sep.as_str()) {
        cx.error(prefix_span.clone(), format!("prefix \"{prefix}\" contains the separator \"{sep}\"; rename the backend or set `prefix`"));
    } else if !prefix.is_empty() && prefix.len() + sep.len() >= MAX_EXPOSED_NAME {
        cx.error(prefix_span.clone(), format!("prefix \"{prefix}\" is too long: every exposed name would exceed {MAX_EXPOSED_NAME} characters"));
    }
    let enabled = raw.enabled.unwrap_or(true);
    if enabled && !prefix.is_empty() {
        if let Some(other) = prefixes.get(&prefix) {
            cx.error(
                prefix_span.clone(),
                format!(
                    "backend `{name}` uses prefix \"{prefix}\", already used by backend `{other}`"
                ),
            );
        } else {
            prefixes.insert(prefix.clone(), name.to_string());
        }
    }
    let timeout = duration(&raw.timeout, server.call_timeout, cx);

    let kind = *raw.transport.get_ref();
    let kind_name = match kind {
        TransportKind::Stdio => "stdio",
        TransportKind::Http => "http",
        TransportKind::Sse => "sse",
    };
    let not_for = |cx: &mut Cx<'_>, span: Range<usize>, key: &str| {
        cx.error(
            span,
            format!("`{key}` does not apply to transport \"{kind_name}\""),
        );
    };
    let transport = match kind {
        TransportKind::Stdio => {
            if let Some(u) = &raw.url {
                not_for(cx, u.span(), "url");
            }
            if let Some(h) = &raw.headers {
                not_for(cx, h.span(), "headers");
            }
            let command = match &raw.command {
                Some(c) if !c.get_ref().trim().is_empty() => c.get_ref().clone(),
                Some(c) => {
                    cx.error(c.span(), "`command` must not be empty");
                    String::new()
                }
                None => {
                    cx.error(
                        raw.transport.span(),
                        format!("backend `{name}`: transport \"stdio\" needs `command`"),
                    );
                    String::new()
                }
            };
            let cwd = raw.cwd.as_ref().map(|c| {
                let p = PathBuf::from(c.get_ref());
                match base_dir {
                    Some(base) if p.is_relative() => base.join(p),
                    _ => p,
                }
            });
            TransportConfig::Stdio {
                command,
                args: raw.args.map(Spanned::into_inner).unwrap_or_default(),
                env: raw.env.map(Spanned::into_inner).unwrap_or_default(),
                cwd,
                inherit_env: inherit_env(raw.inherit_env, cx),
            }
        }
        TransportKind::Http | TransportKind::Sse => {
            for (key, span) in [
                ("command", raw.command.as_ref().map(|v| v.span())),
                ("args", raw.args.as_ref().map(|v| v.span())),
                ("env", raw.env.as_ref().map(|v| v.span())),
                ("cwd", raw.cwd.as_ref().map(|v| v.span())),
                ("inherit_env", raw.inherit_env.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    not_for(cx, span, key);
                }
            }
            let url = match &raw.url {
                Some(u) => match url::Url::parse(u.get_ref()) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                        u.get_ref().clone()
                    }
                    Ok(parsed) => {
                        cx.error(
                            u.span(),
                            format!(
                                "url scheme `{}` is not supported (use http or https)",
                                parsed.scheme()
                            ),
                        );
                        String::new()
                    }
                    Err(e) => {
                        let shown = super::redact::redact(u.get_ref()).into_owned();
                        cx.error(u.span(), format!("invalid url \"{shown}\": {e}"));
                        String::new()
                    }
                },
                None => {
                    cx.error(
                        raw.transport.span(),
                        format!("backend `{name}`: transport \"{kind_name}\" needs `url`"),
                    );
                    String::new()
                }
            };
            let mut headers = BTreeMap::new();
            if let Some(h) = raw.headers {
                let span = h.span();
                for (k, v) in h.into_inner() {
                    if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || http::HeaderValue::from_str(&v).is_err()
                    {
                        cx.error(
                            span.clone(),
                            format!("header `{k}` is not a valid HTTP header name and value"),
                        );
                    }
                    headers.insert(k, Secret::new(v));
                }
            }
            if kind == TransportKind::Http {
                TransportConfig::Http { url, headers }
            } else {
                TransportConfig::Sse { url, headers }
            }
        }
    };

    let mut filter = |raw: Option<RawFilter>| -> NameFilter {
        let raw = raw.unwrap_or_default();
        let literal_includes: Vec<(String, Range<usize>)> = raw
            .include
            .iter()
            .filter(|p| !p.get_ref().contains(['*', '?', '[', '{']))
            .map(|p| (p.get_ref().clone(), p.span()))
            .collect();
        for (n, span) in literal_includes {
            let exposed = exposed_len(&prefix, sep, &n);
            if exposed > MAX_EXPOSED_NAME {
                cx.error(span, format!("exposed name \"{}\" is {exposed} characters, over the limit of {MAX_EXPOSED_NAME}", join(&prefix, sep, &n)));
            }
        }
        let mut bad = false;
        for p in raw.include.iter().chain(raw.exclude.iter()) {
            if let Err(e) = Glob::new(p.get_ref()) {
                cx.error(
                    p.span(),
                    format!("invalid glob pattern \"{}\": {}", p.get_ref(), e.kind()),
                );
                bad = true;
            }
        }
        if bad {
            return NameFilter::default();
        }
        let include = raw.include.into_iter().map(Spanned::into_inner).collect();
        let exclude = raw.exclude.into_iter().map(Spanned::into_inner).collect();
        NameFilter::new(include, exclude).unwrap_or_default()
    };
    let tools = filter(raw.tools);
    let prompts = filter(raw.prompts);
    let max_concurrent = positive(&raw.max_concurrent, "max_concurrent", cx);
    let max_sessions = positive(&raw.max_sessions, "max_sessions", cx)
        .unwrap_or(super::model::DEFAULT_MAX_SESSIONS);

    (cx.errors.len() == errors_before).then(|| BackendConfig {
        name: name.to_string(),
        prefix,
        enabled,
        timeout,
        transport,
        isolation: match raw.isolation {
            Some(RawIsolation::PerSession) => Isolation::PerSession,
            _ => Isolation::Shared,
        },
        tools,
        prompts,
        max_concurrent,
        max_sessions,
    })
}

use globset::Glob;

/// Why serving on `listen` with this config would expose every backend to
/// anyone who reaches the port, if it would.
pub fn unauthenticated_exposure(
    server: &ServerConfig,
    auth: &AuthConfig,
    listen: std::net::SocketAddr,
) -> Option<String> {
    (!listen.ip().is_loopback() && !auth.enabled() && !server.allow_unauthenticated).then(|| {
        format!(
            "listening on {listen}, which is not a loopback address, without `[auth]` would let anyone who reaches the port use every backend; add `[[auth.tokens]]` (see docs/operations.md), listen on 127.0.0.1, or set `[server] allow_unauthenticated = true` if something in front of the gateway authenticates clients"
        )
    })
}

/// `inherit_env = true | false | ["NAME", ...]`.
fn inherit_env(raw: Option<Spanned<toml::Value>>, cx: &mut Cx<'_>) -> InheritEnv {
    let Some(raw) = raw else {
        return InheritEnv::Base;
    };
    let span = raw.span();
    let bad = |cx: &mut Cx<'_>, what: String| {
        cx.error(span.clone(), what);
        InheritEnv::Base
    };
    match raw.into_inner() {
        toml::Value::Boolean(true) => InheritEnv::All,
        toml::Value::Boolean(false) => InheritEnv::Base,
        toml::Value::Array(items) => {
            let mut names = Vec::new();
            for item in items {
                match item {
                    toml::Value::String(n)
                        if !n.is_empty() && !n.contains('=') && !n.contains('\0') =>
                    {
                        names.push(n)
                    }
                    other => {
                        return bad(
                            cx,
                            format!("inherit_env: {other} is not an environment variable name"),
                        );
                    }
                }
            }
            InheritEnv::Names(names)
        }
        other => bad(
            cx,
            format!(
                "inherit_env must be true, false or a list of variable names, found {}",
                other.type_str()
            ),
        ),
    }
}

fn exposed_len(prefix: &str, sep: &str, name: &str) -> usize {
    join(prefix, sep, name).chars().count()
}

/// The exposed name of a backend tool or prompt.
pub fn join(prefix: &str, sep: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}{sep}{name}")
    }
}

/// Parses `text` as `g.toml` with the given environment; errors as lines.
#[cfg(test)]
pub(super) fn test_parse_with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    parse_with_env(text, "g.toml", None, &lookup)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse_str(text, "gateway.toml", None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_str(
            "[backends.a]\ntransport = \"stdio\"\ncommand = \"x\"\n",
            "g.toml",
            None,
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8123");
        let a = &c.backends["a"];
        assert_eq!(a.prefix, "a");
        assert_eq!(a.timeout, Duration::from_secs(60));
        assert!(a.enabled);
    }

    #[test]
    fn reports_every_error_with_line_and_column() {
        let text = "[server]\nlisten = \"nope\"\n\n[backends.a]\ntransport = \"stdio\"\ncomand = \"x\"\n\n[backends.b]\ntransport = \"http\"\n\n[backends.c]\ntransport = \"stdio\"\ncommand = \"y\"\nprefix = \"b\"\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("gateway.toml:2:10: invalid listen address"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("gateway.toml:6:1: unknown field `comand`"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].starts_with("gateway.toml:9:13: backend `b`: transport \"http\" needs `url`"),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].starts_with("gateway.toml:14:10: backend `c` uses prefix \"b\""),
            "{}",
            errs[3]
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errs = errors("[server\nlisten = 1\n");
        assert!(!errs.is_empty());
        assert!(errs[0].starts_with("gateway.toml:1:"), "{errs:?}");
    }

    #[test]
    fn env_interpolation_and_unset_variable() {
        let lookup = |n: &str| (n == "HOME_X").then(|| "/h".to_string());
        assert_eq!(expand("a${HOME_X}b$${LIT}", &lookup).unwrap(), "a/hb${LIT}");
        assert_eq!(
            expand("${NOPE}", &lookup).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
        let errs = errors(
            "[backends.a]\ntransport = \"stdio\"\ncommand = \"${MANIFOLD_TEST_SURELY_UNSET}\"\n",
        );
        assert_eq!(
            errs,
            vec!["gateway.toml:3:11: environment variable `MANIFOLD_TEST_SURELY_UNSET` is not set"]
        );
    }

    #[test]
    fn prefix_with_separator_and_long_names() {
        let errs =
            errors("[backends.a]\ntransport = \"stdio\"\ncommand = \"x\"\nprefix = \"my__fs\"\n");
        assert!(errs[0].contains("contains the separator"), "{errs:?}");
        let long = "x".repeat(70);
        let errs = errors(&format!(
            "[backends.a]\ntransport = \"stdio\"\ncommand = \"x\"\ntools = {{ include = [\"{long}\"] }}\n"
        ));
        assert!(errs[0].contains("over the limit of 64"), "{errs:?}");
    }

    #[test]
    fn fields_of_another_transport_are_rejected() {
        let errs = errors(
            "[backends.a]\ntransport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\ncommand = \"x\"\n",
        );
        assert_eq!(
            errs,
            vec!["gateway.toml:4:11: `command` does not apply to transport \"http\""]
        );
    }

    #[test]
    fn unknown_section_is_an_error() {
        let errs = errors("[sever]\nlisten = \"127.0.0.1:1\"\n");
        assert!(
            errs[0].starts_with("gateway.toml:1:2: unknown section `sever`"),
            "{errs:?}"
        );
    }
}
