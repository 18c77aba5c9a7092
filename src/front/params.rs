//! A request's params checked against its method at the edge, before rmcp.
//!
//! rmcp reads a request whose params do not fit its method's type (`tools/call`
//! with `"name": 5`) as a custom request and answers -32601 (method not
//! found); the JSON-RPC answer is -32602 (invalid params). This module names
//! the mismatch so the body layer can answer -32602 itself. It also bounds
//! what a client may make a session keep for its whole life: the
//! `clientInfo` and `capabilities` of its `initialize`.
//!
//! Only a request rmcp would misread is refused: a typed parse that fails is
//! confirmed with rmcp's own parse of the message before we answer.

#![allow(deprecated)] // logging and subscriptions are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

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

/// Checks the params of a request (`body` is the whole JSON-RPC message)
/// for the methods rmcp parses into a type; other methods pass.
pub fn check(method: &str, body: &[u8]) -> Result<(), ParamsError> {
    let parsed = match method {
        "initialize" => return check_initialize(body),
        "ping" => typed::<PingRequest>(body),
        "completion/complete" => typed::<CompleteRequest>(body),
        "logging/setLevel" => typed::<SetLevelRequest>(body),
        "prompts/get" => typed::<GetPromptRequest>(body),
        "prompts/list" => typed::<ListPromptsRequest>(body),
        "resources/list" => typed::<ListResourcesRequest>(body),
        "resources/templates/list" => typed::<ListResourceTemplatesRequest>(body),
        "resources/read" => typed::<ReadResourceRequest>(body),
        "resources/subscribe" => typed::<SubscribeRequest>(body),
        "resources/unsubscribe" => typed::<UnsubscribeRequest>(body),
        "tools/call" => typed::<CallToolRequest>(body),
        "tools/list" => typed::<ListToolsRequest>(body),
        _ => Ok(()),
    };
    parsed.map_err(|detail| ParamsError::Mismatch {
        method: method.to_string(),
        detail,
    })
}

fn check_initialize(body: &[u8]) -> Result<(), ParamsError> {
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

/// `Err` with serde's explanation when the message does not parse as `T`
/// and rmcp would take it for a custom request.
fn typed<T: DeserializeOwned>(body: &[u8]) -> Result<(), String> {
    match serde_json::from_slice::<T>(body) {
        Ok(_) => Ok(()),
        Err(e) if misread(body) => Err(e.to_string()),
        Err(_) => Ok(()),
    }
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
        let bad = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#;
        let e = check("tools/call", bad).unwrap_err().to_string();
        assert!(e.starts_with("Invalid params for `tools/call`: "), "{e}");
        let good = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}"#;
        assert!(check("tools/call", good).is_ok());
        let bad =
            br#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"loud"}}"#;
        assert!(check("logging/setLevel", bad).is_err());
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(check("tools/list", list).is_ok());
        assert!(
            check(
                "x/custom",
                br#"{"jsonrpc":"2.0","id":1,"method":"x/custom","params":{"a":1}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn initialize_is_bounded() {
        let init = |name: &str| {
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-06-18","capabilities":{},
                "clientInfo":{"name":name,"version":"1"}}})
            .to_string()
        };
        assert!(check("initialize", init("ok").as_bytes()).is_ok());
        let e = check(
            "initialize",
            init(&"n".repeat(MAX_INITIALIZE_BYTES)).as_bytes(),
        );
        assert!(matches!(e, Err(ParamsError::TooLarge { .. })), "{e:?}");
    }
}
