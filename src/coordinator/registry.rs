//! Live client sessions, each with a bounded outbound queue drained by its own
//! task, so a slow or stuck client never holds up delivery to the others.

#![allow(deprecated)] // logging types are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rmcp::model::{ClientCapabilities, LoggingLevel, ServerNotification};
use rmcp::{Peer, RoleServer};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::ListKinds;
use super::counters::{Counters, Fate, Kind};

/// Notifications waiting for one client beyond this are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 256;
/// A client that takes longer than this to accept one notification loses it.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Which backends (by name) a session's client may see; decided by the
/// front from the client's allow-list, asked by the coordinator before it
/// delivers anything a backend sent outside a call.
pub type Visibility = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How a session takes what the coordinator delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An `initialize` session (≤ 2025-11-25): list changes, resource
    /// updates and log messages on its own streams.
    Legacy,
    /// One request of a 2026-07-28 client (no session in that protocol):
    /// only what that request causes (its log messages, its relays).
    Request,
    /// A 2026-07-28 `subscriptions/listen` stream: the list changes it
    /// asked for and updates of the URIs it subscribed, each stamped with
    /// the subscription id; never log messages.
    Listen {
        subscription: rmcp::model::RequestId,
        lists: ListKinds,
    },
}

/// One client session as the coordinator sees it.
pub struct Session {
    /// This instance's key for the session.
    pub id: u64,
    /// Its global id, `<instance_id>.<uuid>` (for HTTP sessions the
    /// `Mcp-Session-Id`): what audit entries, bus routing, status and
    /// messaging show.
    pub name: Arc<str>,
    pub mode: Mode,
    pub peer: Peer<RoleServer>,
    pub capabilities: ClientCapabilities,
    pub client_name: String,
    /// When `initialize` registered it (status and the console show it).
    pub started: SystemTime,
    /// The protocol version `initialize` agreed on, once known.
    protocol: OnceLock<String>,
    visible: Visibility,
    /// `logging/setLevel` as `level as u8 + 1`; 0 until the client sets one;
    /// [`LOG_OFF`] for a 2026-07-28 request that did not opt in to logs.
    log_level: AtomicU8,
    /// Exposed resource URIs this session subscribed to.
    pub subscriptions: Mutex<HashSet<String>>,
    /// Ordinary notifications, in order. Bounded: full means dropped. Boxed:
    /// the channel allocates its slots in blocks of 32 up front, which for a
    /// 208-byte notification is 6.6 KB per idle session; for a box, 256 bytes.
    queue: mpsc::Sender<Box<ServerNotification>>,
    /// List-changed flags, set by the coordinator and sent by the pump. Kept
    /// apart from the queue so they coalesce and are never lost to a full queue.
    pending_lists: AtomicU8,
    /// The list hashes this session was last told about (tools, prompts, resources).
    pub list_hashes: Mutex<[u64; 3]>,
    wake: Notify,
    /// Cancelled when the session is unregistered: ends its pump task.
    closed: CancellationToken,
}

const LOG_OFF: u8 = u8::MAX;

const TOOLS: u8 = 1;
const PROMPTS: u8 = 2;
const RESOURCES: u8 = 4;

impl Session {
    /// Creates the session and starts its pump task.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        (id, name): (u64, Arc<str>),
        mode: Mode,
        peer: Peer<RoleServer>,
        capabilities: ClientCapabilities,
        client_name: String,
        visible: Visibility,
        list_hashes: [u64; 3],
        counters: Arc<Counters>,
    ) -> Arc<Self> {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let session = Arc::new(Self {
            id,
            name,
            mode,
            peer,
            capabilities,
            client_name,
            started: SystemTime::now(),
            protocol: OnceLock::new(),
            visible,
            log_level: AtomicU8::new(0),
            subscriptions: Mutex::new(HashSet::new()),
            queue,
            pending_lists: AtomicU8::new(0),
            list_hashes: Mutex::new(list_hashes),
            wake: Notify::new(),
            closed: CancellationToken::new(),
        });
        // The pump ends when the session is unregistered or its transport closes.
        tokio::spawn(pump(
            Arc::downgrade(&session),
            rx,
            session.closed.clone(),
            counters,
        ));
        session
    }

    /// Records the protocol version agreed at `initialize` (the first call wins).
    pub fn set_protocol(&self, version: String) {
        let _ = self.protocol.set(version);
    }

    /// The protocol version agreed at `initialize`, if it finished.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.get().map(String::as_str)
    }

    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Whether this session's client may see what `backend` sends.
    pub fn may_see(&self, backend: &str) -> bool {
        (self.visible)(backend)
    }

    pub fn set_log_level(&self, level: LoggingLevel) {
        self.log_level.store(level as u8 + 1, Ordering::Relaxed);
    }

    /// No log messages at all: a 2026-07-28 request gets them only when it
    /// names a level (`io.modelcontextprotocol/logLevel`).
    pub fn silence_logs(&self) {
        self.log_level.store(LOG_OFF, Ordering::Relaxed);
    }

    /// The level below which this session gets no log messages (info until it sets one).
    pub fn log_level(&self) -> u8 {
        match self.log_level.load(Ordering::Relaxed) {
            0 => LoggingLevel::Info as u8,
            LOG_OFF => u8::MAX,
            n => n - 1,
        }
    }

    /// Whether the session asked for a level (silence does not count: it
    /// must not turn a backend's own logging down for everyone).
    pub fn has_set_log_level(&self) -> bool {
        !matches!(self.log_level.load(Ordering::Relaxed), 0 | LOG_OFF)
    }

    /// Queues a notification without waiting; false when the queue is full.
    pub fn enqueue(&self, notification: ServerNotification) -> bool {
        self.queue.try_send(Box::new(notification)).is_ok()
    }

    /// Flags lists as changed; the pump sends one notification per kind.
    pub fn flag_lists(&self, kinds: ListKinds) {
        let kinds = match &self.mode {
            Mode::Legacy => kinds,
            Mode::Request => return,
            Mode::Listen { lists, .. } => ListKinds {
                tools: kinds.tools && lists.tools,
                prompts: kinds.prompts && lists.prompts,
                resources: kinds.resources && lists.resources,
            },
        };
        let bits = (kinds.tools as u8 * TOOLS)
            | (kinds.prompts as u8 * PROMPTS)
            | (kinds.resources as u8 * RESOURCES);
        if bits != 0 {
            self.pending_lists.fetch_or(bits, Ordering::AcqRel);
            self.wake.notify_one();
        }
    }

    pub fn subscribed(&self, uri: &str) -> bool {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(uri)
    }
}

async fn pump(
    session: std::sync::Weak<Session>,
    mut rx: mpsc::Receiver<Box<ServerNotification>>,
    closed: CancellationToken,
    counters: Arc<Counters>,
) {
    loop {
        let Some(s) = session.upgrade() else { return };
        let peer = s.peer.clone();
        let stamp = match &s.mode {
            Mode::Listen { subscription, .. } => Some(subscription.clone()),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = closed.cancelled() => return,
            _ = s.wake.notified() => {
                let bits = s.pending_lists.swap(0, Ordering::AcqRel);
                drop(s);
                for (bit, kind) in [(TOOLS, Kind::ToolsListChanged), (PROMPTS, Kind::PromptsListChanged), (RESOURCES, Kind::ResourcesListChanged)] {
                    if bits & bit == 0 {
                        continue;
                    }
                    let n = match kind {
                        Kind::ToolsListChanged => ServerNotification::ToolListChangedNotification(Default::default()),
                        Kind::PromptsListChanged => ServerNotification::PromptListChangedNotification(Default::default()),
                        _ => ServerNotification::ResourceListChangedNotification(Default::default()),
                    };
                    let sent = tokio::time::timeout(SEND_TIMEOUT, peer.send_notification(stamped(n, &stamp))).await;
                    let fate = if matches!(sent, Ok(Ok(()))) { Fate::Forwarded } else { Fate::Dropped };
                    counters.add(kind, fate, 1);
                }
            }
            next = rx.recv() => {
                drop(s);
                let Some(notification) = next else { return };
                let notification = *notification;
                let kind = kind_of(&notification);
                let sent = tokio::time::timeout(SEND_TIMEOUT, peer.send_notification(stamped(notification, &stamp))).await;
                let fate = if matches!(sent, Ok(Ok(()))) { Fate::Forwarded } else { Fate::Dropped };
                counters.add(kind, fate, 1);
            }
        }
        if peer.is_transport_closed() {
            return;
        }
    }
}

/// A listen stream's notifications carry its subscription id in `_meta`.
fn stamped(
    mut n: ServerNotification,
    stamp: &Option<rmcp::model::RequestId>,
) -> ServerNotification {
    if let Some(id) = stamp {
        rmcp::model::GetMeta::get_meta_mut(&mut n).set_subscription_id(id.clone());
    }
    n
}

fn kind_of(n: &ServerNotification) -> Kind {
    match n {
        ServerNotification::ProgressNotification(_) => Kind::Progress,
        ServerNotification::LoggingMessageNotification(_) => Kind::Log,
        ServerNotification::ResourceUpdatedNotification(_) => Kind::ResourceUpdated,
        ServerNotification::CancelledNotification(_) => Kind::Cancelled,
        // The only custom one relayed: `notifications/elicitation/complete`.
        ServerNotification::CustomNotification(_) => Kind::Elicitation,
        _ => Kind::ToolsListChanged,
    }
}
