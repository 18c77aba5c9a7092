//! Hot reload: parse → validate → diff per backend → start added and changed
//! backends → swap the snapshot → drain and stop removed ones → one coalesced
//! list change to every live session.
//!
//! Startup and reload share the model: a [`Snapshot`] is the set of mounted
//! backends, swapped atomically, so sessions never notice a reload except
//! through `list_changed`. A backend whose config is unchanged keeps its
//! process, connection and in-flight calls. A file that does not validate
//! changes nothing; the error is logged and shown in `gateway_status`.
//! Triggers: a change to the config file (its directory is watched, so
//! editors that save by rename work), SIGHUP, and `POST /admin/reload`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, shared_capabilities};
use crate::config::{BackendConfig, Config, ConfigErrors};
use crate::coordinator::{ListEvent, ListKinds};
use crate::gateway::{Gateway, Snapshot, backend_env};

/// How long a removed backend's in-flight calls may run before it is stopped.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Changes to the file within this window are taken as one.
const DEBOUNCE: Duration = Duration::from_millis(50);

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

/// Whether two configs of one backend can share a connection: equal in all
/// but the per-call timeout, which a running backend can take on live.
fn same_connection(a: &BackendConfig, b: &BackendConfig) -> bool {
    let mut a = a.clone();
    a.timeout = b.timeout;
    a == *b
}

impl Gateway {
    /// Applies a validated config to the running gateway.
    pub async fn apply(self: &Arc<Self>, mut new: Config) -> ReloadReport {
        let _serial = self.reload_lock.lock().await;
        let old_server = self.server();
        let mut report = ReloadReport::default();
        // Settings bound to the listener or the runtime stay as they are.
        macro_rules! fixed {
            ($($field:ident),*) => {$(
                if new.server.$field != old_server.$field {
                    report.refused.push(format!("server.{}", stringify!($field)));
                    new.server.$field = old_server.$field.clone();
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
        for name in &report.refused {
            tracing::warn!(setting = %name, "this setting cannot change while running; restart to apply it");
        }

        let old_env = self.env();
        let (builtins, builtin_backends) = crate::builtin::enabled(&new, Arc::downgrade(self));
        let env = backend_env(
            &new.server,
            self.hub.clone(),
            old_env.http.clone(),
            builtins,
            self.audit.clone(),
        );
        let old = self.snapshot.load_full();
        let separator_changed = old_server.separator != new.server.separator;
        let mut next: BTreeMap<String, Arc<Backend>> = BTreeMap::new();
        let mut started = Vec::new();
        for cfg in builtin_backends.iter().chain(new.enabled_backends()) {
            let reuse = old
                .backends
                .get(&cfg.name)
                .filter(|b| !separator_changed && same_connection(&b.config, cfg));
            let backend = match reuse {
                Some(b) => {
                    b.set_timeout(cfg.timeout);
                    report.unchanged.push(cfg.name.clone());
                    b.clone()
                }
                None => {
                    if old.backends.contains_key(&cfg.name) {
                        report.changed.push(cfg.name.clone());
                    } else {
                        report.added.push(cfg.name.clone());
                    }
                    let b = Backend::start(cfg.clone(), &env, shared_capabilities(), None);
                    started.push(b.clone());
                    b
                }
            };
            next.insert(cfg.name.clone(), backend);
        }
        report.removed = old
            .backends
            .keys()
            .filter(|n| !next.contains_key(*n))
            .cloned()
            .collect();
        // New and changed backends connect before the swap, so clients never
        // see a gap; one that fails is mounted down and keeps retrying.
        let connect = new.server.connect_timeout + Duration::from_millis(500);
        futures::future::join_all(
            started
                .iter()
                .map(|b| tokio::time::timeout(connect, b.settled())),
        )
        .await;

        let retired: Vec<Arc<Backend>> = old
            .backends
            .values()
            .filter(|b| !next.values().any(|n| Arc::ptr_eq(n, b)))
            .cloned()
            .collect();
        let separator = new.server.separator.clone();
        self.env.store(Arc::new(env));
        self.audit.apply(&new.audit);
        // New tokens, allow-lists and limits apply from the next request.
        self.policy.update(&new);
        self.server.store(Arc::new(new.server));
        self.snapshot
            .store(Arc::new(Snapshot::new(old.generation + 1, next, separator)));
        drop(old);
        self.hub.list_changed(ListEvent::Recompute(ListKinds::ALL));
        // Removed and replaced backends finish their calls, then stop. Ends
        // when the last of them has stopped.
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
        // Target `queue`: logged, and published on the bus (builtin::bus).
        tracing::info!(
            target: "queue",
            added = ?report.added, removed = ?report.removed, changed = ?report.changed,
            unchanged = report.unchanged.len(), "config reloaded"
        );
        self.audit.event(
            "info",
            "reload_applied",
            "config reloaded",
            json!({"added": report.added, "removed": report.removed, "changed": report.changed, "refused": report.refused}),
        );
        report
    }

    fn record_reload(&self, outcome: serde_json::Value) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }
}

/// Reads, validates and applies the config file. An invalid file changes
/// nothing; its errors (with line and column) are logged and kept for status.
pub async fn reload_file(
    gateway: &Arc<Gateway>,
    path: &Path,
    trigger: &str,
) -> Result<ReloadReport, ConfigErrors> {
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    match crate::config::load_file(path) {
        Ok(config) => {
            let report = gateway.apply(config).await;
            crate::metrics::reload(true);
            gateway
                .record_reload(json!({"ok": true, "at": at, "trigger": trigger, "report": report}));
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
            gateway.audit.event(
                "error",
                "reload_refused",
                "config reload refused; the running config stays",
                json!({"trigger": trigger, "errors": lines}),
            );
            gateway
                .record_reload(json!({"ok": false, "at": at, "trigger": trigger, "errors": lines}));
            Err(errors)
        }
    }
}

/// Reloads on changes to `path` and on SIGHUP until `shutdown`.
pub async fn watch(gateway: Arc<Gateway>, path: PathBuf, shutdown: CancellationToken) {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let file_name = path.file_name().map(|n| n.to_os_string());
    let events = tx.clone();
    // Lives until this function returns; dropping it stops the watch.
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name)
        {
            let _ = events.send("file");
        }
    });
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; reload with SIGHUP instead");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP instead");
            None
        }
    };
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        // Ends at shutdown.
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() || tx.send("SIGHUP").is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    loop {
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => return,
            t = rx.recv() => match t { Some(t) => t, None => return },
        };
        // Editors write in several steps: wait for the burst to end.
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        let _ = reload_file(&gateway, &path, trigger).await;
    }
}
