//! `[backends.NAME]`: one backend's transport, name prefix and filters.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::Glob;
use serde::Deserialize;
use toml::Spanned;

use super::load::{Cx, duration, positive};
use super::model::*;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
    Stdio,
    Http,
    Sse,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
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
    tasks: Option<Spanned<RawTasks>>,
    lifecycle: Option<RawLifecycle>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawLifecycle {
    Initialize,
    Discover,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawTasks {
    Forbidden,
    Optional,
    Required,
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

fn valid_ident(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn build_backend(
    name: &str,
    name_span: Range<usize>,
    raw: RawBackend,
    server: &ServerConfig,
    cx: &mut Cx<'_>,
    base_dir: Option<&Path>,
    prefixes: &mut HashMap<String, String>,
) -> Option<BackendConfig> {
    let errors_before = cx.error_count();
    let sep = &server.separator;
    let enabled = raw.enabled.unwrap_or(true);
    let prefix = prefix(name, name_span, &raw.prefix, enabled, sep, prefixes, cx);
    let timeout = duration(&raw.timeout, server.call_timeout, cx);
    let transport = match *raw.transport.get_ref() {
        TransportKind::Stdio => stdio(name, &raw, base_dir, cx),
        kind @ (TransportKind::Http | TransportKind::Sse) => remote(name, kind, &raw, cx),
    };
    if let Some(span) = tasks_span(&raw)
        && matches!(raw.isolation, Some(RawIsolation::PerSession))
    {
        cx.error(
            span,
            "tasks run as jobs, which have no client session: a backend with `isolation = \"per_session\"` cannot serve calls as tasks",
        );
    }
    let tools = filter(raw.tools, &prefix, sep, cx);
    let prompts = filter(raw.prompts, &prefix, sep, cx);
    let max_concurrent = positive(&raw.max_concurrent, "max_concurrent", cx);
    let max_sessions = positive(&raw.max_sessions, "max_sessions", cx)
        .unwrap_or(super::model::DEFAULT_MAX_SESSIONS);

    (cx.error_count() == errors_before).then(|| BackendConfig {
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
        lifecycle: match raw.lifecycle {
            Some(RawLifecycle::Discover) => Lifecycle::Discover,
            _ => Lifecycle::Initialize,
        },
        tasks: match raw.tasks.map(|t| *t.get_ref()) {
            Some(RawTasks::Optional) => TaskSupport::Optional,
            Some(RawTasks::Required) => TaskSupport::Required,
            None | Some(RawTasks::Forbidden) => TaskSupport::Forbidden,
        },
    })
}

/// Where `tasks` is set to serve calls as tasks, for the check that `[jobs]`
/// is there to run them.
pub(super) fn tasks_span(raw: &RawBackend) -> Option<Range<usize>> {
    raw.tasks
        .as_ref()
        .filter(|t| !matches!(t.get_ref(), RawTasks::Forbidden))
        .map(|t| t.span())
}

/// The backend's name checked, and its prefix (the name unless `prefix` is
/// set) checked and claimed: two enabled backends may not share one.
fn prefix(
    name: &str,
    name_span: Range<usize>,
    raw: &Option<Spanned<String>>,
    enabled: bool,
    sep: &str,
    prefixes: &mut HashMap<String, String>,
    cx: &mut Cx<'_>,
) -> String {
    if name.is_empty() || !valid_ident(name) {
        cx.error(
            name_span.clone(),
            format!("backend name \"{name}\" must use only letters, digits, `_` or `-`"),
        );
    }
    let (prefix, prefix_span) = match raw {
        Some(p) => (p.get_ref().clone(), p.span()),
        None => (name.to_string(), name_span),
    };
    if !valid_ident(&prefix) {
        cx.error(
            prefix_span.clone(),
            format!("prefix \"{prefix}\" must use only letters, digits, `_` or `-`"),
        );
    } else if !prefix.is_empty() && prefix.contains(sep) {
        cx.error(prefix_span.clone(), format!("prefix \"{prefix}\" contains the separator \"{sep}\"; rename the backend or set `prefix`"));
    } else if !prefix.is_empty() && prefix.len() + sep.len() >= MAX_EXPOSED_NAME {
        cx.error(prefix_span.clone(), format!("prefix \"{prefix}\" is too long: every exposed name would exceed {MAX_EXPOSED_NAME} characters"));
    }
    if enabled && !prefix.is_empty() {
        if let Some(other) = prefixes.get(&prefix) {
            cx.error(
                prefix_span,
                format!(
                    "backend `{name}` uses prefix \"{prefix}\", already used by backend `{other}`"
                ),
            );
        } else {
            prefixes.insert(prefix.clone(), name.to_string());
        }
    }
    prefix
}

fn not_for(cx: &mut Cx<'_>, span: Range<usize>, key: &str, kind_name: &str) {
    cx.error(
        span,
        format!("`{key}` does not apply to transport \"{kind_name}\""),
    );
}

/// `transport = "stdio"`: a command to start, with its args, env and cwd.
fn stdio(
    name: &str,
    raw: &RawBackend,
    base_dir: Option<&Path>,
    cx: &mut Cx<'_>,
) -> TransportConfig {
    if let Some(u) = &raw.url {
        not_for(cx, u.span(), "url", "stdio");
    }
    if let Some(h) = &raw.headers {
        not_for(cx, h.span(), "headers", "stdio");
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
        args: raw
            .args
            .as_ref()
            .map(|a| a.get_ref().clone())
            .unwrap_or_default(),
        env: raw
            .env
            .as_ref()
            .map(|e| e.get_ref().clone())
            .unwrap_or_default(),
        cwd,
        inherit_env: inherit_env(raw.inherit_env.clone(), cx),
    }
}

/// `transport = "http"` or `"sse"`: a URL and the headers sent with every request.
fn remote(name: &str, kind: TransportKind, raw: &RawBackend, cx: &mut Cx<'_>) -> TransportConfig {
    let kind_name = if kind == TransportKind::Http {
        "http"
    } else {
        "sse"
    };
    for (key, span) in [
        ("command", raw.command.as_ref().map(|v| v.span())),
        ("args", raw.args.as_ref().map(|v| v.span())),
        ("env", raw.env.as_ref().map(|v| v.span())),
        ("cwd", raw.cwd.as_ref().map(|v| v.span())),
        ("inherit_env", raw.inherit_env.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = span {
            not_for(cx, span, key, kind_name);
        }
    }
    let url = match &raw.url {
        Some(u) => url(u, cx),
        None => {
            cx.error(
                raw.transport.span(),
                format!("backend `{name}`: transport \"{kind_name}\" needs `url`"),
            );
            String::new()
        }
    };
    let mut headers = BTreeMap::new();
    if let Some(h) = &raw.headers {
        let span = h.span();
        for (k, v) in h.get_ref() {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                cx.error(
                    span.clone(),
                    format!("header `{k}` is not a valid HTTP header name and value"),
                );
            }
            headers.insert(k.clone(), Secret::new(v.clone()));
        }
    }
    if kind == TransportKind::Http {
        TransportConfig::Http { url, headers }
    } else {
        TransportConfig::Sse { url, headers }
    }
}

/// An http(s) URL, or empty after reporting why not; a bad URL is shown redacted.
fn url(u: &Spanned<String>, cx: &mut Cx<'_>) -> String {
    match url::Url::parse(u.get_ref()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => u.get_ref().clone(),
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
    }
}

/// `tools` / `prompts`: include and exclude globs; a literal include whose
/// exposed name would be too long is an error.
fn filter(raw: Option<RawFilter>, prefix: &str, sep: &str, cx: &mut Cx<'_>) -> NameFilter {
    let raw = raw.unwrap_or_default();
    let literal_includes: Vec<(String, Range<usize>)> = raw
        .include
        .iter()
        .filter(|p| !p.get_ref().contains(['*', '?', '[', '{']))
        .map(|p| (p.get_ref().clone(), p.span()))
        .collect();
    for (n, span) in literal_includes {
        let exposed = exposed_len(prefix, sep, &n);
        if exposed > MAX_EXPOSED_NAME {
            cx.error(span, format!("exposed name \"{}\" is {exposed} characters, over the limit of {MAX_EXPOSED_NAME}", join(prefix, sep, &n)));
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
}

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
