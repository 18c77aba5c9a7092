//! The coordinator: everything backends send back reaches exactly the client
//! sessions it belongs to.
//!
//! The [`Hub`] is shared by client sessions and backend client handlers. It
//! holds the session registry, the in-flight call table, resource
//! subscriptions and counters, and owns no backend: a backend's handler keeps
//! an `Arc<Hub>`, so if the hub held backends the two would keep each other
//! alive and an unmounted backend's child would never die (rmcp notes, P19).
//! List changes are merged per backend in [`lists`] and published once per
//! coalescing window, only to the sessions whose view changed. The coordinator
//! names no backend type: backends are known by their numeric id, and the
//! layer that owns them implements [`ListSource`].

#![allow(deprecated)] // logging types are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

pub mod calls;
pub mod counters;
pub mod elicitations;
pub mod lists;
mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rmcp::model::{
    ClientCapabilities, CustomNotification, LoggingLevel, LoggingMessageNotification,
    LoggingMessageNotificationParam, ResourceUpdatedNotification, ResourceUpdatedNotificationParam,
    ServerNotification,
};
use rmcp::{Peer, RoleServer};

pub use calls::{Attribution, CallEvent, Calls, RelayJob};
pub use counters::{Counters, Fate, Kind};
pub use lists::{ListSource, spawn_list_task};
pub use registry::{Mode, Session, Visibility};

/// Which aggregated lists changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListKinds {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

impl ListKinds {
    pub const ALL: Self = Self {
        tools: true,
        prompts: true,
        resources: true,
    };
    pub const TOOLS: Self = Self {
        tools: true,
        prompts: false,
        resources: false,
    };
    pub const PROMPTS: Self = Self {
        tools: false,
        prompts: true,
        resources: false,
    };
    pub const RESOURCES: Self = Self {
        tools: false,
        prompts: false,
        resources: true,
    };

    pub fn union(self, other: Self) -> Self {
        Self {
            tools: self.tools || other.tools,
            prompts: self.prompts || other.prompts,
            resources: self.resources || other.resources,
        }
    }
}

pub struct Hub {
    /// Live sessions by our own id. Read on every broadcast; written at
    /// session start and end. Never held across an await.
    sessions: RwLock<HashMap<u64, Arc<Session>>>,
    next_session: AtomicU64,
    /// This instance's `[server] instance_id`: the first part of every
    /// session's global id (see [`Hub::mint_name`]).
    instance: Arc<str>,
    pub calls: Calls,
    pub counters: Arc<Counters>,
    /// Exposed resource URI → number of sessions subscribed to it.
    subscriptions: Mutex<HashMap<String, usize>>,
    /// List changes waiting for the list task (bounded by the number of backends).
    lists: Arc<lists::ListQueue>,
    /// Messages that could not be attributed to one session, for `gateway_status`.
    pub unattributable: AtomicU64,
    /// URL-mode elicitations relayed to a session, for their completion notice.
    pub elicitations: elicitations::Elicitations,
    /// Tells the other instances when this one's lists change (set when
    /// sessions are shared), and the hashes it last told them.
    lists_announcer: std::sync::OnceLock<ListsAnnouncer>,
    last_announced: Mutex<[u64; 3]>,
}

/// Flags `session` for the lists whose hashes differ from those it last saw,
/// and records `hashes` as seen; true when it was flagged.
fn catch_up(session: &Session, hashes: [u64; 3]) -> bool {
    let mut seen = session
        .list_hashes
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let kinds = ListKinds {
        tools: seen[0] != hashes[0],
        prompts: seen[1] != hashes[1],
        resources: seen[2] != hashes[2],
    };
    *seen = hashes;
    drop(seen);
    let changed = kinds != ListKinds::default();
    if changed {
        session.flag_lists(kinds);
    }
    changed
}

/// Receives this instance's list hashes each time they change.
pub type ListsAnnouncer = Box<dyn Fn([u64; 3]) + Send + Sync>;

impl Hub {
    /// A hub for the instance named `instance` (`[server] instance_id`).
    pub fn new(instance: &str) -> Arc<Self> {
        Arc::new(Self {
            sessions: RwLock::new(HashMap::new()),
            next_session: AtomicU64::new(0),
            instance: instance.into(),
            calls: Calls::default(),
            counters: Arc::new(Counters::default()),
            subscriptions: Mutex::new(HashMap::new()),
            lists: Arc::default(),
            unattributable: AtomicU64::new(0),
            elicitations: Default::default(),
            lists_announcer: Default::default(),
            last_announced: Mutex::new([0; 3]),
        })
    }

    /// This instance's key for a new session: a counter, cheap to hash and
    /// never shown outside the instance.
    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A new global session id, `<instance_id>.<uuid>`: the name a session
    /// has everywhere outside this instance's own tables (audit entries, bus
    /// routing, status, messaging). An HTTP session's name is its
    /// `Mcp-Session-Id`, which has the same shape.
    pub fn mint_name(&self) -> Arc<str> {
        format!("{}.{}", self.instance, uuid::Uuid::new_v4()).into()
    }

    /// Whether the session named `name` has calls in flight here.
    pub fn has_calls_in_flight(&self, name: &str) -> bool {
        self.session_named(name)
            .is_some_and(|s| self.calls.in_flight_by_session().contains_key(&s.id))
    }

    /// The live session this instance knows by the global id `name`.
    pub fn session_named(&self, name: &str) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|s| &*s.name == name)
            .cloned()
    }

    /// Registers a session; `list_hashes` are the hashes of the lists as it
    /// can see them now, so it is told only about later changes.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        (id, name): (u64, Arc<str>),
        mode: Mode,
        peer: Peer<RoleServer>,
        capabilities: ClientCapabilities,
        client_name: String,
        visible: Visibility,
        hashes: [u64; 3],
    ) -> Arc<Session> {
        let session = Session::start(
            (id, name),
            mode,
            peer,
            capabilities,
            client_name,
            visible,
            hashes,
            self.counters.clone(),
        );
        self.sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, session.clone());
        session
    }

    /// Removes a session; returns the exposed URIs no session subscribes to any more.
    pub fn unregister(&self, id: u64) -> Vec<String> {
        let Some(session) = self
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            return Vec::new();
        };
        session.close();
        let uris: Vec<String> = session
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        uris.into_iter().filter(|uri| self.release(uri)).collect()
    }

    pub fn session(&self, id: u64) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Sessions and listen streams: what `limits.max_sessions` bounds. A
    /// 2026-07-28 request registered for its duration is not a session.
    pub fn session_count(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.mode != Mode::Request)
            .count()
    }

    /// A backend (by id) announced that some of its lists changed: refresh
    /// them, then publish.
    pub fn list_changed(&self, backend: u64, kinds: ListKinds) {
        self.lists.changed(backend, kinds);
    }

    /// The set of backends or their state changed: publish without refreshing.
    pub fn lists_recompute(&self) {
        self.lists.recompute();
    }

    /// Flags every session whose last known view of the lists differs from
    /// these freshly computed hashes. Returns how many sessions were flagged.
    pub fn publish_lists(&self, hashes: [u64; 3]) -> usize {
        let mut flagged = 0;
        for session in self.sessions() {
            if catch_up(&session, hashes) {
                flagged += 1;
            }
        }
        if let Some(announce) = self.lists_announcer.get() {
            let mut last = self
                .last_announced
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *last != hashes {
                *last = hashes;
                announce(hashes);
            }
        }
        flagged
    }

    /// Has `announce` hear of every change of this instance's lists (once).
    pub fn announce_lists_to(&self, announce: ListsAnnouncer) {
        let _ = self.lists_announcer.set(announce);
    }

    /// Another instance's lists changed to `hashes`. A 2026-07-28 client is
    /// served by any instance, so its listen streams here are told of the
    /// kinds whose hashes differ from what they last saw; sessions of the
    /// initialize era, which this instance alone serves, are not.
    pub fn remote_lists(&self, hashes: [u64; 3]) -> usize {
        let mut flagged = 0;
        for session in self.sessions() {
            if !matches!(session.mode, Mode::Listen { .. }) {
                continue;
            }
            if catch_up(&session, hashes) {
                flagged += 1;
            }
        }
        flagged
    }

    /// The most verbose level asked for by a session that may see
    /// `backend`, if any did: a client cannot turn up the logging of a
    /// backend it may not use.
    pub fn log_floor_for(&self, backend: &str) -> Option<LoggingLevel> {
        self.sessions()
            .iter()
            .filter(|s| s.has_set_log_level() && s.may_see(backend))
            .map(|s| s.log_level())
            .min()
            .map(level_from_u8)
    }

    /// Forwards a backend's log message. One caused by a call (`caller`) goes
    /// to that call's session only; any other to the sessions that may see
    /// the backend (only `owner` for a connection owned by one session);
    /// each only if its level admits it.
    pub fn log(
        &self,
        backend: &str,
        owner: Option<u64>,
        caller: Option<u64>,
        mut param: LoggingMessageNotificationParam,
    ) {
        self.counters.add(Kind::Log, Fate::Received, 1);
        param.logger = Some(match param.logger.take() {
            Some(l) if !l.is_empty() => format!("{backend}/{l}"),
            _ => backend.to_string(),
        });
        let level = param.level as u8;
        for session in self.sessions() {
            let addressed = match (caller.or(owner), &session.mode) {
                (Some(id), Mode::Legacy | Mode::Request) => id == session.id,
                // A 2026-07-28 request hears only what it caused; a listen stream no logs.
                (None, Mode::Legacy) => session.may_see(backend),
                _ => false,
            };
            if !addressed || level < session.log_level() {
                continue;
            }
            let n = ServerNotification::LoggingMessageNotification(
                LoggingMessageNotification::new(param.clone()),
            );
            if !session.enqueue(n) {
                self.counters.add(Kind::Log, Fate::Dropped, 1);
            }
        }
    }

    /// Counts a session's subscription to an exposed URI; true when it is the first.
    pub fn subscribe(&self, session: &Session, uri: &str) -> bool {
        if !session
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uri.to_string())
        {
            return false;
        }
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let n = subs.entry(uri.to_string()).or_default();
        *n += 1;
        *n == 1
    }

    /// Drops a session's subscription; true when no session is left on it.
    pub fn unsubscribe(&self, session: &Session, uri: &str) -> bool {
        if !session
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uri)
        {
            return false;
        }
        self.release(uri)
    }

    fn release(&self, uri: &str) -> bool {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        match subs.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                subs.remove(uri);
                true
            }
            None => false,
        }
    }

    /// Exposed URIs some session subscribed to (only `owner`'s for a
    /// connection owned by one session), to restore after a reconnect.
    pub fn subscribed_uris(&self, owner: Option<u64>) -> Vec<String> {
        match owner {
            Some(id) => self
                .session(id)
                .map(|s| {
                    s.subscriptions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            None => self
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect(),
        }
    }

    /// Sends a backend's `notifications/elicitation/complete` to the session
    /// its URL elicitation was relayed to (dropped, and counted, if none).
    pub fn elicitation_complete(&self, backend: u64, notification: CustomNotification) {
        self.counters.add(Kind::Elicitation, Fate::Received, 1);
        let id = notification
            .params
            .as_ref()
            .and_then(|p| p.get("elicitationId"))
            .and_then(|v| v.as_str());
        let session = id
            .and_then(|id| self.elicitations.take(backend, id))
            .and_then(|s| self.session(s));
        let delivered = session
            .is_some_and(|s| s.enqueue(ServerNotification::CustomNotification(notification)));
        if !delivered {
            self.counters.add(Kind::Elicitation, Fate::Dropped, 1);
        }
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Sends `resources/updated` for an exposed URI to its subscribers only
    /// (and only to `owner` for a connection owned by one session).
    pub fn resource_updated(&self, exposed_uri: String, owner: Option<u64>) {
        self.counters.add(Kind::ResourceUpdated, Fate::Received, 1);
        let mut delivered = false;
        for session in self.sessions() {
            if !session.subscribed(&exposed_uri) || owner.is_some_and(|o| o != session.id) {
                continue;
            }
            delivered = true;
            let param = ResourceUpdatedNotificationParam::new(exposed_uri.clone());
            let n = ServerNotification::ResourceUpdatedNotification(
                ResourceUpdatedNotification::new(param),
            );
            if !session.enqueue(n) {
                self.counters.add(Kind::ResourceUpdated, Fate::Dropped, 1);
            }
        }
        if !delivered {
            self.counters.add(Kind::ResourceUpdated, Fate::Dropped, 1);
        }
    }
}

pub fn level_from_u8(n: u8) -> LoggingLevel {
    use LoggingLevel::*;
    [
        Debug, Info, Notice, Warning, Error, Critical, Alert, Emergency,
    ]
    .get(n as usize)
    .copied()
    .unwrap_or(Emergency)
}
