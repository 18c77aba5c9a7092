//! What the gateway tells backends it can do for them, and what each
//! relayed server→client request needs the calling client to have declared.

#![allow(deprecated)] // sampling and roots are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use rmcp::model::*;

/// The capabilities a shared backend connection advertises: the gateway
/// relays sampling, elicitation and roots to clients that support them.
/// Sub-capabilities (`sampling.tools`, URL-mode elicitation) are advertised
/// too and relayed only to clients that declared the same
/// (`Needs::missing_in`), and so is the tasks extension.
pub fn shared_capabilities() -> ClientCapabilities {
    let mut capabilities = ClientCapabilities::builder()
        .enable_roots()
        .enable_roots_list_changed()
        .enable_sampling()
        .enable_sampling_tools()
        .build();
    capabilities.elicitation = Some(
        ElicitationCapability::new()
            .with_form(FormElicitationCapability::new())
            .with_url(UrlElicitationCapability::new()),
    );
    // Tasks go to clients that declared the extension; for the others the
    // call waits for the task to end (`task_bridge`).
    capabilities
        .extensions
        .get_or_insert_with(Default::default)
        .insert(TASKS_EXTENSION_ID.to_string(), JsonObject::new());
    capabilities
}

/// What a relayed server→client request needs the client to have declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    Sampling,
    /// Sampling with `tools` or `toolChoice` (`sampling.tools`, 2025-11-25).
    SamplingTools,
    /// Form-mode elicitation (`elicitation` or `elicitation.form`).
    Elicitation,
    /// URL-mode elicitation (`elicitation.url`, 2025-11-25).
    UrlElicitation,
    Roots,
}

impl Needs {
    pub(crate) fn of(request: &ServerRequest) -> Self {
        match request {
            ServerRequest::CreateMessageRequest(r)
                if r.params.tools.is_some() || r.params.tool_choice.is_some() =>
            {
                Self::SamplingTools
            }
            ServerRequest::CreateMessageRequest(_) => Self::Sampling,
            ServerRequest::ElicitRequest(r)
                if matches!(r.params, ElicitRequestParams::UrlElicitationParams { .. }) =>
            {
                Self::UrlElicitation
            }
            ServerRequest::ElicitRequest(_) => Self::Elicitation,
            _ => Self::Roots,
        }
    }

    /// `None` when `client` declared what this needs; otherwise the
    /// capability it lacks, as the spec names it.
    pub(crate) fn missing_in(self, client: &ClientCapabilities) -> Option<&'static str> {
        let sampling = client.sampling.as_ref();
        let elicitation = client.elicitation.as_ref();
        let ok = match self {
            Self::Sampling => sampling.is_some(),
            Self::SamplingTools => sampling.is_some_and(|s| s.tools.is_some()),
            // An empty `elicitation: {}` means form mode (2025-11-25 compatibility).
            Self::Elicitation => elicitation.is_some_and(|e| e.form.is_some() || e.url.is_none()),
            Self::UrlElicitation => elicitation.is_some_and(|e| e.url.is_some()),
            Self::Roots => client.roots.is_some(),
        };
        (!ok).then_some(match self {
            Self::Sampling => "sampling",
            Self::SamplingTools => "sampling.tools (sampling with tools)",
            Self::Elicitation => "elicitation (form mode)",
            Self::UrlElicitation => "elicitation.url (URL-mode elicitation)",
            Self::Roots => "roots",
        })
    }
}

/// Asks a client, all at once, the questions a backend put in an
/// `InputRequired` result or an `input_required` task (`asked`), as ordinary
/// sampling, elicitation or roots requests, each only if the client declared
/// what it needs. `asker` names who asked ("it", "its task") and `client` the
/// client, in the reason given when a question cannot be asked.
pub async fn ask_client(
    peer: &rmcp::Peer<rmcp::RoleServer>,
    capabilities: &ClientCapabilities,
    client: Option<&str>,
    asker: &str,
    asked: &InputRequests,
    timeout: std::time::Duration,
) -> Result<InputResponses, String> {
    let mut questions = Vec::new();
    for (key, input) in asked {
        let request = match input.clone() {
            InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
            InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
            InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
            _ => {
                return Err(format!(
                    "{asker} asked for `{key}`, of a kind the gateway cannot relay"
                ));
            }
        };
        if let Some(missing) = Needs::of(&request).missing_in(capabilities) {
            let who = client.map_or("this client".to_string(), |c| format!("client `{c}`"));
            return Err(format!(
                "{asker} asked the client for {missing}, which {who} does not support"
            ));
        }
        let options = rmcp::service::PeerRequestOptions::with_timeout(timeout);
        questions.push(async move {
            let answer = peer
                .send_request_with_option(request, options)
                .await?
                .await_response()
                .await?;
            Ok::<_, rmcp::service::ServiceError>((key.clone(), answer))
        });
    }
    let answers = futures::future::try_join_all(questions)
        .await
        .map_err(|e| format!("the client did not answer the question {asker} asked: {e}"))?;
    Ok(answers
        .into_iter()
        .map(|(key, answer)| (key, serde_json::to_value(answer).unwrap_or_default()))
        .collect())
}
