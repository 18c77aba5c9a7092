//! One server entry of a client's file → one imported backend. Every client
//! writes entries of nearly the same shape (`command`/`args`/`env` or
//! `url`/`headers`, sometimes `type`), so one reader serves them all.

use std::time::Duration;

use serde_json::Value;

use super::json::{JsonPath, type_name};
use super::secrets::{Needed, Place, Vars, scrub};
use super::text::{self, Scope, Text, var_name};
use super::{Report, Server, Transport};

/// The file an entry comes from, and what its references mean there.
pub(super) struct Source<'a> {
    pub(super) file: &'a str,
    pub(super) client: &'static str,
    pub(super) scope: Scope<'a>,
    /// VS Code requires `type`; the others infer it.
    pub(super) needs_type: bool,
}

/// What the conversion collects across entries.
pub(super) struct Sink<'a> {
    pub(super) reports: &'a mut Vec<Report>,
    pub(super) vars: &'a mut Vars,
}

/// The fields read from an entry, before the transport is decided.
#[derive(Default)]
struct Fields {
    kind: Option<(String, JsonPath)>,
    command: Option<(Text, JsonPath)>,
    args: Vec<Text>,
    env: Vec<(String, Text)>,
    cwd: Option<Text>,
    url: Option<(Text, JsonPath)>,
    headers: Vec<(String, Text)>,
    enabled: bool,
    timeout: Option<Duration>,
}

/// Reads one entry; `None` (with a report) when it cannot become a backend.
pub(super) fn convert(
    name: &str,
    value: &Value,
    path: JsonPath,
    project: Option<std::path::PathBuf>,
    src: &Source<'_>,
    sink: &mut Sink<'_>,
) -> Option<Server> {
    let Some(obj) = value.as_object() else {
        sink.report(
            src,
            &path,
            format!("expected an object, found {}; skipped", type_name(value)),
        );
        return None;
    };
    let server_var = var_name(name);
    let mut needed = Vec::new();
    let mut f = Fields {
        enabled: true,
        ..Fields::default()
    };
    for (key, v) in obj {
        let at = path.key(key);
        read_field(key, v, &at, src, sink, &server_var, &mut needed, &mut f);
    }
    if f.cwd.is_none() {
        f.cwd = project.map(|p| Text::literal(p.display().to_string()));
    }
    let transport = transport(
        f.kind, f.command, f.args, f.env, f.cwd, f.url, f.headers, &path, src, sink,
    )?;
    let mut server = Server {
        name: name.to_string(),
        client: src.client,
        file: src.file.to_string(),
        path,
        transport,
        enabled: f.enabled,
        timeout: f.timeout,
        needed,
    };
    note_references(&mut server, &src.scope);
    Some(server)
}

#[allow(clippy::too_many_arguments)]
fn read_field(
    key: &str,
    v: &Value,
    at: &JsonPath,
    src: &Source<'_>,
    sink: &mut Sink<'_>,
    server_var: &str,
    needed: &mut Vec<Needed>,
    f: &mut Fields,
) {
    let mut texts = |raw: &str, place: Option<Place<'_>>, sink: &mut Sink<'_>, at: &JsonPath| {
        let mut notes = Vec::new();
        let t = text::parse(raw, &src.scope, &mut notes);
        for n in notes {
            sink.report(src, at, n);
        }
        match place {
            Some(p) => scrub(t, &p, server_var, sink.vars, needed),
            None => t,
        }
    };
    match (key, v) {
        ("type" | "transport", Value::String(s)) => f.kind = Some((s.clone(), at.clone())),
        ("command", Value::String(s)) => f.command = Some((texts(s, None, sink, at), at.clone())),
        ("args", Value::Array(items)) => {
            let mut flag: Option<String> = None;
            for (i, item) in items.iter().enumerate() {
                let at = at.index(i);
                let Some(s) = scalar(item) else {
                    sink.report(src, &at, format!("expected a string, found {}; skipped", type_name(item)));
                    continue;
                };
                f.args.push(arg(&s, flag.as_deref(), &mut |raw, p, at| texts(raw, Some(p), sink, at), &at));
                // A flag without `=` may take the next argument as its value.
                flag = (s.starts_with('-') && !s.contains('=')).then_some(s);
            }
        }
        ("env", Value::Object(m)) => {
            for (k, item) in m {
                if let Some(s) = scalar_or_report(item, &at.key(k), src, sink) {
                    f.env.push((k.clone(), texts(&s, Some(Place::Env(k)), sink, &at.key(k))));
                }
            }
        }
        ("headers", Value::Object(m)) => {
            for (k, item) in m {
                if let Some(s) = scalar_or_report(item, &at.key(k), src, sink) {
                    f.headers.push((k.clone(), texts(&s, Some(Place::Header(k)), sink, &at.key(k))));
                }
            }
        }
        ("cwd", Value::String(s)) => f.cwd = Some(cwd(texts(s, None, sink, at), &src.scope, at, src, sink)),
        ("url" | "serverUrl", Value::String(s)) => {
            f.url = Some((texts(s, Some(Place::Url), sink, at), at.clone()));
        }
        ("disabled", Value::Bool(b)) => f.enabled = !b,
        ("timeout", Value::Number(n)) => f.timeout = timeout(n, at, src, sink),
        ("autoApprove" | "alwaysAllow", _) => sink.report(
            src,
            at,
            "not supported, ignored (the gateway asks no approvals; allow-lists are [auth.tokens] `tools`)",
        ),
        ("envFile", _) => sink.report(
            src,
            at,
            "not supported, ignored: set those variables in the gateway's environment",
        ),
        ("type" | "transport" | "command" | "args" | "env" | "headers" | "cwd" | "url" | "serverUrl"
        | "disabled" | "timeout", other) => sink.report(
            src,
            at,
            format!("expected {}, found {}; ignored", expected(key), type_name(other)),
        ),
        _ => sink.report(src, at, "not supported, ignored"),
    }
}

fn expected(key: &str) -> &'static str {
    match key {
        "args" => "an array of strings",
        "env" | "headers" => "an object of strings",
        "disabled" => "a boolean",
        "timeout" => "a number of milliseconds",
        _ => "a string",
    }
}

/// Strings as they are; numbers and booleans as their text (`"PORT": 3000`).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar_or_report(
    v: &Value,
    at: &JsonPath,
    src: &Source<'_>,
    sink: &mut Sink<'_>,
) -> Option<String> {
    let s = scalar(v);
    if s.is_none() {
        sink.report(
            src,
            at,
            format!("expected a string, found {}; skipped", type_name(v)),
        );
    }
    s
}

/// One argument: `--api-key=X` keeps its flag readable and hides `X`; a
/// value after a secret-named flag (`--token X`) is hidden.
fn arg(
    s: &str,
    flag: Option<&str>,
    texts: &mut dyn FnMut(&str, Place<'_>, &JsonPath) -> Text,
    at: &JsonPath,
) -> Text {
    if s.starts_with('-')
        && let Some((f, value)) = s.split_once('=')
    {
        let mut t = Text::literal(format!("{f}="));
        t.0.extend(texts(value, Place::Arg(Some(f)), at).0);
        return t;
    }
    texts(s, Place::Arg(flag), at)
}

/// A relative `cwd` meant the client's project folder; the gateway would read
/// it against the folder of gateway.toml, so it is made absolute.
fn cwd(t: Text, scope: &Scope<'_>, at: &JsonPath, src: &Source<'_>, sink: &mut Sink<'_>) -> Text {
    let s = t.to_config();
    if t.vars().next().is_none() && std::path::Path::new(&s).is_relative() {
        let abs = scope.workspace.join(&s).display().to_string();
        sink.report(
            src,
            at,
            format!("relative cwd \"{s}\" written as \"{abs}\""),
        );
        return Text::literal(abs);
    }
    t
}

/// A numeric timeout: milliseconds (Claude Code, Cursor), except values
/// under 1000, which are seconds (Cline writes `"timeout": 60`).
fn timeout(
    n: &serde_json::Number,
    at: &JsonPath,
    src: &Source<'_>,
    sink: &mut Sink<'_>,
) -> Option<Duration> {
    match n.as_u64() {
        Some(0) | None => {
            sink.report(
                src,
                at,
                format!("timeout {n} is not a positive whole number; ignored"),
            );
            None
        }
        Some(s) if s < 1000 => Some(Duration::from_secs(s)),
        Some(ms) => Some(Duration::from_millis(ms)),
    }
}

/// Decides the transport from `type` and the fields present.
#[allow(clippy::too_many_arguments)]
fn transport(
    kind: Option<(String, JsonPath)>,
    command: Option<(Text, JsonPath)>,
    args: Vec<Text>,
    env: Vec<(String, Text)>,
    cwd: Option<Text>,
    url: Option<(Text, JsonPath)>,
    headers: Vec<(String, Text)>,
    path: &JsonPath,
    src: &Source<'_>,
    sink: &mut Sink<'_>,
) -> Option<Transport> {
    let kind = match &kind {
        Some((k, at)) => match k.as_str() {
            "stdio" | "local" => "stdio",
            "http" | "streamable-http" | "streamableHttp" | "streamable_http" => "http",
            "sse" => "sse",
            other => {
                sink.report(src, at, format!("transport type \"{other}\" is not supported (stdio, http, sse); server skipped"));
                return None;
            }
        },
        None if src.needs_type && command.is_none() && url.is_none() => "",
        None if command.is_some() => "stdio",
        None => match &url {
            Some((u, _)) if ends_with_sse(&u.to_config()) => "sse",
            Some(_) => "http",
            None => "",
        },
    };
    match (kind, command, url) {
        ("stdio", Some((command, _)), url) => {
            if let Some((_, at)) = url {
                sink.report(src, &at, "ignored: a stdio server has no url");
            }
            Some(Transport::Stdio {
                command,
                args,
                env,
                cwd,
            })
        }
        ("http" | "sse", command, Some((url, _))) => {
            if let Some((_, at)) = command {
                sink.report(src, &at, "ignored: an HTTP server has no command");
            }
            for (k, _) in &env {
                sink.report(
                    src,
                    &path.key("env").key(k),
                    "ignored: env applies to stdio servers only",
                );
            }
            if kind == "sse" {
                Some(Transport::Sse { url, headers })
            } else {
                Some(Transport::Http { url, headers })
            }
        }
        (k, _, _) => {
            let what = match k {
                "stdio" => "a stdio server needs `command`",
                "http" | "sse" => "an HTTP server needs `url`",
                _ => "neither `command` nor `url` is set",
            };
            sink.report(src, path, format!("{what}; server skipped"));
            None
        }
    }
}

/// `https://host/sse` or `https://host/sse?x=1`: the legacy SSE transport.
fn ends_with_sse(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.trim_end_matches('/').ends_with("/sse")
}

/// Every variable the backend reads that is not already explained as a
/// hidden secret: a VS Code input, or a reference the client's file had.
fn note_references(server: &mut Server, scope: &Scope<'_>) {
    let mut vars: Vec<String> = server
        .texts()
        .flat_map(|t| t.vars().map(str::to_string).collect::<Vec<_>>())
        .collect();
    vars.sort();
    vars.dedup();
    for var in vars {
        if server.needed.iter().any(|n| n.var == var) {
            continue;
        }
        let why = match scope.inputs.iter().find(|i| i.var == var) {
            Some(i) if i.description.is_empty() => format!("VS Code input `{}`", i.id),
            Some(i) => format!("VS Code input `{}`: {}", i.id, i.description),
            None => "referenced in the client's config".into(),
        };
        server.needed.push(Needed { var, why });
    }
}

impl Sink<'_> {
    pub(super) fn report(&mut self, src: &Source<'_>, at: &JsonPath, message: impl Into<String>) {
        self.reports.push(Report {
            file: src.file.to_string(),
            path: Some(at.clone()),
            message: message.into(),
        });
    }
}
