//! The `requestState` of a parked call, and the questions and answers of
//! one round in their 2026-07-28 wire form.
//!
//! The state is sealed with rmcp's `RequestStateCodec` (HMAC-SHA256, a key
//! made at start, so a state is good only in the process that issued it) and
//! carries a TTL. It names the parked call and round, and binds the client
//! (its authenticated id) and a digest of the original request: the retry
//! must come from the same client and repeat the same request. A state that
//! fails any check is a `-32602` saying which.

#![allow(deprecated)] // sampling and roots results are deprecated by SEP-2577 but are what clients answer

use std::collections::BTreeMap;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    ClientResult, CreateMessageResult, ElicitResult, InputRequest, InputRequests, InputResponses,
    ListRootsResult, RequestStateCodec, RequestStateError, SealOptions, ServerRequest,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::coordinator::RelayJob;

/// Who may retry a parked call, and with which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::front) struct Binding {
    /// The authenticated client (`None` without `[auth]`).
    pub client: Option<String>,
    /// Digest of the method, the exposed name and the arguments.
    pub digest: String,
}

impl Binding {
    /// The binding of a request: `what` is its method, exposed name or URI,
    /// and arguments (never `_meta`, `inputResponses` or `requestState`).
    pub fn of(client: Option<&str>, what: &serde_json::Value) -> Self {
        let digest = Sha256::digest(what.to_string().as_bytes());
        Self {
            client: client.map(String::from),
            digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// What a sealed state says.
#[derive(Serialize, Deserialize)]
pub(super) struct Sealed {
    /// The parked call; 0 for a backend's own round passed through.
    pub call: u64,
    pub round: u32,
    pub client: Option<String>,
    pub digest: String,
    /// A 2026-07-28 backend's own `requestState`, for a round it asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// The codec with this process's key.
pub(super) fn codec() -> RequestStateCodec {
    // 4 × 122 random bits from the OS generator (uuid v4).
    let key: Vec<u8> = (0..4)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    RequestStateCodec::new_unchecked(key)
}

pub(super) fn seal(codec: &RequestStateCodec, state: &Sealed, ttl: Duration) -> String {
    let payload = serde_json::to_vec(state).unwrap_or_default();
    codec.seal_with(&payload, &SealOptions::new().ttl(ttl))
}

/// Opens a state a client sent back and checks it against the retry.
pub(super) fn open(
    codec: &RequestStateCodec,
    state: &str,
    retry: &Binding,
    ttl: Duration,
) -> Result<Sealed, ErrorData> {
    let opened: Sealed = codec.open_json(state).map_err(|e| match e {
        RequestStateError::Expired => invalid(format!(
            "requestState has expired: the call waited longer than {} (server.relay_timeout) for the answers and was cancelled",
            humantime::format_duration(ttl)
        )),
        _ => invalid(
            "requestState was not issued by this gateway process, or was altered; repeat the request without it"
                .into(),
        ),
    })?;
    if opened.client != retry.client {
        return Err(invalid(
            "requestState was issued to another client; only the client that started the call may continue it"
                .into(),
        ));
    }
    if opened.digest != retry.digest {
        return Err(invalid(
            "requestState belongs to a different request: a retry must repeat the original request's method, name and arguments"
                .into(),
        ));
    }
    Ok(opened)
}

pub(super) fn invalid(message: String) -> ErrorData {
    ErrorData::invalid_params(message, None)
}

/// A backend's request as a 2026-07-28 client is asked it; `None` for a
/// kind InputRequired cannot carry (only sampling, elicitation and roots can,
/// and only those are relayed).
pub(super) fn input_request(request: &ServerRequest) -> Option<InputRequest> {
    Some(match request {
        ServerRequest::CreateMessageRequest(r) => InputRequest::CreateMessage(r.clone()),
        ServerRequest::ElicitRequest(r) => InputRequest::Elicitation(r.clone()),
        ServerRequest::ListRootsRequest(r) => InputRequest::ListRoots(r.clone()),
        _ => return None,
    })
}

/// The questions of a round, by key.
pub(super) fn input_requests(asked: &BTreeMap<String, RelayJob>) -> InputRequests {
    asked
        .iter()
        .filter_map(|(k, job)| Some((k.clone(), input_request(&job.request)?)))
        .collect()
}

/// The client's answer to each question, checked before any is delivered:
/// every question needs an answer of its kind.
pub(super) fn answers(
    asked: &BTreeMap<String, RelayJob>,
    responses: Option<&InputResponses>,
) -> Result<Vec<(String, ClientResult)>, ErrorData> {
    let empty = InputResponses::new();
    let responses = responses.unwrap_or(&empty);
    asked
        .iter()
        .map(|(key, job)| {
            let Some(value) = responses.get(key) else {
                return Err(invalid(format!(
                    "inputResponses has no answer for `{key}`; answer every inputRequests entry of the last round"
                )));
            };
            let parsed = match &job.request {
                ServerRequest::CreateMessageRequest(_) => {
                    serde_json::from_value::<CreateMessageResult>(value.clone())
                        .map(|r| ClientResult::CreateMessageResult(Box::new(r)))
                }
                ServerRequest::ElicitRequest(_) => {
                    serde_json::from_value::<ElicitResult>(value.clone())
                        .map(ClientResult::ElicitResult)
                }
                _ => serde_json::from_value::<ListRootsResult>(value.clone())
                    .map(ClientResult::ListRootsResult),
            };
            parsed
                .map(|r| (key.clone(), r))
                .map_err(|e| invalid(format!("inputResponses `{key}` is not a valid answer: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(client: Option<&str>) -> Binding {
        Binding::of(client, &json!(["tools/call", "fx__sample", {}]))
    }

    #[test]
    fn a_state_opens_only_for_its_client_and_request() {
        let codec = codec();
        let ttl = Duration::from_secs(60);
        let b = binding(Some("alice"));
        let sealed = Sealed {
            call: 7,
            round: 1,
            client: b.client.clone(),
            digest: b.digest.clone(),
            backend: None,
        };
        let state = seal(&codec, &sealed, ttl);
        let opened = open(&codec, &state, &b, ttl).expect("opens");
        assert_eq!((opened.call, opened.round), (7, 1));

        let bob = open(&codec, &state, &binding(Some("bob")), ttl)
            .err()
            .unwrap();
        assert!(bob.message.contains("another client"), "{bob:?}");
        let other = Binding::of(Some("alice"), &json!(["tools/call", "fx__echo", {}]));
        let other = open(&codec, &state, &other, ttl).err().unwrap();
        assert!(other.message.contains("different request"), "{other:?}");
        let forged = open(&super::codec(), &state, &b, ttl).err().unwrap();
        assert!(forged.message.contains("not issued"), "{forged:?}");
        assert_eq!(forged.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    }

    #[test]
    fn an_expired_state_says_so() {
        let codec = codec();
        let b = binding(None);
        let sealed = Sealed {
            call: 1,
            round: 1,
            client: None,
            digest: b.digest.clone(),
            backend: None,
        };
        let state = seal(&codec, &sealed, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        let e = open(&codec, &state, &b, Duration::from_millis(1))
            .err()
            .unwrap();
        assert!(e.message.contains("expired"), "{e:?}");
    }
}
