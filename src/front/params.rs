//! A request's params checked against its method.
//!
//! rmcp reads a request whose params do not fit its method's type (`tools/call`
//! with `"name": 5`) as a custom request, which would be answered -32601
//! (method not found); the JSON-RPC answer is -32602 (invalid params).
//! [`misfit`] names the mismatch for the session's custom-request handler,
//! which only such requests reach, so a well-formed request is parsed once,
//! by rmcp, and over HTTP and stdio alike. [`check_initialize`], at the HTTP edge before
//! rmcp, bounds what a client may make a session keep for its whole life:
//! the `clientInfo` and `capabilities` of its `initialize` (a misread
//! `initialize` is refused there too: no session is made for it).

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use rmcp::ErrorData;
use rmcp::model::*;
use serde::de::DeserializeOwned;

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
    let message = serde_json::json!({"method": method, "params": params});
    let detail = match method {
        "ping" => typed::<PingRequest>(message),
        "completion/complete" => typed::<CompleteRequest>(message),
        "logging/setLevel" => typed::<SetLevelRequest>(message),
        "prompts/get" => typed::<GetPromptRequest>(message),
        "prompts/list" => typed::<ListPromptsRequest>(message),
        "resources/list" => typed::<ListResourcesRequest>(message),
        "resources/templates/list" => typed::<ListResourceTemplatesRequest>(message),
        "resources/read" => typed::<ReadResourceRequest>(message),
        "resources/subscribe" => typed::<SubscribeRequest>(message),
        "resources/unsubscribe" => typed::<UnsubscribeRequest>(message),
        "tools/call" => typed::<CallToolRequest>(message),
        "tools/list" => typed::<ListToolsRequest>(message),
        _ => return None,
    }?;
    let error = ParamsError::Mismatch {
        method: method.to_string(),
        detail,
    };
    Some(ErrorData::invalid_params(error.to_string(), None))
}

/// serde's explanation of why `message` is not a `T`.
fn typed<T: DeserializeOwned>(message: serde_json::Value) -> Option<String> {
    serde_json::from_value::<T>(message)
        .err()
        .map(|e| e.to_string())
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
