//! The `[messaging]` and `[bus]` sections: raw (spanned) forms and their checks.
//!
//! Kept apart from [`super::load`] so that file stays about the server and
//! backends; errors go to the same collector, located like every other one.

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::load::{Cx, deserialize, duration};
use super::model::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMessaging {
    enabled: Option<bool>,
    store: Option<Spanned<String>>,
    redis_url: Option<Spanned<String>>,
    key_prefix: Option<Spanned<String>>,
    message_ttl: Option<Spanned<String>>,
    max_message_bytes: Option<Spanned<i64>>,
    require_checkin: Option<bool>,
    rate_limit: Option<Spanned<i64>>,
    max_wait: Option<Spanned<String>>,
    checkin_ttl: Option<Spanned<String>>,
    max_checkins: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBus {
    enabled: Option<bool>,
    history: Option<Spanned<i64>>,
    rate_limit: Option<Spanned<i64>>,
    max_message_bytes: Option<Spanned<i64>>,
    max_metadata_bytes: Option<Spanned<i64>>,
}

/// `[messaging]`; `None` when it could not be read at all (the error is in `cx`).
pub(super) fn messaging(value: Spanned<DeValue<'_>>, cx: &mut Cx<'_>) -> Option<MessagingConfig> {
    let raw: RawMessaging = deserialize(value, cx)?;
    let mut m = MessagingConfig::default();
    if let Some(enabled) = raw.enabled {
        m.enabled = enabled;
    }
    if let Some(store) = store_config(&raw.store, &raw.redis_url, &raw.key_prefix, cx) {
        m.store = store;
    }
    m.message_ttl = duration(&raw.message_ttl, m.message_ttl, cx);
    m.max_wait = duration(&raw.max_wait, m.max_wait, cx);
    if let Some(n) = &raw.max_message_bytes {
        match usize::try_from(*n.get_ref()) {
            Ok(n @ 1..=16_777_216) => m.max_message_bytes = n,
            _ => cx.error(n.span(), "max_message_bytes must be between 1 and 16777216"),
        }
    }
    m.checkin_ttl = duration(&raw.checkin_ttl, m.checkin_ttl, cx);
    if let Some(t) = &raw.checkin_ttl
        && m.checkin_ttl < std::time::Duration::from_secs(1)
    {
        cx.error(t.span(), "checkin_ttl must be at least 1s");
    }
    if let Some(n) = &raw.max_checkins {
        match usize::try_from(*n.get_ref()) {
            Ok(n @ 1..=10_000_000) => m.max_checkins = n,
            _ => cx.error(n.span(), "max_checkins must be between 1 and 10000000"),
        }
    }
    if let Some(require) = raw.require_checkin {
        m.require_checkin = require;
    }
    if let Some(n) = &raw.rate_limit {
        match u32::try_from(*n.get_ref()) {
            Ok(n) => m.rate_limit = n,
            Err(_) => cx.error(
                n.span(),
                "rate_limit must be a number of messages per minute, 0 (unlimited) or more",
            ),
        }
    }
    Some(m)
}

/// `[bus]`; `None` when it could not be read at all.
pub(super) fn bus(value: Spanned<DeValue<'_>>, cx: &mut Cx<'_>) -> Option<BusConfig> {
    let raw: RawBus = deserialize(value, cx)?;
    let mut b = BusConfig::default();
    if let Some(enabled) = raw.enabled {
        b.enabled = enabled;
    }
    if let Some(n) = &raw.history {
        match usize::try_from(*n.get_ref()) {
            Ok(n @ 1..=1_000_000) => b.history = n,
            _ => cx.error(n.span(), "history must be between 1 and 1000000"),
        }
    }
    if let Some(n) = &raw.rate_limit {
        match u32::try_from(*n.get_ref()) {
            Ok(n) => b.rate_limit = n,
            Err(_) => cx.error(
                n.span(),
                "rate_limit must be a number of messages per minute, 0 (unlimited) or more",
            ),
        }
    }
    for (raw, field, name) in [
        (
            &raw.max_message_bytes,
            &mut b.max_message_bytes,
            "max_message_bytes",
        ),
        (
            &raw.max_metadata_bytes,
            &mut b.max_metadata_bytes,
            "max_metadata_bytes",
        ),
    ] {
        if let Some(n) = raw {
            match usize::try_from(*n.get_ref()) {
                Ok(n @ 1..=1_048_576) => *field = n,
                _ => cx.error(n.span(), format!("{name} must be between 1 and 1048576")),
            }
        }
    }
    Some(b)
}

fn valid_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// `store`, `redis_url` and `key_prefix` of a section whose state may live
/// in Redis (`[messaging]`, `[sessions]`); `None` keeps the default (memory),
/// errors included (they are in `cx`).
pub(super) fn store_config(
    store: &Option<Spanned<String>>,
    url: &Option<Spanned<String>>,
    key_prefix: &Option<Spanned<String>>,
    cx: &mut Cx<'_>,
) -> Option<StoreConfig> {
    match store.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("memory") => {
            for (key, v) in [("redis_url", url), ("key_prefix", key_prefix)] {
                if let Some(v) = v {
                    cx.error(
                        v.span(),
                        format!("`{key}` applies only to `store = \"redis\"`"),
                    );
                }
            }
            None
        }
        Some("redis") => {
            let prefix = match key_prefix {
                Some(p) if valid_prefix(p.get_ref()) => p.get_ref().clone(),
                Some(p) => {
                    cx.error(
                        p.span(),
                        format!(
                            "key_prefix \"{}\" must be non-empty and use only letters, digits, `_`, `-`, `.` or `:`",
                            p.get_ref()
                        ),
                    );
                    return None;
                }
                None => "manifold".into(),
            };
            let Some(url) = url else {
                if let Some(store) = store {
                    cx.error(
                        store.span(),
                        "`store = \"redis\"` needs `redis_url` (e.g. \"redis://127.0.0.1:6379\")",
                    );
                }
                return None;
            };
            match redis_url(url.get_ref()) {
                Ok(()) => Some(StoreConfig::Redis {
                    url: Secret::new(url.get_ref().clone()),
                    key_prefix: prefix,
                }),
                Err(msg) => {
                    cx.error(url.span(), msg);
                    None
                }
            }
        }
        Some(other) => {
            if let Some(store) = store {
                cx.error(
                    store.span(),
                    format!("unknown store \"{other}\" (expected \"memory\" or \"redis\")"),
                );
            }
            None
        }
    }
}

/// Checks the URL's shape only; whether Redis answers is known at run time.
fn redis_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("invalid redis_url: {e} (expected redis://HOST:PORT)"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss" | "unix" | "redis+unix") {
        return Err(format!(
            "redis_url scheme \"{}\" is not supported (expected redis:// or unix://)",
            parsed.scheme()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{StoreConfig, parse_str};

    use crate::config::load::test_errors as errors;

    #[test]
    fn defaults_are_memory_five_minutes_and_a_thousand_messages() {
        let c = parse_str("", "g.toml", None).unwrap();
        assert_eq!(c.messaging.store, StoreConfig::Memory);
        assert_eq!(c.messaging.message_ttl.as_secs(), 300);
        assert!(c.messaging.enabled && c.bus.enabled);
        assert_eq!(c.bus.history, 1000);
    }

    #[test]
    fn redis_store_reads_url_and_prefix() {
        let c = parse_str(
            "[messaging]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nkey_prefix = \"t1\"\n",
            "g.toml",
            None,
        )
        .unwrap();
        match c.messaging.store {
            StoreConfig::Redis { url, key_prefix } => {
                assert_eq!(url.expose(), "redis://127.0.0.1:6379");
                assert_eq!(key_prefix, "t1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_bad_key_is_reported_with_its_position() {
        let errs = errors(
            "[messaging]\nstore = \"redis\"\nmessage_ttl = \"soon\"\nrate_limit = -1\nmax_message_bytes = 0\n\n[bus]\nhistory = 0\ncolour = 1\n",
        );
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with("gateway.toml:2:9: `store = \"redis\"` needs `redis_url`"));
        assert!(errs[1].starts_with("gateway.toml:3:15: invalid duration \"soon\""));
        assert!(errs[2].starts_with("gateway.toml:4:14: rate_limit must be"));
        assert!(errs[3].starts_with("gateway.toml:5:21: max_message_bytes must be"));
        // Unknown keys are found first, so the section's other checks do not run.
        assert!(
            errs[4].starts_with("gateway.toml:9:1: unknown field `colour`"),
            "{errs:#?}"
        );
    }

    #[test]
    fn bus_limits_and_checkin_keys_are_read_and_checked() {
        let c = parse_str(
            "[messaging]\ncheckin_ttl = \"2h\"\nmax_checkins = 5\n[bus]\nrate_limit = 0\nmax_message_bytes = 100\nmax_metadata_bytes = 200\n",
            "g.toml",
            None,
        )
        .unwrap();
        assert_eq!(c.messaging.checkin_ttl.as_secs(), 7200);
        assert_eq!(c.messaging.max_checkins, 5);
        assert_eq!(
            (
                c.bus.rate_limit,
                c.bus.max_message_bytes,
                c.bus.max_metadata_bytes
            ),
            (0, 100, 200)
        );
        let errs = errors(
            "[messaging]\ncheckin_ttl = \"10ms\"\nmax_checkins = 0\n[bus]\nrate_limit = -1\nmax_metadata_bytes = 0\n",
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with("gateway.toml:2:15: checkin_ttl must be at least 1s"));
        assert!(errs[1].starts_with("gateway.toml:3:16: max_checkins must be"));
        assert!(errs[2].starts_with("gateway.toml:5:14: rate_limit must be"));
        assert!(errs[3].starts_with("gateway.toml:6:22: max_metadata_bytes must be"));
    }

    #[test]
    fn unknown_store_and_redis_keys_on_memory_are_errors() {
        let errs = errors("[messaging]\nstore = \"etcd\"\n");
        assert_eq!(
            errs,
            vec!["gateway.toml:2:9: unknown store \"etcd\" (expected \"memory\" or \"redis\")"]
        );
        let errs = errors("[messaging]\nredis_url = \"redis://x\"\n");
        assert_eq!(
            errs,
            vec!["gateway.toml:2:13: `redis_url` applies only to `store = \"redis\"`"]
        );
        let errs = errors("[messaging]\nstore = \"redis\"\nredis_url = \"http://x\"\n");
        assert!(
            errs[0].starts_with("gateway.toml:3:13: redis_url scheme \"http\""),
            "{errs:?}"
        );
    }
}
