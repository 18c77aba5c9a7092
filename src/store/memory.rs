//! The embedded store: everything in this process, gone at restart.
//!
//! One mutex guards all of it: every operation is a few map and deque
//! operations, never held across an await, so contention stays short.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::types::{BusMessage, ClientRecord, Event, Message, now_ms};

pub struct MemoryStore {
    /// All state; locked briefly per operation, never across an await.
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
}

#[derive(Default)]
struct State {
    /// Per recipient, oldest first; created on first message, removed when empty.
    inboxes: HashMap<String, VecDeque<Message>>,
    clients: HashMap<String, ClientRecord>,
    seen: HashMap<String, u64>,
    history: VecDeque<BusMessage>,
    next_message: u64,
    next_bus: u64,
}

impl MemoryStore {
    pub fn new(events: broadcast::Sender<Event>) -> Self {
        Self {
            state: Mutex::default(),
            events,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, mut message: Message) -> u64 {
        let id = {
            let mut s = self.state();
            s.next_message += 1;
            message.id = s.next_message;
            s.inboxes
                .entry(message.recipient.clone())
                .or_default()
                .push_back(message.clone());
            message.id
        };
        // No receiver is fine: nobody is waiting.
        let _ = self.events.send(Event::Inbox(message));
        id
    }

    pub fn pop_all(&self, recipient: &str) -> Vec<Message> {
        let now = now_ms();
        let queue = self.state().inboxes.remove(recipient).unwrap_or_default();
        queue.into_iter().filter(|m| !m.expired(now)).collect()
    }

    pub fn take_reply(&self, recipient: &str, sender: &str, after: u64) -> Option<Message> {
        let now = now_ms();
        let mut s = self.state();
        let queue = s.inboxes.get_mut(recipient)?;
        let at = queue
            .iter()
            .position(|m| m.sender == sender && m.id > after && !m.expired(now))?;
        let message = queue.remove(at);
        if queue.is_empty() {
            s.inboxes.remove(recipient);
        }
        message
    }

    pub fn pending(&self, recipient: &str) -> usize {
        let now = now_ms();
        self.state()
            .inboxes
            .get(recipient)
            .map_or(0, |q| q.iter().filter(|m| !m.expired(now)).count())
    }

    pub fn checkin(&self, record: ClientRecord) {
        let mut s = self.state();
        s.seen.insert(record.id.clone(), record.checked_in_ms);
        s.clients.insert(record.id.clone(), record);
    }

    pub fn touch(&self, client: &str) {
        self.state().seen.insert(client.to_string(), now_ms());
    }

    pub fn is_checked_in(&self, client: &str) -> bool {
        self.state().clients.contains_key(client)
    }

    pub fn clients(&self) -> Vec<ClientRecord> {
        let s = self.state();
        let mut out: Vec<ClientRecord> = s
            .clients
            .values()
            .map(|c| ClientRecord {
                last_seen_ms: s.seen.get(&c.id).copied().unwrap_or(c.checked_in_ms),
                ..c.clone()
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn checkin_count(&self) -> usize {
        self.state().clients.len()
    }

    /// Forgets clients last seen before `cutoff_ms`, except `keep`.
    pub fn expire_checkins(&self, cutoff_ms: u64, keep: &[String]) -> usize {
        let mut s = self.state();
        let gone: Vec<String> = s
            .seen
            .iter()
            .filter(|(id, at)| **at < cutoff_ms && !keep.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        let mut n = 0;
        for id in gone {
            s.seen.remove(&id);
            n += usize::from(s.clients.remove(&id).is_some());
        }
        n
    }

    pub fn bus_publish(&self, mut message: BusMessage, keep: usize) -> u64 {
        {
            let mut s = self.state();
            s.next_bus += 1;
            message.id = s.next_bus;
            s.history.push_back(message.clone());
            while s.history.len() > keep {
                s.history.pop_front();
            }
        }
        let id = message.id;
        let _ = self.events.send(Event::Bus(message));
        id
    }

    pub fn bus_history(&self) -> Vec<BusMessage> {
        self.state().history.iter().cloned().collect()
    }

    /// Drops expired messages and empty inboxes; returns how many messages went.
    pub fn sweep(&self) -> usize {
        let now = now_ms();
        let mut dropped = 0;
        self.state().inboxes.retain(|_, q| {
            let before = q.len();
            q.retain(|m| !m.expired(now));
            dropped += before - q.len();
            !q.is_empty()
        });
        dropped
    }

    /// How many inboxes exist (for tests of cleanup).
    pub fn inbox_count(&self) -> usize {
        self.state().inboxes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sender: &str, recipient: &str, ttl_ms: u64) -> Message {
        let now = now_ms();
        Message {
            id: 0,
            sender: sender.into(),
            recipient: recipient.into(),
            body: "hi".into(),
            sent_at_ms: now,
            expires_at_ms: now + ttl_ms,
        }
    }

    #[test]
    fn reply_must_come_from_the_peer_and_be_newer() {
        let (tx, _rx) = broadcast::channel(8);
        let store = MemoryStore::new(tx);
        let old = store.push(message("bob", "alice", 60_000));
        store.push(message("carol", "alice", 60_000));
        assert_eq!(store.take_reply("alice", "bob", old), None);
        let new = store.push(message("bob", "alice", 60_000));
        assert_eq!(
            store.take_reply("alice", "bob", old).map(|m| m.id),
            Some(new)
        );
        assert_eq!(store.pending("alice"), 2);
    }

    #[test]
    fn sweep_drops_expired_messages_and_empty_inboxes() {
        let (tx, _rx) = broadcast::channel(8);
        let store = MemoryStore::new(tx);
        store.push(message("bob", "alice", 0));
        store.push(message("bob", "dave", 60_000));
        assert_eq!(store.inbox_count(), 2);
        assert_eq!(store.sweep(), 1);
        assert_eq!(store.inbox_count(), 1);
        assert!(store.pop_all("alice").is_empty());
    }

    #[test]
    fn history_keeps_the_last_n() {
        let (tx, _rx) = broadcast::channel(8);
        let store = MemoryStore::new(tx);
        for i in 0..5 {
            store.bus_publish(
                BusMessage {
                    id: 0,
                    priority: crate::store::Priority::Normal,
                    content: format!("m{i}"),
                    client_id: None,
                    session_id: None,
                    metadata: Default::default(),
                    sent_at_ms: now_ms(),
                    sender: Default::default(),
                },
                3,
            );
        }
        let h: Vec<String> = store.bus_history().into_iter().map(|m| m.content).collect();
        assert_eq!(h, ["m2", "m3", "m4"]);
    }
}
