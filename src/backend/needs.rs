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
