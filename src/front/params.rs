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
