//! Backends served inside the gateway process (transport `Builtin`): the
//! backend layer defines how such a server is reached, and the layer above
//! (the built-in tool sets) provides them, so this module never names one.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, Extensions, RequestMetaObject, ServerJsonRpcMessage,
};

/// Serves one connection of an in-process server until it closes.
pub type ServeFn = Arc<dyn Fn(ServerEnd) -> BoxFuture<'static, ()> + Send + Sync>;

/// Messages in flight each way on an in-process connection before a sender waits.
const PIPE_CAPACITY: usize = 64;

/// The server's end of an in-process connection: the messages themselves
/// pass each way, never written out as JSON and read back (a sink and a
/// stream, which rmcp takes as a transport). The connection ends when the
/// client's end is dropped.
pub struct ServerEnd {
    pub to_client: mpsc::Sender<ServerJsonRpcMessage>,
    pub from_client: mpsc::Receiver<ClientJsonRpcMessage>,
}

/// The client's end of an in-process connection.
pub(super) struct ClientEnd {
    pub to_server: mpsc::Sender<ClientJsonRpcMessage>,
    pub from_server: mpsc::Receiver<ServerJsonRpcMessage>,
}

impl ServerEnd {
    /// The end as rmcp's transport: a sink of answers and a stream of
    /// requests, each request as the server would have read it off the wire.
    pub fn into_transport(
        self,
    ) -> (
        mpsc::Sender<ServerJsonRpcMessage>,
        impl futures::Stream<Item = ClientJsonRpcMessage> + Send + Unpin + 'static,
    ) {
        use futures::StreamExt;
        (self.to_client, self.from_client.map(as_read))
    }
}

/// A message as the server would have read it off the wire. rmcp keeps a
/// request's `_meta` in its extensions once read, while the gateway sets
/// some in the params (`CallToolRequestParams::meta`); writing merges the
/// two, reading puts the result in the extensions and nothing else there.
/// A `tools/call` (every call to a built-in set) is moved over by hand; any
/// other message is written out and read back, as over a pipe.
fn as_read(message: ClientJsonRpcMessage) -> ClientJsonRpcMessage {
    match message {
        ClientJsonRpcMessage::Request(mut r) => {
            if let ClientRequest::CallToolRequest(call) = &mut r.request {
                let mut meta = call
                    .extensions
                    .get::<RequestMetaObject>()
                    .cloned()
                    .unwrap_or_default();
                if let Some(params_meta) = call.params.meta.take() {
                    // On the wire the extensions' keys win over the params'.
                    let mut merged = params_meta;
                    merged.0.0.extend(meta.0.0);
                    meta = merged;
                }
                call.extensions = Extensions::new();
                if !meta.0.0.is_empty() {
                    call.extensions.insert(meta);
                }
                return ClientJsonRpcMessage::Request(r);
            }
            reread(ClientJsonRpcMessage::Request(r))
        }
        other => reread(other),
    }
}

fn reread(message: ClientJsonRpcMessage) -> ClientJsonRpcMessage {
    serde_json::to_value(&message)
        .and_then(serde_json::from_value)
        .unwrap_or(message)
}

/// A new in-process connection.
pub(super) fn pipe() -> (ClientEnd, ServerEnd) {
    let (to_server, from_client) = mpsc::channel(PIPE_CAPACITY);
    let (to_client, from_server) = mpsc::channel(PIPE_CAPACITY);
    (
        ClientEnd {
            to_server,
            from_server,
        },
        ServerEnd {
            to_client,
            from_client,
        },
    )
}

/// The in-process servers a gateway offers, by set name.
pub trait InProcessSets: Send + Sync {
    fn get(&self, set: &str) -> Option<ServeFn>;
}

/// No in-process servers (a gateway before its first config is applied).
pub struct NoSets;

impl InProcessSets for NoSets {
    fn get(&self, _: &str) -> Option<ServeFn> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolRequest, CallToolRequestParams, NumberOrString};
    use serde_json::json;

    fn meta(v: serde_json::Value) -> RequestMetaObject {
        serde_json::from_value(v).expect("meta")
    }

    /// A `tools/call` passed over by hand reads as the same call written
    /// out and read back.
    #[test]
    fn a_call_reads_as_it_would_off_the_wire() {
        let mut params = CallToolRequestParams::new("t");
        params.meta = Some(meta(json!({"a": 1, "b": 1})));
        let mut request = CallToolRequest::new(params);
        request.extensions.insert(meta(json!({"b": 2, "c": 3})));
        request.extensions.insert(42u32); // not on the wire
        let message = ClientJsonRpcMessage::request(
            ClientRequest::CallToolRequest(request),
            NumberOrString::Number(1),
        );
        let by_hand = as_read(message.clone());
        let by_wire = reread(message);
        assert_eq!(
            serde_json::to_value(&by_hand).unwrap(),
            serde_json::to_value(&by_wire).unwrap()
        );
        let ClientJsonRpcMessage::Request(r) = by_hand else {
            panic!("a request")
        };
        let ClientRequest::CallToolRequest(call) = r.request else {
            panic!("a call")
        };
        assert!(call.params.meta.is_none());
        assert!(call.extensions.get::<u32>().is_none());
        assert_eq!(
            serde_json::to_value(call.extensions.get::<RequestMetaObject>()).unwrap(),
            json!({"a": 1, "b": 2, "c": 3})
        );
    }
}
