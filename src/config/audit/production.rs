//! `[audit] production`: the destination audit entries are shipped to, and its settings.

use super::{Lookup, Production, RawAudit, Src, env_bool, list, report};
use crate::config::load::Cx;
use crate::config::model::Secret;

/// The production destination: `production` in the file, then
/// `LOG_DESTINATION_TYPE`, then `ENABLE_PRODUCTION_LOGGING`; its settings
/// from the subtable, each overridden by its variable.
pub(super) fn production(
    raw: &RawAudit,
    cx: &mut Cx<'_>,
    lookup: Lookup<'_>,
    pg_url: Option<Src<String>>,
) -> Option<Production> {
    let mut kind = Src::file(
        raw.production
            .as_ref()
            .map_or("none".to_string(), |p| p.get_ref().clone()),
        raw.production.as_ref().map(|p| p.span()),
    );
    if let Some(t) = lookup("LOG_DESTINATION_TYPE") {
        kind = Src::env(t.trim().to_ascii_lowercase(), "LOG_DESTINATION_TYPE");
    }
    match env_bool(lookup, "ENABLE_PRODUCTION_LOGGING", cx) {
        Some(false) => return None,
        Some(true) if kind.value == "none" => {
            cx.general(
                "environment variable ENABLE_PRODUCTION_LOGGING is true but no production destination is configured: set LOG_DESTINATION_TYPE (kafka, elasticsearch, postgres, convex or http) or [audit] production".into(),
            );
            return None;
        }
        _ => {}
    }
    match kind.value.as_str() {
        "none" => None,
        "kafka" => kafka(raw, &kind, lookup, cx),
        "elasticsearch" => elasticsearch(raw, &kind, lookup, cx),
        "postgres" => match pg_url {
            Some(u) => Some(Production::Postgres {
                url: Secret::new(u.value),
            }),
            None => {
                missing(cx, &kind, "[audit.postgres] url (or POSTGRES_DSN)");
                None
            }
        },
        "http" | "convex" => http(raw, &kind, lookup, cx),
        other => {
            report(
                cx,
                &kind,
                format!(
                    "unknown production destination \"{other}\" (expected \"none\", \"kafka\", \"elasticsearch\", \"postgres\" or \"http\")"
                ),
            );
            None
        }
    }
}

/// A required setting of the destination is absent.
fn missing(cx: &mut Cx<'_>, kind: &Src<String>, what: &str) {
    report(
        cx,
        kind,
        format!("production destination \"{}\" needs {what}", kind.value),
    )
}

fn kafka(
    raw: &RawAudit,
    kind: &Src<String>,
    lookup: Lookup<'_>,
    cx: &mut Cx<'_>,
) -> Option<Production> {
    let servers = lookup("KAFKA_BOOTSTRAP_SERVERS")
        .map(|s| list(&s))
        .or_else(|| raw.kafka.bootstrap_servers.clone())
        .unwrap_or_default();
    if let Some(acks) = &raw.kafka.acks
        && acks.get_ref() != "all"
    {
        cx.error(
            acks.span(),
            "acks must be \"all\" (the rskafka client always waits for every in-sync replica)",
        );
    }
    let mut partitions = 1;
    if let Some(p) = &raw.kafka.partitions {
        match i32::try_from(*p.get_ref()) {
            Ok(n @ 1..=1000) => partitions = n,
            _ => cx.error(p.span(), "partitions must be between 1 and 1000"),
        }
    }
    if servers.is_empty() {
        missing(
            cx,
            kind,
            "[audit.kafka] bootstrap_servers (or KAFKA_BOOTSTRAP_SERVERS)",
        );
        return None;
    }
    let topic = lookup("KAFKA_TOPIC")
        .or_else(|| raw.kafka.topic.clone())
        .unwrap_or_else(|| "mcp-logs".into());
    Some(Production::Kafka {
        bootstrap_servers: servers,
        topic,
        partitions,
    })
}

fn elasticsearch(
    raw: &RawAudit,
    kind: &Src<String>,
    lookup: Lookup<'_>,
    cx: &mut Cx<'_>,
) -> Option<Production> {
    let hosts = lookup("ELASTICSEARCH_HOSTS")
        .map(|s| list(&s))
        .or_else(|| raw.elasticsearch.hosts.clone())
        .unwrap_or_default();
    if hosts.is_empty() {
        missing(
            cx,
            kind,
            "[audit.elasticsearch] hosts (or ELASTICSEARCH_HOSTS)",
        );
        return None;
    }
    let index_prefix = lookup("ELASTICSEARCH_INDEX_PREFIX")
        .or_else(|| raw.elasticsearch.index_prefix.clone())
        .unwrap_or_else(|| "mcp-logs".into());
    Some(Production::Elasticsearch {
        hosts,
        index_prefix,
        api_key: raw.elasticsearch.api_key.clone().map(Secret::new),
    })
}

/// `http` (or `convex`, the name deployments of this logger use for it).
fn http(
    raw: &RawAudit,
    kind: &Src<String>,
    lookup: Lookup<'_>,
    cx: &mut Cx<'_>,
) -> Option<Production> {
    let url = lookup("CONVEX_ENDPOINT_URL").or_else(|| raw.http.url.clone());
    let Some(url) = url else {
        missing(cx, kind, "[audit.http] url (or CONVEX_ENDPOINT_URL)");
        return None;
    };
    if let Err(e) = url::Url::parse(&url) {
        report(
            cx,
            kind,
            format!("invalid HTTP destination url \"{url}\": {e}"),
        );
        return None;
    }
    let api_key = lookup("CONVEX_API_KEY")
        .or_else(|| raw.http.api_key.clone())
        .map(Secret::new);
    Some(Production::Http { url, api_key })
}
