//! Applying a config: parse → validate → diff → start added and changed
//! backends → swap the snapshot → drain and stop removed ones → one coalesced
//! list change to every live session.
//!
//! Startup is the same path: an empty [`Gateway`] and the diff from nothing
//! to the first config ([`Reloader::start`]). A backend whose config is
//! unchanged keeps its process, connection and in-flight calls, and takes on
//! a new per-call timeout and the new `[server]` backend settings live. A
//! file that does not validate changes nothing; the error is logged and
//! shown in `gateway_status`. Triggers ([`watch`]): a change to the config
//! file, SIGHUP, and `POST /admin/reload`.
//!
//! This module sits above the built-in sets (it builds them) and below the
//! front: what else must follow a new config (the clients' credentials and
//! limits) registers as a [`ConfigListener`].

mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

pub use watch::watch;

use crate::backend::{Backend, BackendEnv, shared_capabilities};
use crate::builtin::BuiltinSets;
use crate::config::{BackendConfig, Config, ConfigErrors, diff_backends, keep_fixed_settings};
use crate::gateway::{Gateway, Snapshot};

/// How long a removed backend's in-flight calls may run before it is stopped.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Something outside the gateway that follows the config in force (the
/// front's auth and limits, for one). Called after the new backends are in
/// place, under the reload lock, so listeners see configs in order.
pub trait ConfigListener: Send + Sync {
    fn apply(&self, config: &Config);
}

/// What a reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Settings that cannot change while running, named; the rest applied.
    pub refused: Vec<String>,
}

/// Owns the path from a config to the running gateway.
pub struct Reloader {
    gateway: Arc<Gateway>,
    /// The built-in sets in force; their state (messaging store, bus
    /// subscriptions) is carried into the next config's sets.
    builtins: Mutex<Option<BuiltinSets>>,
    listeners: Mutex<Vec<Arc<dyn ConfigListener>>>,
    /// Serializes applies; held across a whole apply, never by requests.
    lock: tokio::sync::Mutex<()>,
    /// The config file reloads read, if any.
    path: Option<PathBuf>,
}

impl Reloader {
    /// An empty gateway with `config` applied: backends connect in the
    /// background (see `Gateway::settled`), clients may come at once.
    pub async fn start(config: Config, path: Option<PathBuf>) -> Arc<Self> {
        let reloader = Arc::new(Self {
            gateway: Gateway::new(config.server.clone(), &config.audit),
            builtins: Mutex::new(None),
            listeners: Mutex::new(Vec::new()),
            lock: tokio::sync::Mutex::new(()),
            path,
        });
        reloader.apply_inner(config, true).await;
        reloader
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The job queue, when `[jobs]` mounted it.
    pub fn jobs(&self) -> Option<Arc<crate::jobs::Jobs>> {
        self.builtins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|b| b.jobs().cloned())
    }

    /// The bus's store (history and event feed), when `@bus` is mounted.
    pub fn bus_store(&self) -> Option<crate::store::Store> {
        self.builtins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|b| b.bus_store().cloned())
    }

    /// Registers something that follows every later config.
    pub fn listen(&self, listener: Arc<dyn ConfigListener>) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Applies a validated config to the running gateway.
    pub async fn apply(&self, config: Config) -> ReloadReport {
        self.apply_inner(config, false).await
    }

    /// `first`: the startup apply, which waits for no backend (they connect in
    /// the background) and is not announced as a reload.
    async fn apply_inner(&self, mut new: Config, first: bool) -> ReloadReport {
        let _serial = self.lock.lock().await;
        let gateway = &self.gateway;
        let old_server = gateway.server();
        let mut report = ReloadReport {
            refused: keep_fixed_settings(&old_server, &mut new.server),
            ..ReloadReport::default()
        };
        for name in &report.refused {
            tracing::warn!(setting = %name, "this setting cannot change while running; restart to apply it");
        }
        let (builtins, wanted, env) = self.wanted(&new);
        let old = gateway.snapshot_full();
        let running: BTreeMap<String, BackendConfig> = old
            .backends
            .iter()
            .map(|(n, b)| (n.clone(), b.config.clone()))
            .collect();
        let diff = diff_backends(
            &running,
            &wanted,
            old_server.separator != new.server.separator,
        );
        // New and changed backends read the new environment from the start.
        gateway.live_env().store(Arc::new(env.clone()));
        let (next, started) = self.build(&old, &wanted, &diff.unchanged);
        if !first {
            // New and changed backends connect before the swap, so clients
            // never see a gap; one that fails is mounted down and keeps retrying.
            let connect = new.server.connect_timeout + Duration::from_millis(500);
            futures::future::join_all(
                started
                    .iter()
                    .map(|b| tokio::time::timeout(connect, b.settled())),
            )
            .await;
        }
        let retired: Vec<Arc<Backend>> = old
            .backends
            .values()
            .filter(|b| !next.values().any(|n| Arc::ptr_eq(n, b)))
            .cloned()
            .collect();
        let generation = old.generation + 1;
        drop(old);
        let separator = new.server.separator.clone();
        gateway.install(
            new.server.clone(),
            env,
            Snapshot::new(generation, next, separator),
        );
        *self.builtins.lock().unwrap_or_else(|p| p.into_inner()) = Some(builtins);
        self.notify_listeners(&new);
        gateway.audit.apply(&new.audit);
        drain(retired);
        report.added = diff.added;
        report.removed = diff.removed;
        report.changed = diff.changed;
        report.unchanged = diff.unchanged;
        if !first {
            self.gateway.audit.event(
                "info",
                "reload_applied",
                "config reloaded",
                json!({"added": report.added, "removed": report.removed, "changed": report.changed, "refused": report.refused}),
            );
            // Target `queue`: logged, and published on the bus (builtin::bus).
            tracing::info!(
                target: "queue",
                added = ?report.added, removed = ?report.removed, changed = ?report.changed,
                unchanged = report.unchanged.len(), "config reloaded"
            );
        }
        report
    }

    /// What `new` asks to mount: the built-in sets (keeping the running
    /// sets' state), every backend config, and the backend environment.
    fn wanted(&self, new: &Config) -> (BuiltinSets, Vec<BackendConfig>, BackendEnv) {
        let previous = self
            .builtins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (builtins, builtin_backends) =
            crate::builtin::enabled(new, Arc::downgrade(&self.gateway), previous.as_ref());
        let env = self
            .gateway
            .env_for(&new.server, Arc::new(builtins.clone()));
        let wanted = builtin_backends
            .into_iter()
            .chain(new.enabled_backends().cloned())
            .collect();
        (builtins, wanted, env)
    }

    fn notify_listeners(&self, new: &Config) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for listener in listeners {
            listener.apply(new);
        }
    }

    /// The next set of backends: running ones kept (with their new per-call
    /// timeout), the others started. Returns the set and the started ones.
    fn build(
        &self,
        old: &Snapshot,
        wanted: &[BackendConfig],
        unchanged: &[String],
    ) -> (BTreeMap<String, Arc<Backend>>, Vec<Arc<Backend>>) {
        let mut next = BTreeMap::new();
        let mut started = Vec::new();
        for cfg in wanted {
            let kept = unchanged
                .contains(&cfg.name)
                .then(|| old.backends.get(&cfg.name))
                .flatten();
            let backend = match kept {
                Some(b) => {
                    b.set_timeout(cfg.timeout);
                    b.clone()
                }
                None => {
                    let b = Backend::start(
                        cfg.clone(),
                        self.gateway.live_env(),
                        shared_capabilities(),
                        None,
                    );
                    started.push(b.clone());
                    b
                }
            };
            next.insert(cfg.name.clone(), backend);
        }
        (next, started)
    }

    /// Reads, validates and applies the config file. An invalid file changes
    /// nothing; its errors (with line and column) are logged and kept for status.
    pub async fn reload_file(&self, trigger: &str) -> Result<ReloadReport, ReloadError> {
        let Some(path) = &self.path else {
            return Err(ReloadError::NoFile);
        };
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        match crate::config::load_file(path) {
            Ok(config) => {
                let report = self.apply(config).await;
                crate::metrics::reload(true);
                self.gateway.record_reload(
                    json!({"ok": true, "at": at, "trigger": trigger, "report": report}),
                );
                Ok(report)
            }
            Err(errors) => {
                crate::metrics::reload(false);
                tracing::error!(
                    target: "queue",
                    trigger,
                    "config reload failed; keeping the running config:\n{errors}"
                );
                let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                self.gateway.audit.event(
                    "error",
                    "reload_refused",
                    "config reload refused; the running config stays",
                    json!({"trigger": trigger, "errors": lines}),
                );
                self.gateway.record_reload(
                    json!({"ok": false, "at": at, "trigger": trigger, "errors": lines}),
                );
                Err(ReloadError::Invalid(errors))
            }
        }
    }

    /// The config file reloads read.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Why a reload of the file changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no config file to reload")]
    NoFile,
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// Removed and replaced backends finish their calls, then stop. The task ends
/// when the last of them has stopped.
fn drain(retired: Vec<Arc<Backend>>) {
    if retired.is_empty() {
        return;
    }
    tokio::spawn(async move {
        futures::future::join_all(retired.iter().map(|b| async move {
            let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
            while b.busy() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            b.stop().await;
        }))
        .await;
    });
}
