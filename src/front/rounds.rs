//! A 2026-07-28 backend's `InputRequired` rounds, answered by an
//! initialize-era client: each question goes to the client as an ordinary
//! sampling, elicitation or roots request on the call's own stream (sent
//! from the call's task, rmcp notes P1), and the backend request is retried
//! with the answers and the backend's `requestState` until it completes.
//! A 2026-07-28 client gets the backend's rounds itself (`parked/`).

#![allow(deprecated)] // sampling and roots are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use rmcp::RoleServer;
use rmcp::model::*;
use rmcp::service::RequestContext;

use super::request::Req;
use super::session::FrontSession;
use crate::backend::{Backend, CallError, Origin, Sink};

/// The most rounds one request may take, as rmcp's own clients allow.
const MAX_ROUNDS: usize = DEFAULT_MRTR_MAX_ROUNDS;

/// `request` again, carrying the answers of a round and the state it named.
pub(super) fn with_answers(
    request: ClientRequest,
    responses: InputResponses,
    state: Option<String>,
) -> ClientRequest {
    match request {
        ClientRequest::CallToolRequest(mut r) => {
            r.params.input_responses = Some(responses);
            r.params.request_state = state;
            ClientRequest::CallToolRequest(r)
        }
        ClientRequest::GetPromptRequest(mut r) => {
            r.params.input_responses = Some(responses);
            r.params.request_state = state;
            ClientRequest::GetPromptRequest(r)
        }
        ClientRequest::ReadResourceRequest(mut r) => {
            r.params.input_responses = Some(responses);
            r.params.request_state = state;
            ClientRequest::ReadResourceRequest(r)
        }
        other => other,
    }
}

impl FrontSession {
    /// Answers the backend's rounds through this session's client, starting
    /// with `asked`, and returns the backend's final result.
    pub(super) async fn answer_rounds(
        &self,
        backend: &Backend,
        request: ClientRequest,
        mut asked: InputRequiredResult,
        context: &RequestContext<RoleServer>,
        req: &Req,
    ) -> Result<ServerResult, CallError> {
        for _ in 0..MAX_ROUNDS {
            let responses = self.ask_client(backend, &asked, context, req).await?;
            let retry = with_answers(request.clone(), responses, asked.request_state.take());
            let origin = Origin {
                session: self.id,
                sink: Sink::Peer(&context.peer),
                progress_token: context.meta.get_progress_token(),
                cancel: &req.cancel,
                cancel_reason: None,
                client_capabilities: context.client_capabilities(),
            };
            match backend.request(retry, origin).await? {
                ServerResult::InputRequiredResult(next) => asked = next,
                done => return Ok(done),
            }
        }
        Err(CallError::Failed {
            backend: backend.name().to_string(),
            message: format!("it asked for input more than {MAX_ROUNDS} rounds in a row"),
        })
    }

    /// Asks this session's client one round's questions, all at once.
    async fn ask_client(
        &self,
        backend: &Backend,
        asked: &InputRequiredResult,
        context: &RequestContext<RoleServer>,
        req: &Req,
    ) -> Result<InputResponses, CallError> {
        let failed = |message: String| CallError::Failed {
            backend: backend.name().to_string(),
            message,
        };
        let capabilities = self
            .session
            .get()
            .map(|s| (s.client_name.clone(), s.capabilities.clone()));
        let (client, capabilities) = capabilities.unwrap_or_default();
        let timeout = self.gateway.server().relay_timeout;
        let asked = asked.input_requests.clone().unwrap_or_default();
        let ask = crate::backend::ask_client(
            &context.peer,
            &capabilities,
            Some(&client),
            "it",
            &asked,
            timeout,
        );
        tokio::select! {
            answers = ask => answers.map_err(failed),
            _ = req.cancel.cancelled() => Err(CallError::Cancelled),
        }
    }
}
