//! The `[jobs]` section: the job queue's store and limits, raw (spanned)
//! form and checks. Like [`super::messaging`], errors go to the shared
//! collector with `file:line:col`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::load::{Cx, deserialize, duration};
use super::model::Secret;

/// `[jobs]`: the built-in job queue (`@jobs`, tool `queue`).
#[derive(Clone, Debug, PartialEq)]
pub struct JobsConfig {
    /// Whether `@jobs` is mounted: only when the config has a `[jobs]`
    /// section (a job store is a file or a database; none is made unasked).
    pub enabled: bool,
    pub store: JobStoreConfig,
    /// Jobs this instance runs at once; more wait in `queued`.
    pub max_concurrent: usize,
    /// How long a job may run when it does not ask for its own `timeout`.
    pub timeout: Duration,
    /// Finished jobs older than this are deleted.
    pub retention: Duration,
    /// A job's stored result is cut beyond this many bytes (with a marker).
    pub max_result_bytes: usize,
    /// Jobs one client may have that are not finished (pending, queued, running).
    pub max_unfinished_per_client: usize,
    /// What becomes of a job whose instance died while running it.
    pub on_interrupt: OnInterrupt,
    /// How long a claim on a running job holds without renewal (renewed at a third of it).
    pub lease: Duration,
    /// How often an idle instance looks for jobs that other instances queued.
    pub poll_interval: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            store: JobStoreConfig::Sqlite {
                path: PathBuf::from("manifold-jobs.db"),
            },
            max_concurrent: 4,
            timeout: Duration::from_secs(60 * 60),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            max_result_bytes: 1024 * 1024,
            max_unfinished_per_client: 1000,
            on_interrupt: OnInterrupt::Fail,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl JobsConfig {
    /// The settings a reload may change without a restart: all but
    /// `enabled` and the store.
    pub fn same_store(&self, other: &Self) -> bool {
        self.enabled == other.enabled && self.store == other.store
    }
}

/// Where jobs live.
#[derive(Clone, Debug, PartialEq)]
pub enum JobStoreConfig {
    /// One SQLite file (one gateway instance); relative to the config file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database shared by every instance that names it.
    Postgres { url: Secret },
}

impl JobStoreConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// `on_interrupt`: a tool call is not known to be idempotent, so the default fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnInterrupt {
    /// The job ends `interrupted`.
    #[default]
    Fail,
    /// The job goes back to `queued` and runs again.
    Requeue,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    enabled: Option<bool>,
    store: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    max_concurrent: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
    max_result_bytes: Option<Spanned<i64>>,
    max_unfinished_per_client: Option<Spanned<i64>>,
    on_interrupt: Option<Spanned<String>>,
    lease: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
}

/// `[jobs]`; `None` when it could not be read at all (the error is in `cx`).
pub(super) fn jobs(
    value: Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
    base_dir: Option<&Path>,
) -> Option<JobsConfig> {
    let raw: RawJobs = deserialize(value, cx)?;
    let mut j = JobsConfig {
        enabled: raw.enabled.unwrap_or(true),
        ..JobsConfig::default()
    };
    j.store = store(&raw, cx, base_dir);
    let count = |n: &Option<Spanned<i64>>, key: &str, max: i64, default: usize, cx: &mut Cx<'_>| {
        let Some(n) = n else { return default };
        match *n.get_ref() {
            v @ 1.. if v <= max => v as usize,
            _ => {
                cx.error(n.span(), format!("{key} must be between 1 and {max}"));
                default
            }
        }
    };
    j.max_concurrent = count(
        &raw.max_concurrent,
        "max_concurrent",
        4096,
        j.max_concurrent,
        cx,
    );
    j.max_result_bytes = count(
        &raw.max_result_bytes,
        "max_result_bytes",
        64 * 1024 * 1024,
        j.max_result_bytes,
        cx,
    );
    j.max_unfinished_per_client = count(
        &raw.max_unfinished_per_client,
        "max_unfinished_per_client",
        1_000_000,
        j.max_unfinished_per_client,
        cx,
    );
    j.timeout = duration(&raw.timeout, j.timeout, cx);
    j.retention = duration(&raw.retention, j.retention, cx);
    j.lease = duration(&raw.lease, j.lease, cx);
    j.poll_interval = duration(&raw.poll_interval, j.poll_interval, cx);
    if let Some(mode) = &raw.on_interrupt {
        match mode.get_ref().as_str() {
            "fail" => j.on_interrupt = OnInterrupt::Fail,
            "requeue" => j.on_interrupt = OnInterrupt::Requeue,
            other => cx.error(
                mode.span(),
                format!("unknown on_interrupt \"{other}\" (expected \"fail\" or \"requeue\")"),
            ),
        }
    }
    if let Some(lease) = &raw.lease
        && j.lease < Duration::from_millis(300)
    {
        cx.error(lease.span(), "lease must be at least 300ms");
    }
    Some(j)
}

fn store(raw: &RawJobs, cx: &mut Cx<'_>, base_dir: Option<&Path>) -> JobStoreConfig {
    let kind = raw.store.as_ref().map(|s| s.get_ref().as_str());
    match kind {
        None | Some("sqlite") => {
            if let Some(url) = &raw.url {
                cx.error(url.span(), "`url` applies only to `store = \"postgres\"`");
            }
            let path = match &raw.path {
                Some(p) if p.get_ref().trim().is_empty() => {
                    cx.error(p.span(), "path must not be empty");
                    PathBuf::from("manifold-jobs.db")
                }
                Some(p) => PathBuf::from(p.get_ref()),
                None => PathBuf::from("manifold-jobs.db"),
            };
            let path = match base_dir {
                Some(base) if path.is_relative() => base.join(path),
                _ => path,
            };
            JobStoreConfig::Sqlite { path }
        }
        Some("postgres") => {
            if let Some(path) = &raw.path {
                cx.error(path.span(), "`path` applies only to `store = \"sqlite\"`");
            }
            match &raw.url {
                Some(url) => match url::Url::parse(url.get_ref()) {
                    Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
                        JobStoreConfig::Postgres {
                            url: Secret::new(url.get_ref().clone()),
                        }
                    }
                    Ok(u) => {
                        cx.error(
                            url.span(),
                            format!(
                                "url scheme \"{}\" is not supported (expected postgres://)",
                                u.scheme()
                            ),
                        );
                        JobsConfig::default().store
                    }
                    Err(e) => {
                        cx.error(
                            url.span(),
                            format!("invalid url: {e} (expected postgres://USER@HOST:PORT/DB)"),
                        );
                        JobsConfig::default().store
                    }
                },
                None => {
                    if let Some(store) = &raw.store {
                        cx.error(
                            store.span(),
                            "`store = \"postgres\"` needs `url` (e.g. \"postgres://postgres@127.0.0.1:5432/manifold\")",
                        );
                    }
                    JobsConfig::default().store
                }
            }
        }
        Some(other) => {
            if let Some(store) = &raw.store {
                cx.error(
                    store.span(),
                    format!("unknown store \"{other}\" (expected \"sqlite\" or \"postgres\")"),
                );
            }
            JobsConfig::default().store
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::{JobStoreConfig, OnInterrupt};
    use crate::config::parse_str;

    use crate::config::load::test_errors as errors;

    #[test]
    fn jobs_are_off_without_a_section_and_sqlite_beside_the_config_with_one() {
        let c = parse_str("", "g.toml", None).unwrap();
        assert!(!c.jobs.enabled);
        let c = parse_str("[jobs]\n", "g.toml", Some(Path::new("/etc/manifold"))).unwrap();
        assert!(c.jobs.enabled);
        assert_eq!(
            c.jobs.store,
            JobStoreConfig::Sqlite {
                path: "/etc/manifold/manifold-jobs.db".into()
            }
        );
        assert_eq!(c.jobs.max_concurrent, 4);
        assert_eq!(c.jobs.on_interrupt, OnInterrupt::Fail);
    }

    #[test]
    fn postgres_store_and_settings_are_read() {
        let c = parse_str(
            "[jobs]\nstore = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\nmax_concurrent = 8\ntimeout = \"90s\"\non_interrupt = \"requeue\"\nlease = \"2s\"\n",
            "g.toml",
            None,
        )
        .unwrap();
        assert_eq!(c.jobs.store.kind(), "postgres");
        assert_eq!(c.jobs.max_concurrent, 8);
        assert_eq!(c.jobs.timeout, Duration::from_secs(90));
        assert_eq!(c.jobs.on_interrupt, OnInterrupt::Requeue);
        assert_eq!(c.jobs.lease, Duration::from_secs(2));
    }

    #[test]
    fn every_bad_jobs_key_is_reported_with_its_position() {
        let errs = errors(
            "[jobs]\nstore = \"postgres\"\nmax_concurrent = 0\ntimeout = \"soon\"\non_interrupt = \"retry\"\n",
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with("gateway.toml:2:9: `store = \"postgres\"` needs `url`"));
        assert!(errs[1].starts_with("gateway.toml:3:18: max_concurrent must be between 1"));
        assert!(errs[2].starts_with("gateway.toml:4:11: invalid duration \"soon\""));
        assert!(errs[3].starts_with("gateway.toml:5:16: unknown on_interrupt \"retry\""));
        let errs = errors("[jobs]\nstore = \"mysql\"\ncolour = 1\n");
        assert!(
            errs[0].starts_with("gateway.toml:3:1: unknown field `colour`"),
            "{errs:?}"
        );
        let errs = errors("[jobs]\nstore = \"mysql\"\n");
        assert_eq!(
            errs,
            vec!["gateway.toml:2:9: unknown store \"mysql\" (expected \"sqlite\" or \"postgres\")"]
        );
    }
}
