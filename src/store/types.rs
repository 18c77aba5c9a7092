//! The records a store keeps, as they are serialized into Redis (JSON).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch: the one clock every instance shares.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One client-to-client message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Assigned by the store, increasing: a reply always has a greater id
    /// than the message it answers.
    #[serde(default)]
    pub id: u64,
    pub sender: String,
    pub recipient: String,
    pub body: String,
    pub sent_at_ms: u64,
    pub expires_at_ms: u64,
}

impl Message {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms <= now_ms
    }
}

/// A client that announced itself with `checkin_client`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub capabilities: Value,
    pub checked_in_ms: u64,
    /// The last time the client did anything; filled in when listed.
    #[serde(default)]
    pub last_seen_ms: u64,
}

/// Bus priorities, lowest first; their numbers are the log levels they map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
    Critical,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
        Priority::Critical,
    ];

    /// 10, 20, 30, 40, 50 (Python's logging levels, as bus users expect).
    pub fn number(self) -> u8 {
        (self as u8 + 1) * 10
    }

    pub fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
            Priority::Critical => "critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Priority {
    type Err = String;
    /// A name in any case, or its number (10 … 50).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        Priority::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(t) || p.number().to_string() == t)
            .ok_or_else(|| {
                format!("unknown priority \"{s}\" (expected low, normal, high, urgent or critical)")
            })
    }
}

/// One message on the priority bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusMessage {
    /// Assigned by the store, increasing.
    #[serde(default)]
    pub id: u64,
    pub priority: Priority,
    pub content: String,
    /// When set, only this client's subscriptions receive the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When set, only this session receives it: its global id
    /// (`<instance_id>.<uuid>`), on whichever instance holds it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "session_ref"
    )]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    pub sent_at_ms: u64,
    /// Who published it, recorded by the gateway (never taken from the
    /// publisher's arguments), so a reader can tell the gateway's own
    /// events from a client's.
    #[serde(default)]
    pub sender: BusSender,
}

/// A session reference as stored: a global id, or the per-instance number
/// records written before session ids were global carry (kept as its
/// digits, which match no live session).
fn session_ref<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ref {
        Name(String),
        Number(u64),
    }
    Ok(Option::<Ref>::deserialize(d)?.map(|r| match r {
        Ref::Name(s) => s,
        Ref::Number(n) => n.to_string(),
    }))
}

/// The publisher of a bus message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusSender {
    /// The gateway itself (the `queue` tracing target and `bus::send_*`).
    Gateway,
    /// A client, through the `send_client_message` tool.
    Client {
        /// The client id: its token's when `authenticated`, else the id the
        /// session acts as in messaging, else its MCP client name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "session_ref"
        )]
        session_id: Option<String>,
        /// Whether `client_id` was proven by a bearer token.
        #[serde(default)]
        authenticated: bool,
    },
}

/// A record written before senders were recorded is an unknown client's,
/// never the gateway's.
impl Default for BusSender {
    fn default() -> Self {
        BusSender::Client {
            client_id: None,
            session_id: None,
            authenticated: false,
        }
    }
}

/// What a store announces to its listeners.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A message landed in this client's inbox.
    Inbox(Message),
    /// A message was published on the bus.
    Bus(BusMessage),
    /// The store lost and regained its event feed: anything may have
    /// happened meanwhile, so waiters re-read the store.
    Resync,
}
