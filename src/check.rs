//! `manifold check`: validate a config, and with `--connect` start each
//! backend and report the names it would expose.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::backend::BackendState;
use crate::config::{Config, MAX_EXPOSED_NAME};
use crate::reload::Reloader;

/// A human summary of a valid config.
pub fn summary(config: &Config, label: &str) -> String {
    let enabled = config.enabled_backends().count();
    let mut out = format!(
        "{label}: ok: {} backend(s), {enabled} enabled; serving http://{}{}\n",
        config.backends.len(),
        config.server.listen,
        config.server.path
    );
    for b in config.backends.values() {
        let prefix = if b.prefix.is_empty() {
            "(no prefix)".to_string()
        } else {
            format!("{}{}", b.prefix, config.server.separator)
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<5} {:<9} {}  {}",
            b.name,
            b.transport.kind(),
            if b.enabled { "enabled" } else { "disabled" },
            prefix,
            b.transport.describe()
        );
    }
    // Client ids only: a token is never printed.
    if config.auth.enabled() {
        let ids: Vec<&str> = config
            .auth
            .tokens
            .iter()
            .map(|t| t.client_id.as_str())
            .collect();
        if !ids.is_empty() {
            let _ = writeln!(out, "  auth: bearer tokens for {}", ids.join(", "));
        }
        if let Some(o) = &config.auth.oauth {
            let _ = writeln!(
                out,
                "  auth: OAuth access tokens from {} for {} ({} rules; keys from {})",
                o.issuer,
                o.resource,
                o.rules.len(),
                o.jwks_uri
            );
        }
    } else {
        let _ = writeln!(
            out,
            "  auth: none (anyone who reaches the address may connect)"
        );
    }
    let j = &config.jobs;
    if j.enabled {
        let store = match &j.store {
            crate::config::JobStoreConfig::Sqlite { path } => {
                format!("sqlite at {}", path.display())
            }
            // The URL may hold a password: only the engine is shown.
            crate::config::JobStoreConfig::Postgres { .. } => "postgres".to_string(),
        };
        let _ = writeln!(
            out,
            "  jobs: {store}; {} at once per instance, timeout {}, retention {}, on_interrupt {:?}",
            j.max_concurrent,
            humantime::format_duration(j.timeout),
            humantime::format_duration(j.retention),
            j.on_interrupt
        );
    } else {
        let _ = writeln!(out, "  jobs: off (no [jobs] section)");
    }
    let _ = writeln!(out, "  audit: {}", audit_summary(&config.audit));
    out
}

/// Where the audit log goes; never a URL's credentials or an API key.
fn audit_summary(a: &crate::config::AuditConfig) -> String {
    use crate::config::{LocalStore, Production};
    if !a.enabled() {
        return "off".into();
    }
    let local = match &a.local {
        LocalStore::None => "no local store".to_string(),
        LocalStore::Sqlite {
            path,
            retention_days,
        } => format!("local sqlite {} ({retention_days} days)", path.display()),
        LocalStore::Postgres { .. } => "local postgres".to_string(),
    };
    let production = match &a.production {
        None => "no production destination".to_string(),
        Some(Production::Kafka {
            bootstrap_servers,
            topic,
            ..
        }) => format!("kafka {} topic {topic}", bootstrap_servers.join(",")),
        Some(Production::Elasticsearch {
            hosts,
            index_prefix,
            ..
        }) => format!("elasticsearch {} index {index_prefix}-*", hosts.join(",")),
        Some(Production::Postgres { .. }) => "postgres".to_string(),
        Some(Production::Http { .. }) => "http".to_string(),
    };
    format!(
        "{local}; {production}{}; {} attempts, {} apart",
        if a.stderr { "; stderr" } else { "" },
        a.retry_attempts,
        humantime::format_duration(a.retry_delay)
    )
}

/// The result of `check --connect`: a report, and the problems found.
pub struct ConnectReport {
    pub report: String,
    pub errors: Vec<String>,
}

/// Starts every enabled backend, lists what each would expose, and reports
/// backends that are down, names over the length limit, and names that two
/// backends would both expose.
pub async fn connect(config: Config) -> ConnectReport {
    let locations = config.locations.clone();
    let timeout = config.server.connect_timeout;
    let reloader = Reloader::start(config, None).await;
    let gateway = reloader.gateway();
    let _ = tokio::time::timeout(timeout + Duration::from_millis(500), gateway.settled()).await;
    let snapshot = gateway.snapshot_full();
    let mut report = String::new();
    let mut errors = Vec::new();
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let at = |name: &str| {
        locations
            .get(name)
            .map(|l| format!("{l}: "))
            .unwrap_or_default()
    };
    for b in snapshot.backends.values() {
        describe_backend(b, &at, &mut report, &mut errors, &mut owners);
    }
    for (what, backends) in owners {
        if backends.len() > 1 {
            errors.push(format!(
                "{}{what} is exposed by backends {}; only `{}` will receive calls (set `prefix` or a filter)",
                at(&backends[1]),
                backends.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(" and "),
                backends[0]
            ));
        }
    }
    gateway.shutdown().await;
    ConnectReport { report, errors }
}

/// One backend's part of the `--connect` report: its state, what it would
/// expose (each exposed name noted in `owners` for the collision check), and
/// its problems.
fn describe_backend(
    b: &crate::backend::Backend,
    at: &dyn Fn(&str) -> String,
    report: &mut String,
    errors: &mut Vec<String>,
    owners: &mut BTreeMap<String, Vec<String>>,
) {
    let c = b.catalog();
    match b.state() {
        BackendState::Up => {
            let _ = writeln!(
                report,
                "{}: up: {} tools, {} prompts, {} resources, {} templates",
                b.name(),
                c.tools.len(),
                c.prompts.len(),
                c.resources.len(),
                c.templates.len()
            );
        }
        state => {
            let reason = match state {
                BackendState::Down(r) => r,
                other => other.label().to_string(),
            };
            errors.push(format!(
                "{}backend `{}` is down: {reason}",
                at(b.name()),
                b.name()
            ));
            return;
        }
    }
    for t in &c.tools {
        let _ = writeln!(report, "  tool      {}", t.name);
        owners
            .entry(format!("tool {}", t.name))
            .or_default()
            .push(b.name().to_string());
    }
    for p in &c.prompts {
        let _ = writeln!(report, "  prompt    {}", p.name);
        owners
            .entry(format!("prompt {}", p.name))
            .or_default()
            .push(b.name().to_string());
    }
    for r in &c.resources {
        let _ = writeln!(report, "  resource  {}", r.uri);
        owners
            .entry(format!("resource {}", r.uri))
            .or_default()
            .push(b.name().to_string());
    }
    for t in &c.templates {
        let _ = writeln!(report, "  template  {}", t.uri_template);
    }
    for name in &c.too_long {
        errors.push(format!(
            "{}backend `{}`: exposed name \"{name}\" is {} characters, over the limit of {MAX_EXPOSED_NAME}",
            at(b.name()),
            b.name(),
            name.chars().count()
        ));
    }
}
