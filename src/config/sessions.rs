//! `[sessions]`: where MCP sessions live. In memory (the default), a session
//! ends with its instance; in Redis, another instance behind the same load
//! balancer can restore it (docs/scale-out.md).

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::load::{Cx, deserialize};
use super::model::{SessionsConfig, StoreConfig};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    store: Option<Spanned<String>>,
    redis_url: Option<Spanned<String>>,
    key_prefix: Option<Spanned<String>>,
}

/// `[sessions]`; `None` when it could not be read (the error is in `cx`).
pub(super) fn sessions(value: Spanned<DeValue<'_>>, cx: &mut Cx<'_>) -> Option<SessionsConfig> {
    let raw: RawSessions = deserialize(value, cx)?;
    let store = super::messaging::store_config(&raw.store, &raw.redis_url, &raw.key_prefix, cx)
        .unwrap_or(StoreConfig::Memory);
    Some(SessionsConfig { store })
}

/// The default `[server] instance_id`: the host name and the listening
/// port (`build7-8123`), cut to what a session id may carry.
pub fn default_instance_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let host = host.trim_matches('-');
    if host.is_empty() {
        format!("manifold-{port}")
    } else {
        format!("{host}-{port}")
    }
}

/// Whether `id` may be an instance id: it starts every session id the
/// instance mints, and load balancers match on it.
pub(super) fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use crate::config::{StoreConfig, parse_str};

    #[test]
    fn memory_by_default_and_redis_when_asked() {
        let c = parse_str("", "t.toml", None).unwrap();
        assert_eq!(c.sessions.store, StoreConfig::Memory);
        let c = parse_str(
            "[sessions]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nkey_prefix = \"team\"\n",
            "t.toml",
            None,
        )
        .unwrap();
        assert_eq!(c.sessions.store.kind(), "redis");
    }

    #[test]
    fn instance_ids_default_to_host_and_port_and_are_checked() {
        let c = parse_str("[server]\nlisten = \"127.0.0.1:9001\"\n", "t.toml", None).unwrap();
        assert!(
            c.server.instance_id.ends_with("-9001"),
            "{}",
            c.server.instance_id
        );
        assert!(super::valid_instance_id(&c.server.instance_id));
        let c = parse_str("[server]\ninstance_id = \"g1\"\n", "t.toml", None).unwrap();
        assert_eq!(c.server.instance_id, "g1");
        let err = parse_str("[server]\ninstance_id = \"g 1.x\"\n", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml:2:15") && err.contains("instance_id"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key_and_its_place() {
        let err = parse_str("[sessions]\nstore = \"redis\"\n", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml:2:9") && err.contains("needs `redis_url`"),
            "{err}"
        );
        let err = parse_str("[sessions]\nstore = \"disk\"\n", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown store \"disk\""), "{err}");
        let err = parse_str("[sessions]\nttl = \"1s\"\n", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml:2:1"), "{err}");
    }
}
