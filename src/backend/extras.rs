//! Fields of listed items that rmcp's typed model has no place for.
//!
//! rmcp 3.9 reads a backend's `tools/list` (and the prompt, resource and
//! template lists) into fixed structs, so a field it does not know, such as
//! a 2025-11-25 tool's `execution` or a vendor's own field, would be lost on
//! the way through. Clients must get every item as the backend listed it.
//!
//! [`ListTap`] sees each list request as it is sent (its id) and the raw
//! bytes of the answers (the transports call [`ListTap::read`] while any
//! list request is waiting, so other traffic is never parsed twice). For
//! each item it keeps the fields rmcp would drop. A refresh then stores them
//! in the item's `_meta` under [`FIELDS`], which carries them through the
//! catalog, the aggregated lists and their change hashes unchanged; the
//! front moves them back to the top level of the item it sends
//! ([`lift`]), so no client sees the private key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::RoleClient;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, MetaObject, Prompt, RequestId, Resource, ResourceTemplate,
    Tool,
};
use rmcp::service::TxJsonRpcMessage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The `_meta` key that carries an item's extra fields inside the gateway.
pub const FIELDS: &str = "io.manifold/listed-fields";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    fn of(request: &ClientRequest) -> Option<Self> {
        Some(match request {
            ClientRequest::ListToolsRequest(_) => Self::Tools,
            ClientRequest::ListPromptsRequest(_) => Self::Prompts,
            ClientRequest::ListResourcesRequest(_) => Self::Resources,
            ClientRequest::ListResourceTemplatesRequest(_) => Self::Templates,
            _ => return None,
        })
    }

    /// The result's array, and the field that names an item in it.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Self::Tools => ("tools", "name"),
            Self::Prompts => ("prompts", "name"),
            Self::Resources => ("resources", "uri"),
            Self::Templates => ("resourceTemplates", "uriTemplate"),
        }
    }
}

/// Extra fields by item name (or URI), for each kind of list.
#[derive(Debug, Default)]
pub struct Found {
    tools: HashMap<String, Map<String, Value>>,
    prompts: HashMap<String, Map<String, Value>>,
    resources: HashMap<String, Map<String, Value>>,
    templates: HashMap<String, Map<String, Value>>,
}

impl Found {
    fn of(&mut self, kind: ListKind) -> &mut HashMap<String, Map<String, Value>> {
        match kind {
            ListKind::Tools => &mut self.tools,
            ListKind::Prompts => &mut self.prompts,
            ListKind::Resources => &mut self.resources,
            ListKind::Templates => &mut self.templates,
        }
    }

    /// Stores each item's extra fields in its `_meta`, replacing what an
    /// earlier listing stored, for the kinds of list just read.
    pub fn apply(mut self, raw: &mut super::catalog::RawLists, kinds: super::ListKinds) {
        if kinds.tools {
            for t in &mut raw.tools {
                keep(&mut t.meta, self.tools.remove(t.name.as_ref()));
            }
        }
        if kinds.prompts {
            for p in &mut raw.prompts {
                keep(&mut p.meta, self.prompts.remove(&p.name));
            }
        }
        if kinds.resources {
            for r in &mut raw.resources {
                keep(&mut r.meta, self.resources.remove(&r.uri));
            }
            for t in &mut raw.templates {
                keep(&mut t.meta, self.templates.remove(&t.uri_template));
            }
        }
    }
}

fn keep(meta: &mut Option<MetaObject>, fields: Option<Map<String, Value>>) {
    match fields {
        Some(fields) => {
            meta.get_or_insert_with(MetaObject::default)
                .0
                .insert(FIELDS.into(), Value::Object(fields));
        }
        None => {
            if let Some(m) = meta.as_mut() {
                m.0.remove(FIELDS);
            }
        }
    }
}

/// Watches one backend connection's list requests and their raw answers.
#[derive(Debug, Default)]
pub struct ListTap {
    /// Number of list requests sent and not yet answered (read without the lock).
    waiting: AtomicUsize,
    watched: Mutex<HashMap<RequestId, ListKind>>,
    found: Mutex<Found>,
}

impl ListTap {
    /// Called with every message sent to the backend.
    pub fn sent(&self, message: &TxJsonRpcMessage<RoleClient>) {
        if let ClientJsonRpcMessage::Request(r) = message
            && let Some(kind) = ListKind::of(&r.request)
        {
            let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            if watched.insert(r.id.clone(), kind).is_none() {
                self.waiting.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Whether a list request waits for its answer: only then do the
    /// transports hand raw messages to [`read`](Self::read).
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Whether `message` is a list request (the HTTP transport reads its
    /// answer itself).
    pub fn is_list_request(message: &ClientJsonRpcMessage) -> bool {
        matches!(message, ClientJsonRpcMessage::Request(r) if ListKind::of(&r.request).is_some())
    }

    /// One raw message from the backend. Anything that is not the answer to
    /// a watched list request (or not JSON) is ignored.
    pub fn read(&self, raw: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Answer {
            id: Option<RequestId>,
            result: Option<Map<String, Value>>,
        }
        let Ok(Answer {
            id: Some(id),
            result,
        }) = serde_json::from_slice::<Answer>(raw)
        else {
            return;
        };
        let kind = {
            let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            let Some(kind) = watched.remove(&id) else {
                return;
            };
            self.waiting.fetch_sub(1, Ordering::Release);
            kind
        };
        let (array, key) = kind.keys();
        let Some(Value::Array(items)) = result.and_then(|mut r| r.remove(array)) else {
            return;
        };
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        for item in items {
            let Value::Object(item) = item else { continue };
            let Some(name) = item.get(key).and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let extra = match kind {
                ListKind::Tools => extra_fields::<Tool>(item),
                ListKind::Prompts => extra_fields::<Prompt>(item),
                ListKind::Resources => extra_fields::<Resource>(item),
                ListKind::Templates => extra_fields::<ResourceTemplate>(item),
            };
            if let Some(extra) = extra {
                found.of(kind).insert(name, extra);
            }
        }
    }

    /// Forgets watched requests that will never be answered (the
    /// connection was replaced) and what was found so far.
    pub fn reset(&self) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.waiting.store(0, Ordering::Release);
        self.take();
    }

    /// What the answers read since the last call carried.
    pub fn take(&self) -> Found {
        std::mem::take(&mut *self.found.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The fields of `item` that `T` does not keep: those missing when the item
/// is read into `T` and written out again.
fn extra_fields<T: DeserializeOwned + Serialize>(
    mut item: Map<String, Value>,
) -> Option<Map<String, Value>> {
    let typed: T = serde_json::from_value(Value::Object(item.clone())).ok()?;
    let Ok(Value::Object(kept)) = serde_json::to_value(&typed) else {
        return None;
    };
    item.retain(|k, _| !kept.contains_key(k));
    // A field the item sent as `null` that `T` leaves out is no news.
    item.retain(|_, v| !v.is_null());
    (!item.is_empty()).then_some(item)
}

/// Moves the extra fields carried in each listed item's `_meta` back to the
/// item's top level. `items` is the array of a list result, as JSON.
/// Returns whether anything moved.
pub fn lift(items: &mut [Value]) -> bool {
    let mut moved = false;
    for item in items {
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        let Some(Value::Object(meta)) = obj.get_mut("_meta") else {
            continue;
        };
        let Some(Value::Object(fields)) = meta.remove(FIELDS) else {
            continue;
        };
        if meta.is_empty() {
            obj.remove("_meta");
        }
        for (k, v) in fields {
            // A field the gateway sets itself (a prefixed name) wins.
            obj.entry(k).or_insert(v);
        }
        moved = true;
    }
    moved
}

/// Whether an item's `_meta` carries extra fields to [`lift`].
pub fn carries(meta: Option<&MetaObject>) -> bool {
    meta.is_some_and(|m| m.0.contains_key(FIELDS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ClientRequest, ListToolsRequest, NumberOrString};
    use serde_json::json;

    fn list_request(id: i64) -> TxJsonRpcMessage<RoleClient> {
        ClientJsonRpcMessage::request(
            ClientRequest::ListToolsRequest(ListToolsRequest::default()),
            NumberOrString::Number(id),
        )
    }

    #[test]
    fn keeps_what_the_typed_tool_drops_and_lifts_it_back() {
        let tap = ListTap::default();
        assert!(!tap.waiting());
        tap.sent(&list_request(7));
        assert!(tap.waiting());
        // Not the watched id: ignored.
        tap.read(br#"{"jsonrpc":"2.0","id":8,"result":{"tools":[{"name":"x","inputSchema":{},"execution":{}}]}}"#);
        assert!(tap.waiting());
        let answer = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": [
            {"name": "slow", "inputSchema": {"type": "object"},
             "execution": {"taskSupport": "optional"}, "x-vendor": [1, 2], "title": null},
            {"name": "plain", "inputSchema": {"type": "object"}, "description": "d"}
        ]}});
        tap.read(&serde_json::to_vec(&answer).unwrap());
        assert!(!tap.waiting());
        let mut raw = super::super::catalog::RawLists {
            tools: serde_json::from_value(answer["result"]["tools"].clone()).unwrap(),
            ..Default::default()
        };
        tap.take().apply(&mut raw, super::super::ListKinds::ALL);
        assert!(carries(raw.tools[0].meta.as_ref()));
        assert!(!carries(raw.tools[1].meta.as_ref()));
        let mut listed = serde_json::to_value(&raw.tools).unwrap();
        assert!(lift(listed.as_array_mut().unwrap()));
        assert_eq!(
            listed[0],
            json!({"name": "slow", "inputSchema": {"type": "object"},
                   "execution": {"taskSupport": "optional"}, "x-vendor": [1, 2]})
        );
        assert_eq!(
            listed[1],
            json!({"name": "plain", "inputSchema": {"type": "object"}, "description": "d"})
        );
    }

    #[test]
    fn a_later_listing_without_the_field_clears_it() {
        let mut raw = super::super::catalog::RawLists {
            tools: vec![Tool::new("t", "d", std::sync::Arc::new(Map::new()))],
            ..Default::default()
        };
        let mut found = Found::default();
        found
            .tools
            .insert("t".into(), json!({"a": 1}).as_object().unwrap().clone());
        found.apply(&mut raw, super::super::ListKinds::ALL);
        assert!(carries(raw.tools[0].meta.as_ref()));
        Found::default().apply(&mut raw, super::super::ListKinds::ALL);
        assert!(!carries(raw.tools[0].meta.as_ref()));
    }

    #[test]
    fn other_requests_are_not_watched_and_garbage_is_ignored() {
        let tap = ListTap::default();
        let ping = ClientJsonRpcMessage::request(
            ClientRequest::PingRequest(Default::default()),
            NumberOrString::Number(1),
        );
        tap.sent(&ping);
        assert!(!tap.waiting());
        tap.sent(&list_request(2));
        tap.read(b"not json");
        tap.read(br#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}"#);
        assert!(!tap.waiting(), "an error answer ends the wait too");
        assert!(tap.take().tools.is_empty());
    }
}
