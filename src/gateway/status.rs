//! What the gateway reports about itself: `/readyz`, `/status` and
//! `gateway_status`, the instructions clients get at `initialize`, and the
//! state gauges of `/metrics`.

use crate::backend::BackendState;
use crate::coordinator::{Fate, Kind};
use crate::metrics::Scrape;

use super::Gateway;

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
            entry["restarts"] = b.restarts().into();
            out.insert(name.clone(), entry);
        }
        serde_json::Value::Object(out)
    }

    /// Everything `gateway_status` and `GET /status` report.
    pub fn status_json(&self) -> serde_json::Value {
        let sessions: Vec<serde_json::Value> = self
            .hub
            .sessions()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id,
                    "client": s.client_name,
                    "subscriptions": s.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).len(),
                })
            })
            .collect();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.is_settled(),
            "backends": self.backends_json(),
            "sessions": sessions,
            "subscriptions": self.hub.subscription_count(),
            "notifications": self.hub.counters.to_json(),
            "unattributable_requests": self.hub.unattributable.load(std::sync::atomic::Ordering::Relaxed),
            "generation": self.snapshot.load().generation,
            "last_reload": self.last_reload.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    /// Instructions for clients: ours, then one block per backend that has any.
    pub fn instructions(&self) -> String {
        let snapshot = self.snapshot.load();
        let server = self.server();
        let sep = &server.separator;
        let mut text = String::from(
            "Manifold is an MCP gateway. Tools and prompts of each mounted server are named \
             `{prefix}{separator}{name}`; resource URIs are `{prefix}+{uri}`.",
        );
        for b in snapshot.backends.values() {
            if b.state() != BackendState::Up {
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
            text.push_str(&format!("\n\n## {} ({naming})\n{}", b.name(), instr.trim()));
        }
        text
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
            sessions: self.hub.session_count(),
            backends: self
                .snapshot
                .load()
                .backends
                .iter()
                .map(|(name, b)| (name.clone(), b.state() == BackendState::Up))
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
