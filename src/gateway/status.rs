//! What the gateway reports about itself: `/readyz`, `/status` and
//! `gateway_status`, the instructions clients get at `initialize`, and the
//! state gauges of `/metrics`.

use rmcp::model::Implementation;

use crate::backend::BackendState;
use crate::config::TransportConfig;
use crate::coordinator::{Fate, Kind};
use crate::metrics::Scrape;

use super::Gateway;

/// `status_json` lists at most this many sessions.
pub const MAX_LISTED_SESSIONS: usize = 100;
/// A session's client name is cut to this many characters in status.
const MAX_LISTED_NAME: usize = 64;

/// What one caller may see of the gateway's state.
pub struct View<'a> {
    /// Whether the caller may see a backend, by name.
    pub backend: &'a dyn Fn(&str) -> bool,
    /// `Some(id)`: only the sessions of client `id`, and no reload report.
    pub client: Option<&'a str>,
}

impl View<'_> {
    /// Everything: without auth, and for admins.
    pub const ALL: View<'static> = View {
        backend: &every_backend,
        client: None,
    };
}

fn every_backend(_: &str) -> bool {
    true
}

/// RFC 3339 UTC with milliseconds, like the audit log's timestamps.
fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Gateway {
    /// The state of every backend, as JSON for `/readyz` and status tools.
    pub fn backends_json(&self) -> serde_json::Value {
        let snapshot = self.snapshot.load();
        let mut out = serde_json::Map::new();
        for (name, b) in &snapshot.backends {
            let c = b.catalog();
            let state = b.state();
            let mut entry = serde_json::json!({
                "state": state.label(),
                "transport": b.config.transport.kind(),
                "tools": c.tools.len(),
                "prompts": c.prompts.len(),
                "resources": c.resources.len(),
            });
            if let BackendState::Down(reason) = state {
                entry["reason"] = reason.into();
            }
            if let Some(pid) = b.pid() {
                entry["pid"] = pid.into();
            }
            // The era the connection speaks (see `lifecycle`).
            if let Some(info) = b.server_info() {
                entry["protocol_version"] = info.protocol_version.to_string().into();
            }
            entry["restarts"] = b.restarts().into();
            if let Some((error, at)) = b.last_error() {
                entry["last_error"] = error.into();
                entry["last_error_at"] = rfc3339(at).into();
            }
            let rates = crate::metrics::window::rates(name);
            entry["calls_per_s"] = rates.calls_per_s.into();
            entry["p50_ms"] = rates.p50_ms.into();
            entry["p99_ms"] = rates.p99_ms.into();
            out.insert(name.clone(), entry);
        }
        crate::metrics::window::retain(&|name| snapshot.backends.contains_key(name));
        serde_json::Value::Object(out)
    }

    /// Each backend `view` may see: its calls per second and latency
    /// percentiles over the last five minutes (`metrics::window::History`).
    pub fn history_json(&self, view: &View<'_>) -> serde_json::Value {
        let snapshot = self.snapshot.load();
        let out: serde_json::Map<String, serde_json::Value> = snapshot
            .backends
            .keys()
            .filter(|name| (view.backend)(name))
            .map(|name| {
                let h = crate::metrics::window::history(name);
                (name.clone(), serde_json::to_value(h).unwrap_or_default())
            })
            .collect();
        out.into()
    }

    /// Everything `gateway_status` and `GET /status` report, as `view` may
    /// see it. Bounded whatever the number of sessions: at most
    /// `MAX_LISTED_SESSIONS` are listed (`sessions_truncated` says if
    /// more exist, `session_count` how many), client names cut short.
    pub fn status_json(&self, view: &View<'_>) -> serde_json::Value {
        let mine: Vec<_> = self
            .hub
            .sessions()
            .into_iter()
            .filter(|s| view.client.is_none_or(|c| s.client_name == c))
            .collect();
        let in_flight = self.hub.calls.in_flight_by_session();
        let sessions: Vec<serde_json::Value> = mine
            .iter()
            .take(MAX_LISTED_SESSIONS)
            .map(|s| {
                serde_json::json!({
                    "id": &*s.name,
                    "client": clip(&s.client_name, MAX_LISTED_NAME),
                    "protocol_version": s.protocol(),
                    "since": rfc3339(s.started),
                    "in_flight": in_flight.get(&s.id).copied().unwrap_or(0),
                    "subscriptions": s.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).len(),
                })
            })
            .collect();
        let mut backends = self.backends_json();
        if let Some(map) = backends.as_object_mut() {
            map.retain(|name, _| (view.backend)(name));
        }
        let mut status = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "instance_id": self.server().instance_id,
            "ready": self.is_settled(),
            "backends": backends,
            "session_count": mine.len(),
            "sessions_truncated": mine.len() > sessions.len(),
            "sessions": sessions,
            "subscriptions": self.hub.subscription_count(),
            "notifications": self.hub.counters.to_json(),
            "unattributable_requests": self.hub.unattributable.load(std::sync::atomic::Ordering::Relaxed),
            "generation": self.snapshot.load().generation,
        });
        // The reload report names every backend and config error.
        if view.client.is_none() {
            status["last_reload"] = self
                .last_reload
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .into();
            status["audit"] = self.audit.status_json();
        }
        status
    }

    /// Instructions for clients: ours, then one block per backend that has
    /// any and that the client may use (`visible`, by backend name).
    pub fn instructions(&self, visible: &dyn Fn(&str) -> bool) -> String {
        let snapshot = self.snapshot.load();
        let server = self.server();
        let sep = &server.separator;
        let mut text = String::from(
            "Manifold is an MCP gateway. Tools and prompts of each mounted server are named \
             `{prefix}{separator}{name}`; resource URIs are `{prefix}+{uri}`.",
        );
        for b in snapshot.backends.values() {
            if b.state() != BackendState::Up || !visible(b.name()) {
                continue;
            }
            let Some(instr) = b.server_info().and_then(|i| i.instructions.clone()) else {
                continue;
            };
            if instr.trim().is_empty() {
                continue;
            }
            let naming = if b.config.prefix.is_empty() {
                "names unprefixed".to_string()
            } else {
                format!("names prefixed `{}{sep}`", b.config.prefix)
            };
            let info = b.server_info();
            let about = info.as_ref().and_then(|i| i.server_info.as_ref());
            let title = about
                .and_then(|a| a.title.as_deref())
                .map(|t| format!(" — {t}"))
                .unwrap_or_default();
            let site = about
                .and_then(|a| a.website_url.as_deref())
                .map(|w| format!(", {w}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "\n\n## {}{title} ({naming}{site})\n{}",
                b.name(),
                instr.trim()
            ));
        }
        text
    }

    /// The gateway's `serverInfo` for a client that sees `visible`
    /// backends: with exactly one mounted server in view the gateway stands
    /// in for it, so its title, description, icons and website are shown;
    /// with several, the icons of all of them (each once) and our own title.
    pub fn implementation(&self, visible: &dyn Fn(&str) -> bool) -> Implementation {
        let snapshot = self.snapshot.load();
        let mounted: Vec<Implementation> = snapshot
            .backends
            .values()
            .filter(|b| !matches!(b.config.transport, TransportConfig::Builtin { .. }))
            .filter(|b| b.state() == BackendState::Up && visible(b.name()))
            .filter_map(|b| b.server_info().and_then(|i| i.server_info.clone()))
            .collect();
        let mut ours = Implementation::new("manifold", env!("CARGO_PKG_VERSION"));
        ours.title = Some("Manifold MCP gateway".into());
        if let [only] = mounted.as_slice() {
            ours.title = only.title.clone().or(ours.title);
            ours.description = only.description.clone();
            ours.icons = only.icons.clone();
            ours.website_url = only.website_url.clone();
            return ours;
        }
        let mut icons: Vec<rmcp::model::Icon> = Vec::new();
        for icon in mounted
            .into_iter()
            .flat_map(|i| i.icons.unwrap_or_default())
        {
            if !icons.iter().any(|i| i.src == icon.src) {
                icons.push(icon);
            }
        }
        ours.icons = (!icons.is_empty()).then_some(icons);
        ours
    }

    /// The state gauges `/metrics` shows, read now.
    pub fn metrics_scrape(&self) -> Scrape {
        let fates = [
            (Fate::Received, "received"),
            (Fate::Forwarded, "forwarded"),
            (Fate::Coalesced, "coalesced"),
            (Fate::Dropped, "dropped"),
        ];
        Scrape {
            instance: self.server().instance_id.clone(),
            sessions: self.hub.session_count(),
            backends: self
                .snapshot
                .load()
                .backends
                .iter()
                .map(|(name, b)| (name.clone(), b.state() == BackendState::Up))
                .collect(),
            audit: self
                .audit
                .stats()
                .into_iter()
                .map(|(destination, stats)| {
                    use std::sync::atomic::Ordering::Relaxed;
                    let failing = stats
                        .failing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some();
                    let counts = [
                        ("written", stats.written.load(Relaxed)),
                        ("batches", stats.batches.load(Relaxed)),
                        ("retried", stats.retried.load(Relaxed)),
                        ("dropped", stats.dropped.load(Relaxed)),
                    ];
                    (destination, counts, failing)
                })
                .collect(),
            notifications: Kind::ALL
                .iter()
                .flat_map(|&kind| {
                    fates.map(|(fate, label)| {
                        (kind.name(), label, self.hub.counters.get(kind, fate))
                    })
                })
                .collect(),
        }
    }
}
