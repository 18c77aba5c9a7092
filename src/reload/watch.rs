//! Reload triggers: changes to the config file (its directory is watched, so
//! editors that save by rename work) and SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Reloader;

/// Changes to the file within this window are taken as one.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Reloads on changes to the config file and on SIGHUP until `shutdown`.
/// Returns at once when the reloader has no file.
pub async fn watch(reloader: Arc<Reloader>, shutdown: CancellationToken) {
    use notify::{RecursiveMode, Watcher};
    let Some(path) = reloader.path().map(Path::to_path_buf) else {
        return;
    };
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
    spawn_sighup(tx.clone(), shutdown.clone());
    loop {
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => return,
            t = rx.recv() => match t { Some(t) => t, None => return },
        };
        // Editors write in several steps: wait for the burst to end.
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        let _ = reloader.reload_file(trigger).await;
    }
}

/// Turns SIGHUP into a reload trigger; the task ends at shutdown.
#[cfg(unix)]
fn spawn_sighup(tx: tokio::sync::mpsc::UnboundedSender<&'static str>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
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
