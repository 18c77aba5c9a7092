//! The gateway's rmcp client handler toward one backend: what the backend
//! sends unprompted goes to the coordinator, which routes it to the right
//! client sessions.
//!
//! Server→client requests (sampling, elicitation, roots) are attributed to
//! the in-flight call that caused them and relayed on that call's own task
//! (rmcp notes, P1). When the wire cannot say which call it was and calls
//! from several sessions are in flight, the request fails with an error
//! naming `isolation = "per_session"`: a question from one client never
//! reaches another.

#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::{InboundStreamOrigin, NotificationContext, RequestContext};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use tokio::sync::oneshot;

use super::needs::Needs;
use super::{BackendRef, prefix_uri};
use crate::coordinator::{Attribution, CallEvent, Fate, Hub, Kind, ListKinds, RelayJob};

/// How long a client may take to answer `roots/list` asked outside any call.
const ROOTS_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients are asked for their roots outside a call at most this often per
/// backend connection; asks in between get the last answer.
const ROOTS_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Log messages a backend may send per second on average, and in one burst;
/// beyond that they are dropped (and counted) so one chatty backend cannot
/// flood every client.
pub(super) const LOG_RATE: f64 = 500.0;
pub(super) const LOG_BURST: u32 = 1000;

impl super::Backend {
    /// Hands one progress notification to the call it belongs to, with the
    /// client's own token. The caller holds the routing gate, so a call
    /// registers before its progress is looked up.
    pub(super) fn route_progress(&self, param: ProgressNotificationParam) {
        self.hub.counters.add(Kind::Progress, Fate::Received, 1);
        let Some(call) = self.hub.calls.by_token(self.id, &param.progress_token) else {
            tracing::debug!(backend = %self.name(), "progress for an unknown token ignored");
            self.hub.counters.add(Kind::Progress, Fate::Dropped, 1);
            return;
        };
        let Some(token) = call.client_token.clone() else {
            // The client did not ask for progress.
            self.hub.counters.add(Kind::Progress, Fate::Dropped, 1);
            return;
        };
        if !call.advance(param.progress) {
            self.hub.counters.add(Kind::Progress, Fate::Coalesced, 1);
            return;
        }
        let mut forwarded = param;
        forwarded.progress_token = token;
        if call
            .events
            .try_send(CallEvent::Progress(forwarded))
            .is_err()
        {
            self.hub.counters.add(Kind::Progress, Fate::Dropped, 1);
        }
    }
}

impl super::Backend {
    /// The session a log message arriving now belongs to: a message while
    /// one session's calls are in flight is taken as that session's (the
    /// wire does not say which call caused it). The caller holds the
    /// routing gate.
    pub(super) fn log_caller(&self) -> Option<u64> {
        match self.hub.calls.attribute(self.id, None) {
            Attribution::Call(call) => Some(call.session()),
            _ => None,
        }
    }
}

pub struct BackendClient {
    pub(super) backend: BackendRef,
    pub(super) hub: Arc<Hub>,
    /// What we tell the backend we support: everything the gateway relays for
    /// a shared connection, or the client's own capabilities for a
    /// per-session one.
    pub(super) capabilities: ClientCapabilities,
    /// Limits log messages from this backend (one key: the connection).
    pub(super) log_limit: Option<crate::ratelimit::KeyedLimiter>,
    /// The last answer to `roots/list` asked outside a call, and when.
    pub(super) roots_cache: tokio::sync::Mutex<Option<(std::time::Instant, ListRootsResult)>>,
}

fn capability_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sampling => "sampling",
        Kind::Elicitation => "elicitation",
        _ => "roots",
    }
}

impl BackendClient {
    fn list_changed(&self, kinds: ListKinds) {
        for (flag, kind) in [
            (kinds.tools, Kind::ToolsListChanged),
            (kinds.prompts, Kind::PromptsListChanged),
            (kinds.resources, Kind::ResourcesListChanged),
        ] {
            if flag {
                self.hub.counters.add(kind, Fate::Received, 1);
            }
        }
        if let Some(backend) = self.backend.upgrade() {
            self.hub.list_changed(backend.id, kinds);
        }
    }

    /// Relays a server→client request to the client whose call caused it.
    async fn relay(
        &self,
        request: ServerRequest,
        kind: Kind,
        ctx: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        self.hub.counters.add(kind, Fate::Received, 1);
        let backend = self
            .backend
            .upgrade()
            .ok_or_else(|| ErrorData::internal_error("backend unmounted", None))?;
        let origin = match ctx.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
            _ => None,
        };
        let attribution = {
            // Wait until a call being sent right now is registered (rmcp notes, P4).
            let _gate = backend.routing_gate.read().await;
            self.hub.calls.attribute(backend.id, origin.as_ref())
        };
        let call = match attribution {
            Attribution::Call(call) => call,
            Attribution::Outside if kind == Kind::Roots => {
                return Ok(ClientResult::ListRootsResult(
                    self.roots_of_all_clients(backend.name()).await,
                ));
            }
            other => return Err(self.unattributed(&backend, kind, other)),
        };
        self.check_supported(&call, kind, Needs::of(&request))?;
        if let ServerRequest::ElicitRequest(r) = &request
            && let ElicitRequestParams::UrlElicitationParams { elicitation_id, .. } = &r.params
            && !elicitation_id.is_empty()
        {
            // Its `notifications/elicitation/complete` goes to this session only.
            self.hub
                .elicitations
                .record(backend.id, elicitation_id, call.session());
        }
        let (reply, answer) = oneshot::channel();
        let job = RelayJob {
            request,
            reply,
            cancel: ctx.ct.clone(),
        };
        if call.events.send(CallEvent::Relay(job)).await.is_err() {
            return Err(ErrorData::internal_error(
                "the client's call ended before the request could be relayed",
                None,
            ));
        }
        let result = answer.await.map_err(|_| {
            ErrorData::internal_error("the client's call ended before the client answered", None)
        })?;
        if result.is_ok() {
            self.hub.counters.add(kind, Fate::Forwarded, 1);
        }
        result
    }

    /// The refusal of a request no single call can be found for (counted).
    fn unattributed(&self, backend: &super::Backend, kind: Kind, why: Attribution) -> ErrorData {
        self.hub.counters.add(kind, Fate::Dropped, 1);
        let Attribution::Ambiguous { sessions } = why else {
            return ErrorData::invalid_request(
                format!(
                    "{} is only relayed while a client's request to backend `{}` is in flight",
                    capability_name(kind),
                    backend.name()
                ),
                None,
            );
        };
        self.hub.unattributable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(backend = %backend.name(), sessions, "server request not attributable to one client session; refused");
        ErrorData::invalid_request(
            format!(
                "backend `{}` has calls from {sessions} client sessions in flight and its {} transport does not say which one this {} request belongs to; \
                 set `isolation = \"per_session\"` on this backend so each client gets its own connection",
                backend.name(),
                backend.config.transport.kind(),
                capability_name(kind)
            ),
            None,
        )
    }

    /// Whether the calling client declared the capability (counted if not).
    fn check_supported(
        &self,
        call: &crate::coordinator::calls::Call,
        kind: Kind,
        needs: Needs,
    ) -> Result<(), ErrorData> {
        if let Some(parked) = &call.parked {
            // A 2026-07-28 client's call: asked with InputRequired, if it can answer.
            let Some(missing) = needs.missing_in(&parked.capabilities) else {
                return Ok(());
            };
            self.hub.counters.add(kind, Fate::Dropped, 1);
            return Err(ErrorData::invalid_request(
                format!("client `{}` does not support {missing}", parked.client_name),
                None,
            ));
        }
        let session = self.hub.session(call.session());
        if let Some(s) = session
            .as_ref()
            .filter(|s| s.mode != crate::coordinator::Mode::Legacy)
        {
            self.hub.counters.add(kind, Fate::Dropped, 1);
            return Err(ErrorData::invalid_request(
                format!(
                    "client `{}` speaks MCP 2026-07-28, where a server asks for {} with an InputRequired result; \
                     the gateway does that for tools/call, prompts/get and resources/read on a shared backend, \
                     and this is neither (completion/complete, or a backend with `isolation = \"per_session\"`, \
                     whose connection lasts one 2026-07-28 request)",
                    s.client_name,
                    capability_name(kind)
                ),
                None,
            ));
        }
        let missing = match &session {
            Some(s) => needs.missing_in(&s.capabilities),
            None => Some(capability_name(kind)),
        };
        let Some(missing) = missing else {
            return Ok(());
        };
        self.hub.counters.add(kind, Fate::Dropped, 1);
        let client = session
            .map(|s| s.client_name.clone())
            .unwrap_or_else(|| "the calling client".into());
        Err(ErrorData::invalid_request(
            format!("client `{client}` does not support {missing}"),
            None,
        ))
    }

    /// `roots/list` outside any call: the union of the roots of every client
    /// that has any and may use this backend. Answered from the last answer
    /// when asked again within [`ROOTS_MIN_INTERVAL`], so a backend cannot
    /// make the gateway poll every client in a loop.
    async fn roots_of_all_clients(&self, backend: &str) -> ListRootsResult {
        // Held while asking, so concurrent asks wait for one answer.
        let mut cache = self.roots_cache.lock().await;
        if let Some((at, answer)) = &*cache
            && at.elapsed() < ROOTS_MIN_INTERVAL
        {
            return answer.clone();
        }
        let asks = self
            .hub
            .sessions()
            .into_iter()
            .filter(|s| s.mode == crate::coordinator::Mode::Legacy)
            .filter(|s| s.capabilities.roots.is_some() && s.may_see(backend))
            .map(|s| async move {
                tokio::time::timeout(ROOTS_TIMEOUT, s.peer.list_roots())
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        let mut roots: Vec<Root> = Vec::new();
        for answer in futures::future::join_all(asks).await.into_iter().flatten() {
            for root in answer.roots {
                if !roots.iter().any(|r| r.uri == root.uri) {
                    roots.push(root);
                }
            }
        }
        let answer = ListRootsResult::new(roots);
        *cache = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

fn unexpected() -> ErrorData {
    ErrorData::internal_error("the client answered with an unexpected result type", None)
}

impl ClientHandler for BackendClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.capabilities.clone(),
            Implementation::new("manifold", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed(ListKinds::TOOLS);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed(ListKinds::PROMPTS);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed(ListKinds::RESOURCES);
    }

    /// Progress the transport did not route as it arrived (see `ordering`;
    /// only when it could not reach the backend): routed here.
    async fn on_progress(
        &self,
        param: ProgressNotificationParam,
        ctx: NotificationContext<RoleClient>,
    ) {
        if ctx.extensions.get::<super::ordering::Routed>().is_some() {
            return;
        }
        let Some(backend) = self.backend.upgrade() else {
            return;
        };
        let _gate = backend.routing_gate.read().await;
        backend.route_progress(param);
    }

    async fn on_logging_message(
        &self,
        param: LoggingMessageNotificationParam,
        ctx: NotificationContext<RoleClient>,
    ) {
        let allowed = self.log_limit.as_ref().is_none_or(|l| l.check("").is_ok());
        if !allowed {
            self.hub.counters.add(Kind::Log, Fate::Received, 1);
            self.hub.counters.add(Kind::Log, Fate::Dropped, 1);
            return;
        }
        if let Some(backend) = self.backend.upgrade() {
            // Attributed as it arrived, before the answer after it could end
            // the call (see `ordering`).
            let caller = match ctx.extensions.get::<super::ordering::LogCaller>() {
                Some(attributed) => attributed.0,
                None => {
                    let _gate = backend.routing_gate.read().await;
                    backend.log_caller()
                }
            };
            self.hub.log(backend.name(), backend.owner, caller, param);
        }
    }

    async fn on_resource_updated(
        &self,
        param: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        if let Some(backend) = self.backend.upgrade() {
            self.hub.resource_updated(
                prefix_uri(&backend.config.prefix, &param.uri),
                backend.owner,
            );
        }
    }

    /// A task's status goes to the session the task was handed to, under
    /// the name that session knows it by; a task nobody was handed (one a
    /// call waits for) is nobody's to hear of.
    async fn on_task_status(
        &self,
        mut params: TaskStatusNotificationParams,
        _: NotificationContext<RoleClient>,
    ) {
        let Some(backend) = self.backend.upgrade() else {
            return;
        };
        let Some(session) = backend
            .task_session(&params.task.task.task_id)
            .and_then(|id| self.hub.session(id))
        else {
            return;
        };
        params.task.task.task_id = format!("{}:{}", backend.name(), params.task.task.task_id);
        super::prefix_task_payload(&backend.config.prefix, &mut params.task.payload);
        let notification =
            ServerNotification::TaskStatusNotification(TaskStatusNotification::new(params));
        if !session.enqueue(notification) {
            tracing::debug!(backend = %backend.name(), "task status notification dropped: the session's queue is full");
        }
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _: NotificationContext<RoleClient>,
    ) {
        if notification.method == "notifications/elicitation/complete"
            && let Some(backend) = self.backend.upgrade()
        {
            self.hub.elicitation_complete(backend.id, notification);
        }
    }

    async fn on_cancelled(
        &self,
        _: CancelledNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        // rmcp has already cancelled the matching handler's token; the relay sees it.
        self.hub.counters.add(Kind::Cancelled, Fate::Received, 1);
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.relay(request, Kind::Sampling, &ctx).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(unexpected()),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.relay(request, Kind::Elicitation, &ctx).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn list_roots(
        &self,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.relay(request, Kind::Roots, &ctx).await? {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rate_limit_allows_a_burst_then_drops() {
        let limit =
            crate::ratelimit::KeyedLimiter::per_second(LOG_RATE, LOG_BURST).expect("a finite rate");
        let allowed = (0..(LOG_BURST as usize + 50))
            .filter(|_| limit.check("").is_ok())
            .count();
        assert!(
            allowed >= LOG_BURST as usize && allowed < LOG_BURST as usize + 50,
            "{allowed}"
        );
    }
}
