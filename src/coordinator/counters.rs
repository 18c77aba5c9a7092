//! Per-kind counters of what backends sent and what became of it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

/// What a counter counts: notifications and server→client requests by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ToolsListChanged,
    PromptsListChanged,
    ResourcesListChanged,
    Progress,
    Log,
    ResourceUpdated,
    Cancelled,
    Sampling,
    Elicitation,
    Roots,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::ToolsListChanged,
        Kind::PromptsListChanged,
        Kind::ResourcesListChanged,
        Kind::Progress,
        Kind::Log,
        Kind::ResourceUpdated,
        Kind::Cancelled,
        Kind::Sampling,
        Kind::Elicitation,
        Kind::Roots,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ToolsListChanged => "tools_list_changed",
            Kind::PromptsListChanged => "prompts_list_changed",
            Kind::ResourcesListChanged => "resources_list_changed",
            Kind::Progress => "progress",
            Kind::Log => "log",
            Kind::ResourceUpdated => "resource_updated",
            Kind::Cancelled => "cancelled",
            Kind::Sampling => "sampling",
            Kind::Elicitation => "elicitation",
            Kind::Roots => "roots",
        }
    }
}

/// What happened to a message.
#[derive(Clone, Copy, Debug)]
pub enum Fate {
    /// Arrived from a backend.
    Received,
    /// Delivered to a client session (counted once per session).
    Forwarded,
    /// Merged into another notification by coalescing.
    Coalesced,
    /// Not delivered: no owner, a full queue, or refused for isolation.
    Dropped,
}

#[derive(Default)]
pub struct Counters {
    cells: [[AtomicU64; 4]; Kind::ALL.len()],
}

impl Counters {
    pub fn add(&self, kind: Kind, fate: Fate, n: u64) {
        self.cells[kind as usize][fate as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, kind: Kind, fate: Fate) -> u64 {
        self.cells[kind as usize][fate as usize].load(Ordering::Relaxed)
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for kind in Kind::ALL {
            out.insert(
                kind.name().into(),
                json!({
                    "received": self.get(kind, Fate::Received),
                    "forwarded": self.get(kind, Fate::Forwarded),
                    "coalesced": self.get(kind, Fate::Coalesced),
                    "dropped": self.get(kind, Fate::Dropped),
                }),
            );
        }
        Value::Object(out)
    }
}
