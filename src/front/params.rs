//! A request's params checked against its method.
//!
//! rmcp reads a request whose params do not fit its method's type (`tools/call`
//! with `"name": 5`) as a custom request, which would be answered -32601
//! (method not found); the JSON-RPC answer is -32602 (invalid params).
//! [`misfit`] names the mismatch for the session's custom-request handler,
//! which only such requests reach, so a well-formed request is parsed once,
//! and over HTTP and stdio alike. [`typed_request`] is that parse by method,
//! which the HTTP front's direct path (`direct.rs`) uses instead of rmcp's. [`check_initialize`], at the HTTP edge before
//! rmcp, bounds what a client may make a session keep for its whole life:
//! the `clientInfo` and `capabilities` of its `initialize` (a misread
//! `initialize` is refused there too: no session is made for it).

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use rmcp::ErrorData;
use rmcp::model::*;
use serde::{Deserialize, Deserializer};

/// The most `initialize` may bring in `clientInfo` and `capabilities`
/// together, serialized; a session keeps both until it ends.
pub const MAX_INITIALIZE_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("Invalid params for `{method}`: {detail}")]
    Mismatch { method: String, detail: String },
    #[error(
        "Invalid params for `initialize`: clientInfo and capabilities take {size} bytes; a session may keep at most {MAX_INITIALIZE_BYTES} bytes of them"
    )]
    TooLarge { size: usize },
}

/// The -32602 answer for a request rmcp took for a custom one because its
/// params do not fit its method; `None` for a method rmcp does not type.
pub fn misfit(method: &str, params: Option<&serde_json::Value>) -> Option<ErrorData> {
    let message =
        serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
    let detail = typed_request(method, message)?.err()?.to_string();
    let error = ParamsError::Mismatch {
        method: method.to_string(),
        detail,
    };
    Some(ErrorData::invalid_params(error.to_string(), None))
}

/// A JSON-RPC request read as the type of its `method`, as rmcp types it;
/// `None` for a method rmcp does not type (a custom request). rmcp's own
/// parse tries every request type in turn until one fits (`ClientRequest` is
/// untagged); for a method this table names, the one type that can fit is
/// the one tried here, so a message that reads here reads the same there.
/// `initialize` and `server/discover` are left out: they are rmcp's alone.
pub fn typed_request<'de, D: Deserializer<'de>>(
    method: &str,
    message: D,
) -> Option<Result<JsonRpcRequest<ClientRequest>, D::Error>> {
    fn read<'de, T, D>(message: D) -> Result<JsonRpcRequest<ClientRequest>, D::Error>
    where
        T: Deserialize<'de> + Into<ClientRequest>,
        D: Deserializer<'de>,
    {
        let r = JsonRpcRequest::<T>::deserialize(message)?;
        Ok(JsonRpcRequest {
            jsonrpc: r.jsonrpc,
            id: r.id,
            request: r.request.into(),
        })
    }
    Some(match method {
        "ping" => read::<PingRequest, D>(message),
        "completion/complete" => read::<CompleteRequest, D>(message),
        "logging/setLevel" => read::<SetLevelRequest, D>(message),
        "prompts/get" => read::<GetPromptRequest, D>(message),
        "prompts/list" => read::<ListPromptsRequest, D>(message),
        "resources/list" => read::<ListResourcesRequest, D>(message),
        "resources/templates/list" => read::<ListResourceTemplatesRequest, D>(message),
        "resources/read" => read::<ReadResourceRequest, D>(message),
        "resources/subscribe" => read::<SubscribeRequest, D>(message),
        "resources/unsubscribe" => read::<UnsubscribeRequest, D>(message),
        "tools/call" => read::<CallToolRequest, D>(message),
        "tools/list" => read::<ListToolsRequest, D>(message),
        _ => return None,
    })
}

/// A `tools/call` read as [`typed_request`] reads it, but in one pass: rmcp's
/// request type takes `_meta` out of the params through a flattened wrapper,
/// which first buffers every param (the arguments too) into serde's generic
/// content and then reads them again. Here the params are read into their
/// own type, whose `_meta` field takes `_meta`, and it is moved to the
/// request's extensions, where rmcp puts it. `None` when anything does not
/// read; the caller then takes the general parse, which says why.
pub fn call_request(body: &[u8]) -> Option<JsonRpcRequest<ClientRequest>> {
    #[derive(Deserialize)]
    struct Call {
        jsonrpc: JsonRpcVersion2_0,
        id: RequestId,
        #[allow(dead_code)] // checked by reading it
        method: CallToolRequestMethod,
        params: CallToolRequestParams,
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let call = Call::deserialize(&mut de).ok()?;
    de.end().ok()?;
    let mut params = call.params;
    let meta = params.meta.take();
    let mut request = CallToolRequest::new(params);
    if let Some(meta) = meta {
        request.extensions.insert(meta);
    }
    Some(JsonRpcRequest {
        jsonrpc: call.jsonrpc,
        id: call.id,
        request: ClientRequest::CallToolRequest(request),
    })
}

/// Checks an `initialize` request (`body` is the whole JSON-RPC message);
/// other methods' params are checked by the session (see [`misfit`]).
pub fn check_initialize(body: &[u8]) -> Result<(), ParamsError> {
    let request = match serde_json::from_slice::<InitializeRequest>(body) {
        Ok(r) => r,
        Err(e) => {
            return match misread(body) {
                true => Err(ParamsError::Mismatch {
                    method: "initialize".into(),
                    detail: e.to_string(),
                }),
                false => Ok(()),
            };
        }
    };
    let size = serde_json::to_vec(&request.params.client_info)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        .saturating_add(
            serde_json::to_vec(&request.params.capabilities)
                .map(|v| v.len())
                .unwrap_or(usize::MAX),
        );
    if size > MAX_INITIALIZE_BYTES {
        return Err(ParamsError::TooLarge { size });
    }
    Ok(())
}

/// Whether rmcp parses the message as a custom request (it would answer
/// "method not found" to a method it knows).
fn misread(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<ClientJsonRpcMessage>(body),
        Ok(JsonRpcMessage::Request(JsonRpcRequest {
            request: ClientRequest::CustomRequest(_),
            ..
        }))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_that_do_not_fit_the_method_are_named() {
        let e = misfit("tools/call", Some(&serde_json::json!({"name": 5}))).unwrap();
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
        assert!(
            e.message.starts_with("Invalid params for `tools/call`: "),
            "{e:?}"
        );
        assert!(
            misfit(
                "logging/setLevel",
                Some(&serde_json::json!({"level": "loud"}))
            )
            .is_some()
        );
        assert!(misfit("resources/read", None).is_some());
        assert!(misfit("x/custom", Some(&serde_json::json!({"a": 1}))).is_none());
    }

    #[test]
    fn a_call_reads_in_one_pass_as_the_general_parse_reads_it() {
        let bodies = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fx__echo","arguments":{"message":"hi"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t","_meta":{"progressToken":7,"x":{"y":[1,2]}},"arguments":{"a":{"b":null}}}}"#,
            r#"{"params":{"requestState":"s","name":"t","extra":1},"method":"tools/call","id":2,"jsonrpc":"2.0","other":true}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","_meta":null}}"#,
        ];
        for body in bodies {
            let mut de = serde_json::Deserializer::from_slice(body.as_bytes());
            let general = typed_request("tools/call", &mut de).unwrap().unwrap();
            let fast = call_request(body.as_bytes()).expect(body);
            assert_eq!(fast.id, general.id, "{body}");
            let (ClientRequest::CallToolRequest(f), ClientRequest::CallToolRequest(g)) =
                (&fast.request, &general.request)
            else {
                panic!("not calls: {body}");
            };
            assert_eq!(f.params, g.params, "{body}");
            assert_eq!(
                fast.request.get_meta().0.0,
                general.request.get_meta().0.0,
                "{body}"
            );
            assert_eq!(
                serde_json::to_value(&fast).unwrap(),
                serde_json::to_value(&general).unwrap(),
                "{body}"
            );
        }
        // What the general parse refuses, this does not read either.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}} x"#,
        ] {
            assert!(call_request(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn initialize_is_bounded() {
        let init = |name: &str| {
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-06-18","capabilities":{},
                "clientInfo":{"name":name,"version":"1"}}})
            .to_string()
        };
        assert!(check_initialize(init("ok").as_bytes()).is_ok());
        let e = check_initialize(init(&"n".repeat(MAX_INITIALIZE_BYTES)).as_bytes());
        assert!(matches!(e, Err(ParamsError::TooLarge { .. })), "{e:?}");
    }
}
