//! What changes between two configs, computed without touching anything
//! running: the reload path applies the result, and startup is the diff from
//! nothing to the first config.

use std::collections::BTreeMap;

use super::{BackendConfig, ServerConfig};

/// How the wanted backends relate to the running ones, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Present in both but needing a new connection.
    pub changed: Vec<String>,
    /// Present in both and keeping their connection (a new per-call
    /// `timeout` is taken on live).
    pub unchanged: Vec<String>,
}

/// Whether two configs of one backend can share a connection: equal in all
/// but the per-call timeout, which a running backend takes on live.
pub fn same_connection(a: &BackendConfig, b: &BackendConfig) -> bool {
    let mut a = a.clone();
    a.timeout = b.timeout;
    a == *b
}

/// Compares the running backends' configs with the wanted ones. With
/// `separator_changed` every kept backend needs a new connection (its
/// exposed names change).
pub fn diff_backends(
    running: &BTreeMap<String, BackendConfig>,
    wanted: &[BackendConfig],
    separator_changed: bool,
) -> BackendDiff {
    let mut diff = BackendDiff::default();
    for cfg in wanted {
        match running.get(&cfg.name) {
            None => diff.added.push(cfg.name.clone()),
            Some(old) if !separator_changed && same_connection(old, cfg) => {
                diff.unchanged.push(cfg.name.clone())
            }
            Some(_) => diff.changed.push(cfg.name.clone()),
        }
    }
    diff.removed = running
        .keys()
        .filter(|n| !wanted.iter().any(|w| &w.name == *n))
        .cloned()
        .collect();
    diff
}

/// `[server]` settings bound to the listener or the runtime: they cannot
/// change while running. Returns the names of those that differ and puts the
/// running values back into `new`.
pub fn keep_fixed_settings(old: &ServerConfig, new: &mut ServerConfig) -> Vec<String> {
    let mut refused = Vec::new();
    macro_rules! fixed {
        ($($field:ident),*) => {$(
            if new.$field != old.$field {
                refused.push(format!("server.{}", stringify!($field)));
                new.$field = old.$field.clone();
            }
        )*};
    }
    fixed!(
        listen,
        path,
        allowed_hosts,
        allowed_origins,
        session_idle_timeout,
        worker_threads
    );
    // The default instance id comes from `listen`: when `listen` was
    // refused, the id that followed it is not reported a second time.
    if new.instance_id != old.instance_id {
        if !refused.iter().any(|r| r == "server.listen") {
            refused.push("server.instance_id".into());
        }
        new.instance_id = old.instance_id.clone();
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn backends(toml: &str) -> BTreeMap<String, BackendConfig> {
        parse_str(toml, "t.toml", None)
            .map(|c| c.backends)
            .unwrap_or_default()
    }

    #[test]
    fn diff_names_each_kind_of_change() {
        let old = backends(
            "[backends.a]\ntransport = \"stdio\"\ncommand = \"a\"\n\
             [backends.b]\ntransport = \"stdio\"\ncommand = \"b\"\n\
             [backends.c]\ntransport = \"stdio\"\ncommand = \"c\"\n",
        );
        let new = backends(
            "[backends.a]\ntransport = \"stdio\"\ncommand = \"a\"\ntimeout = \"9s\"\n\
             [backends.b]\ntransport = \"stdio\"\ncommand = \"b2\"\n\
             [backends.d]\ntransport = \"stdio\"\ncommand = \"d\"\n",
        );
        let wanted: Vec<BackendConfig> = new.values().cloned().collect();
        let diff = diff_backends(&old, &wanted, false);
        assert_eq!(diff.unchanged, ["a"]);
        assert_eq!(diff.changed, ["b"]);
        assert_eq!(diff.added, ["d"]);
        assert_eq!(diff.removed, ["c"]);
        let all_changed = diff_backends(&old, &wanted, true);
        assert_eq!(all_changed.changed, ["a", "b"]);
    }

    #[test]
    fn fixed_settings_are_refused_by_name_and_kept() {
        let old = ServerConfig::default();
        let mut new = ServerConfig {
            path: "/other".into(),
            call_timeout: std::time::Duration::from_secs(99),
            ..ServerConfig::default()
        };
        assert_eq!(keep_fixed_settings(&old, &mut new), ["server.path"]);
        assert_eq!(new.path, old.path);
        assert_eq!(new.call_timeout, std::time::Duration::from_secs(99));
    }
}
