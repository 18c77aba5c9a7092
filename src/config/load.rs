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
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::auth::{RawAuth, build_auth, unauthenticated_exposure};
use super::backend::{RawBackend, build_backend};
use super::interpolate::interpolate;
use super::model::*;
use super::server::{RawLimits, RawServer, build_limits, build_server};

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

    /// How many errors so far: a part is built only if it added none.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.dedup_by(|a, b| a.1 == b.1);
        ConfigErrors(self.errors.into_iter().map(|(_, e)| e).collect())
    }
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

/// Every top-level section, read but not yet checked against the others.
#[derive(Default)]
struct Sections<'a> {
    server: RawServer,
    auth: RawAuth,
    /// `[auth.oauth]`, taken out of `[auth]` and read by `super::oauth`.
    oauth: Option<Spanned<DeValue<'a>>>,
    limits: RawLimits,
    backends: Vec<(String, Range<usize>, RawBackend)>,
    messaging: MessagingConfig,
    bus: BusConfig,
    jobs: super::JobsConfig,
    sessions: SessionsConfig,
    /// Kept raw: `[audit]` is read together with the environment.
    audit: Option<Spanned<DeValue<'a>>>,
}

fn sections<'a>(root: DeTable<'a>, cx: &mut Cx<'_>, base_dir: Option<&Path>) -> Sections<'a> {
    let mut s = Sections::default();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "server" => {
                if let Some(v) = deserialize(value, cx) {
                    s.server = v;
                }
            }
            "auth" => {
                let mut value = value;
                s.oauth = super::oauth::take(&mut value);
                if let Some(v) = deserialize(value, cx) {
                    s.auth = v;
                }
            }
            "limits" => {
                if let Some(v) = deserialize(value, cx) {
                    s.limits = v;
                }
            }
            "backends" => backend_tables(value, cx, &mut s.backends),
            "messaging" => {
                if let Some(m) = super::messaging::messaging(value, cx) {
                    s.messaging = m;
                }
            }
            "bus" => {
                if let Some(b) = super::messaging::bus(value, cx) {
                    s.bus = b;
                }
            }
            "audit" => s.audit = Some(value),
            "jobs" => {
                if let Some(j) = super::jobs::jobs(value, cx, base_dir) {
                    s.jobs = j;
                }
            }
            "sessions" => {
                if let Some(v) = super::sessions::sessions(value, cx) {
                    s.sessions = v;
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
    s
}

/// Each `[backends.NAME]` table on its own, so one bad backend does not hide another's errors.
fn backend_tables(
    value: Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
    out: &mut Vec<(String, Range<usize>, RawBackend)>,
) {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => {
            for (name, body) in table {
                let name_span = name.span();
                let name = name.into_inner().into_owned();
                if let Some(raw) = deserialize::<RawBackend>(body, cx) {
                    out.push((name, name_span, raw));
                }
            }
        }
        other => cx.error(
            span,
            format!("`backends` must be a table, found {}", other.type_str()),
        ),
    }
}

fn build(
    root: DeTable<'_>,
    cx: &mut Cx<'_>,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let raw = sections(root, cx, base_dir);
    let listen_span = raw.server.listen.as_ref().map(|l| l.span());
    let server = build_server(raw.server, cx);
    let oauth = super::oauth::oauth(raw.oauth, cx);
    let auth = build_auth(raw.auth, oauth, cx);
    if let Some(span) = listen_span
        && let Some(message) = unauthenticated_exposure(&server, &auth, server.listen)
    {
        cx.error(span, message);
    }
    let mut backends = BTreeMap::new();
    let mut locations = BTreeMap::new();
    let mut prefixes: HashMap<String, String> = HashMap::new();
    for (name, name_span, b) in raw.backends {
        locations.insert(name.clone(), cx.location(name_span.start));
        if let Some(span) = super::backend::tasks_span(&b)
            && !raw.jobs.enabled
        {
            cx.error(
                span,
                format!("backend `{name}` serves calls as tasks, which the job queue runs: add a `[jobs]` section (or set `tasks = \"forbidden\"`)"),
            );
        }
        if let Some(b) = build_backend(&name, name_span, b, &server, cx, base_dir, &mut prefixes) {
            backends.insert(name, b);
        }
    }
    Config {
        server,
        backends,
        locations,
        messaging: raw.messaging,
        bus: raw.bus,
        audit: super::audit::audit(raw.audit, cx, base_dir, env),
        auth,
        limits: build_limits(raw.limits, cx),
        jobs: raw.jobs,
        sessions: raw.sessions,
    }
}

pub(super) fn positive(raw: &Option<Spanned<i64>>, key: &str, cx: &mut Cx<'_>) -> Option<usize> {
    let raw = raw.as_ref()?;
    match usize::try_from(*raw.get_ref()) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            cx.error(raw.span(), format!("{key} must be at least 1"));
            None
        }
    }
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

/// The errors of `text` as `gateway.toml`, one line each; none when it loads.
#[cfg(test)]
pub(super) fn test_errors(text: &str) -> Vec<String> {
    match parse_str(text, "gateway.toml", None) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
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
mod tests;
